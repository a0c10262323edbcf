package web

import (
	"context"
	"fmt"
	"net/http"
	"net/mail"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"newsletter/digest"
	"newsletter/digest/render"
	"newsletter/editors"
	"newsletter/internal/textclean"
)

// issue is the issue of the path's {id} (see loadByID).
func (e *Editor) issue(w http.ResponseWriter, r *http.Request) (digest.Issue, bool) {
	return loadByID(e, w, r, "issue", e.store.IssueByID)
}

// Preview is GET /admin/issues/{id}/preview.html: the issue's HTML exactly as a reader gets it
// (without a reader's data), for the sandboxed frame of the digest page. Its own policy: no script,
// a unique origin, and framed only by our own pages.
func (e *Editor) Preview(w http.ResponseWriter, r *http.Request) {
	is, ok := e.issue(w, r)
	if !ok {
		return
	}
	if is.IsEdition() {
		e.editionPreview(w, r, is)
		return
	}
	c, err := e.store.Content(r.Context(), is.ID, e.opts.MaxArticles)
	if err != nil {
		e.failErr(w, r, err, "")
		return
	}
	out, err := e.renderer.Render(c, render.Recipient{})
	if err != nil {
		e.failErr(w, r, err, "")
		return
	}
	writePreview(w, out.HTML)
}

// writePreview answers a preview frame with an email's HTML, under the frames' own policy: no
// script, a unique origin, framed only by our own pages, never cached.
func writePreview(w http.ResponseWriter, html string) {
	h := w.Header()
	h.Set("Content-Security-Policy", "sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; frame-ancestors 'self'")
	h.Set("X-Frame-Options", "SAMEORIGIN")
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.Write([]byte(html))
}

// IssueText is POST /admin/issues/{id}/text: subject and editor's note.
func (e *Editor) IssueText(w http.ResponseWriter, r *http.Request) {
	is, ok := e.issue(w, r)
	if !ok {
		return
	}
	back := issueBack(is)
	subject := strings.TrimSpace(r.PostForm.Get("subject"))
	note := strings.TrimSpace(strings.ReplaceAll(r.PostForm.Get("note"), "\r\n", "\n"))
	if msg := checkText("Subject", subject, 200, false); msg != "" {
		e.fail(w, http.StatusBadRequest, msg, back)
		return
	}
	if msg := checkText("Note", note, 2000, true); msg != "" {
		e.fail(w, http.StatusBadRequest, msg, back)
		return
	}
	if !e.record(w, r, "issue.text", issueObject(is.ID), "subject "+strconv.Quote(textclean.ClipBytes(subject, 200)), back) {
		return
	}
	if err := e.store.UpdateIssueText(r.Context(), is.ID, subject, note); err != nil {
		e.failErr(w, r, err, back)
		return
	}
	redirect(w, r, back+"?done=text")
}

// Approve is POST /admin/issues/{id}/approve.
func (e *Editor) Approve(w http.ResponseWriter, r *http.Request) {
	is, ok := e.issue(w, r)
	if !ok {
		return
	}
	back := issueBack(is)
	if !e.record(w, r, "issue.approve", issueObject(is.ID), "", back) {
		return
	}
	if err := e.store.Approve(r.Context(), is.ID); err != nil {
		e.failErr(w, r, err, back)
		return
	}
	e.log.Info("admin: issue approved", "issue", is.ID, "lang", is.Lang)
	redirect(w, r, back+"?done=approved")
}

// TestSend is POST /admin/issues/{id}/test: the issue through the same renderer, to one address,
// "[TEST] " before the subject. It writes no ledger row and counts as no send; its unsubscribe
// and manage links lead to harmless pages.
func (e *Editor) TestSend(w http.ResponseWriter, r *http.Request) {
	is, ok := e.issue(w, r)
	if !ok {
		return
	}
	back := issueBack(is)
	to, err := testAddress(r.PostForm.Get("to"))
	if err != nil {
		e.fail(w, http.StatusBadRequest, "Give one valid email address to send the test to.", back)
		return
	}
	// A writer sends tests to their own address only: a test is the whole issue, and sending it
	// to anyone else is publishing it.
	sess, _ := e.session(r)
	if !sess.Editor.Role.Allows(editors.Publisher) && !strings.EqualFold(to, sess.Editor.Email) {
		e.fail(w, http.StatusForbidden, "As a writer you can send a test to your own address only ("+sess.Editor.Email+").", back)
		return
	}
	if e.opts.TestSend == nil {
		e.fail(w, http.StatusServiceUnavailable, "Test sending is not set up in this service.", back)
		return
	}
	// The address is the editor's business, not the log's: own address or another.
	detail := "to another address"
	if strings.EqualFold(to, sess.Editor.Email) {
		detail = "to their own address"
	}
	if !e.record(w, r, "issue.test", issueObject(is.ID), detail, back) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := e.opts.TestSend(ctx, is.ID, to); err != nil {
		e.failErr(w, r, err, back)
		return
	}
	e.log.Info("admin: test sent", "issue", is.ID)
	redirect(w, r, back+"?done=test&to="+url.QueryEscape(to))
}

// testAddress accepts one bare address (no display name, no list), as typed in the form.
func testAddress(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 254 || strings.ContainsAny(s, "\r\n\x00<>,;\" ") {
		return "", digest.ErrInvalid
	}
	addr, err := mail.ParseAddress(s)
	if err != nil || addr.Address != s || !strings.Contains(s[strings.LastIndexByte(s, '@')+1:], ".") && !strings.HasSuffix(s, "@localhost") {
		return "", digest.ErrInvalid
	}
	return s, nil
}

// checkText returns a message when s is too long or carries control characters (newlines only
// where multiline allows them), else "".
func checkText(field, s string, maxRunes int, multiline bool) string {
	if utf8.RuneCountInString(s) > maxRunes {
		return fmt.Sprintf("%s is too long: at most %d characters.", field, maxRunes)
	}
	if !utf8.ValidString(s) {
		return field + " is not valid text."
	}
	for _, c := range s {
		if unicode.IsControl(c) && !(multiline && (c == '\n' || c == '\t')) {
			return field + " contains control characters."
		}
	}
	return ""
}

type adminIssueData struct {
	adminCommon
	Issue    digest.Issue
	Subject  string
	Progress progressView
	// Figures are what came of the issue once it started going out (nil before).
	Figures                        *digest.Figures
	CanPause, CanResume, CanCancel bool
}

// subjectOf is the issue's subject as it goes (or went) out: an issue keeps no subject of its own
// until an editor sets one or it starts sending, so the generated one is shown meanwhile.
func (e *Editor) subjectOf(ctx context.Context, is digest.Issue) string {
	if is.Subject != "" {
		return is.Subject
	}
	if c, err := e.store.Content(ctx, is.ID, e.opts.MaxArticles); err == nil {
		return e.renderer.Subject(c)
	}
	return ""
}

// IssuePage is GET /admin/issues/{id}: progress while sending, the final report afterwards.
func (e *Editor) IssuePage(w http.ResponseWriter, r *http.Request) {
	is, ok := e.issue(w, r)
	if !ok {
		return
	}
	pv, err := e.progress(r.Context(), is)
	if err != nil {
		e.failErr(w, r, err, "/admin/")
		return
	}
	var figures *digest.Figures
	if is.StartedAt != nil {
		all, err := e.store.IssueFigures(r.Context(), is.ID)
		if err != nil {
			e.failErr(w, r, err, "/admin/")
			return
		}
		if f, ok := all[is.ID]; ok {
			figures = &f
		}
	}
	subject := e.subjectOf(r.Context(), is)
	e.render(w, http.StatusOK, "admin_issue", fmt.Sprintf("Issue #%d", is.ID), adminIssueData{
		adminCommon: e.common(r, ""), Issue: is, Subject: subject, Progress: pv, Figures: figures,
		CanPause:  is.Status == digest.StatusSending,
		CanResume: is.Status == digest.StatusPaused,
		CanCancel: is.Status == digest.StatusSending || is.Status == digest.StatusPaused || is.Status == digest.StatusApproved || is.Status == digest.StatusDraft,
	})
}

// issueActions are the POSTs of IssueAction.
var issueActions = []string{"pause", "resume", "cancel", "send"}

func issueObject(id int64) string { return "issue " + strconv.FormatInt(id, 10) }

// IssueAction is POST /admin/issues/{id}/{action}: pause, resume, cancel, send (now).
func (e *Editor) IssueAction(w http.ResponseWriter, r *http.Request) {
	is, ok := e.issue(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	back := "/admin/issues/" + strconv.FormatInt(is.ID, 10)
	action := r.PathValue("action")
	if !slices.Contains(issueActions, action) {
		e.fail(w, http.StatusNotFound, "There is no such action.", back)
		return
	}
	var err error
	var done string
	switch action {
	case "pause":
		reason := strings.TrimSpace(r.PostForm.Get("reason"))
		if m := checkText("Reason", reason, 200, false); m != "" {
			e.fail(w, http.StatusBadRequest, m, back)
			return
		}
		if reason == "" {
			reason = "paused by an editor"
		}
		if !e.record(w, r, "issue.pause", issueObject(is.ID), reason, back) {
			return
		}
		err, done = e.store.Pause(ctx, is.ID, reason), "paused"
	case "resume":
		if !e.record(w, r, "issue.resume", issueObject(is.ID), "", back) {
			return
		}
		err, done = e.store.Resume(ctx, is.ID), "resumed"
	case "cancel":
		if !e.record(w, r, "issue.cancel", issueObject(is.ID), "was "+is.Status, back) {
			return
		}
		err, done = e.store.Cancel(ctx, is.ID), "cancelled"
	case "send":
		// Only an approved issue: its content is locked, so what starts is what the editor
		// approved, not a draft that new articles changed since the page was drawn.
		back = issueBack(is)
		if is.Status != digest.StatusApproved {
			e.fail(w, http.StatusConflict, "Only an approved issue can be sent now; this one is "+is.Status+".", back)
			return
		}
		if e.opts.StartSend == nil {
			e.fail(w, http.StatusServiceUnavailable, "Sending is not set up in this service.", back)
			return
		}
		if !e.record(w, r, "issue.send", issueObject(is.ID), "", back) {
			return
		}
		var n int
		if n, err = e.opts.StartSend(ctx, is.ID); err == nil {
			e.log.Info("admin: issue started by an editor", "issue", is.ID, "readers", n)
			back, done = "/admin/issues/"+strconv.FormatInt(is.ID, 10), "started"
		}
	default:
		e.fail(w, http.StatusNotFound, "There is no such action.", back)
		return
	}
	if err != nil {
		e.failErr(w, r, err, back)
		return
	}
	e.log.Info("admin: issue "+done, "issue", is.ID)
	redirect(w, r, back+"?done="+done)
}
