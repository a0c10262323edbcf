package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"newsletter/digest"
	digestweb "newsletter/digest/web"
	"newsletter/editors"
)

// editorPassword is the password every test editor sets through their one-time link.
const editorPassword = "a long editor password for the tests"

// cli runs one command of the program with the service's settings and returns its exit status,
// stdout and stderr.
func (s *service) cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), args, func(k string) string { return s.Env[k] }, strings.NewReader(""), &stdout, &stderr)
	return code, stdout.String(), stderr.String()
}

// addEditor makes an editor with the command line (`editors add EMAIL --role ROLE`) and sets their
// password through the link it prints, as a new editor does.
func addEditor(t *testing.T, s *service, email, role string) {
	t.Helper()
	code, out, errOut := s.cli(t, "editors", "add", email, "--role", role)
	if code != exitOK {
		t.Fatalf("editors add %s: exit %d\n%s", email, code, errOut)
	}
	link := strings.TrimSpace(out)
	if !strings.HasPrefix(link, s.URL+"/admin/setup/") {
		t.Fatalf("editors add printed %q, want one link under %s", out, s.URL)
	}
	if r := s.PostForm(t, link, url.Values{"password": {editorPassword}, "confirm": {editorPassword}}); r.Status != http.StatusOK {
		t.Fatalf("setting the password of %s: %d\n%s", email, r.Status, r.Body)
	}
}

// editorLogin makes an editor with role (the command line, then their link) and logs them in; it
// returns the session's Cookie header and form token.
func editorLogin(t *testing.T, s *service, email, role string) (cookie, csrf string) {
	t.Helper()
	addEditor(t, s, email, role)
	return loginAs(t, s, email, editorPassword)
}

// loginAs logs in through the login form and returns the session's Cookie header and form token.
func loginAs(t *testing.T, s *service, email, password string) (cookie, csrf string) {
	t.Helper()
	login := s.Get(t, "/admin/login")
	in := s.PostForm(t, "/admin/login", url.Values{"csrf": {hiddenCSRF(t, login.Body)}, "email": {email}, "password": {password}},
		"Cookie", cookieHeader(t, login.Header, "newsletter_admin_login"))
	if in.Status != http.StatusSeeOther {
		t.Fatalf("login as %s: %d\n%s", email, in.Status, in.Body)
	}
	cookie = cookieHeader(t, in.Header, "newsletter_admin")
	account := s.Get(t, "/admin/account", "Cookie", cookie)
	if account.Status != http.StatusOK {
		t.Fatalf("my account page: %d", account.Status)
	}
	return cookie, hiddenCSRF(t, account.Body)
}

// roleWalk is the least role each /admin route needs, written here on its own so that a route
// whose role in editorRoutes differs, or a route with no entry here, fails TestAdminRoleWalk.
var roleWalk = map[string]editors.Role{
	"GET /admin/login": public, "POST /admin/login": public, "GET /admin/login/code": public, "POST /admin/login/code": public,
	"GET /admin/setup/{token}": public, "POST /admin/setup/{token}": public,

	"POST /admin/logout": editors.Writer, "GET /admin/{$}": editors.Writer, "GET /admin/digest/{lang}": editors.Writer,
	"GET /admin/digest/{lang}/articles/new": editors.Writer, "POST /admin/digest/{lang}/articles": editors.Writer,
	"GET /admin/articles/{id}/edit": editors.Writer, "POST /admin/articles/{id}": editors.Writer,
	"POST /admin/articles/{id}/{action}": editors.Writer, "GET /admin/issues/{id}": editors.Writer,
	"GET /admin/issues/{id}/preview.html": editors.Writer, "POST /admin/issues/{id}/text": editors.Writer,
	"POST /admin/issues/{id}/test": editors.Writer,
	"GET /admin/account":           editors.Writer, "POST /admin/account/name": editors.Writer, "POST /admin/account/password": editors.Writer,
	"GET /admin/account/totp": editors.Writer, "POST /admin/account/totp": editors.Writer, "POST /admin/account/totp/off": editors.Writer,
	"POST /admin/account/sessions/{sid}/end": editors.Writer, "POST /admin/account/logout-everywhere": editors.Writer,

	"POST /admin/issues/{id}/approve": editors.Publisher, "POST /admin/issues/{id}/{action}": editors.Publisher,

	"GET /admin/readers": editors.Admin, "POST /admin/readers/lookup": editors.Admin, "GET /admin/readers/{uuid}": editors.Admin,
	"GET /admin/readers/{uuid}/{action}": editors.Admin, "POST /admin/readers/{uuid}/{action}": editors.Admin,
	"GET /admin/editors": editors.Admin, "POST /admin/editors": editors.Admin, "GET /admin/editors/{id}": editors.Admin,
	"POST /admin/editors/{id}/{action}": editors.Admin, "POST /admin/editors/{id}/sessions/{sid}/end": editors.Admin,
	"GET /admin/audit": editors.Admin,

	"GET /admin/newsletters": editors.Writer, "POST /admin/newsletters": editors.Publisher,
	"GET /admin/newsletters/{id}": editors.Writer, "POST /admin/newsletters/{id}": editors.Publisher,
	"POST /admin/newsletters/{id}/welcome/{lang}": editors.Publisher, "GET /admin/newsletters/{id}/welcome/{lang}/preview.html": editors.Writer,
	"GET /admin/newsletters/{id}/schedule": editors.Writer, "POST /admin/newsletters/{id}/schedule": editors.Publisher,
	"POST /admin/newsletters/{id}/schedule/{action}": editors.Publisher,

	"GET /admin/editions": editors.Writer, "POST /admin/editions": editors.Writer,
	"GET /admin/editions/{id}": editors.Writer, "POST /admin/editions/{id}": editors.Writer,
	"POST /admin/editions/{id}/schedule": editors.Publisher,
}

// TestAdminRoleWalk walks every /admin route of the route table (editorRoutes) with no session
// and with a writer, a publisher and an admin, against serve: below the route's role the answer is
// 403 (without a session: a GET goes to the login, a POST gets 403); from it up, anything but
// 403, the login or a 5xx. A route missing from roleWalk, or one registered outside the table,
// fails it.
func TestAdminRoleWalk(t *testing.T) {
	src, err := os.ReadFile("routes.go")
	if err != nil {
		t.Fatal(err)
	}
	if m := regexp.MustCompile(`mux\.Handle(Func)?\("[A-Z]+ /admin[^"]*"`).FindAllString(string(src), -1); len(m) > 0 {
		t.Errorf("routes.go registers /admin routes outside editorRoutes, so without a role: %v", m)
	}
	routes := editorRoutes(&digestweb.Editor{})
	seen := map[string]bool{}
	for _, rt := range routes {
		seen[rt.pattern] = true
		want, ok := roleWalk[rt.pattern]
		if !ok {
			t.Errorf("route %q has no entry in roleWalk: say which role it needs", rt.pattern)
		} else if want != rt.role {
			t.Errorf("route %q: editorRoutes gives it %s, roleWalk %s", rt.pattern, rt.role, want)
		}
	}
	for p := range roleWalk {
		if !seen[p] {
			t.Errorf("roleWalk names %q, which is no route", p)
		}
	}

	s := startService(t, nil)
	ctx := context.Background()
	if _, err := digest.NewStore(s.DB, nil).SeedDemo(ctx, []string{"en", "ru"}); err != nil {
		t.Fatal(err)
	}
	if r := s.PostForm(t, "/subscribe", url.Values{"email": {"ann@gazette.test"}, "lang": {"en"}}); r.Status != http.StatusOK {
		t.Fatalf("subscribe: %d", r.Status)
	}
	emails := map[editors.Role]string{editors.Writer: "writer@gazette.test", editors.Publisher: "publisher@gazette.test", editors.Admin: "admin@gazette.test"}
	for role, email := range emails {
		addEditor(t, s, email, role.String())
	}
	addEditor(t, s, "victim@gazette.test", "writer")
	type session struct{ cookie, csrf string }
	sessions := map[editors.Role]session{}
	login := func(role editors.Role) session {
		t.Helper()
		if sess, ok := sessions[role]; ok {
			if r := s.Get(t, "/admin/account", "Cookie", sess.cookie); r.Status == http.StatusOK {
				return sess
			}
		}
		cookie, csrf := loginAs(t, s, emails[role], editorPassword)
		sessions[role] = session{cookie, csrf}
		return sessions[role]
	}
	login(editors.Admin)
	if r := s.Get(t, "/admin/digest/en", "Cookie", sessions[editors.Admin].cookie); r.Status != http.StatusOK {
		t.Fatalf("digest page: %d", r.Status)
	}
	var issueID, articleID, victimID, digestID int64
	var reader string
	s.DB.Get(&issueID, `SELECT id FROM issues WHERE lang = 'en' ORDER BY id DESC LIMIT 1`)
	s.DB.Get(&articleID, `SELECT article_id FROM issue_articles WHERE issue_id = $1 LIMIT 1`, issueID)
	s.DB.Get(&victimID, `SELECT id FROM editors WHERE email = 'victim@gazette.test'`)
	s.DB.Get(&reader, `SELECT uuid::text FROM subscribers LIMIT 1`)
	s.DB.Get(&digestID, `SELECT id FROM newsletters WHERE slug = 'digest-en'`)
	var editionID int64
	s.DB.Get(&editionID, `WITH n AS (INSERT INTO newsletters (slug, kind, names, langs) VALUES ('notes', 'editions', '{"en": "Notes"}', '{en}') RETURNING id)
		INSERT INTO issues (lang, newsletter_id, status, subject, markdown) SELECT 'en', id, 'draft', 'A note', 'Text' FROM n RETURNING id`)
	if issueID == 0 || articleID == 0 || victimID == 0 || reader == "" {
		t.Fatalf("fixtures: issue %d, article %d, editor %d, reader %q", issueID, articleID, victimID, reader)
	}
	fill := strings.NewReplacer("{lang}", "en", "{uuid}", reader, "{sid}", "999999", "{token}", strings.Repeat("A", 43), "{$}", "")
	pathOf := func(pattern string) (method, path string) {
		method, path, _ = strings.Cut(pattern, " ")
		id := issueID
		switch {
		case strings.HasPrefix(path, "/admin/articles/"):
			id = articleID
		case strings.HasPrefix(path, "/admin/editors/"):
			id = victimID
		case strings.HasPrefix(path, "/admin/newsletters/"):
			id = digestID
		case strings.HasPrefix(path, "/admin/editions/"):
			id = editionID
		}
		path = strings.Replace(path, "{id}", strconv.FormatInt(id, 10), 1)
		action := map[string]string{"/admin/articles/": "hide", "/admin/issues/": "pause", "/admin/editors/": "logout", "/admin/newsletters/": "unskip"}
		for prefix, a := range action {
			if strings.HasPrefix(path, prefix) {
				path = strings.Replace(path, "{action}", a, 1)
			}
		}
		if method == "GET" {
			path = strings.Replace(path, "{action}", "unsubscribe", 1)
		}
		return method, fill.Replace(strings.Replace(path, "{action}", "lang", 1))
	}
	form := func(path string, role editors.Role) url.Values {
		return url.Values{"to": {emails[role]}, "title": {"A walk"}, "link": {"https://site.example/walk"}, "subject": {"Walk"},
			"email": {"walk-" + role.String() + "@gazette.test"}, "role": {"writer"}, "lang": {"ru"}, "name": {"Walker"},
			"current": {"not the password"}, "new": {"a new password that is long"}, "confirm": {"a new password that is long"}, "code": {"000000"}}
	}
	for _, rt := range routes {
		if rt.role == public {
			continue
		}
		method, path := pathOf(rt.pattern)
		for _, role := range []editors.Role{public, editors.Writer, editors.Publisher, editors.Admin} {
			t.Run(rt.pattern+"/"+role.String(), func(t *testing.T) {
				var r httpResult
				if role == public {
					if method == "GET" {
						r = s.Get(t, path)
					} else {
						r = s.PostForm(t, path, url.Values{"csrf": {"no-session"}})
					}
					if (method == "GET" && (r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/admin/login")) ||
						(method == "POST" && r.Status != http.StatusForbidden) {
						t.Fatalf("%s %s without a session: %d to %q", method, path, r.Status, r.Header.Get("Location"))
					}
					return
				}
				sess := login(role)
				if method == "GET" {
					r = s.Get(t, path, "Cookie", sess.cookie)
				} else {
					v := form(path, role)
					v.Set("csrf", sess.csrf)
					r = s.PostForm(t, path, v, "Cookie", sess.cookie)
				}
				allowed := role.Allows(rt.role)
				switch {
				case !allowed && r.Status != http.StatusForbidden:
					t.Errorf("%s %s as %s: %d, want 403", method, path, role, r.Status)
				case !allowed && !strings.Contains(r.Body, "does not allow this"):
					t.Errorf("%s %s as %s: 403 without saying why:\n%s", method, path, role, r.Body)
				case allowed && (r.Status == http.StatusForbidden || r.Status >= 500 || r.Header.Get("Location") == "/admin/login" && rt.pattern != "POST /admin/logout" && rt.pattern != "POST /admin/account/logout-everywhere"):
					t.Errorf("%s %s as %s: %d to %q, want it allowed\n%s", method, path, role, r.Status, r.Header.Get("Location"), r.Body)
				}
			})
		}
	}
}

// TestLoginThrottleAtomic fires 200 wrong logins at once against serve and PostgreSQL: from one
// client with one valid form token; at one account from 200 clients; at 200 accounts from 200
// clients. At most the limit of each gets its password compared (401); the rest get 429.
func TestLoginThrottleAtomic(t *testing.T) {
	const n = 200
	for _, c := range []struct {
		name    string
		limit   int
		client  func(i int) string // X-Forwarded-For; "" none (every request from 127.0.0.1)
		account func(i int) string
	}{
		{"OneClient", editors.ClientLimit, func(int) string { return "" }, func(int) string { return "admin@gazette.test" }},
		{"OneAccount", editors.AccountLimit, func(i int) string { return fmt.Sprintf("198.51.%d.%d", i/200, i%200) },
			func(int) string { return "admin@gazette.test" }},
		{"Global", editors.GlobalLimit, func(i int) string { return fmt.Sprintf("203.0.%d.%d", i/200, i%200) },
			func(i int) string { return fmt.Sprintf("guess%d@gazette.test", i) }},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := startService(t, map[string]string{"NEWSLETTER_TRUST_PROXY": "true", "NEWSLETTER_LOG_LEVEL": "error"})
			addEditor(t, s, "admin@gazette.test", "admin")
			login := s.Get(t, "/admin/login")
			token, cookie := hiddenCSRF(t, login.Body), cookieHeader(t, login.Header, "newsletter_admin_login")
			statuses := make([]int, n)
			var wg sync.WaitGroup
			start := make(chan struct{})
			for i := range n {
				wg.Go(func() {
					header := []string{"Cookie", cookie}
					if xff := c.client(i); xff != "" {
						header = append(header, "X-Forwarded-For", xff)
					}
					<-start
					statuses[i] = s.PostForm(t, "/admin/login", url.Values{"csrf": {token}, "email": {c.account(i)}, "password": {"not the password"}}, header...).Status
				})
			}
			close(start)
			wg.Wait()
			counts := map[int]int{}
			for _, st := range statuses {
				counts[st]++
			}
			if counts[http.StatusUnauthorized] > c.limit || counts[http.StatusUnauthorized]+counts[http.StatusTooManyRequests] != n {
				t.Fatalf("%d wrong logins at once: %v; want at most %d compared (401), the rest 429", n, counts, c.limit)
			}
			var recorded int
			s.DB.Get(&recorded, `SELECT count(*) FROM editor_login_attempts`)
			if recorded != counts[http.StatusUnauthorized] {
				t.Errorf("%d attempts recorded, %d compared", recorded, counts[http.StatusUnauthorized])
			}
			t.Logf("%d at once: %d compared (401), %d refused (429)", n, counts[http.StatusUnauthorized], counts[http.StatusTooManyRequests])
		})
	}
}

// TestEditorsCLI: `newsletter editors add|list|disable|enable|reset` and their exit statuses, the
// one-time link (a second use is 410), and the audit log of the command line (actor cli), with
// `subscribers import`, `export` and `erase`.
func TestEditorsCLI(t *testing.T) {
	s := startService(t, nil)
	for _, c := range []struct {
		name string
		args []string
		code int
		out  string // in stderr
	}{
		{"NoSubcommand", []string{"editors"}, exitUsage, "want add, list"},
		{"NoRole", []string{"editors", "add", "ann@gazette.test"}, exitUsage, "--role"},
		{"BadRole", []string{"editors", "add", "ann@gazette.test", "--role", "owner"}, exitUsage, "want writer, publisher or admin"},
		{"NotAnAddress", []string{"editors", "add", "ann", "--role", "admin"}, exitUsage, "not an email address"},
		{"UnknownFlag", []string{"editors", "add", "ann@gazette.test", "--role", "admin", "--force"}, exitUsage, "unknown flag"},
		{"DisableNobody", []string{"editors", "disable", "nobody@gazette.test"}, exitFailure, "no editor has the address"},
		{"ResetTwo", []string{"editors", "reset", "a@gazette.test", "b@gazette.test"}, exitUsage, "want one EMAIL"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, _, errOut := s.cli(t, c.args...)
			if code != c.code || !strings.Contains(errOut, c.out) {
				t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args, code, errOut, c.code, c.out)
			}
			if c.code == exitFailure && strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Errorf("%v: more than one line on stderr:\n%s", c.args, errOut)
			}
		})
	}
	code, out, _ := s.cli(t, "editors", "add", "Ann@Gazette.test", "--name", "Ann Editor", "--role=admin")
	link := strings.TrimSpace(out)
	if code != exitOK || !strings.HasPrefix(link, s.URL+"/admin/setup/") {
		t.Fatalf("editors add: exit %d, %q", code, out)
	}
	if code, _, errOut := s.cli(t, "editors", "add", "ann@gazette.test", "--role", "writer"); code != exitFailure || !strings.Contains(errOut, "is an editor already") {
		t.Errorf("the same address again: exit %d, %q", code, errOut)
	}
	if r := s.Get(t, link); r.Status != http.StatusOK || !strings.Contains(r.Body, "ann@gazette.test") {
		t.Fatalf("the link: %d", r.Status)
	}
	if r := s.PostForm(t, link, url.Values{"password": {"short"}, "confirm": {"short"}}); r.Status != http.StatusBadRequest {
		t.Errorf("a short password: %d, want 400", r.Status)
	}
	if r := s.PostForm(t, link, url.Values{"password": {editorPassword}, "confirm": {editorPassword}}); r.Status != http.StatusOK {
		t.Fatalf("setting the password: %d", r.Status)
	}
	for _, method := range []string{"GET", "POST"} {
		if r := s.Do(t, method, link, "application/x-www-form-urlencoded", "password=x&confirm=x"); r.Status != http.StatusGone {
			t.Errorf("%s of a used link: %d, want 410", method, r.Status)
		}
	}
	loginAs(t, s, "ann@gazette.test", editorPassword)
	if code, _, errOut := s.cli(t, "editors", "disable", "ann@gazette.test"); code != exitFailure || !strings.Contains(errOut, "last enabled admin") {
		t.Errorf("disabling the last admin: exit %d, %q", code, errOut)
	}
	addEditor(t, s, "bob@gazette.test", "writer")
	if code, out, _ := s.cli(t, "editors", "disable", "bob@gazette.test"); code != exitOK || !strings.Contains(out, "disabled") {
		t.Errorf("disable: exit %d, %q", code, out)
	}
	code, out, _ = s.cli(t, "editors", "list")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != exitOK || len(lines) != 3 || !strings.Contains(lines[1], "ann@gazette.test") || !strings.Contains(lines[1], "admin") ||
		!strings.Contains(lines[1], "active") || !strings.Contains(lines[2], "bob@gazette.test") || !strings.Contains(lines[2], "disabled") {
		t.Errorf("editors list: exit %d\n%s", code, out)
	}
	if code, _, _ := s.cli(t, "editors", "enable", "bob@gazette.test"); code != exitOK {
		t.Errorf("enable: exit %d", code)
	}
	code, out, _ = s.cli(t, "editors", "reset", "ann@gazette.test")
	if code != exitOK || !strings.HasPrefix(strings.TrimSpace(out), s.URL+"/admin/setup/") {
		t.Errorf("reset: exit %d, %q", code, out)
	}
	login := s.Get(t, "/admin/login")
	if r := s.PostForm(t, "/admin/login", url.Values{"csrf": {hiddenCSRF(t, login.Body)}, "email": {"ann@gazette.test"}, "password": {editorPassword}},
		"Cookie", cookieHeader(t, login.Header, "newsletter_admin_login")); r.Status != http.StatusUnauthorized {
		t.Errorf("the old password after a reset: %d, want 401", r.Status)
	}

	// The reader list from the command line: import, export, erase, each in the audit log as cli.
	csv, err := os.CreateTemp(t.TempDir(), "*.csv")
	if err != nil {
		t.Fatal(err)
	}
	csv.WriteString("email,lang\ncarol@gazette.test,en\n")
	csv.Close()
	for _, args := range [][]string{{"subscribers", "import", csv.Name()}, {"subscribers", "export"}, {"subscribers", "erase", "carol@gazette.test"}} {
		if code, _, errOut := s.cli(t, args...); code != exitOK {
			t.Fatalf("%v: exit %d\n%s", args, code, errOut)
		}
	}
	if code, _, _ := s.cli(t, "subscribers", "erase", "carol@gazette.test"); code != exitFailure {
		t.Errorf("erasing an erased reader: exit %d, want 1", code)
	}
	var got []string
	s.DB.Select(&got, `SELECT action || ' ' || object FROM audit_log WHERE actor = 'cli' ORDER BY id`)
	// Each is recorded before it is done: the refused disable of the last admin was attempted.
	want := []string{"editor.add editor ", "editor.disable editor ", "editor.add editor ", "editor.disable editor ", "editor.enable editor ",
		"editor.reset editor ", "readers.import import 1", "readers.export ", "reader.erase reader "}
	if len(got) != len(want) {
		t.Fatalf("audit log of the command line:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for i := range want {
		if !strings.HasPrefix(got[i], want[i]) {
			t.Errorf("entry %d: %q, want %q…", i, got[i], want[i])
		}
	}
	var addresses int
	s.DB.Get(&addresses, `SELECT count(*) FROM audit_log WHERE detail LIKE '%carol%' OR object LIKE '%carol%'`)
	if addresses != 0 {
		t.Error("the audit log holds a reader's address")
	}
}
