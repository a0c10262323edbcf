package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
	"golang.org/x/net/html"

	"newsletter/digest"
	"newsletter/internal/smtptest"
	"newsletter/subscribers"
)

// Secrets of the security tests: none of them may ever show in a log line, a response to bad
// input or a metrics label.
const (
	secAdminPassword = "admin-pass-Q7v9sZk2xW"
	secSMTPUser      = "relay-user"
	secSMTPPassword  = "smtp-pass-M4r8tLq1yN"
)

// secFlow is one service driven through a reader's and an editor's whole visit. Every answer is
// kept, so the header and markup checks run over all of them.
type secFlow struct {
	s       *service
	smtp    *authSMTP
	seen    []secPage
	secrets map[string]string // what must never leak -> its name in failure messages
}

type secPage struct {
	label string
	res   httpResult
}

func (f *secFlow) keep(label string, res httpResult) httpResult {
	f.seen = append(f.seen, secPage{label, res})
	return res
}

func (f *secFlow) secret(name, v string) {
	if v != "" {
		f.secrets[v] = name
	}
}

// TestSecurityFullFlow subscribes, confirms, manages and unsubscribes a reader and logs an editor
// in and out, with an SMTP relay that requires a password, then checks every page's security
// headers and markup, the log, /metrics, and the answers to a battery of bad input.
func TestSecurityFullFlow(t *testing.T) {
	relay := startAuthSMTP(t, secSMTPUser, secSMTPPassword)
	s := startService(t, map[string]string{
		"NEWSLETTER_SMTP_URL":       "smtp://" + secSMTPUser + ":" + secSMTPPassword + "@" + relay.addr,
		"NEWSLETTER_ADMIN_PASSWORD": secAdminPassword,
	})
	if _, err := digest.NewStore(s.DB, nil).SeedDemo(context.Background(), []string{"en", "ru"}); err != nil {
		t.Fatal(err)
	}
	f := &secFlow{s: s, smtp: relay, secrets: map[string]string{}}
	f.secret("admin password", secAdminPassword)
	f.secret("SMTP password", secSMTPPassword)
	f.secret("signing secret", e2eSecret)

	// --- reader ---
	const email = "security-reader@example.org"
	f.secret("reader's address", email) // personal data: no log line needs it
	f.keep("subscribe page", s.Get(t, "/"))
	f.keep("subscribe page (ru)", s.Get(t, "/?lang=ru"))
	if r := f.keep("subscribe (form)", s.PostForm(t, "/subscribe", url.Values{"email": {email}, "name": {"Sec Reader"}, "lang": {"en"}}, "Accept", "text/html")); r.Status != 200 {
		t.Fatalf("subscribe: %d", r.Status)
	}
	if r := f.keep("subscribe (json)", s.Do(t, "POST", "/subscribe", "application/json", `{"email":"security-json@example.org","lang":"ru"}`, "Accept", "application/json")); r.Status != 200 {
		t.Fatalf("subscribe json: %d", r.Status)
	}
	msg := parseMail(t, smtptest.Message{Data: relay.waitFor(t, email)})
	confirm := findLink(t, msg.Part(t, "text/plain").Body, "/confirm/")
	f.secret("confirm token", tokenOf(confirm))
	f.keep("confirm page", s.Get(t, confirm))
	if r := f.keep("confirm", s.PostForm(t, confirm, nil)); r.Status != 200 {
		t.Fatalf("confirm: %d", r.Status)
	}
	var uuid string
	if err := s.DB.Get(&uuid, `SELECT uuid FROM subscribers WHERE email = $1`, email); err != nil {
		t.Fatal(err)
	}
	signer := subscribers.NewSigner([]byte(e2eSecret))
	manage, unsub := signer.ManageURL(s.URL, uuid), signer.UnsubscribeURL(s.URL, uuid)
	f.secret("manage token", tokenOf(manage))
	f.secret("unsubscribe token", tokenOf(unsub))
	f.keep("manage page", s.Get(t, manage))
	if r := f.keep("manage", s.PostForm(t, manage, url.Values{"name": {"Sec Reader Two"}, "lang": {"ru"}})); r.Status >= 400 {
		t.Fatalf("manage: %d", r.Status)
	}
	f.keep("data export", s.Get(t, manage+"/data.json"))
	f.keep("unsubscribe page", s.Get(t, unsub))
	if r := f.keep("unsubscribe", s.Do(t, "POST", unsub, "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click")); r.Status != 200 {
		t.Fatalf("unsubscribe: %d", r.Status)
	}

	// --- editor ---
	login := f.keep("login page", s.Get(t, "/admin/login"))
	loginCSRF := hiddenCSRF(t, login.Body)
	f.secret("login form token", loginCSRF)
	loginCookie := cookieHeader(t, login.Header, "newsletter_admin_login")
	wrong := f.keep("wrong password", s.PostForm(t, "/admin/login", url.Values{"csrf": {loginCSRF}, "password": {"not-the-" + secAdminPassword}}, "Cookie", loginCookie))
	if wrong.Status != http.StatusUnauthorized {
		t.Fatalf("wrong password: %d", wrong.Status)
	}
	login = f.keep("login page again", s.Get(t, "/admin/login"))
	loginCSRF, loginCookie = hiddenCSRF(t, login.Body), cookieHeader(t, login.Header, "newsletter_admin_login")
	f.secret("login form token", loginCSRF)
	in := f.keep("login", s.PostForm(t, "/admin/login", url.Values{"csrf": {loginCSRF}, "password": {secAdminPassword}}, "Cookie", loginCookie))
	if in.Status != http.StatusSeeOther && in.Status != http.StatusFound {
		t.Fatalf("login: %d\n%s", in.Status, in.Body)
	}
	session := cookieHeader(t, in.Header, "newsletter_admin")
	f.secret("editor session id", strings.TrimPrefix(session, "newsletter_admin="))
	for _, c := range (&http.Response{Header: in.Header}).Cookies() {
		if c.Name == "newsletter_admin" && (!c.HttpOnly || c.SameSite == http.SameSiteNoneMode || c.Path != "/admin") {
			t.Errorf("session cookie %s: want HttpOnly, SameSite and Path=/admin", c.String())
		}
	}
	home := f.keep("editor home", s.Get(t, "/admin/", "Cookie", session))
	if home.Status != 200 {
		t.Fatalf("editor home: %d", home.Status)
	}
	csrf := hiddenCSRF(t, home.Body)
	f.secret("editor form token", csrf)
	f.keep("editor digest en", s.Get(t, "/admin/digest/en", "Cookie", session))
	f.keep("editor digest ru", s.Get(t, "/admin/digest/ru", "Cookie", session))
	f.keep("editor new article", s.Get(t, "/admin/digest/en/articles/new", "Cookie", session))
	var issueID, articleID int64
	if err := s.DB.Get(&issueID, `SELECT id FROM issues WHERE lang = 'en' ORDER BY id DESC LIMIT 1`); err != nil {
		t.Fatalf("no English issue after the digest page: %v", err)
	}
	if err := s.DB.Get(&articleID, `SELECT article_id FROM issue_articles WHERE issue_id = $1 LIMIT 1`, issueID); err != nil {
		t.Fatal(err)
	}
	id := strconv.FormatInt(issueID, 10)
	f.keep("editor article", s.Get(t, "/admin/articles/"+strconv.FormatInt(articleID, 10)+"/edit", "Cookie", session))
	f.keep("editor issue", s.Get(t, "/admin/issues/"+id, "Cookie", session))
	f.keep("editor preview", s.Get(t, "/admin/issues/"+id+"/preview.html", "Cookie", session))
	if r := f.keep("editor test send", s.PostForm(t, "/admin/issues/"+id+"/test", url.Values{"csrf": {csrf}, "to": {"editor@example.org"}}, "Cookie", session)); r.Status >= 400 {
		t.Errorf("test send: %d", r.Status)
	} else {
		relay.waitFor(t, "editor@example.org")
	}
	// The readers' pages: a lookup of the reader above, their page and the confirm steps, and bad
	// input, which gets a 4xx and nothing of the internals.
	f.keep("editor readers", s.Get(t, "/admin/readers", "Cookie", session))
	look := f.keep("editor reader lookup", s.PostForm(t, "/admin/readers/lookup", url.Values{"csrf": {csrf}, "email": {email}}, "Cookie", session))
	readerPage := look.Header.Get("Location")
	if look.Status != http.StatusSeeOther || !strings.HasPrefix(readerPage, "/admin/readers/") || strings.Contains(readerPage, "@") {
		t.Fatalf("reader lookup: %d to %q", look.Status, readerPage)
	}
	f.keep("editor reader", s.Get(t, readerPage, "Cookie", session))
	f.keep("editor reader unsubscribe step", s.Get(t, readerPage+"/unsubscribe", "Cookie", session))
	f.keep("editor reader erase step", s.Get(t, readerPage+"/erase", "Cookie", session))
	for _, b := range []struct{ label, method, path, body string }{
		{"lookup sql", "POST", "/admin/readers/lookup", url.Values{"csrf": {csrf}, "email": {"x'); DROP TABLE subscribers;--"}}.Encode()},
		{"lookup nobody", "POST", "/admin/readers/lookup", url.Values{"csrf": {csrf}, "email": {"nobody@example.org"}}.Encode()},
		{"lookup oversized", "POST", "/admin/readers/lookup", url.Values{"csrf": {csrf}, "email": {strings.Repeat("x", 70<<10)}}.Encode()},
		{"no such reader", "GET", "/admin/readers/00000000-0000-4000-8000-000000000000", ""},
		{"reader sql", "GET", "/admin/readers/" + url.PathEscape("' OR 1=1;--"), ""},
		{"reader wrong confirm step", "POST", readerPage + "/erase", url.Values{"csrf": {csrf}, "confirm": {"yes"}}.Encode()},
		{"reader bad lang", "POST", readerPage + "/lang", url.Values{"csrf": {csrf}, "lang": {"xx'--"}}.Encode()},
		{"reader unknown action", "POST", readerPage + "/drop", url.Values{"csrf": {csrf}}.Encode()},
	} {
		res := f.keep("editor bad input: "+b.label, s.Do(t, b.method, b.path, "application/x-www-form-urlencoded", b.body, "Cookie", session))
		if res.Status < 400 || res.Status >= 500 {
			t.Errorf("%s: status %d, want a 4xx", b.label, res.Status)
		}
		if m := internalText.FindString(res.Body); m != "" {
			t.Errorf("%s: the answer (%d) shows %q", b.label, res.Status, m)
		}
	}
	if r := f.keep("logout", s.PostForm(t, "/admin/logout", url.Values{"csrf": {csrf}}, "Cookie", session)); r.Status >= 400 {
		t.Fatalf("logout: %d", r.Status)
	}
	if r := f.keep("editor home after logout", s.Get(t, "/admin/", "Cookie", session)); r.Status != http.StatusSeeOther && r.Status != http.StatusFound {
		t.Errorf("after logout the old session still opens /admin/: %d", r.Status)
	}

	// --- public archive and service routes ---
	if _, err := s.DB.Exec(`UPDATE issues SET status = 'sent', started_at = now(), finished_at = now() WHERE id = $1`, issueID); err != nil {
		t.Fatal(err)
	}
	f.keep("archive", s.Get(t, "/archive"))
	if r := f.keep("archived issue", s.Get(t, "/archive/"+id)); r.Status != 200 {
		t.Errorf("archived issue: %d", r.Status)
	}
	f.keep("archive feed", s.Get(t, "/archive.xml"))
	f.keep("healthz", s.Get(t, "/healthz"))
	f.keep("stylesheet", s.Get(t, "/static/app.css"))
	f.keep("not found", s.Get(t, "/no/such/page"))
	metrics := f.keep("metrics", s.Get(t, "/metrics"))

	f.badInput(t, session, csrf, manage)

	t.Run("headers", func(t *testing.T) {
		for _, p := range f.seen {
			checkSecurityHeaders(t, p.label, p.res.Header, false)
		}
	})
	t.Run("no caching of private pages", func(t *testing.T) {
		for _, p := range f.seen {
			private := strings.HasPrefix(p.label, "editor") || strings.Contains(p.label, "confirm") ||
				strings.Contains(p.label, "manage") || strings.Contains(p.label, "unsubscribe") || p.label == "data export"
			if private && !strings.Contains(p.res.Header.Get("Cache-Control"), "no-store") {
				t.Errorf("%s: Cache-Control %q, want no-store", p.label, p.res.Header.Get("Cache-Control"))
			}
		}
	})
	t.Run("markup", func(t *testing.T) {
		for _, p := range f.seen {
			checkInertPage(t, p.label, p.res)
		}
	})
	t.Run("metrics", func(t *testing.T) {
		for _, line := range strings.Split(metrics.Body, "\n") {
			if strings.HasPrefix(line, "#") {
				continue
			}
			labels := line
			if i := strings.LastIndexByte(line, '}'); i >= 0 {
				labels = line[:i]
			}
			for v, name := range f.secrets {
				if strings.Contains(labels, v) {
					t.Errorf("metrics line carries the %s: %s", name, line)
				}
			}
			if strings.Contains(labels, "@") {
				t.Errorf("metrics line carries an address: %s", line)
			}
		}
	})
	t.Run("log", func(t *testing.T) {
		s.Stop() // the workers' last words count too
		log := s.Log()
		if !strings.Contains(log, "admin: login") || !strings.Contains(log, "route=") {
			t.Fatalf("the log lacks the lines of the flow; is logging on?\n%s", log)
		}
		for _, line := range strings.Split(log, "\n") {
			for v, name := range f.secrets {
				if strings.Contains(line, v) {
					t.Errorf("log line carries the %s: %s", name, strings.ReplaceAll(line, v, "<"+name+">"))
				}
			}
			if strings.Contains(line, "goroutine ") || strings.Contains(line, "panic") {
				t.Errorf("log line shows a panic: %s", line)
			}
		}
		if relay.logins() == 0 {
			t.Error("the relay saw no login: the SMTP password was never used")
		}
	})
}

// badInput sends what a prober or a broken client sends. Each answer must be a 4xx (or a harmless
// 2xx/3xx), and none may carry a stack trace, SQL, an internal error text or the token it was given.
func (f *secFlow) badInput(t *testing.T, session, csrf, manage string) {
	s := f.s
	forged := strings.Repeat("A", 76)
	manageTok := tokenOf(manage)
	tampered := manageTok[:len(manageTok)-3] + "xyz"
	long := strings.Repeat("x", 70<<10)
	type req struct {
		label, method, path, ct, body string
		header                        []string
	}
	reqs := []req{
		{"forged confirm", "GET", "/confirm/" + forged, "", "", nil},
		{"forged confirm post", "POST", "/confirm/" + forged, "application/x-www-form-urlencoded", "", nil},
		{"sql in token", "GET", "/confirm/" + url.PathEscape("' OR 1=1;--"), "", "", nil},
		{"tampered manage", "GET", "/manage/" + tampered, "", "", nil},
		{"tampered manage post", "POST", "/manage/" + tampered, "application/x-www-form-urlencoded", "name=x", nil},
		{"tampered data", "GET", "/manage/" + tampered + "/data.json", "", "", nil},
		{"tampered erase", "POST", "/manage/" + tampered + "/erase", "application/x-www-form-urlencoded", "confirm=yes", nil},
		{"forged unsubscribe", "POST", "/unsubscribe/" + forged, "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click", nil},
		{"huge token", "GET", "/unsubscribe/" + strings.Repeat("B", 8000), "", "", nil},
		{"manage wrong purpose", "GET", "/confirm/" + manageTok, "", "", nil},
		{"manage bad lang", "POST", manage, "application/x-www-form-urlencoded", "name=x&lang=xx'--", nil},
		{"manage long name", "POST", manage, "application/x-www-form-urlencoded", "name=" + strings.Repeat("n", 500), nil},
		{"manage oversized", "POST", manage, "application/x-www-form-urlencoded", "name=" + long, nil},
		{"manage bad content type", "POST", manage, "application/xml", "<x/>", nil},
		{"subscribe sql", "POST", "/subscribe", "application/x-www-form-urlencoded", "email=" + url.QueryEscape("x'); DROP TABLE subscribers;--@example.org"), nil},
		{"subscribe header injection", "POST", "/subscribe", "application/x-www-form-urlencoded", "email=a%0d%0aBcc:x@example.org", nil},
		{"subscribe bad json", "POST", "/subscribe", "application/json", `{"email":`, []string{"Accept", "application/json"}},
		{"subscribe json types", "POST", "/subscribe", "application/json", `{"email":["a@b.c"],"name":{}}`, []string{"Accept", "application/json"}},
		{"subscribe json trailing", "POST", "/subscribe", "application/json", `{"email":"a@example.org"} {}`, nil},
		{"subscribe oversized", "POST", "/subscribe", "application/x-www-form-urlencoded", "email=" + long, nil},
		{"subscribe no content type", "POST", "/subscribe", "", "email=a@example.org", nil},
		{"subscribe bad multipart", "POST", "/subscribe", "multipart/form-data; boundary=X", "--X\r\nbroken", nil},
		{"subscribe bad lang", "POST", "/subscribe", "application/x-www-form-urlencoded", "email=ok@example.org&lang=%00", nil},
		{"archive not a number", "GET", "/archive/abc", "", "", nil},
		{"archive overflow", "GET", "/archive/99999999999999999999999", "", "", nil},
		{"archive negative", "GET", "/archive/-1", "", "", nil},
		{"archive unsent", "GET", "/archive/999999", "", "", nil},
		{"login no csrf", "POST", "/admin/login", "application/x-www-form-urlencoded", "password=" + url.QueryEscape(secAdminPassword), nil},
		{"login oversized", "POST", "/admin/login", "application/x-www-form-urlencoded", "password=" + long, nil},
		{"editor post without session", "POST", "/admin/issues/1/approve", "application/x-www-form-urlencoded", "csrf=" + csrf, nil},
		{"editor forged session", "GET", "/admin/", "", "", []string{"Cookie", "newsletter_admin=" + strings.Repeat("C", 43)}},
		{"editor old session", "GET", "/admin/issues/abc", "", "", []string{"Cookie", session}},
		{"method not allowed", "DELETE", "/subscribe", "", "", nil},
	}
	for _, r := range reqs {
		res := f.keep("bad input: "+r.label, s.Do(t, r.method, r.path, r.ct, r.body, r.header...))
		if res.Status >= 500 {
			t.Errorf("%s: status %d", r.label, res.Status)
		}
		if m := internalText.FindString(res.Body); m != "" {
			t.Errorf("%s: the answer (%d) shows %q", r.label, res.Status, m)
		}
		for _, tok := range []string{forged, tampered, manageTok, strings.Repeat("B", 8000)} {
			if strings.Contains(res.Body, tok) && !strings.HasPrefix(r.path, manage) {
				t.Errorf("%s: the answer echoes the token it was given", r.label)
			}
		}
		ownPage := strings.HasPrefix(r.path, manage) // the reader's own manage page shows their address and link
		for v, name := range f.secrets {
			if strings.Contains(res.Body, v) && !(ownPage && (name == "manage token" || name == "reader's address")) {
				t.Errorf("%s: the answer carries the %s", r.label, name)
			}
		}
	}
}

// TestSecurityHeadersHTTPS: with an https base URL every answer asks for HTTPS from then on, and
// the editors' cookies are Secure.
func TestSecurityHeadersHTTPS(t *testing.T) {
	s := startService(t, map[string]string{"NEWSLETTER_BASE_URL": "https://news.example", "NEWSLETTER_ADMIN_PASSWORD": secAdminPassword})
	direct := "http://" + s.Env["NEWSLETTER_HTTP_ADDR"]
	for _, path := range []string{"/", "/archive", "/admin/login", "/admin/", "/confirm/forged", "/healthz", "/static/app.css", "/nope"} {
		res := s.Get(t, direct+path)
		checkSecurityHeaders(t, path, res.Header, true)
		for _, c := range (&http.Response{Header: res.Header}).Cookies() {
			if !c.Secure {
				t.Errorf("%s: cookie %s is not Secure under an https base URL", path, c.Name)
			}
		}
	}
}

// checkSecurityHeaders asserts the headers every answer carries.
func checkSecurityHeaders(t *testing.T, label string, h http.Header, https bool) {
	t.Helper()
	csp := parseCSP(h.Get("Content-Security-Policy"))
	if len(csp) == 0 {
		t.Errorf("%s: no Content-Security-Policy", label)
	} else {
		script, ok := csp["script-src"]
		if !ok {
			script = csp["default-src"]
		}
		if script == nil && csp["sandbox"] == nil {
			t.Errorf("%s: CSP %q limits no script", label, h.Get("Content-Security-Policy"))
		}
		for _, v := range script {
			if v == "'unsafe-inline'" || v == "'unsafe-eval'" || v == "*" || v == "data:" || v == "https:" || v == "http:" {
				t.Errorf("%s: CSP allows script from %s", label, v)
			}
		}
		fa, ok := csp["frame-ancestors"]
		if !ok {
			t.Errorf("%s: CSP without frame-ancestors", label)
		}
		for _, v := range fa {
			if v != "'none'" && v != "'self'" {
				t.Errorf("%s: CSP lets %s frame the page", label, v)
			}
		}
		if _, ok := csp["object-src"]; !ok && !containsAll(csp["default-src"], "'none'") && csp["sandbox"] == nil {
			t.Errorf("%s: CSP leaves plugins (object-src) open", label)
		}
	}
	if v := h.Get("X-Content-Type-Options"); v != "nosniff" {
		t.Errorf("%s: X-Content-Type-Options %q", label, v)
	}
	switch v := h.Get("Referrer-Policy"); v {
	case "no-referrer", "same-origin", "strict-origin", "strict-origin-when-cross-origin", "no-referrer-when-downgrade":
	default:
		t.Errorf("%s: Referrer-Policy %q", label, v)
	}
	hsts := h.Get("Strict-Transport-Security")
	switch {
	case https && !strings.HasPrefix(hsts, "max-age="):
		t.Errorf("%s: no Strict-Transport-Security under an https base URL (%q)", label, hsts)
	case https:
		if age, _ := strconv.Atoi(strings.TrimPrefix(strings.SplitN(hsts, ";", 2)[0], "max-age=")); age < 180*24*3600 {
			t.Errorf("%s: Strict-Transport-Security %q: want at least half a year", label, hsts)
		}
	case hsts != "":
		t.Errorf("%s: Strict-Transport-Security %q under an http base URL", label, hsts)
	}
}

func containsAll(list []string, v string) bool {
	for _, x := range list {
		if x == v {
			return true
		}
	}
	return false
}

// parseCSP splits a policy into directive -> source list (lower-cased names).
func parseCSP(p string) map[string][]string {
	out := map[string][]string{}
	for _, d := range strings.Split(p, ";") {
		f := strings.Fields(d)
		if len(f) == 0 {
			continue
		}
		out[strings.ToLower(f[0])] = append([]string{}, f[1:]...)
	}
	return out
}

// checkInertPage asserts that an HTML answer holds no inline script, no event handler, no
// javascript: URL, and no inline style where its own policy forbids inline styles.
func checkInertPage(t *testing.T, label string, res httpResult) {
	t.Helper()
	if !strings.HasPrefix(res.Header.Get("Content-Type"), "text/html") {
		return
	}
	csp := parseCSP(res.Header.Get("Content-Security-Policy"))
	style, ok := csp["style-src"]
	if !ok {
		style = csp["default-src"]
	}
	inlineStyle := containsAll(style, "'unsafe-inline'")
	z := html.NewTokenizer(strings.NewReader(res.Body))
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			return
		}
		if tt != html.StartTagToken && tt != html.SelfClosingTagToken {
			continue
		}
		tok := z.Token()
		if tok.Data == "script" {
			t.Errorf("%s: <script> in the page", label)
		}
		if tok.Data == "style" && !inlineStyle {
			t.Errorf("%s: <style> element where the policy forbids inline styles", label)
		}
		for _, a := range tok.Attr {
			key := strings.ToLower(a.Key)
			switch {
			case strings.HasPrefix(key, "on"):
				t.Errorf("%s: event handler %s on <%s>", label, key, tok.Data)
			case key == "style" && !inlineStyle:
				t.Errorf("%s: style attribute on <%s> where the policy forbids inline styles", label, tok.Data)
			case key == "href" || key == "src" || key == "action" || key == "formaction":
				if v := strings.ToLower(strings.TrimSpace(a.Val)); strings.HasPrefix(v, "javascript:") || strings.HasPrefix(v, "data:text") {
					t.Errorf("%s: %s=%q on <%s>", label, key, a.Val, tok.Data)
				}
			}
		}
	}
}

// internalText matches what must stay inside the service: stack traces, Go source positions,
// driver errors and SQL statements.
var internalText = regexp.MustCompile(`(?i)goroutine \d|panic|runtime error|\.go:\d|\bpq: |\bsql: |sqlstate|syntax error at|\bselect\s+[\w*,.() ]+\s+from\s+\w|\binsert\s+into\s|\bupdate\s+\w+\s+set\s|\bdelete\s+from\s`)

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func hiddenCSRF(t *testing.T, page string) string {
	t.Helper()
	m := csrfInput.FindStringSubmatch(page)
	if m == nil {
		t.Fatal("no csrf field in the page")
	}
	return html.UnescapeString(m[1])
}

// cookieHeader returns "name=value" of the cookie set by an answer, for the next request.
func cookieHeader(t *testing.T, h http.Header, name string) string {
	t.Helper()
	for _, c := range (&http.Response{Header: h}).Cookies() {
		if c.Name == name && c.Value != "" {
			return c.Name + "=" + c.Value
		}
	}
	t.Fatalf("no %s cookie set", name)
	return ""
}

// tokenOf is the signed part of a link: the path segment after /confirm/, /unsubscribe/ or /manage/.
func tokenOf(link string) string {
	for _, p := range []string{"/confirm/", "/unsubscribe/", "/manage/"} {
		if _, rest, ok := strings.Cut(link, p); ok {
			tok, _, _ := strings.Cut(rest, "/")
			return tok
		}
	}
	return ""
}

// authSMTP is a relay that, unlike smtptest, insists on AUTH PLAIN with one user and password,
// so the service really hands the SMTP password over and the tests can look for it in the log.
type authSMTP struct {
	addr       string
	user, pass string

	mu     sync.Mutex
	auths  int
	byRcpt map[string][]byte
	notify chan struct{}
}

func startAuthSMTP(t *testing.T, user, pass string) *authSMTP {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	a := &authSMTP{addr: l.Addr().String(), user: user, pass: pass, byRcpt: map[string][]byte{}, notify: make(chan struct{}, 1)}
	srv := smtp.NewServer(a)
	srv.Domain = "localhost"
	srv.AllowInsecureAuth = true // loopback only
	srv.ReadTimeout, srv.WriteTimeout = 30*time.Second, 30*time.Second
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return a
}

func (a *authSMTP) NewSession(*smtp.Conn) (smtp.Session, error) { return &authSession{relay: a}, nil }

func (a *authSMTP) logins() int { a.mu.Lock(); defer a.mu.Unlock(); return a.auths }

// waitFor returns the first message to rcpt, waiting up to 30 s.
func (a *authSMTP) waitFor(t *testing.T, rcpt string) []byte {
	t.Helper()
	deadline := time.After(30 * time.Second)
	for {
		a.mu.Lock()
		m, ok := a.byRcpt[rcpt]
		a.mu.Unlock()
		if ok {
			return m
		}
		select {
		case <-a.notify:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no mail to %s within 30 s", rcpt)
		}
	}
}

type authSession struct {
	relay  *authSMTP
	authed bool
	to     []string
}

func (x *authSession) AuthMechanisms() []string { return []string{sasl.Plain} }

func (x *authSession) Auth(string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(_, user, pass string) error {
		if user != x.relay.user || pass != x.relay.pass {
			return errors.New("invalid credentials")
		}
		x.authed = true
		x.relay.mu.Lock()
		x.relay.auths++
		x.relay.mu.Unlock()
		return nil
	}), nil
}

func (x *authSession) Mail(string, *smtp.MailOptions) error {
	if !x.authed {
		return smtp.ErrAuthRequired
	}
	return nil
}

func (x *authSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.to = append(x.to, to)
	return nil
}

func (x *authSession) Data(r io.Reader) error {
	var b bytes.Buffer
	if _, err := io.Copy(&b, r); err != nil {
		return err
	}
	body := b.Bytes()
	x.relay.mu.Lock()
	for _, to := range x.to {
		if _, ok := x.relay.byRcpt[to]; !ok {
			x.relay.byRcpt[to] = body
		}
	}
	x.relay.mu.Unlock()
	select {
	case x.relay.notify <- struct{}{}:
	default:
	}
	return nil
}

func (x *authSession) Reset()        { x.to = nil }
func (x *authSession) Logout() error { return nil }
