package web

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	gomail "github.com/wneessen/go-mail"

	"newsletter/digest"
	"newsletter/digest/render"
	"newsletter/digest/send"
	"newsletter/editors"
	"newsletter/internal/digesttest"
	"newsletter/internal/smtptest"
	"newsletter/internal/testdb"
	"newsletter/subscribers"
	"newsletter/templates"
)

// testClock is a settable clock for session expiry.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestCSRFToken(t *testing.T) {
	a, b := newSessionID(), newSessionID()
	if !csrfValid(a, csrfToken(a)) {
		t.Error("a session's own token is refused")
	}
	if csrfValid(a, csrfToken(b)) {
		t.Error("another session's token is accepted")
	}
	if csrfValid(a, "") {
		t.Error("an empty token is accepted")
	}
	if csrfToken(a) == a {
		t.Error("the token is the session id")
	}
}

func TestClientKey(t *testing.T) {
	for _, c := range []struct{ name, remote, want string }{
		{"IPv4", "192.0.2.7:5123", "192.0.2.7"},
		{"IPv6SamePrefix", "[2001:db8:1:2:aaaa::1]:443", "2001:db8:1:2::/64"},
		{"IPv6OtherHost", "[2001:db8:1:2:bbbb::9]:443", "2001:db8:1:2::/64"},
		{"NoPort", "192.0.2.8", "192.0.2.8"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: c.remote}
			if got := clientKey(r, false); got != c.want {
				t.Errorf("clientKey(%q) = %q, want %q", c.remote, got, c.want)
			}
		})
	}
}

// The editor account every adminEnv starts with, an admin.
const (
	testEmail    = "admin@news.example"
	testPassword = "correct horse battery staple"
)

// adminEnv is the editor pages over a real database, real templates and a real SMTP server, with
// one admin account (testEmail, testPassword).
type adminEnv struct {
	t        *testing.T
	db       *sqlx.DB
	store    *digest.Store
	accounts *editors.Store
	admin    *Editor
	srv      *httptest.Server
	smtp     *smtptest.Server
	c        *http.Client
	adminID  int64
}

func newAdminEnv(t *testing.T) *adminEnv {
	t.Helper()
	return newAdminEnvOn(t, testdb.New(t))
}

// newAdminEnvOn is newAdminEnv over the migrated database db.
func newAdminEnvOn(t *testing.T, db *sqlx.DB) *adminEnv {
	t.Helper()
	e := newAdminEnvWith(t, db, editors.Options{})
	e.adminID = e.addEditor(testEmail, editors.Admin)
	return e
}

// newAdminEnvWith is the editor pages over db with no editor account yet, the accounts store made
// with opts.
func newAdminEnvWith(t *testing.T, db *sqlx.DB, opts editors.Options) *adminEnv {
	t.Helper()
	store := digest.NewStore(db, nil)
	fsys := templates.FS("")
	cat, err := templates.LoadCatalog(fsys)
	if err != nil {
		t.Fatal(err)
	}
	pages, err := templates.ParsePages(fsys, cat)
	if err != nil {
		t.Fatal(err)
	}
	renderer, err := render.NewRenderer(fsys, cat, render.Options{BaseURL: "http://news.example", Publication: "The Test Weekly", From: "Digest <digest@news.example>"})
	if err != nil {
		t.Fatal(err)
	}
	smtp := smtptest.Start(t)
	client, err := gomail.NewClient(smtp.Host, gomail.WithPort(smtp.Port), gomail.WithTLSPolicy(gomail.NoTLS), gomail.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("admin-test-secret-0123456789")
	sender, err := send.NewSender(store, renderer, subscribers.NewSigner(secret), nil, client, send.SenderOptions{
		From: "Digest <digest@news.example>", BaseURL: "http://news.example", Publication: "The Test Weekly", Secret: secret, MaxArticles: 12,
	}, slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	accounts := editors.NewStore(db, secret, opts)
	a := NewEditor(store, accounts, renderer, pages, EditorOptions{Publication: "The Test Weekly", Languages: []string{"en", "ru"}, MaxArticles: 12,
		BaseURL: "http://news.example", TestSend: sender.SendTest, Device: func(string) string { return "Test browser 1" }},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	mux := adminTestMux(a)
	archive := NewArchive(store, renderer, pages, cat, ArchiveOptions{BaseURL: "http://news.example", Publication: "The Test Weekly",
		Languages: []string{"en", "ru"}, MaxArticles: 12}, nil)
	mux.HandleFunc("GET /archive", archive.List)
	mux.HandleFunc("GET /archive/{id}", archive.Issue)
	mux.HandleFunc("GET /archive.xml", archive.Feed)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return &adminEnv{t: t, db: db, store: store, accounts: accounts, admin: a, srv: srv, smtp: smtp, c: c}
}

// addEditor adds an editor with role whose password is testPassword, as the one-time link sets
// it, and returns their id.
func (e *adminEnv) addEditor(email string, role editors.Role) int64 {
	e.t.Helper()
	ed, link, err := e.accounts.Add(context.Background(), email, "", role)
	if err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.accounts.UseLink(context.Background(), link.Token, testPassword); err != nil {
		e.t.Fatal(err)
	}
	return ed.ID
}

// adminTestMux lists the editor routes with their roles as cmd/newsletter/routes.go does (whose
// TestAdminRoleWalk walks the real table; newAdminEnv adds the archive's).
func adminTestMux(a *Editor) *http.ServeMux {
	mux := http.NewServeMux()
	w, p, ad := editors.Writer, editors.Publisher, editors.Admin
	mux.HandleFunc("GET /admin/login", a.LoginForm)
	mux.HandleFunc("POST /admin/login", a.Login)
	mux.HandleFunc("GET /admin/login/code", a.CodeForm)
	mux.HandleFunc("POST /admin/login/code", a.Code)
	mux.HandleFunc("GET /admin/setup/{token}", a.SetPasswordForm)
	mux.HandleFunc("POST /admin/setup/{token}", a.SetPassword)
	for _, r := range []struct {
		pattern string
		role    editors.Role
		h       http.HandlerFunc
	}{
		{"POST /admin/logout", w, a.Logout},
		{"GET /admin/{$}", w, a.Home},
		{"GET /admin/digest/{lang}", w, a.Digest},
		{"GET /admin/digest/{lang}/articles/new", w, a.NewArticleForm},
		{"POST /admin/digest/{lang}/articles", w, a.AddArticle},
		{"GET /admin/articles/{id}/edit", w, a.EditArticleForm},
		{"POST /admin/articles/{id}", w, a.EditArticle},
		{"POST /admin/articles/{id}/{action}", w, a.ArticleAction},
		{"GET /admin/issues/{id}", w, a.IssuePage},
		{"GET /admin/issues/{id}/preview.html", w, a.Preview},
		{"POST /admin/issues/{id}/text", w, a.IssueText},
		{"POST /admin/issues/{id}/test", w, a.TestSend},
		{"POST /admin/issues/{id}/approve", p, a.Approve},
		{"POST /admin/issues/{id}/{action}", p, a.IssueAction},
		{"GET /admin/account", w, a.Account},
		{"POST /admin/account/name", w, a.AccountName},
		{"POST /admin/account/password", w, a.AccountPassword},
		{"GET /admin/account/totp", w, a.TOTPPage},
		{"POST /admin/account/totp", w, a.TOTPOn},
		{"POST /admin/account/totp/off", w, a.TOTPOff},
		{"POST /admin/account/sessions/{sid}/end", w, a.EndMySession},
		{"POST /admin/account/logout-everywhere", w, a.LogoutEverywhere},
		{"GET /admin/editors", ad, a.Editors},
		{"POST /admin/editors", ad, a.Invite},
		{"GET /admin/editors/{id}", ad, a.EditorPage},
		{"POST /admin/editors/{id}/{action}", ad, a.EditorAction},
		{"POST /admin/editors/{id}/sessions/{sid}/end", ad, a.EndEditorSession},
		{"GET /admin/audit", ad, a.Audit},
	} {
		mux.Handle(r.pattern, a.Require(r.role, r.h))
	}
	return mux
}

type page struct {
	status int
	header http.Header
	body   string
}

func (e *adminEnv) do(req *http.Request) page {
	e.t.Helper()
	resp, err := e.c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return page{resp.StatusCode, resp.Header, string(b)}
}

func (e *adminEnv) get(path string) page {
	e.t.Helper()
	req, _ := http.NewRequest("GET", e.srv.URL+path, nil)
	return e.do(req)
}

func (e *adminEnv) post(path string, form url.Values) page {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.srv.URL+path, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return e.do(req)
}

var csrfField = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrf reads the form token from a page, as a browser would submit it.
func (e *adminEnv) csrf(path string) string {
	e.t.Helper()
	p := e.get(path)
	m := csrfField.FindStringSubmatch(p.body)
	if m == nil {
		e.t.Fatalf("GET %s: %d, no csrf field in:\n%s", path, p.status, p.body)
	}
	return m[1]
}

// login posts the login form of the admin account with password.
func (e *adminEnv) login(password string) page {
	e.t.Helper()
	return e.loginAs(testEmail, password)
}

// loginAs posts the login form with a form token mirrored in its cookie, as the login page sets
// them (the page itself redirects a browser that is logged in already, so the test sets both).
func (e *adminEnv) loginAs(email, password string) page {
	e.t.Helper()
	token := newSessionID()
	u, _ := url.Parse(e.srv.URL + "/admin/login")
	e.c.Jar.SetCookies(u, []*http.Cookie{{Name: loginCSRFCookie, Value: token, Path: "/admin/login"}})
	return e.post("/admin/login", url.Values{"csrf": {token}, "email": {email}, "password": {password}})
}

// mustLogin logs in as the admin and returns the form token of the new session.
func (e *adminEnv) mustLogin() string {
	e.t.Helper()
	return e.mustLoginAs(testEmail)
}

// mustLoginAs logs in as the editor with email (password testPassword) and returns the form token.
func (e *adminEnv) mustLoginAs(email string) string {
	e.t.Helper()
	if p := e.loginAs(email, testPassword); p.status != http.StatusSeeOther {
		e.t.Fatalf("login as %s: %d\n%s", email, p.status, p.body)
	}
	return e.csrf("/admin/account")
}

// action posts a form with the session's token and expects the redirect of a successful action.
func (e *adminEnv) action(path string, form url.Values) string {
	e.t.Helper()
	if form == nil {
		form = url.Values{}
	}
	form.Set("csrf", e.csrf("/admin/account"))
	p := e.post(path, form)
	if p.status != http.StatusSeeOther {
		e.t.Fatalf("POST %s: %d, want 303\n%s", path, p.status, p.body)
	}
	return p.header.Get("Location")
}

func (e *adminEnv) sessionCookie() *http.Cookie {
	u, _ := url.Parse(e.srv.URL + "/admin/")
	for _, c := range e.c.Jar.Cookies(u) {
		if c.Name == sessionCookie {
			return c
		}
	}
	return nil
}

// addArticle inserts a feed article seen an hour ago, so it belongs to the coming issue.
func (e *adminEnv) addArticle(lang, title, section string, published time.Time) int64 {
	e.t.Helper()
	var id int64
	err := e.db.Get(&id, `INSERT INTO articles (lang, guid, source, feed_url, title, link, summary, section, published_at, first_seen_at)
		VALUES ($1, $2, 'feed', 'https://feed.example/rss', $3, $4, 'A summary of ' || $3, $5, $6, now() - interval '1 hour') RETURNING id`,
		lang, fmt.Sprintf("guid-%s-%d", title, published.UnixNano()), title, "https://site.example/"+url.PathEscape(title), section, published)
	if err != nil {
		e.t.Fatal(err)
	}
	return id
}

// audit returns the audit log's rows as "actor action object (detail)", oldest first.
func (e *adminEnv) audit() []string {
	e.t.Helper()
	var rows []struct {
		Actor  string `db:"actor"`
		Action string `db:"action"`
		Object string `db:"object"`
		Detail string `db:"detail"`
	}
	if err := e.db.Select(&rows, `SELECT actor, action, object, detail FROM audit_log ORDER BY id`); err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, r := range rows {
		s := r.Actor + " " + r.Action
		if r.Object != "" {
			s += " " + r.Object
		}
		if r.Detail != "" {
			s += " (" + r.Detail + ")"
		}
		out = append(out, s)
	}
	return out
}

// comingIssue assembles the coming issue of lang as the digest page does and returns it.
func (e *adminEnv) coming(lang string) digest.Issue {
	e.t.Helper()
	is, err := e.store.Assemble(context.Background(), lang, 12)
	if err != nil {
		e.t.Fatal(err)
	}
	return is
}

// order returns the titles of the coming issue in reading order.
func (e *adminEnv) order(lang string) []string {
	e.t.Helper()
	is := e.coming(lang)
	c, err := e.store.Content(context.Background(), is.ID, 12)
	if err != nil {
		e.t.Fatal(err)
	}
	var out []string
	for _, a := range c.Articles() {
		out = append(out, a.Title)
	}
	return out
}

const hostileTitle = `<script>alert(1)</script><img src=x onerror=alert(2)> Budget "vote" & more`

func TestAdminDigestPage(t *testing.T) {
	e := newAdminEnv(t)
	now := time.Now()
	e.addArticle("en", "Harbour reopens", "City", now.Add(-3*time.Hour))
	e.addArticle("en", hostileTitle, "Politics", now.Add(-2*time.Hour))
	e.mustLogin()

	p := e.get("/admin/digest/en")
	if p.status != http.StatusOK {
		t.Fatalf("GET /admin/digest/en: %d\n%s", p.status, p.body)
	}
	for _, want := range []string{
		"Harbour reopens",
		"&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;",
		`<iframe src="/admin/issues/`, `sandbox`,
		"Text part", "Send a test to", "Approve for sending",
	} {
		if !strings.Contains(p.body, want) {
			t.Errorf("digest page lacks %q", want)
		}
	}
	if strings.Contains(strings.ToLower(p.body), "<script") || strings.Contains(p.body, "<img src=x") {
		t.Error("digest page carries markup from a feed unescaped")
	}
	if cc := p.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control %q, want no-store", cc)
	}

	is := e.coming("en")
	p = e.get(fmt.Sprintf("/admin/issues/%d/preview.html", is.ID))
	if p.status != http.StatusOK {
		t.Fatalf("preview: %d\n%s", p.status, p.body)
	}
	csp := p.header.Get("Content-Security-Policy")
	for _, want := range []string{"sandbox", "default-src 'none'", "frame-ancestors 'self'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("preview CSP %q lacks %q", csp, want)
		}
	}
	if strings.Contains(csp, "allow-scripts") || strings.Contains(csp, "allow-same-origin") {
		t.Errorf("preview CSP %q lets scripts run or keeps the origin", csp)
	}
	if !strings.Contains(p.body, "Harbour reopens") || strings.Contains(p.body, "<script>") {
		t.Errorf("preview is not the escaped digest:\n%.2000s", p.body)
	}

	t.Run("NoArticles", func(t *testing.T) {
		p := e.get("/admin/digest/ru")
		if p.status != http.StatusOK || !strings.Contains(p.body, "No new articles") {
			t.Errorf("GET /admin/digest/ru with no articles: %d\n%s", p.status, p.body)
		}
	})
	t.Run("UnknownLanguage", func(t *testing.T) {
		if p := e.get("/admin/digest/xx"); p.status != http.StatusNotFound {
			t.Errorf("GET /admin/digest/xx: %d, want 404", p.status)
		}
	})
	t.Run("UnknownIssue", func(t *testing.T) {
		for _, path := range []string{"/admin/issues/99999", "/admin/issues/abc", "/admin/issues/-1/preview.html", "/admin/issues/99999/preview.html"} {
			if p := e.get(path); p.status != http.StatusNotFound {
				t.Errorf("GET %s: %d, want 404", path, p.status)
			}
		}
	})
}

func TestAdminOverview(t *testing.T) {
	e := newAdminEnv(t)
	e.addArticle("en", "Harbour reopens", "City", time.Now().Add(-time.Hour))
	if _, err := e.db.Exec(`INSERT INTO feeds (url, lang, last_fetched_at, last_error) VALUES
		('https://feed.example/rss', 'en', now(), 'HTTP 500 <b>from</b> the server')`); err != nil {
		t.Fatal(err)
	}
	e.coming("en")
	e.mustLogin()
	p := e.get("/admin/")
	if p.status != http.StatusOK {
		t.Fatalf("GET /admin/: %d", p.status)
	}
	for _, want := range []string{"https://feed.example/rss", "HTTP 500 &lt;b&gt;from&lt;/b&gt; the server", "Coming digests", `href="/admin/digest/ru"`, "draft"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("overview lacks %q", want)
		}
	}
	if p := e.get("/admin"); p.status/100 != 3 || p.header.Get("Location") != "/admin/" {
		t.Errorf("GET /admin: %d to %q, want a redirect to /admin/", p.status, p.header.Get("Location"))
	}
}

func TestAdminIssueText(t *testing.T) {
	e := newAdminEnv(t)
	e.addArticle("en", "Harbour reopens", "City", time.Now().Add(-time.Hour))
	e.mustLogin()
	is := e.coming("en")
	path := fmt.Sprintf("/admin/issues/%d/text", is.ID)

	loc := e.action(path, url.Values{"subject": {"  The harbour is back  "}, "note": {"Hello,\r\nreaders."}})
	if loc != "/admin/digest/en?done=text" {
		t.Errorf("redirect to %q", loc)
	}
	got, _ := e.store.IssueByID(context.Background(), is.ID)
	if got.Subject != "The harbour is back" || got.Note != "Hello,\nreaders." {
		t.Errorf("stored subject %q note %q", got.Subject, got.Note)
	}
	if p := e.get("/admin/digest/en?done=text"); !strings.Contains(p.body, "Subject and note saved.") || !strings.Contains(p.body, "The harbour is back") {
		t.Errorf("digest page after saving lacks the notice or the subject")
	}

	for _, c := range []struct {
		name string
		form url.Values
	}{
		{"SubjectTooLong", url.Values{"subject": {strings.Repeat("я", 201)}}},
		{"SubjectControl", url.Values{"subject": {"Hi\x07there"}}},
		{"SubjectNewline", url.Values{"subject": {"Hi\nBcc: x@example.org"}}},
		{"NoteTooLong", url.Values{"note": {strings.Repeat("a", 2001)}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.form.Set("csrf", e.csrf("/admin/"))
			p := e.post(path, c.form)
			if p.status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400\n%s", p.status, p.body)
			}
			if !strings.Contains(p.body, "notice bad") {
				t.Errorf("400 without a message")
			}
		})
	}
}

func TestAdminArticleActions(t *testing.T) {
	e := newAdminEnv(t)
	now := time.Now()
	a := e.addArticle("en", "A", "World", now.Add(-1*time.Hour))
	b := e.addArticle("en", "B", "World", now.Add(-2*time.Hour))
	c := e.addArticle("en", "C", "Tech", now.Add(-3*time.Hour))
	d := e.addArticle("en", "D", "World", now.Add(-4*time.Hour))
	e.mustLogin()
	act := func(id int64, action string) {
		t.Helper()
		e.action(fmt.Sprintf("/admin/articles/%d/%s", id, action), nil)
	}
	want := func(order ...string) {
		t.Helper()
		if got := e.order("en"); strings.Join(got, " ") != strings.Join(order, " ") {
			t.Fatalf("order %v, want %v", got, order)
		}
	}
	want("A", "B", "D", "C") // lead A, then World (B, D), then Tech (C)

	t.Run("DownWithinSection", func(t *testing.T) { act(b, "down"); want("A", "D", "B", "C") })
	t.Run("UpWithinSection", func(t *testing.T) { act(b, "up"); want("A", "B", "D", "C") })
	t.Run("UpAcrossSections", func(t *testing.T) { act(c, "up"); want("A", "C", "B", "D") })
	t.Run("UpIntoLead", func(t *testing.T) { act(c, "up"); want("C", "A", "B", "D") })
	t.Run("UpAtTop", func(t *testing.T) { act(c, "up"); want("C", "A", "B", "D") })
	t.Run("Pin", func(t *testing.T) {
		act(d, "pin")
		want("D", "C", "A", "B")
		p := e.post(fmt.Sprintf("/admin/articles/%d/up", c), url.Values{"csrf": {e.csrf("/admin/")}})
		if p.status != http.StatusConflict {
			t.Errorf("moving above a pinned lead: %d, want 409", p.status)
		}
	})
	t.Run("Unpin", func(t *testing.T) {
		act(d, "unpin")
		art, _ := e.store.ArticleByID(context.Background(), d)
		if art.Pinned {
			t.Fatal("still pinned")
		}
	})
	t.Run("Hide", func(t *testing.T) {
		act(b, "hide")
		for _, title := range e.order("en") {
			if title == "B" {
				t.Fatal("hidden article still in the issue")
			}
		}
		p := e.get("/admin/digest/en")
		if !strings.Contains(p.body, "Hidden articles") || !strings.Contains(p.body, fmt.Sprintf("/admin/articles/%d/unhide", b)) {
			t.Error("the digest page does not offer the hidden article back")
		}
	})
	t.Run("Unhide", func(t *testing.T) {
		act(b, "unhide")
		if got := e.order("en"); !strings.Contains(strings.Join(got, " "), "B") {
			t.Fatalf("unhidden article missing: %v", got)
		}
	})
	t.Run("UnknownAction", func(t *testing.T) {
		p := e.post(fmt.Sprintf("/admin/articles/%d/explode", a), url.Values{"csrf": {e.csrf("/admin/")}})
		if p.status != http.StatusNotFound {
			t.Errorf("unknown action: %d, want 404", p.status)
		}
	})
	t.Run("UnknownArticle", func(t *testing.T) {
		p := e.post("/admin/articles/99999/pin", url.Values{"csrf": {e.csrf("/admin/")}})
		if p.status != http.StatusNotFound {
			t.Errorf("unknown article: %d, want 404", p.status)
		}
	})
}

func TestAdminAddEditArticle(t *testing.T) {
	e := newAdminEnv(t)
	e.addArticle("en", "Feed story", "World", time.Now().Add(-time.Hour))
	e.mustLogin()
	if p := e.get("/admin/digest/en/articles/new"); p.status != http.StatusOK || !strings.Contains(p.body, `name="title"`) {
		t.Fatalf("new article form: %d", p.status)
	}
	e.action("/admin/digest/en/articles", url.Values{"title": {"Editor's pick"}, "link": {"https://site.example/pick"},
		"summary": {"Why it matters."}, "section": {"Opinion"}})
	if got := strings.Join(e.order("en"), "|"); !strings.Contains(got, "Editor's pick") {
		t.Fatalf("added article not in the issue: %s", got)
	}
	if p := e.get("/admin/digest/en?done=added"); !strings.Contains(p.body, "Article added.") {
		t.Error("the digest page does not say the article was added")
	}
	var id int64
	if err := e.db.Get(&id, `SELECT id FROM articles WHERE title = 'Editor''s pick' AND source = 'editor'`); err != nil {
		t.Fatal(err)
	}

	for _, c := range []struct {
		name string
		form url.Values
		want string
	}{
		{"NoTitle", url.Values{"link": {"https://site.example/x"}}, "title"},
		{"ScriptLink", url.Values{"title": {"x"}, "link": {"javascript:alert(1)"}}, "http"},
		{"RelativeLink", url.Values{"title": {"x"}, "link": {"/x"}}, "http"},
		{"DataImage", url.Values{"title": {"x"}, "link": {"https://site.example/x"}, "image_url": {"data:image/png;base64,AAAA"}}, "image"},
		{"LongTitle", url.Values{"title": {strings.Repeat("t", 301)}, "link": {"https://site.example/x"}}, "too long"},
		{"LongSection", url.Values{"title": {"x"}, "link": {"https://site.example/x"}, "section": {strings.Repeat("s", 101)}}, "Section is too long"},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.form.Set("csrf", e.csrf("/admin/"))
			p := e.post("/admin/digest/en/articles", c.form)
			if p.status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", p.status)
			}
			if !strings.Contains(strings.ToLower(p.body), strings.ToLower(c.want)) || !strings.Contains(p.body, "notice bad") {
				t.Errorf("400 without a message about %q", c.want)
			}
		})
	}

	if p := e.get(fmt.Sprintf("/admin/articles/%d/edit", id)); p.status != http.StatusOK || !strings.Contains(p.body, "Editor&#39;s pick") {
		t.Fatalf("edit form: %d", p.status)
	}
	e.action(fmt.Sprintf("/admin/articles/%d", id), url.Values{"title": {"Editor's pick, revised"}, "link": {"https://site.example/pick"}})
	art, err := e.store.ArticleByID(context.Background(), id)
	if err != nil || art.Title != "Editor's pick, revised" {
		t.Fatalf("after edit: %q, %v", art.Title, err)
	}
}

func TestAdminTestSend(t *testing.T) {
	e := newAdminEnv(t)
	e.addArticle("en", "Harbour reopens", "City", time.Now().Add(-time.Hour))
	e.mustLogin()
	is := e.coming("en")
	path := fmt.Sprintf("/admin/issues/%d/test", is.ID)

	loc := e.action(path, url.Values{"to": {"editor@example.org"}})
	if !strings.Contains(loc, "done=test") {
		t.Errorf("redirect to %q", loc)
	}
	msgs := e.smtp.WaitFor(t, 1, 10*time.Second)
	m, err := msgs[0].Parsed()
	if err != nil {
		t.Fatal(err)
	}
	if subj := m.Header.Get("Subject"); !strings.HasPrefix(subj, "[TEST] ") {
		t.Errorf("subject %q lacks the [TEST] prefix", subj)
	}
	if len(msgs[0].To) != 1 || msgs[0].To[0] != "editor@example.org" {
		t.Errorf("sent to %v", msgs[0].To)
	}
	if ct := m.Header.Get("Content-Type"); !strings.HasPrefix(ct, "multipart/alternative") {
		t.Errorf("Content-Type %q", ct)
	}
	// The real send's headers (digest/send's TestSendTest checks them all, and the signature).
	if lu, id := m.Header.Get("List-Unsubscribe"), m.Header.Get("List-Id"); lu != "<http://news.example/unsubscribe/test-message>" || id == "" {
		t.Errorf("List-Unsubscribe %q, List-Id %q", lu, id)
	}
	var n int
	e.db.Get(&n, `SELECT count(*) FROM deliveries`)
	if n != 0 {
		t.Errorf("a test send wrote %d ledger rows", n)
	}
	if got, _ := e.store.IssueByID(context.Background(), is.ID); got.Status != digest.StatusDraft || got.StartedAt != nil {
		t.Errorf("a test send changed the issue: %s", got.Status)
	}

	for _, c := range []struct{ name, to string }{
		{"Empty", ""},
		{"NotAnAddress", "not an address"},
		{"Two", "a@example.org, b@example.org"},
		{"HeaderInjection", "a@example.org\r\nBcc: victim@example.org"},
		{"DisplayName", "Eve <eve@example.org>"},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := e.post(path, url.Values{"csrf": {e.csrf("/admin/")}, "to": {c.to}})
			if p.status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400", p.status)
			}
		})
	}
	if got := len(e.smtp.Messages()); got != 1 {
		t.Errorf("%d messages sent, want 1", got)
	}

	// A writer sends a test to their own address only: to anyone else it is publishing the issue.
	e.addEditor("writer@example.org", editors.Writer)
	e.mustLoginAs("writer@example.org")
	if p := e.post(path, url.Values{"csrf": {e.csrf("/admin/account")}, "to": {"someone@example.org"}}); p.status != http.StatusForbidden {
		t.Errorf("a writer's test to another address: %d, want 403", p.status)
	}
	if got := len(e.smtp.Messages()); got != 1 {
		t.Errorf("%d messages sent after the writer's refused test, want 1", got)
	}
	if loc := e.action(path, url.Values{"to": {"Writer@Example.org"}}); !strings.Contains(loc, "done=test") {
		t.Errorf("a writer's test to their own address: redirect to %q", loc)
	}
	msgs = e.smtp.WaitFor(t, 2, 10*time.Second)
	if to := msgs[1].To; len(to) != 1 || !strings.EqualFold(to[0], "writer@example.org") {
		t.Errorf("the writer's test went to %v", to)
	}
}

func TestAdminApprove(t *testing.T) {
	e := newAdminEnv(t)
	id := e.addArticle("en", "Harbour reopens", "City", time.Now().Add(-time.Hour))
	e.mustLogin()
	is := e.coming("en")
	e.action(fmt.Sprintf("/admin/issues/%d/approve", is.ID), nil)
	got, _ := e.store.IssueByID(context.Background(), is.ID)
	if got.Status != digest.StatusApproved || got.ApprovedAt == nil {
		t.Fatalf("after approve: %s", got.Status)
	}
	p := e.get("/admin/digest/en")
	if !strings.Contains(p.body, "approved") || strings.Contains(p.body, "Approve for sending") || strings.Contains(p.body, "/up\"") {
		t.Error("an approved digest still offers approval or reordering")
	}
	// Its articles are what was approved: they no longer change.
	p = e.post(fmt.Sprintf("/admin/articles/%d/hide", id), url.Values{"csrf": {e.csrf("/admin/")}})
	if p.status != http.StatusConflict {
		t.Errorf("hiding an article of an approved issue: %d, want 409", p.status)
	}
}

func TestAdminIssueReportAndControl(t *testing.T) {
	e := newAdminEnv(t)
	e.addArticle("en", "Harbour reopens", "City", time.Now().Add(-time.Hour))
	e.mustLogin()
	is := e.coming("en")
	// A send in progress: the ledger as the sender leaves it.
	if _, err := e.db.Exec(`UPDATE issues SET status = 'sending', started_at = now() - interval '2 minutes' WHERE id = $1`, is.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Exec(`INSERT INTO deliveries (issue_id, subscriber_id, status, last_error) VALUES
		($1, 1, 'sent', ''), ($1, 2, 'sent', ''), ($1, 3, 'sent', ''),
		($1, 4, 'failed', '550 5.1.1 <b>no such user</b>'), ($1, 5, 'failed', '550 5.1.1 <b>no such user</b>'),
		($1, 6, 'failed', '552 mailbox full'), ($1, 7, 'queued', '')`, is.ID); err != nil {
		t.Fatal(err)
	}
	// What came of it so far: two refusals and a later bounce (the same reader reported twice),
	// a soft bounce, a complaint and an unsubscribe through the issue's link.
	if _, err := e.db.Exec(`INSERT INTO reader_events (kind, subscriber_id, issue_id, source, external_id, occurred_at) VALUES
		('hard', 4, $1, 'smtp', 'r4', now()), ('hard', 5, $1, 'smtp', 'r5', now()), ('hard', 1, $1, 'imap', 'b1', now()),
		('hard', 1, $1, 'ses', 'b1', now()), ('soft', 2, $1, 'imap', 's2', now()), ('complaint', 3, $1, 'mailgun', 'c3', now()),
		('unsubscribe', 2, $1, 'link', 'u2', now())`, is.ID); err != nil {
		t.Fatal(err)
	}
	path := fmt.Sprintf("/admin/issues/%d", is.ID)
	p := e.get(path)
	if p.status != http.StatusOK {
		t.Fatalf("GET %s: %d", path, p.status)
	}
	for _, want := range []string{
		"<tr><th>Recipients</th><td>7</td></tr>", "<tr><th>Failed for good</th><td>3</td></tr>", "<tr><th>Still queued</th><td>1</td></tr>",
		"Failures by reason", `550 5.1.1 &lt;b&gt;no such user&lt;/b&gt;</td><td class="num">2</td>`, "552 mailbox full",
		"Pause sending", "Cancel the issue", "85% done", fmt.Sprintf("<title>Issue #%d", is.ID),
		"What came of it", "<tr><th>Delivered</th><td>3 ", "<tr><th>Hard bounces</th><td>3 <span class=\"muted\">(2 refused while sending)</span>",
		"<tr><th>Soft bounces</th><td>1</td></tr>", "<tr><th>Complaints</th><td>1</td></tr>", "<tr><th>Unsubscribed through this issue</th><td>1</td></tr>",
	} {
		if !strings.Contains(p.body, want) {
			t.Errorf("issue page lacks %q", want)
		}
	}
	if strings.Contains(p.body, "Resume sending") {
		t.Error("a sending issue offers to resume")
	}
	if p := e.get("/admin/"); !strings.Contains(p.body, fmt.Sprintf(`href="/admin/issues/%d"`, is.ID)) {
		t.Error("the overview does not list the sending issue")
	}

	status := func() (string, string) {
		t.Helper()
		got, err := e.store.IssueByID(context.Background(), is.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got.Status, got.PauseReason
	}
	postStatus := func(action string, form url.Values) int {
		t.Helper()
		if form == nil {
			form = url.Values{}
		}
		form.Set("csrf", e.csrf("/admin/"))
		return e.post(path+"/"+action, form).status
	}

	if code := postStatus("pause", url.Values{"reason": {strings.Repeat("x", 201)}}); code != http.StatusBadRequest {
		t.Errorf("pause with a 201-character reason: %d, want 400", code)
	}
	if code := postStatus("pause", url.Values{"reason": {"checking a <complaint>"}}); code != http.StatusSeeOther {
		t.Fatalf("pause: %d", code)
	}
	if st, reason := status(); st != digest.StatusPaused || reason != "checking a <complaint>" {
		t.Fatalf("after pause: %s %q", st, reason)
	}
	p = e.get(path)
	if !strings.Contains(p.body, "Paused: checking a &lt;complaint&gt;") || !strings.Contains(p.body, "Resume sending") || strings.Contains(p.body, "Pause sending") {
		t.Error("the paused issue's page lacks the reason or the resume button")
	}
	if code := postStatus("pause", nil); code != http.StatusConflict {
		t.Errorf("pausing a paused issue: %d, want 409", code)
	}
	if code := postStatus("resume", nil); code != http.StatusSeeOther {
		t.Fatalf("resume: %d", code)
	}
	if st, _ := status(); st != digest.StatusSending {
		t.Fatalf("after resume: %s", st)
	}
	if code := postStatus("cancel", nil); code != http.StatusSeeOther {
		t.Fatalf("cancel: %d", code)
	}
	if st, _ := status(); st != digest.StatusCancelled {
		t.Fatalf("after cancel: %s", st)
	}
	var queued int
	e.db.Get(&queued, `SELECT count(*) FROM deliveries WHERE issue_id = $1 AND status = 'queued'`, is.ID)
	if queued != 0 {
		t.Errorf("%d readers still queued after cancel", queued)
	}
	for _, action := range []string{"resume", "pause", "cancel"} {
		if code := postStatus(action, nil); code != http.StatusConflict {
			t.Errorf("%s on a cancelled issue: %d, want 409", action, code)
		}
	}
	if code := postStatus("explode", nil); code != http.StatusNotFound {
		t.Errorf("unknown action: %d, want 404", code)
	}
}

func TestAdminFormTooLarge(t *testing.T) {
	e := newAdminEnv(t)
	token := e.mustLogin()
	e.addArticle("en", "Harbour reopens", "City", time.Now().Add(-time.Hour))
	is := e.coming("en")
	p := e.post(fmt.Sprintf("/admin/issues/%d/text", is.ID), url.Values{"csrf": {token}, "note": {strings.Repeat("a", adminFormLimit)}})
	if p.status != http.StatusRequestEntityTooLarge {
		t.Errorf("a %d-byte form: %d, want 413", adminFormLimit, p.status)
	}
	p = e.post("/admin/login", url.Values{"password": {strings.Repeat("a", adminFormLimit)}})
	if p.status != http.StatusBadRequest {
		t.Errorf("a %d-byte login form: %d, want 400", adminFormLimit, p.status)
	}
}

func TestMoveRow(t *testing.T) {
	row := func(id int64, block string, pinned bool) issueRowItem {
		return issueRowItem{Article: digest.Article{ID: id, Pinned: pinned}, block: block}
	}
	base := []issueRowItem{
		row(1, "lead", false),
		row(2, "section:World", false), row(3, "section:World", false),
		row(4, "section:Tech", false),
		row(5, "more:5", false), row(6, "more:6", false),
	}
	ids := func(list []issueRowItem) []int64 {
		var out []int64
		for _, r := range list {
			out = append(out, r.ID)
		}
		return out
	}
	for _, c := range []struct {
		name string
		list []issueRowItem
		id   int64
		by   int
		want []int64 // nil: not possible
	}{
		{"DownWithinSection", base, 2, +1, []int64{1, 3, 2, 4, 5, 6}},
		{"UpAcrossSectionsMovesTheSection", base, 4, -1, []int64{1, 4, 2, 3, 5, 6}},
		{"DownAcrossSectionsMovesTheSection", base, 3, +1, []int64{1, 4, 2, 3, 5, 6}},
		{"UpIntoTheLead", base, 2, -1, []int64{2, 1, 3, 4, 5, 6}},
		{"LeadDown", base, 1, +1, []int64{2, 1, 3, 4, 5, 6}},
		{"OutOfTheMore", base, 5, -1, []int64{1, 2, 3, 5, 4, 6}},
		{"WithinTheMore", base, 6, -1, []int64{1, 2, 3, 4, 6, 5}},
		{"TopStays", base, 1, -1, []int64{1, 2, 3, 4, 5, 6}},
		{"BottomStays", base, 6, +1, []int64{1, 2, 3, 4, 5, 6}},
		{"PastAPinnedLead", append([]issueRowItem{row(9, "lead", true)}, base[1:]...), 2, -1, nil},
		{"UnknownArticle", base, 42, +1, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := ids(c.list)
			got := moveRow(c.list, c.id, c.by)
			if c.want == nil {
				if got != nil {
					t.Fatalf("got %v, want not possible", ids(got))
				}
				return
			}
			if fmt.Sprint(ids(got)) != fmt.Sprint(c.want) {
				t.Errorf("got %v, want %v", ids(got), c.want)
			}
			if fmt.Sprint(ids(c.list)) != fmt.Sprint(before) {
				t.Error("moveRow changed its input")
			}
		})
	}
}

// TestAdminSendNow: an approved issue can be started from its page ("send now"), reaching every
// confirmed reader; a draft cannot (its articles may change under the editor), nor an issue
// already sending.
func TestAdminSendNow(t *testing.T) {
	e := newAdminEnv(t)
	digesttest.SeedReaders(t, e.db, "en", 3)
	e.addArticle("en", "Harbour reopens", "City", time.Now().Add(-time.Hour))
	client, err := gomail.NewClient(e.smtp.Host, gomail.WithPort(e.smtp.Port), gomail.WithTLSPolicy(gomail.NoTLS), gomail.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("test-secret-0123456789")
	sender, err := send.NewSender(e.store, e.admin.renderer, subscribers.NewSigner(secret), subscribers.NewStore(e.db, secret), client,
		send.SenderOptions{From: "Weekly <digest@news.example>", BaseURL: "https://news.example", Publication: "The Test Weekly", Secret: secret},
		slog.New(slog.NewTextHandler(io.Discard, nil)), nil)
	if err != nil {
		t.Fatal(err)
	}
	e.admin.opts.StartSend = sender.Start
	e.mustLogin()
	is := e.coming("en")
	sendPath := fmt.Sprintf("/admin/issues/%d/send", is.ID)

	if p := e.get("/admin/digest/en"); strings.Contains(p.body, sendPath) {
		t.Error("a draft offers send now")
	}
	if p := e.post(sendPath, url.Values{"csrf": {e.csrf("/admin/")}}); p.status != http.StatusConflict || !strings.Contains(p.body, "Only an approved issue") {
		t.Errorf("send now of a draft: %d, want 409 with a reason", p.status)
	}
	var queued int
	e.db.Get(&queued, `SELECT count(*) FROM deliveries`)
	if got, _ := e.store.IssueByID(context.Background(), is.ID); got.Status != digest.StatusDraft || queued != 0 {
		t.Fatalf("refused send now changed the issue: %s, %d queued", got.Status, queued)
	}

	e.action(fmt.Sprintf("/admin/issues/%d/approve", is.ID), nil)
	p := e.get("/admin/digest/en")
	if !strings.Contains(p.body, `action="`+sendPath+`"`) || !strings.Contains(p.body, "Send to 3 readers now") {
		t.Fatalf("an approved issue does not offer send now to its 3 readers:\n%s", p.body)
	}
	if loc := e.action(sendPath, nil); loc != fmt.Sprintf("/admin/issues/%d?done=started", is.ID) {
		t.Errorf("send now went to %q", loc)
	}
	got, _ := e.store.IssueByID(context.Background(), is.ID)
	e.db.Get(&queued, `SELECT count(*) FROM deliveries WHERE issue_id = $1 AND status = 'queued'`, is.ID)
	if got.Status != digest.StatusSending || queued != 3 || got.ArchiveHTML == "" {
		t.Fatalf("after send now: status %s, %d queued, archive kept %v", got.Status, queued, got.ArchiveHTML != "")
	}
	if p := e.get(fmt.Sprintf("/admin/issues/%d?done=started", is.ID)); !strings.Contains(p.body, "Sending started.") {
		t.Error("the issue page does not say sending started")
	}
	if p := e.post(sendPath, url.Values{"csrf": {e.csrf("/admin/")}}); p.status != http.StatusConflict {
		t.Errorf("send now of an issue already sending: %d, want 409", p.status)
	}
	// The sender (the serve worker) takes it from here.
	if err := sender.SendIssue(context.Background(), is.ID, nil); err != nil {
		t.Fatal(err)
	}
	if n := len(e.smtp.Messages()); n != 3 {
		t.Errorf("%d digests delivered, want 3", n)
	}
}

func TestDeviceToken(t *testing.T) {
	key := []byte("device-key-for-the-test-0123456789")
	tok := deviceToken(key, 7)
	if got := deviceEditor(key, tok); got != 7 {
		t.Fatalf("a token this key issued for editor 7 reads %d: %q", got, tok)
	}
	if deviceToken(key, 7) == tok {
		t.Error("two tokens alike")
	}
	parts := strings.Split(tok, ".")
	flipped := []byte(parts[2])
	flipped[0] ^= 1
	for name, bad := range map[string]string{
		"OtherKey": deviceToken([]byte("another-key-0123456789-0123456789"), 7), "AlteredMAC": parts[0] + "." + parts[1] + "." + string(flipped),
		"OtherEditor": parts[0] + ".8." + parts[2], "NoMAC": parts[0] + "." + parts[1], "Empty": "", "ShortID": "AAAA.7." + parts[2],
		"Long": tok + strings.Repeat("A", 300),
	} {
		if deviceEditor(key, bad) != 0 {
			t.Errorf("%s: %q accepted", name, bad)
		}
	}
	if deviceEditor(nil, tok) != 0 {
		t.Error("accepted without a key")
	}
}
