package web

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"newsletter/digest"
	"newsletter/digest/render"
	"newsletter/newsletters"
)

// The editions' pages (/admin/editions): an edition is written in Markdown beside its rendered
// preview, sent as a test, approved, then sent now or scheduled; sending and its progress are the
// issue's (/admin/issues/{id}). Writers write and test; publishers approve, schedule and send.

var editionFlashes = map[string]string{
	"created":     "Edition saved as a draft.",
	"saved":       "Saved. An approved edition that is edited goes back to draft.",
	"approved":    "Approved: send it now or schedule it.",
	"test":        "Test sent.",
	"scheduled":   "Scheduled.",
	"unscheduled": "No longer scheduled.",
}

type editionNewsletter struct {
	N        newsletters.Newsletter
	Name     string
	Editions []digest.Issue
}

type adminEditionsData struct {
	adminCommon
	Newsletters []editionNewsletter
	Zone        string
}

// Editions is GET /admin/editions: each editions newsletter with its editions, and the form that
// starts a new one.
func (e *Editor) Editions(w http.ResponseWriter, r *http.Request) {
	all, err := newsletters.List(r.Context(), e.store.DB())
	if err != nil {
		e.failErr(w, r, err, "/admin/")
		return
	}
	d := adminEditionsData{adminCommon: e.common(r, "editions"), Zone: e.tz().String()}
	for _, n := range all {
		if n.Kind != newsletters.KindEditions {
			continue
		}
		eds, err := e.store.Editions(r.Context(), n.ID)
		if err != nil {
			e.failErr(w, r, err, "/admin/")
			return
		}
		d.Newsletters = append(d.Newsletters, editionNewsletter{N: n, Name: n.Name("en"), Editions: eds})
	}
	e.render(w, http.StatusOK, "admin_editions", "Editions", d)
}

type adminEditionData struct {
	adminCommon
	Issue      digest.Issue
	Newsletter newsletters.Newsletter
	Subject    string
	Preheader  string
	Markdown   string
	Error      string
	Text       string // the plain-text part, as a reader gets it
	SendAt     string // the scheduled time in the newsroom's zone, for the form
	Zone       string
	Editable   bool
	Limit      int
}

// NewEdition is POST /admin/editions: a new draft of an editions newsletter in one of its languages.
func (e *Editor) NewEdition(w http.ResponseWriter, r *http.Request) {
	back := "/admin/editions"
	id, _ := strconv.ParseInt(r.PostForm.Get("newsletter"), 10, 64)
	t := editionText(r)
	if !e.record(w, r, "edition.create", "newsletter "+strconv.FormatInt(id, 10), r.PostForm.Get("lang"), back) {
		return
	}
	iss, err := e.store.CreateEdition(r.Context(), id, r.PostForm.Get("lang"), t)
	if err != nil {
		e.editionError(w, r, err, back)
		return
	}
	redirect(w, r, "/admin/editions/"+strconv.FormatInt(iss.ID, 10)+"?done=created")
}

func editionText(r *http.Request) digest.EditionText {
	return digest.EditionText{Subject: r.PostForm.Get("subject"), Preheader: r.PostForm.Get("preheader"), Markdown: r.PostForm.Get("markdown")}
}

// editionError answers a refused edition: what was wrong (the store's ErrInvalid names it) with 400.
func (e *Editor) editionError(w http.ResponseWriter, r *http.Request, err error, back string) {
	if errors.Is(err, digest.ErrInvalid) {
		msg := strings.TrimSuffix(strings.TrimPrefix(err.Error(), "edition: "), ": "+digest.ErrInvalid.Error())
		e.fail(w, http.StatusBadRequest, strings.ToUpper(msg[:1])+msg[1:]+".", back)
		return
	}
	e.failErr(w, r, err, back)
}

// edition loads the path's edition; a digest's id is not found here.
func (e *Editor) edition(w http.ResponseWriter, r *http.Request) (digest.Issue, bool) {
	is, ok := e.issue(w, r)
	if ok && !is.IsEdition() {
		e.fail(w, http.StatusNotFound, "There is no such edition.", "/admin/editions")
		return is, false
	}
	return is, ok
}

// EditionPage is GET /admin/editions/{id}: the Markdown beside its rendered preview, and what
// can be done with the edition in its state.
func (e *Editor) EditionPage(w http.ResponseWriter, r *http.Request) {
	is, ok := e.edition(w, r)
	if !ok {
		return
	}
	n, err := newsletters.Get(r.Context(), e.store.DB(), is.NewsletterID)
	if err != nil {
		e.failErr(w, r, err, "/admin/editions")
		return
	}
	c := e.common(r, "editions")
	if f, ok := editionFlashes[r.URL.Query().Get("done")]; ok {
		c.Flash = f
	}
	d := adminEditionData{adminCommon: c, Issue: is, Newsletter: n, Subject: is.Subject, Preheader: is.Preheader, Markdown: *is.Markdown,
		Zone: e.tz().String(), Editable: is.Status == digest.StatusDraft || is.Status == digest.StatusApproved, Limit: digest.MaxEditionMarkdown}
	if is.SendAt != nil {
		d.SendAt = is.SendAt.In(e.tz()).Format("2006-01-02 15:04")
	}
	if out, err := e.renderer.RenderEdition(e.editionOf(is, n), render.Recipient{}); err == nil {
		d.Text = out.Text
	}
	e.render(w, http.StatusOK, "admin_edition", "Edition #"+strconv.FormatInt(is.ID, 10), d)
}

func (e *Editor) editionOf(is digest.Issue, n newsletters.Newsletter) digest.Edition {
	date := time.Now()
	if is.SendAt != nil {
		date = *is.SendAt
	}
	if is.StartedAt != nil {
		date = *is.StartedAt
	}
	return digest.Edition{ID: is.ID, Lang: is.Lang, Newsletter: n.Name(is.Lang), Subject: is.Subject, Preheader: is.Preheader,
		Markdown: *is.Markdown, Date: date}
}

// SaveEdition is POST /admin/editions/{id}: the new subject, preheader and Markdown.
func (e *Editor) SaveEdition(w http.ResponseWriter, r *http.Request) {
	is, ok := e.edition(w, r)
	if !ok {
		return
	}
	back := "/admin/editions/" + strconv.FormatInt(is.ID, 10)
	if !e.record(w, r, "edition.edit", issueObject(is.ID), "", back) {
		return
	}
	if err := e.store.UpdateEdition(r.Context(), is.ID, editionText(r)); err != nil {
		e.editionError(w, r, err, back)
		return
	}
	redirect(w, r, back+"?done=saved")
}

// ScheduleEdition is POST /admin/editions/{id}/schedule: send_at as "YYYY-MM-DD HH:MM" (or the
// browser's "YYYY-MM-DDTHH:MM") in the newsroom's zone; empty unschedules.
func (e *Editor) ScheduleEdition(w http.ResponseWriter, r *http.Request) {
	is, ok := e.edition(w, r)
	if !ok {
		return
	}
	back := "/admin/editions/" + strconv.FormatInt(is.ID, 10)
	v := strings.Replace(strings.TrimSpace(r.PostForm.Get("send_at")), "T", " ", 1)
	var at time.Time
	if v != "" {
		var err error
		if at, err = time.ParseInLocation("2006-01-02 15:04", v, e.tz()); err != nil {
			e.fail(w, http.StatusBadRequest, "Give the time to send as YYYY-MM-DD HH:MM ("+e.tz().String()+").", back)
			return
		}
	}
	if !e.record(w, r, "edition.schedule", issueObject(is.ID), v, back) {
		return
	}
	if err := e.store.ScheduleEdition(r.Context(), is.ID, at); err != nil {
		if errors.Is(err, digest.ErrConflict) {
			e.fail(w, http.StatusConflict, "Only an approved edition can be scheduled; this one is "+is.Status+".", back)
			return
		}
		e.editionError(w, r, err, back)
		return
	}
	done := "scheduled"
	if at.IsZero() {
		done = "unscheduled"
	}
	redirect(w, r, back+"?done="+done)
}

// editionPreview writes the edition's HTML as a reader gets it, for the page's sandboxed frame.
func (e *Editor) editionPreview(w http.ResponseWriter, r *http.Request, is digest.Issue) {
	n, err := newsletters.Get(r.Context(), e.store.DB(), is.NewsletterID)
	if err != nil {
		e.failErr(w, r, err, "")
		return
	}
	out, err := e.renderer.RenderEdition(e.editionOf(is, n), render.Recipient{})
	if err != nil {
		e.failErr(w, r, err, "")
		return
	}
	writePreview(w, out.HTML)
}

// issueBack is the page an action on the issue returns to: its digest's page, or the edition's.
func issueBack(is digest.Issue) string {
	if is.IsEdition() {
		return "/admin/editions/" + strconv.FormatInt(is.ID, 10)
	}
	return "/admin/digest/" + is.Lang
}
