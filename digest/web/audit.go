package web

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"newsletter/editors"
)

// auditPageSize is how many rows one page of the audit log shows.
const auditPageSize = 50

type adminAuditData struct {
	adminCommon
	Rows             []editors.AuditRecord
	Actors, Actions  []string
	Actor, Action    string
	Object           string
	From, To         string // as typed: YYYY-MM-DD
	Older, Newest    string // links to the next page and back to the first ("" when none)
	Error            string
	FilterWasApplied bool
}

// Audit is GET /admin/audit: the audit log, newest first, filtered by editor, action, object and
// dates (UTC days, both included), 50 rows a page. Filters are in the query: they hold no secret,
// and a filtered view can be linked to.
func (e *Editor) Audit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	d := adminAuditData{adminCommon: e.common(r, "audit"), Actor: q.Get("actor"), Action: q.Get("action"),
		Object: strings.TrimSpace(q.Get("object")), From: q.Get("from"), To: q.Get("to")}
	f := editors.AuditFilter{Actor: d.Actor, Action: d.Action, Object: d.Object, Limit: auditPageSize + 1}
	status := http.StatusOK
	if d.From != "" {
		t, err := time.Parse("2006-01-02", d.From)
		if err != nil {
			status, d.Error = http.StatusBadRequest, "The first day is not a date (YYYY-MM-DD)."
		}
		f.From = t
	}
	if d.To != "" {
		t, err := time.Parse("2006-01-02", d.To)
		if err != nil {
			status, d.Error = http.StatusBadRequest, "The last day is not a date (YYYY-MM-DD)."
		}
		f.To = t.AddDate(0, 0, 1)
	}
	if v := q.Get("before"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			status, d.Error = http.StatusBadRequest, "That page does not exist."
		}
		f.Before = n
	}
	if len(d.Actor) > 200 || len(d.Action) > 50 || len(d.Object) > 100 {
		status, d.Error = http.StatusBadRequest, "A filter is too long."
	}
	var err error
	if d.Actors, err = e.accounts.AuditActors(r.Context()); err == nil {
		d.Actions, err = e.accounts.AuditActions(r.Context())
	}
	if err == nil && status == http.StatusOK {
		d.Rows, err = e.accounts.AuditLog(r.Context(), f)
	}
	if err != nil {
		e.failErr(w, r, err, "/admin/")
		return
	}
	d.FilterWasApplied = d.Actor != "" || d.Action != "" || d.Object != "" || d.From != "" || d.To != ""
	page := url.Values{}
	for k, v := range map[string]string{"actor": d.Actor, "action": d.Action, "object": d.Object, "from": d.From, "to": d.To} {
		if v != "" {
			page.Set(k, v)
		}
	}
	if len(d.Rows) > auditPageSize {
		d.Rows = d.Rows[:auditPageSize]
		older := url.Values{}
		for k, v := range page {
			older[k] = v
		}
		older.Set("before", strconv.FormatInt(d.Rows[len(d.Rows)-1].ID, 10))
		d.Older = "/admin/audit?" + older.Encode()
	}
	if f.Before != 0 {
		d.Newest = "/admin/audit"
		if len(page) > 0 {
			d.Newest += "?" + page.Encode()
		}
	}
	e.render(w, status, "admin_audit", "Audit log", d)
}
