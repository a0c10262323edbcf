package web

import (
	"context"
	"errors"
	"net/http"
	"time"

	"newsletter/digest"
	"newsletter/digest/feeds"
)

type comingIssue struct {
	Lang     string
	Issue    *digest.Issue
	Subject  string
	Articles int
}

type issueRow struct {
	Issue    digest.Issue
	Subject  string
	Progress progressView
}

// progressView is what the pages show of a send: counts, duration, failures grouped by reason.
type progressView struct {
	Total, Sent, Failed, Skipped, Queued, Done, Percent int
	Duration                                            string
	Reasons                                             []digest.FailureReason
}

type adminHomeData struct {
	adminCommon
	Coming []comingIssue
	Feeds  []feeds.Status
	Issues []issueRow
}

// Home is GET /admin/: the coming digest of each language (assembled now, as on its own page), the
// feeds, and every issue that has left the draft stage.
func (e *Editor) Home(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	d := adminHomeData{adminCommon: e.common(r, "")}
	for _, lang := range e.opts.Languages {
		ci := comingIssue{Lang: lang}
		is, err := e.coming(ctx, lang)
		if err != nil {
			e.failErr(w, r, err, "")
			return
		}
		if is != nil {
			ci.Issue = is
			c, err := e.store.Content(ctx, is.ID, e.opts.MaxArticles)
			if err != nil && !errors.Is(err, digest.ErrNoArticles) {
				e.failErr(w, r, err, "")
				return
			}
			ci.Articles, ci.Subject = c.Total, e.renderer.Subject(c)
		}
		d.Coming = append(d.Coming, ci)
	}
	all, err := e.store.Issues(ctx, "")
	if err != nil {
		e.failErr(w, r, err, "")
		return
	}
	if d.Feeds, err = feeds.List(ctx, e.store); err != nil {
		e.failErr(w, r, err, "")
		return
	}
	for _, is := range all {
		if is.Status == digest.StatusDraft || is.Status == digest.StatusApproved {
			continue
		}
		pv, err := e.progress(ctx, is)
		if err != nil {
			e.failErr(w, r, err, "")
			return
		}
		d.Issues = append(d.Issues, issueRow{Issue: is, Subject: e.subjectOf(ctx, is), Progress: pv})
	}
	e.render(w, http.StatusOK, "admin_home", "Editor overview", d)
}

// progress is the issue's ledger as the pages show it: counts by outcome, how long the send took
// (or has taken so far), and the permanent failures grouped by reason.
func (e *Editor) progress(ctx context.Context, is digest.Issue) (progressView, error) {
	p, err := e.store.Progress(ctx, is.ID)
	if err != nil {
		return progressView{}, err
	}
	pv := progressView{Total: p.Total, Sent: p.Sent, Failed: p.Failed, Skipped: p.Skipped, Queued: p.Queued, Done: p.Total - p.Queued}
	if pv.Total > 0 {
		pv.Percent = pv.Done * 100 / pv.Total
	}
	if d := p.Duration(e.store.Now()); d > 0 {
		pv.Duration = d.Round(time.Second).String()
	}
	if pv.Failed > 0 {
		if pv.Reasons, err = e.store.FailureReasons(ctx, is.ID); err != nil {
			return progressView{}, err
		}
	}
	return pv, nil
}
