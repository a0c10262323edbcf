package web

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"

	"newsletter/digest"
	"newsletter/digest/render"
	"newsletter/templates"
)

// adminPages serves the editor pages. It keeps no state between requests (sessions and the login
// throttle are in PostgreSQL), so any number of serve processes can answer the same editor.
type adminPages struct {
	store           *digest.Store
	sessions        editorSessions
	renderer        *render.Renderer
	pages           *templates.Pages
	testSend        func(ctx context.Context, issueID int64, to string) error
	startSend       func(ctx context.Context, issueID int64) (int, error) // nil: no "send now"
	password        string                                                // empty: every login is refused
	requireApproval bool                                                  // scheduled sends wait for an editor's approval
	secure          bool                                                  // https: cookies are Secure
	trustProxy      bool                                                  // the login throttle keys clients by X-Forwarded-For
	deviceKey       []byte                                                // signs device cookies; nil: none issued
	langs           []string
	maxArticles     int
	publication     string
	log             *slog.Logger
}

// admin returns the editor pages over h's dependencies; it is cheap, as they hold no state.
func (h *Handler) admin() *adminPages {
	return &adminPages{
		store: h.store, sessions: editorSessions{db: h.store.DB(), now: h.store.Now}, renderer: h.renderer, pages: h.pages,
		testSend: h.opts.TestSend, startSend: h.opts.StartSend, password: h.opts.AdminPassword, requireApproval: h.opts.RequireApproval,
		secure: h.opts.SecureCookies, trustProxy: h.opts.TrustProxy, deviceKey: h.opts.DeviceKey, langs: h.opts.Languages, maxArticles: h.opts.MaxArticles,
		publication: h.opts.Publication, log: h.log,
	}
}

// WithTestSend returns a copy of h whose "send a test" uses f (see TestSender); main wires it, as
// only main holds the SMTP client.
func (h *Handler) WithTestSend(f func(ctx context.Context, issueID int64, to string) error) *Handler {
	c := *h
	c.opts.TestSend = f
	return &c
}

// WithStartSend returns a copy of h whose "send now" uses f (the Sender's Start).
func (h *Handler) WithStartSend(f func(ctx context.Context, issueID int64) (int, error)) *Handler {
	c := *h
	c.opts.StartSend = f
	return &c
}

// The editor endpoints, listed in cmd/newsletter/routes.go. Every one but the login form and the
// login itself goes behind RequireEditor.

// AdminLoginForm is GET /admin/login.
func (h *Handler) AdminLoginForm(w http.ResponseWriter, r *http.Request) { h.admin().LoginForm(w, r) }

// AdminLogin is POST /admin/login.
func (h *Handler) AdminLogin(w http.ResponseWriter, r *http.Request) { h.admin().Login(w, r) }

// AdminLogout is POST /admin/logout.
func (h *Handler) AdminLogout(w http.ResponseWriter, r *http.Request) { h.admin().Logout(w, r) }

// RequireEditor wraps every editor route but the login: a live session, and the form token on POST.
func (h *Handler) RequireEditor(next http.HandlerFunc) http.Handler {
	return h.admin().RequireEditor(next)
}

// AdminHome is GET /admin/: coming digests, feeds, past issues.
func (h *Handler) AdminHome(w http.ResponseWriter, r *http.Request) { h.admin().Home(w, r) }

// AdminDigest is GET /admin/digest/{lang}: the coming issue and its controls.
func (h *Handler) AdminDigest(w http.ResponseWriter, r *http.Request) { h.admin().Digest(w, r) }

// AdminPreview is GET /admin/issues/{id}/preview.html: the HTML part for the sandboxed frame.
func (h *Handler) AdminPreview(w http.ResponseWriter, r *http.Request) { h.admin().Preview(w, r) }

// AdminIssue is GET /admin/issues/{id}: progress and final report.
func (h *Handler) AdminIssue(w http.ResponseWriter, r *http.Request) { h.admin().IssuePage(w, r) }

// AdminIssueText is POST /admin/issues/{id}/text.
func (h *Handler) AdminIssueText(w http.ResponseWriter, r *http.Request) { h.admin().IssueText(w, r) }

// AdminApprove is POST /admin/issues/{id}/approve.
func (h *Handler) AdminApprove(w http.ResponseWriter, r *http.Request) { h.admin().Approve(w, r) }

// AdminTestSend is POST /admin/issues/{id}/test.
func (h *Handler) AdminTestSend(w http.ResponseWriter, r *http.Request) { h.admin().TestSend(w, r) }

// AdminIssueAction is POST /admin/issues/{id}/{action}: pause, resume, cancel.
func (h *Handler) AdminIssueAction(w http.ResponseWriter, r *http.Request) {
	h.admin().IssueAction(w, r)
}

// AdminNewArticle is GET /admin/digest/{lang}/articles/new.
func (h *Handler) AdminNewArticle(w http.ResponseWriter, r *http.Request) {
	h.admin().NewArticleForm(w, r)
}

// AdminAddArticle is POST /admin/digest/{lang}/articles.
func (h *Handler) AdminAddArticle(w http.ResponseWriter, r *http.Request) { h.admin().AddArticle(w, r) }

// AdminEditArticleForm is GET /admin/articles/{id}/edit.
func (h *Handler) AdminEditArticleForm(w http.ResponseWriter, r *http.Request) {
	h.admin().EditArticleForm(w, r)
}

// AdminEditArticle is POST /admin/articles/{id}.
func (h *Handler) AdminEditArticle(w http.ResponseWriter, r *http.Request) {
	h.admin().EditArticle(w, r)
}

// AdminArticleAction is POST /admin/articles/{id}/{action}: pin, unpin, hide, unhide, up, down.
func (h *Handler) AdminArticleAction(w http.ResponseWriter, r *http.Request) {
	h.admin().ArticleAction(w, r)
}

const (
	adminFormLimit = 64 << 10
	// allArticles asks Content for every article of an issue, including those past the maximum
	// ("and N more"), so the editor can order all of them.
	allArticles = 10000
)

type ctxKey int

const sessionIDKey ctxKey = iota

// adminCommon is what every editor page carries: the form token and the navigation.
type adminCommon struct {
	CSRF   string
	Langs  []string
	Active string // the language whose digest is open, "" for the overview
	Flash  string
}

// flashes are the messages an action leaves for the page it redirects to (by key, so no request
// can put text of its own on the page).
var flashes = map[string]string{
	"text":      "Subject and note saved.",
	"approved":  "Approved: the scheduled send will take this issue.",
	"test":      "Test sent.",
	"pinned":    "Pinned as the lead story.",
	"unpinned":  "Unpinned.",
	"hidden":    "Hidden from the digest.",
	"unhidden":  "Back in the digest.",
	"moved":     "Order changed.",
	"added":     "digest.Article added.",
	"picked":    "Added to the coming digest.",
	"saved":     "digest.Article saved.",
	"paused":    "Sending paused.",
	"resumed":   "Sending resumed.",
	"cancelled": "digest.Issue cancelled.",
	"started":   "Sending started.",
}

func (a *adminPages) common(r *http.Request, active string) adminCommon {
	id, _ := r.Context().Value(sessionIDKey).(string)
	return adminCommon{CSRF: csrfToken(id), Langs: a.langs, Active: active, Flash: flashes[r.URL.Query().Get("done")]}
}

func (a *adminPages) render(w http.ResponseWriter, r *http.Request, status int, page, title string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	// Render into a buffer first (Pages.Render does), so a template error is a clean 500.
	var buf strings.Builder
	if err := a.pages.Render(&buf, page, templates.View{Lang: "en", Title: title, Publication: a.publication, Data: data}); err != nil {
		a.log.Error("admin: render page", "page", page, "err", err)
		http.Error(w, "Internal error.", http.StatusInternalServerError)
		return
	}
	w.WriteHeader(status)
	w.Write([]byte(buf.String()))
}

type adminErrorData struct {
	Heading, Message, Back string
}

// fail answers with a clear message for status, never with an error's own text.
func (a *adminPages) fail(w http.ResponseWriter, r *http.Request, status int, msg, back string) {
	heading := http.StatusText(status)
	a.render(w, r, status, "admin_error", heading, adminErrorData{Heading: heading, Message: msg, Back: back})
}

// failErr turns a store error into a page: the package's sentinel errors become 4xx with a
// message; anything else is logged and shown as an internal error.
func (a *adminPages) failErr(w http.ResponseWriter, r *http.Request, err error, back string) {
	switch {
	case errors.Is(err, digest.ErrNotFound):
		a.fail(w, r, http.StatusNotFound, "That issue or article does not exist (any more).", back)
	case errors.Is(err, digest.ErrConflict):
		a.fail(w, r, http.StatusConflict, "That cannot be done in the issue's present state: "+conflictText(err), back)
	case errors.Is(err, digest.ErrInvalid):
		a.fail(w, r, http.StatusBadRequest, "That was not accepted: "+conflictText(err), back)
	case errors.Is(err, digest.ErrNoArticles):
		a.fail(w, r, http.StatusConflict, "There are no new articles for this language.", back)
	default:
		a.log.Error("admin", "route", r.Pattern, "err", err)
		a.fail(w, r, http.StatusInternalServerError, "Internal error. It has been logged.", back)
	}
}

// conflictText is the human part of a sentinel-wrapped error ("issue 7: not a draft: conflict" ->
// "issue 7: not a draft"; "invalid: title is required" -> "title is required"): our own wording,
// never a driver's, as only errors wrapping our sentinels come here.
func conflictText(err error) string {
	s := strings.TrimPrefix(err.Error(), "digest: ")
	for _, sentinel := range []error{digest.ErrConflict, digest.ErrInvalid, digest.ErrNotFound, digest.ErrNoArticles} {
		s = strings.TrimSuffix(s, ": "+sentinel.Error())
		s = strings.TrimPrefix(s, sentinel.Error()+": ")
	}
	return s
}

func redirect(w http.ResponseWriter, r *http.Request, to string) {
	http.Redirect(w, r, to, http.StatusSeeOther)
}
