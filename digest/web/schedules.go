package web

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"newsletter/digest"
	"newsletter/newsletters"
)

// A digest's schedule page: its cron expression, most articles and approval rule (each empty: the
// setting), its next five runs in the newsroom's zone, skipping the next run, and its last runs.

type runView struct {
	At      string
	Outcome string
	IssueID *int64
	Skipped bool
}

type adminScheduleData struct {
	adminCommon
	N    newsletters.Newsletter
	Name string
	Zone string
	// The form: as stored, or as typed when refused.
	Spec, MaxArticles, Approval string
	Error                       string
	// The settings a field left empty takes.
	DefaultSpec        string
	DefaultMaxArticles int
	DefaultApproval    bool
	// Next are the next runs; NextAt the first as RFC 3339, which a skip names.
	Next    []string
	NextAt  string
	Skip    string // the skipped run, "" when none
	Runs    []runView
	Default bool // the digest follows the setting's expression
}

// formatTime shows t in the newsroom's zone.
func (e *Editor) formatTime(t time.Time) string {
	return t.In(e.tz()).Format("Mon 2006-01-02 15:04 MST")
}

// digestSchedule is the digest's effective schedule: its own expression, else the setting's.
func (e *Editor) digestSchedule(n newsletters.Newsletter) (cron.Schedule, error) {
	spec := e.opts.DigestSchedule
	if n.Schedule != nil {
		spec = *n.Schedule
	}
	if spec == "" {
		spec = "CRON_TZ=UTC 0 8 * * MON"
	}
	return digest.ParseSchedule(spec, e.tz())
}

// pathDigest is the digest newsletter of the path's {id}; on failure it has answered (404).
func (e *Editor) pathDigest(w http.ResponseWriter, r *http.Request) (newsletters.Newsletter, bool) {
	n, ok := e.pathNewsletter(w, r)
	if ok && n.Kind != newsletters.KindDigest {
		e.fail(w, http.StatusNotFound, "Only a digest has a schedule; an editions newsletter goes out when its editors send an edition.", "/admin/newsletters/"+strconv.FormatInt(n.ID, 10))
		return n, false
	}
	return n, ok
}

// SchedulePage is GET /admin/newsletters/{id}/schedule.
func (e *Editor) SchedulePage(w http.ResponseWriter, r *http.Request) {
	n, ok := e.pathDigest(w, r)
	if !ok {
		return
	}
	d := adminScheduleData{}
	if n.Schedule != nil {
		d.Spec = *n.Schedule
	}
	if n.MaxArticles != nil {
		d.MaxArticles = strconv.Itoa(*n.MaxArticles)
	}
	if n.RequireApproval != nil {
		d.Approval = map[bool]string{true: "yes", false: "no"}[*n.RequireApproval]
	}
	e.schedulePage(w, r, http.StatusOK, n, d)
}

func (e *Editor) schedulePage(w http.ResponseWriter, r *http.Request, status int, n newsletters.Newsletter, d adminScheduleData) {
	d.adminCommon = e.common(r, "newsletters")
	d.Flash = newsletterFlashes[r.URL.Query().Get("done")]
	d.N, d.Name, d.Zone = n, n.Name("en"), e.tz().String()
	d.DefaultSpec, d.DefaultMaxArticles, d.DefaultApproval = e.opts.DigestSchedule, e.opts.MaxArticles, e.opts.RequireApproval
	d.Default = n.Schedule == nil
	if sched, err := e.digestSchedule(n); err == nil {
		next := digest.NextRuns(sched, e.store.Now(), 5)
		for _, t := range next {
			d.Next = append(d.Next, e.formatTime(t))
		}
		if len(next) > 0 {
			d.NextAt = next[0].UTC().Format(time.RFC3339)
		}
	}
	if n.SkipRunAt != nil {
		d.Skip = e.formatTime(*n.SkipRunAt)
	}
	runs, err := newsletters.Runs(r.Context(), e.store.DB(), n.ID, runsShown)
	if err != nil {
		e.failErr(w, r, err, "/admin/newsletters")
		return
	}
	for _, run := range runs {
		d.Runs = append(d.Runs, runView{At: e.formatTime(run.ScheduledAt), Outcome: run.Outcome, IssueID: run.IssueID,
			Skipped: run.Outcome == digest.OutcomeSkippedByEditor})
	}
	e.render(w, status, "admin_newsletter_schedule", "Schedule: "+d.Name, d)
}

// SaveSchedule is POST /admin/newsletters/{id}/schedule: expression, most articles, approval
// rule; an empty field takes the setting. A bad value is a 400 with the form re-shown and nothing
// saved.
func (e *Editor) SaveSchedule(w http.ResponseWriter, r *http.Request) {
	n, ok := e.pathDigest(w, r)
	if !ok {
		return
	}
	d := adminScheduleData{Spec: strings.TrimSpace(r.PostForm.Get("schedule")), MaxArticles: strings.TrimSpace(r.PostForm.Get("max_articles")),
		Approval: r.PostForm.Get("require_approval")}
	var s newsletters.Schedule
	if d.Spec != "" && d.Spec != "default" {
		switch {
		case len(d.Spec) > 200 || strings.ContainsAny(d.Spec, "\r\n"):
			d.Error = "A schedule is one line of at most 200 characters."
		default:
			if _, err := digest.ParseSchedule(d.Spec, e.tz()); err != nil {
				d.Error = "That is not a schedule robfig/cron reads: " + conflictText(err) + ". Five fields (minute hour day-of-month month day-of-week), e.g. 0 8 * * MON, or a descriptor such as @weekly; CRON_TZ=Zone first for another zone than " + e.tz().String() + "."
			}
		}
		spec := d.Spec
		s.Spec = &spec
	}
	if d.MaxArticles != "" {
		m, err := strconv.Atoi(d.MaxArticles)
		if err != nil || m < 1 || m > digest.MaxArticlesLimit {
			d.Error = strings.TrimSpace(d.Error + " Most articles is a whole number from 1 to " + strconv.Itoa(digest.MaxArticlesLimit) + ", or empty for the setting.")
		}
		s.MaxArticles = &m
	}
	switch d.Approval {
	case "":
	case "yes", "no":
		v := d.Approval == "yes"
		s.RequireApproval = &v
	default:
		d.Error = strings.TrimSpace(d.Error + " Choose whether a run needs an approved issue: yes, no, or the setting.")
	}
	if d.Error != "" {
		e.schedulePage(w, r, http.StatusBadRequest, n, d)
		return
	}
	if err := newsletters.SetSchedule(r.Context(), e.store.DB(), n.ID, s); err != nil {
		if msg := newsletterError(err); msg != "" {
			d.Error = msg
			e.schedulePage(w, r, http.StatusBadRequest, n, d)
			return
		}
		e.failErr(w, r, err, "/admin/newsletters")
		return
	}
	detail := "schedule " + orDefault(d.Spec) + ", most articles " + orDefault(d.MaxArticles) + ", approval " + orDefault(d.Approval)
	if !e.record(w, r, "newsletter.schedule", newsletterObject(n.ID), detail, "/admin/newsletters") {
		return
	}
	redirect(w, r, "/admin/newsletters/"+strconv.FormatInt(n.ID, 10)+"/schedule?done=schedule")
}

func orDefault(s string) string {
	if s == "" || s == "default" {
		return "default"
	}
	return strconv.Quote(s)
}

// ScheduleAction is POST /admin/newsletters/{id}/schedule/{action}: skip (the next run, which the
// form names, so a schedule changed meanwhile is not skipped at a time the editor did not see)
// or unskip.
func (e *Editor) ScheduleAction(w http.ResponseWriter, r *http.Request) {
	n, ok := e.pathDigest(w, r)
	if !ok {
		return
	}
	back := "/admin/newsletters/" + strconv.FormatInt(n.ID, 10) + "/schedule"
	switch r.PathValue("action") {
	case "skip":
		sched, err := e.digestSchedule(n)
		if err != nil {
			e.fail(w, http.StatusConflict, "The stored schedule cannot be read; save a good one first.", back)
			return
		}
		next := digest.NextRuns(sched, e.store.Now(), 1)
		at, err := time.Parse(time.RFC3339, r.PostForm.Get("at"))
		if err != nil {
			e.fail(w, http.StatusBadRequest, "Which run to skip is missing. Reload the schedule page and try again.", back)
			return
		}
		if len(next) == 0 || !next[0].Equal(at) {
			e.fail(w, http.StatusConflict, "The next run is no longer the one shown (the schedule changed, or it ran). Reload the schedule page and try again.", back)
			return
		}
		if err := newsletters.SetSkip(r.Context(), e.store.DB(), n.ID, &at); err != nil {
			e.failErr(w, r, err, back)
			return
		}
		if !e.record(w, r, "newsletter.skip", newsletterObject(n.ID), "the run of "+at.UTC().Format(time.RFC3339), back) {
			return
		}
		redirect(w, r, back+"?done=skip")
	case "unskip":
		if err := newsletters.SetSkip(r.Context(), e.store.DB(), n.ID, nil); err != nil {
			e.failErr(w, r, err, back)
			return
		}
		detail := "none was set"
		if n.SkipRunAt != nil {
			detail = "the run of " + n.SkipRunAt.UTC().Format(time.RFC3339)
		}
		if !e.record(w, r, "newsletter.unskip", newsletterObject(n.ID), detail, back) {
			return
		}
		redirect(w, r, back+"?done=unskip")
	default:
		e.fail(w, http.StatusNotFound, "There is no such action.", back)
	}
}
