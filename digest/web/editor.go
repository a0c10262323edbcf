package web

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	"newsletter/digest/feeds"
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

// --- login ---

type adminLoginData struct {
	CSRF     string
	Error    string
	Disabled bool
}

func (a *adminPages) loginPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	// The login form's token is a random value mirrored in a short-lived cookie (double submit):
	// there is no session yet to tie it to, and another site can neither read nor set the cookie.
	token := newSessionID()
	http.SetCookie(w, &http.Cookie{Name: loginCSRFCookie, Value: token, Path: "/admin/login", MaxAge: 3600,
		HttpOnly: true, Secure: a.secure, SameSite: http.SameSiteStrictMode})
	a.render(w, r, status, "admin_login", "Editor login", adminLoginData{CSRF: token, Error: msg, Disabled: a.password == ""})
}

// LoginForm is GET /admin/login.
func (a *adminPages) LoginForm(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil && a.sessions.check(r.Context(), c.Value) == nil {
		redirect(w, r, "/admin/")
		return
	}
	a.loginPage(w, r, http.StatusOK, "")
}

// Login is POST /admin/login: throttle, compare, then a brand-new session.
func (a *adminPages) Login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, adminFormLimit)
	if err := r.ParseForm(); err != nil {
		a.loginPage(w, r, http.StatusBadRequest, "The form could not be read; try again.")
		return
	}
	c, err := r.Cookie(loginCSRFCookie)
	if err != nil || c.Value == "" || !csrfEqual(c.Value, r.PostForm.Get("csrf")) {
		a.loginPage(w, r, http.StatusForbidden, "The login form expired or came from elsewhere; it has been reloaded, try again.")
		return
	}
	if a.password == "" {
		a.loginPage(w, r, http.StatusForbidden, "Editor login is switched off: no editor password is set.")
		return
	}
	client := clientKey(r, a.trustProxy)
	known := false
	if c, err := r.Cookie(deviceCookie); err == nil {
		known = deviceValid(a.deviceKey, c.Value)
	}
	if err := a.sessions.throttled(r.Context(), client, known); err != nil {
		if errors.Is(err, errLoginThrottled) {
			w.Header().Set("Retry-After", strconv.Itoa(int(loginWindow/time.Second)))
			a.loginPage(w, r, http.StatusTooManyRequests, "Too many failed logins. Wait a few minutes, then try again.")
			return
		}
		a.failErr(w, r, err, "/admin/login")
		return
	}
	if !passwordMatches(a.password, r.PostForm.Get("password")) {
		if err := a.sessions.failed(r.Context(), client); err != nil {
			a.failErr(w, r, err, "/admin/login")
			return
		}
		a.log.Warn("admin: failed login", "client", client)
		a.loginPage(w, r, http.StatusUnauthorized, "Wrong password.")
		return
	}
	var old string
	if c, err := r.Cookie(sessionCookie); err == nil {
		old = c.Value
	}
	id, err := a.sessions.create(r.Context(), old)
	if err != nil {
		a.failErr(w, r, err, "/admin/login")
		return
	}
	http.SetCookie(w, sessionCookieFor(id, a.secure))
	if len(a.deviceKey) > 0 && !known {
		http.SetCookie(w, &http.Cookie{Name: deviceCookie, Value: deviceToken(a.deviceKey), Path: "/admin/login",
			MaxAge: int(deviceMaxAge / time.Second), HttpOnly: true, Secure: a.secure, SameSite: http.SameSiteStrictMode})
	}
	http.SetCookie(w, &http.Cookie{Name: loginCSRFCookie, Path: "/admin/login", MaxAge: -1, HttpOnly: true, Secure: a.secure, SameSite: http.SameSiteStrictMode})
	a.log.Info("admin: login", "client", client)
	redirect(w, r, "/admin/")
}

// Logout is POST /admin/logout (behind RequireEditor, so it carries the form token).
func (a *adminPages) Logout(w http.ResponseWriter, r *http.Request) {
	id, _ := r.Context().Value(sessionIDKey).(string)
	if err := a.sessions.end(r.Context(), id); err != nil {
		a.failErr(w, r, err, "/admin/")
		return
	}
	http.SetCookie(w, sessionCookieFor("", a.secure))
	redirect(w, r, "/admin/login")
}

// RequireEditor lets a request through only with a live session; a POST must also carry the
// session's form token. Without a session a GET goes to the login page and a POST gets 403.
func (a *adminPages) RequireEditor(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		c, err := r.Cookie(sessionCookie)
		if err == nil {
			err = a.sessions.check(r.Context(), c.Value)
		}
		if err != nil {
			if !errors.Is(err, errNoSession) && !errors.Is(err, http.ErrNoCookie) {
				a.failErr(w, r, err, "")
				return
			}
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				redirect(w, r, "/admin/login")
				return
			}
			a.fail(w, r, http.StatusForbidden, "Your editor session has ended. Log in again, then repeat what you did.", "/admin/login")
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, adminFormLimit)
			if err := r.ParseForm(); err != nil {
				var tooBig *http.MaxBytesError
				if errors.As(err, &tooBig) {
					a.fail(w, r, http.StatusRequestEntityTooLarge, "The form is too large.", "")
					return
				}
				a.fail(w, r, http.StatusBadRequest, "The form could not be read.", "")
				return
			}
			if !csrfValid(c.Value, r.PostForm.Get("csrf")) {
				a.fail(w, r, http.StatusForbidden, "The form's security token is missing or wrong. Reload the page and try again.", "")
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), sessionIDKey, c.Value)))
	})
}

// --- overview ---

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
func (a *adminPages) Home(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	d := adminHomeData{adminCommon: a.common(r, "")}
	for _, lang := range a.langs {
		ci := comingIssue{Lang: lang}
		is, err := a.coming(ctx, lang)
		if err != nil {
			a.failErr(w, r, err, "")
			return
		}
		if is != nil {
			ci.Issue = is
			c, err := a.store.Content(ctx, is.ID, a.maxArticles)
			if err != nil && !errors.Is(err, digest.ErrNoArticles) {
				a.failErr(w, r, err, "")
				return
			}
			ci.Articles, ci.Subject = c.Total, a.renderer.Subject(c)
		}
		d.Coming = append(d.Coming, ci)
	}
	all, err := a.store.Issues(ctx, "")
	if err != nil {
		a.failErr(w, r, err, "")
		return
	}
	if d.Feeds, err = feeds.List(ctx, a.store); err != nil {
		a.failErr(w, r, err, "")
		return
	}
	for _, is := range all {
		if is.Status == digest.StatusDraft || is.Status == digest.StatusApproved {
			continue
		}
		pv, err := a.progress(ctx, is)
		if err != nil {
			a.failErr(w, r, err, "")
			return
		}
		d.Issues = append(d.Issues, issueRow{Issue: is, Subject: a.subjectOf(ctx, is), Progress: pv})
	}
	a.render(w, r, http.StatusOK, "admin_home", "Editor overview", d)
}

// --- the coming digest of one language ---

type articleRow struct {
	Article                     digest.Article
	Num                         int
	First, Last, Lead, Overflow bool
}

type adminDigestData struct {
	adminCommon
	Lang        string
	Issue       *digest.Issue
	Editable    bool
	Subject     string // as it goes out
	AutoSubject string // the generated one, when the editor sets none
	Preheader   string
	// RequireApproval: the scheduled send waits for approval (else it takes the draft as it is).
	RequireApproval bool
	// CanSendNow: the issue is approved and this service can start it ("send now").
	CanSendNow bool
	Readers    int // confirmed readers of the language: who "send now" reaches
	Text       string
	Articles   []articleRow
	More       int
	Hidden     []digest.Article
	Earlier    []digest.Article // left out by the window rule; an editor may pick one
	TestTo     string
}

func (a *adminPages) lang(w http.ResponseWriter, r *http.Request) (string, bool) {
	lang := r.PathValue("lang")
	if !slices.Contains(a.langs, lang) {
		a.fail(w, r, http.StatusNotFound, "There is no digest in that language.", "/admin/")
		return "", false
	}
	return lang, true
}

// coming returns the language's unsent issue, assembling (refreshing) it while it is a draft, so
// the page always shows what would go out now; an approved, sending or paused issue stays as it
// is. nil when there are no new articles.
func (a *adminPages) coming(ctx context.Context, lang string) (*digest.Issue, error) {
	is, err := a.store.Assemble(ctx, lang, a.maxArticles)
	if errors.Is(err, digest.ErrNoArticles) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &is, nil
}

// Digest is GET /admin/digest/{lang}: the coming issue as readers will get it, and its controls.
func (a *adminPages) Digest(w http.ResponseWriter, r *http.Request) {
	lang, ok := a.lang(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	d := adminDigestData{adminCommon: a.common(r, lang), Lang: lang, TestTo: r.URL.Query().Get("to"), RequireApproval: a.requireApproval}
	is, err := a.coming(ctx, lang)
	if err != nil {
		a.failErr(w, r, err, "/admin/")
		return
	}
	if is != nil {
		d.Issue = is
		d.Editable = is.Status == digest.StatusDraft
		if is.Status == digest.StatusApproved && a.startSend != nil {
			d.CanSendNow = true
			if d.Readers, err = a.store.ConfirmedReaders(ctx, lang); err != nil {
				a.failErr(w, r, err, "/admin/")
				return
			}
		}
		c, err := a.store.Content(ctx, is.ID, a.maxArticles)
		if err != nil {
			a.failErr(w, r, err, "/admin/")
			return
		}
		out, err := a.renderer.Render(c, render.Recipient{})
		if err != nil {
			a.failErr(w, r, err, "/admin/")
			return
		}
		d.Subject, d.Preheader, d.Text, d.More = out.Subject, out.Preheader, out.Text, c.More
		auto := c
		auto.Issue.Subject = ""
		d.AutoSubject = a.renderer.Subject(auto)
		rows, err := a.rows(ctx, c)
		if err != nil {
			a.failErr(w, r, err, "/admin/")
			return
		}
		for i, row := range rows {
			d.Articles = append(d.Articles, articleRow{Article: row.Article, Num: i + 1, First: i == 0, Last: i == len(rows)-1,
				Lead: row.block == "lead", Overflow: strings.HasPrefix(row.block, "more:")})
		}
		// A pinned lead always leads: nothing can move above it, and it cannot move down.
		if len(d.Articles) > 0 && d.Articles[0].Article.Pinned {
			d.Articles[0].Last = true
			if len(d.Articles) > 1 {
				d.Articles[1].First = true
			}
		}
	}
	if d.Hidden, err = a.store.HiddenArticles(ctx, lang); err != nil {
		a.failErr(w, r, err, "/admin/")
		return
	}
	if d.Earlier, err = a.store.EarlierArticles(ctx, lang); err != nil {
		a.failErr(w, r, err, "/admin/")
		return
	}
	a.render(w, r, http.StatusOK, "admin_digest", "Digest "+lang, d)
}

// issueRowItem is one article of the coming issue as the editor sees it, with the block it belongs
// to in the email: "lead", "section:NAME", or "more:ID" for each article past the maximum.
type issueRowItem struct {
	digest.Article
	block string
}

// rows lists the issue's articles in reading order: those shown (c, arranged with the real
// maximum) as the email has them, then the ones counted in "and N more", in their ranking.
func (a *adminPages) rows(ctx context.Context, c digest.IssueContent) ([]issueRowItem, error) {
	var out []issueRowItem
	shown := map[int64]bool{}
	if c.Lead != nil {
		out = append(out, issueRowItem{*c.Lead, "lead"})
		shown[c.Lead.ID] = true
	}
	for _, s := range c.Sections {
		for _, art := range s.Articles {
			out = append(out, issueRowItem{art, "section:" + s.Name})
			shown[art.ID] = true
		}
	}
	if c.More == 0 {
		return out, nil
	}
	all, err := a.store.Content(ctx, c.Issue.ID, allArticles)
	if err != nil {
		return nil, err
	}
	for _, art := range all.Articles() {
		if !shown[art.ID] {
			out = append(out, issueRowItem{art, "more:" + strconv.FormatInt(art.ID, 10)})
		}
	}
	return out, nil
}

// move moves art one place up (by -1) or down (+1) in the coming issue and saves the new order
// as every article's position. The email groups articles by section, so a move across a
// section's edge moves the whole section past its neighbour; a move into or out of the lead
// slot swaps the lead (never past a pinned one, which always leads).
func (a *adminPages) move(ctx context.Context, art digest.Article, by int) error {
	is, err := a.coming(ctx, art.Lang)
	if err != nil {
		return err
	}
	if is == nil || is.Status != digest.StatusDraft {
		return fmt.Errorf("only a draft can be reordered: %w", digest.ErrConflict)
	}
	c, err := a.store.Content(ctx, is.ID, a.maxArticles)
	if err != nil {
		return err
	}
	list, err := a.rows(ctx, c)
	if err != nil {
		return err
	}
	list = moveRow(list, art.ID, by)
	if list == nil {
		return fmt.Errorf("the article is not in the coming issue, or a pinned article leads: %w", digest.ErrConflict)
	}
	for k, x := range list {
		pos := k + 1
		if err := a.store.SetPosition(ctx, x.ID, &pos); err != nil {
			return err
		}
	}
	return nil
}

// moveRow returns list with article id moved by one place as move describes; list unchanged at
// either end, nil when the move is not possible (unknown article, or past a pinned lead).
func moveRow(list []issueRowItem, id int64, by int) []issueRowItem {
	i := slices.IndexFunc(list, func(x issueRowItem) bool { return x.ID == id })
	if i < 0 {
		return nil
	}
	j := i + by
	if j < 0 || j >= len(list) {
		return list
	}
	list = slices.Clone(list)
	bi, bj := list[i].block, list[j].block
	switch {
	case bi == "lead" || bj == "lead":
		if list[0].Pinned {
			return nil
		}
		list[i], list[j] = list[j], list[i]
	case bi == bj, strings.HasPrefix(bi, "more:"), strings.HasPrefix(bj, "more:"):
		list[i], list[j] = list[j], list[i]
	default:
		// Swap the two adjacent section blocks.
		lo, hi := min(i, j), max(i, j) // lo ends one block, hi starts the next
		start := lo
		for start > 0 && list[start-1].block == list[lo].block {
			start--
		}
		end := hi
		for end+1 < len(list) && list[end+1].block == list[hi].block {
			end++
		}
		swapped := append(slices.Clone(list[hi:end+1]), list[start:hi]...)
		copy(list[start:end+1], swapped)
	}
	return list
}

func (a *adminPages) issue(w http.ResponseWriter, r *http.Request) (digest.Issue, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		a.fail(w, r, http.StatusNotFound, "There is no such issue.", "/admin/")
		return digest.Issue{}, false
	}
	is, err := a.store.IssueByID(r.Context(), id)
	if err != nil {
		a.failErr(w, r, err, "/admin/")
		return digest.Issue{}, false
	}
	return is, true
}

// Preview is GET /admin/issues/{id}/preview.html: the issue's HTML exactly as a reader gets it
// (without a reader's data), for the sandboxed frame of the digest page. Its own policy: no script,
// a unique origin, and framed only by our own pages.
func (a *adminPages) Preview(w http.ResponseWriter, r *http.Request) {
	is, ok := a.issue(w, r)
	if !ok {
		return
	}
	c, err := a.store.Content(r.Context(), is.ID, a.maxArticles)
	if err != nil {
		a.failErr(w, r, err, "")
		return
	}
	out, err := a.renderer.Render(c, render.Recipient{})
	if err != nil {
		a.failErr(w, r, err, "")
		return
	}
	h := w.Header()
	h.Set("Content-Security-Policy", "sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; frame-ancestors 'self'")
	h.Set("X-Frame-Options", "SAMEORIGIN")
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.Write([]byte(out.HTML))
}

// IssueText is POST /admin/issues/{id}/text: subject and editor's note.
func (a *adminPages) IssueText(w http.ResponseWriter, r *http.Request) {
	is, ok := a.issue(w, r)
	if !ok {
		return
	}
	back := "/admin/digest/" + is.Lang
	subject := strings.TrimSpace(r.PostForm.Get("subject"))
	note := strings.TrimSpace(strings.ReplaceAll(r.PostForm.Get("note"), "\r\n", "\n"))
	if msg := checkText("Subject", subject, 200, false); msg != "" {
		a.fail(w, r, http.StatusBadRequest, msg, back)
		return
	}
	if msg := checkText("Note", note, 2000, true); msg != "" {
		a.fail(w, r, http.StatusBadRequest, msg, back)
		return
	}
	if err := a.store.UpdateIssueText(r.Context(), is.ID, subject, note); err != nil {
		a.failErr(w, r, err, back)
		return
	}
	redirect(w, r, back+"?done=text")
}

// Approve is POST /admin/issues/{id}/approve.
func (a *adminPages) Approve(w http.ResponseWriter, r *http.Request) {
	is, ok := a.issue(w, r)
	if !ok {
		return
	}
	back := "/admin/digest/" + is.Lang
	if err := a.store.Approve(r.Context(), is.ID); err != nil {
		a.failErr(w, r, err, back)
		return
	}
	a.log.Info("admin: issue approved", "issue", is.ID, "lang", is.Lang)
	redirect(w, r, back+"?done=approved")
}

// TestSend is POST /admin/issues/{id}/test: the issue through the same renderer, to one address,
// "[TEST] " before the subject. It writes no ledger row and counts as no send; its unsubscribe
// and manage links lead to harmless pages.
func (a *adminPages) TestSend(w http.ResponseWriter, r *http.Request) {
	is, ok := a.issue(w, r)
	if !ok {
		return
	}
	back := "/admin/digest/" + is.Lang
	to, err := testAddress(r.PostForm.Get("to"))
	if err != nil {
		a.fail(w, r, http.StatusBadRequest, "Give one valid email address to send the test to.", back)
		return
	}
	if a.testSend == nil {
		a.fail(w, r, http.StatusServiceUnavailable, "Test sending is not set up in this service.", back)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
	defer cancel()
	if err := a.testSend(ctx, is.ID, to); err != nil {
		if errors.Is(err, digest.ErrNotFound) || errors.Is(err, digest.ErrNoArticles) || errors.Is(err, digest.ErrInvalid) {
			a.failErr(w, r, err, back)
			return
		}
		a.log.Warn("admin: test send failed", "issue", is.ID, "err", err)
		a.fail(w, r, http.StatusBadGateway, "The mail server did not take the test message. Check NEWSLETTER_SMTP_URL and the log.", back)
		return
	}
	a.log.Info("admin: test sent", "issue", is.ID)
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

// --- articles ---

type adminArticleData struct {
	adminCommon
	Lang    string
	Article digest.Article
	Error   string
}

// NewArticleForm is GET /admin/digest/{lang}/articles/new.
func (a *adminPages) NewArticleForm(w http.ResponseWriter, r *http.Request) {
	lang, ok := a.lang(w, r)
	if !ok {
		return
	}
	a.render(w, r, http.StatusOK, "admin_article", "Add an article", adminArticleData{adminCommon: a.common(r, lang), Lang: lang})
}

// AddArticle is POST /admin/digest/{lang}/articles.
func (a *adminPages) AddArticle(w http.ResponseWriter, r *http.Request) {
	lang, ok := a.lang(w, r)
	if !ok {
		return
	}
	art, msg := articleFromForm(r)
	art.Lang = lang
	if msg != "" {
		a.render(w, r, http.StatusBadRequest, "admin_article", "Add an article", adminArticleData{adminCommon: a.common(r, lang), Lang: lang, Article: art, Error: msg})
		return
	}
	art.Source = "editor"
	if _, err := a.store.AddArticle(r.Context(), art); err != nil {
		a.failErr(w, r, err, "/admin/digest/"+lang+"/articles/new")
		return
	}
	redirect(w, r, "/admin/digest/"+lang+"?done=added")
}

func (a *adminPages) article(w http.ResponseWriter, r *http.Request) (digest.Article, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		a.fail(w, r, http.StatusNotFound, "There is no such article.", "/admin/")
		return digest.Article{}, false
	}
	art, err := a.store.ArticleByID(r.Context(), id)
	if err != nil {
		a.failErr(w, r, err, "/admin/")
		return digest.Article{}, false
	}
	return art, true
}

// articleLocked reports why art can no longer change: it belongs to an issue that has left the
// draft stage (approved, sending, sent...), whose content must stay what was approved or sent.
func (a *adminPages) articleLocked(ctx context.Context, art digest.Article) (string, error) {
	id, status, err := a.store.ArticleIssue(ctx, art.ID)
	if err != nil || id == 0 || status == digest.StatusDraft {
		return "", err
	}
	return fmt.Sprintf("This article is part of issue #%d, which is %s: it can no longer change.", id, status), nil
}

// EditArticleForm is GET /admin/articles/{id}/edit.
func (a *adminPages) EditArticleForm(w http.ResponseWriter, r *http.Request) {
	art, ok := a.article(w, r)
	if !ok {
		return
	}
	a.render(w, r, http.StatusOK, "admin_article", "Edit article", adminArticleData{adminCommon: a.common(r, art.Lang), Lang: art.Lang, Article: art})
}

// EditArticle is POST /admin/articles/{id}.
func (a *adminPages) EditArticle(w http.ResponseWriter, r *http.Request) {
	old, ok := a.article(w, r)
	if !ok {
		return
	}
	if msg, err := a.articleLocked(r.Context(), old); err != nil || msg != "" {
		if err != nil {
			a.failErr(w, r, err, "/admin/digest/"+old.Lang)
			return
		}
		a.fail(w, r, http.StatusConflict, msg, "/admin/digest/"+old.Lang)
		return
	}
	art, msg := articleFromForm(r)
	art.ID, art.Lang = old.ID, old.Lang
	if msg != "" {
		a.render(w, r, http.StatusBadRequest, "admin_article", "Edit article", adminArticleData{adminCommon: a.common(r, old.Lang), Lang: old.Lang, Article: art, Error: msg})
		return
	}
	if err := a.store.UpdateArticle(r.Context(), art); err != nil {
		a.failErr(w, r, err, "/admin/articles/"+strconv.FormatInt(old.ID, 10)+"/edit")
		return
	}
	redirect(w, r, "/admin/digest/"+old.Lang+"?done=saved")
}

// articleFromForm reads and checks the article form; msg is "" when it is fine.
func articleFromForm(r *http.Request) (art digest.Article, msg string) {
	f := func(k string) string { return strings.TrimSpace(r.PostForm.Get(k)) }
	art = digest.Article{Title: f("title"), Link: f("link"), Summary: strings.ReplaceAll(f("summary"), "\r\n", "\n"),
		Section: f("section"), ImageURL: f("image_url"), ImageAlt: f("image_alt")}
	switch {
	case art.Title == "":
		return art, "Give the article a title."
	case !webURL(art.Link):
		return art, "The link must be a full http:// or https:// address."
	case art.ImageURL != "" && !webURL(art.ImageURL):
		return art, "The image URL must be a full http:// or https:// address."
	}
	for _, c := range []struct {
		field, v  string
		max       int
		multiline bool
	}{{"Title", art.Title, 300, false}, {"Link", art.Link, 2000, false}, {"Summary", art.Summary, 2000, true},
		{"digest.Section", art.Section, 100, false}, {"Image URL", art.ImageURL, 2000, false}, {"Image description", art.ImageAlt, 300, false}} {
		if m := checkText(c.field, c.v, c.max, c.multiline); m != "" {
			return art, m
		}
	}
	return art, ""
}

func webURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.User == nil
}

// ArticleAction is POST /admin/articles/{id}/{action}: pin, unpin, hide, unhide, up, down, pick.
func (a *adminPages) ArticleAction(w http.ResponseWriter, r *http.Request) {
	art, ok := a.article(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	back := "/admin/digest/" + art.Lang
	if msg, err := a.articleLocked(ctx, art); err != nil || msg != "" {
		if err != nil {
			a.failErr(w, r, err, back)
			return
		}
		a.fail(w, r, http.StatusConflict, msg, back)
		return
	}
	var err error
	var done string
	switch r.PathValue("action") {
	case "pin":
		err, done = a.store.SetPinned(ctx, art.ID, true), "pinned"
	case "unpin":
		err, done = a.store.SetPinned(ctx, art.ID, false), "unpinned"
	case "hide":
		err, done = a.store.SetHidden(ctx, art.ID, true), "hidden"
	case "unhide":
		err, done = a.store.SetHidden(ctx, art.ID, false), "unhidden"
	case "pick":
		err, done = a.store.PickArticle(ctx, art.ID), "picked"
	case "up":
		err, done = a.move(ctx, art, -1), "moved"
	case "down":
		err, done = a.move(ctx, art, +1), "moved"
	default:
		a.fail(w, r, http.StatusNotFound, "There is no such action.", back)
		return
	}
	if err != nil {
		a.failErr(w, r, err, back)
		return
	}
	redirect(w, r, back+"?done="+done)
}

// --- issues: progress, report, control ---

type adminIssueData struct {
	adminCommon
	Issue                          digest.Issue
	Subject                        string
	Progress                       progressView
	CanPause, CanResume, CanCancel bool
}

// subjectOf is the issue's subject as it goes (or went) out: an issue keeps no subject of its own
// until an editor sets one or it starts sending, so the generated one is shown meanwhile.
func (a *adminPages) subjectOf(ctx context.Context, is digest.Issue) string {
	if is.Subject != "" {
		return is.Subject
	}
	if c, err := a.store.Content(ctx, is.ID, a.maxArticles); err == nil {
		return a.renderer.Subject(c)
	}
	return ""
}

// IssuePage is GET /admin/issues/{id}: progress while sending, the final report afterwards.
func (a *adminPages) IssuePage(w http.ResponseWriter, r *http.Request) {
	is, ok := a.issue(w, r)
	if !ok {
		return
	}
	pv, err := a.progress(r.Context(), is)
	if err != nil {
		a.failErr(w, r, err, "/admin/")
		return
	}
	subject := a.subjectOf(r.Context(), is)
	a.render(w, r, http.StatusOK, "admin_issue", fmt.Sprintf("digest.Issue #%d", is.ID), adminIssueData{
		adminCommon: a.common(r, ""), Issue: is, Subject: subject, Progress: pv,
		CanPause:  is.Status == digest.StatusSending,
		CanResume: is.Status == digest.StatusPaused,
		CanCancel: is.Status == digest.StatusSending || is.Status == digest.StatusPaused || is.Status == digest.StatusApproved || is.Status == digest.StatusDraft,
	})
}

// IssueAction is POST /admin/issues/{id}/{action}: pause, resume, cancel.
func (a *adminPages) IssueAction(w http.ResponseWriter, r *http.Request) {
	is, ok := a.issue(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	back := "/admin/issues/" + strconv.FormatInt(is.ID, 10)
	var err error
	var done string
	switch r.PathValue("action") {
	case "pause":
		reason := strings.TrimSpace(r.PostForm.Get("reason"))
		if m := checkText("Reason", reason, 200, false); m != "" {
			a.fail(w, r, http.StatusBadRequest, m, back)
			return
		}
		if reason == "" {
			reason = "paused by an editor"
		}
		err, done = a.store.Pause(ctx, is.ID, reason), "paused"
	case "resume":
		err, done = a.store.Resume(ctx, is.ID), "resumed"
	case "cancel":
		err, done = a.store.Cancel(ctx, is.ID), "cancelled"
	case "send":
		// Only an approved issue: its content is locked, so what starts is what the editor
		// approved, not a draft that new articles changed since the page was drawn.
		back = "/admin/digest/" + is.Lang
		if is.Status != digest.StatusApproved {
			a.fail(w, r, http.StatusConflict, "Only an approved issue can be sent now; this one is "+is.Status+".", back)
			return
		}
		if a.startSend == nil {
			a.fail(w, r, http.StatusServiceUnavailable, "Sending is not set up in this service.", back)
			return
		}
		var n int
		if n, err = a.startSend(ctx, is.ID); err == nil {
			a.log.Info("admin: issue started by an editor", "issue", is.ID, "readers", n)
			back, done = "/admin/issues/"+strconv.FormatInt(is.ID, 10), "started"
		}
	default:
		a.fail(w, r, http.StatusNotFound, "There is no such action.", back)
		return
	}
	if err != nil {
		a.failErr(w, r, err, back)
		return
	}
	a.log.Info("admin: issue "+done, "issue", is.ID)
	redirect(w, r, back+"?done="+done)
}

// progress is the issue's ledger as the pages show it: counts by outcome, how long the send took
// (or has taken so far), and the permanent failures grouped by reason.
func (a *adminPages) progress(ctx context.Context, is digest.Issue) (progressView, error) {
	p, err := a.store.Progress(ctx, is.ID)
	if err != nil {
		return progressView{}, err
	}
	pv := progressView{Total: p.Total, Sent: p.Sent, Failed: p.Failed, Skipped: p.Skipped, Queued: p.Queued, Done: p.Total - p.Queued}
	if pv.Total > 0 {
		pv.Percent = pv.Done * 100 / pv.Total
	}
	if d := p.Duration(a.store.Now()); d > 0 {
		pv.Duration = d.Round(time.Second).String()
	}
	if pv.Failed > 0 {
		if pv.Reasons, err = a.store.FailureReasons(ctx, is.ID); err != nil {
			return progressView{}, err
		}
	}
	return pv, nil
}
