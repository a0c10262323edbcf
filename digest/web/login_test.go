package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"newsletter/editors"
	"newsletter/internal/testdb"
)

// setupLink finds a one-time link to set a password on a page.
var setupLink = regexp.MustCompile(`http://news\.example/admin/setup/[A-Za-z0-9_-]{43}`)

func TestAdminLogin(t *testing.T) {
	for _, c := range []struct {
		name        string
		email, pass string
		token       string // "page": the login page's; "": none; else this value
		wantStatus  int
		wantText    string
	}{
		{"Right", testEmail, testPassword, "page", http.StatusSeeOther, ""},
		{"AddressInOtherCase", "Admin@News.Example", testPassword, "page", http.StatusSeeOther, ""},
		{"WrongPassword", testEmail, "hunter2 hunter2", "page", http.StatusUnauthorized, "Wrong address or password"},
		{"UnknownAddress", "nobody@news.example", testPassword, "page", http.StatusUnauthorized, "Wrong address or password"},
		{"NotAnAddress", "not an address", testPassword, "page", http.StatusUnauthorized, "Wrong address or password"},
		{"EmptyPassword", testEmail, "", "page", http.StatusUnauthorized, "Wrong address or password"},
		{"EmptyAddressNoSharedPassword", "", testPassword, "page", http.StatusUnauthorized, "Wrong address or password"},
		{"NoFormToken", testEmail, testPassword, "", http.StatusForbidden, "expired"},
		{"WrongFormToken", testEmail, testPassword, "forged", http.StatusForbidden, "expired"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newAdminEnv(t)
			form := url.Values{"email": {c.email}, "password": {c.pass}}
			switch c.token {
			case "page":
				form.Set("csrf", e.csrf("/admin/login"))
			case "":
				e.get("/admin/login") // the cookie is set, the form field missing
			default:
				e.get("/admin/login")
				form.Set("csrf", c.token)
			}
			p := e.post("/admin/login", form)
			if p.status != c.wantStatus {
				t.Fatalf("status %d, want %d\n%s", p.status, c.wantStatus, p.body)
			}
			if !strings.Contains(p.body, c.wantText) {
				t.Errorf("body lacks %q:\n%s", c.wantText, p.body)
			}
			got := e.sessionCookie()
			if (got != nil) != (c.wantStatus == http.StatusSeeOther) {
				t.Fatalf("session cookie %v after status %d", got, p.status)
			}
			if got == nil {
				return
			}
			if loc := p.header.Get("Location"); loc != "/admin/" {
				t.Errorf("redirect to %q, want /admin/", loc)
			}
			set := strings.Join(p.header.Values("Set-Cookie"), "\n")
			for _, want := range []string{"HttpOnly", "SameSite=Lax", "Path=/admin", "Max-Age="} {
				if !strings.Contains(set, want) {
					t.Errorf("session cookie %q lacks %s", set, want)
				}
			}
			if strings.Contains(set, "Secure") {
				t.Errorf("session cookie %q is Secure on plain http", set)
			}
			if p := e.get("/admin/"); p.status != http.StatusOK {
				t.Errorf("GET /admin/ after login: %d", p.status)
			}
		})
	}
	t.Run("DisabledAndInvited", func(t *testing.T) {
		e := newAdminEnv(t)
		ctx := context.Background()
		id := e.addEditor("writer@news.example", editors.Writer)
		if _, err := e.accounts.Disable(ctx, id); err != nil {
			t.Fatal(err)
		}
		if p := e.loginAs("writer@news.example", testPassword); p.status != http.StatusUnauthorized {
			t.Errorf("a disabled editor's right password: %d, want 401", p.status)
		}
		if _, _, err := e.accounts.Add(ctx, "invited@news.example", "", editors.Writer); err != nil {
			t.Fatal(err)
		}
		if p := e.loginAs("invited@news.example", ""); p.status != http.StatusUnauthorized {
			t.Errorf("an invited editor with no password yet: %d, want 401", p.status)
		}
		got := strings.Join(e.audit(), "\n")
		for _, want := range []string{"writer@news.example login.failed editor ", "invited@news.example login.failed editor "} {
			if !strings.Contains(got, want) {
				t.Errorf("audit log lacks %q:\n%s", want, got)
			}
		}
	})
}

func TestAdminSecureCookieOnHTTPS(t *testing.T) {
	e := newAdminEnv(t)
	e.admin.opts.SecureCookies = true
	// The test server speaks plain http, so read the header rather than the jar.
	token := e.csrf("/admin/login")
	p := e.post("/admin/login", url.Values{"csrf": {token}, "email": {testEmail}, "password": {testPassword}})
	if p.status != http.StatusSeeOther {
		t.Fatalf("login: %d", p.status)
	}
	if set := p.header.Values("Set-Cookie"); !strings.Contains(strings.Join(set, "\n"), "Secure") {
		t.Errorf("cookies %q not Secure with an https base URL", set)
	}
}

// tryLogin posts one login straight to the handler from remote, with cookies.
func (e *adminEnv) tryLogin(remote, email, password string, cookies ...*http.Cookie) *httptest.ResponseRecorder {
	token := newSessionID()
	form := url.Values{"csrf": {token}, "email": {email}, "password": {password}}
	req := httptest.NewRequest("POST", "/admin/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.AddCookie(&http.Cookie{Name: loginCSRFCookie, Value: token})
	for _, c := range cookies {
		req.AddCookie(c)
	}
	req.RemoteAddr = remote
	w := httptest.NewRecorder()
	e.admin.Login(w, req)
	return w
}

func TestAdminLoginThrottled(t *testing.T) {
	e := newAdminEnv(t)
	for i := 0; i < editors.ClientLimit; i++ {
		if p := e.login("wrong password"); p.status != http.StatusUnauthorized {
			t.Fatalf("attempt %d: %d, want 401", i+1, p.status)
		}
	}
	p := e.login(testPassword)
	if p.status != http.StatusTooManyRequests {
		t.Fatalf("right password after %d failures: %d, want 429", editors.ClientLimit, p.status)
	}
	if p.header.Get("Retry-After") == "" || !strings.Contains(p.body, "Too many failed logins") {
		t.Errorf("429 without Retry-After or message: %v\n%s", p.header, p.body)
	}
	if e.sessionCookie() != nil {
		t.Error("a throttled login got a session")
	}

	t.Run("Account", func(t *testing.T) {
		e := newAdminEnv(t)
		for i := 0; i < editors.AccountLimit; i++ {
			if code := e.tryLogin(fmt.Sprintf("10.2.0.%d:4000", i), testEmail, "wrong").Code; code != http.StatusUnauthorized {
				t.Fatalf("attempt %d: %d", i+1, code)
			}
		}
		if code := e.tryLogin("192.0.2.200:4000", testEmail, testPassword).Code; code != http.StatusTooManyRequests {
			t.Fatalf("a fresh client at the account after %d failures from many: %d, want 429", editors.AccountLimit, code)
		}
		e.addEditor("other@news.example", editors.Writer)
		if code := e.tryLogin("192.0.2.200:4000", "other@news.example", testPassword).Code; code != http.StatusSeeOther {
			t.Errorf("another account meanwhile: %d, want 303", code)
		}
	})

	t.Run("Global", func(t *testing.T) {
		e := newAdminEnv(t)
		for i := 0; i < editors.GlobalLimit; i++ {
			if code := e.tryLogin(fmt.Sprintf("10.0.%d.%d:4000", i/200, i%200), fmt.Sprintf("guess%d@news.example", i), "wrong").Code; code != http.StatusUnauthorized {
				t.Fatalf("attempt %d: %d", i+1, code)
			}
		}
		if code := e.tryLogin("192.0.2.200:4000", testEmail, testPassword).Code; code != http.StatusTooManyRequests {
			t.Fatalf("a fresh client after %d failures from many: %d, want 429", editors.GlobalLimit, code)
		}
	})

	// An editor's browser that logged in before holds a device cookie naming their account:
	// guesses from everyone else at that account or any other cannot lock it out, though its own
	// client limit still holds. A forged cookie, or one of another account, counts for nothing.
	t.Run("KnownDevice", func(t *testing.T) {
		e := newAdminEnv(t)
		e.admin.opts.DeviceKey = []byte("device-key-for-the-test-0123456789")
		first := e.tryLogin("192.0.2.50:4000", testEmail, testPassword)
		var device *http.Cookie
		for _, c := range first.Result().Cookies() {
			if c.Name == deviceCookie {
				device = c
			}
		}
		if first.Code != http.StatusSeeOther || device == nil || !device.HttpOnly || device.Path != "/admin/login" {
			t.Fatalf("first login: %d, device cookie %+v", first.Code, device)
		}
		for i := 0; i < editors.GlobalLimit; i++ {
			e.tryLogin(fmt.Sprintf("10.1.%d.%d:4000", i/200, i%200), testEmail, "wrong")
		}
		if code := e.tryLogin("192.0.2.51:4000", testEmail, testPassword).Code; code != http.StatusTooManyRequests {
			t.Fatalf("a new browser during the lockout: %d, want 429", code)
		}
		forged := &http.Cookie{Name: deviceCookie, Value: "AAAAAAAAAAAAAAAAAAAAAA.1." + strings.Repeat("A", 43)}
		if code := e.tryLogin("192.0.2.51:4000", testEmail, testPassword, forged).Code; code != http.StatusTooManyRequests {
			t.Errorf("a forged device cookie during the lockout: %d, want 429", code)
		}
		if code := e.tryLogin("192.0.2.50:4000", testEmail, testPassword, device).Code; code != http.StatusSeeOther {
			t.Errorf("the editor's known browser during the lockout: %d, want 303", code)
		}
		for i := 0; i < editors.ClientLimit; i++ {
			e.tryLogin("192.0.2.60:4000", testEmail, "wrong", device)
		}
		if code := e.tryLogin("192.0.2.60:4000", testEmail, testPassword, device).Code; code != http.StatusTooManyRequests {
			t.Errorf("a known device past its own client's limit: %d, want 429", code)
		}
	})

	// Behind the operator's proxy (every request from its address), the throttle keys on the
	// entry the proxy appended, so one guesser does not lock out the editors' clients.
	t.Run("BehindProxy", func(t *testing.T) {
		e := newAdminEnv(t)
		other := "other@news.example"
		e.addEditor(other, editors.Writer)
		try := func(trust bool, forwarded, email, password string) int {
			e.admin.opts.TrustProxy = trust
			token := newSessionID()
			form := url.Values{"csrf": {token}, "email": {email}, "password": {password}}
			req := httptest.NewRequest("POST", "/admin/login", strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("X-Forwarded-For", forwarded)
			req.AddCookie(&http.Cookie{Name: loginCSRFCookie, Value: token})
			req.RemoteAddr = "10.0.0.1:4000"
			w := httptest.NewRecorder()
			e.admin.Login(w, req)
			return w.Code
		}
		for i := 0; i < editors.ClientLimit; i++ {
			// The guesser forges a first entry each time; only the proxy's last one counts.
			if code := try(true, fmt.Sprintf("192.0.2.%d, 198.51.100.66", i), fmt.Sprintf("g%d@news.example", i), "wrong"); code != http.StatusUnauthorized {
				t.Fatalf("attempt %d: %d", i+1, code)
			}
		}
		if code := try(true, "198.51.100.66", testEmail, testPassword); code != http.StatusTooManyRequests {
			t.Errorf("the guesser after %d failures: %d, want 429", editors.ClientLimit, code)
		}
		if code := try(true, "203.0.113.5", testEmail, testPassword); code != http.StatusSeeOther {
			t.Errorf("an editor behind the same proxy: %d, want 303 (logged in)", code)
		}
		// Without NEWSLETTER_TRUST_PROXY everyone is the proxy: the same guesses lock out all.
		for i := 0; i < editors.ClientLimit; i++ {
			try(false, "198.51.100.77", fmt.Sprintf("h%d@news.example", i), "wrong")
		}
		if code := try(false, "203.0.113.5", other, testPassword); code != http.StatusTooManyRequests {
			t.Errorf("without trusting the proxy, an editor after %d failures through it: %d, want 429", editors.ClientLimit, code)
		}
	})
}

func TestAdminCSRF(t *testing.T) {
	e := newAdminEnv(t)
	e.mustLogin()
	other := newSessionID()
	for _, c := range []struct {
		name  string
		token string
	}{
		{"Missing", ""},
		{"Wrong", "not-the-token"},
		{"OtherSession", csrfToken(other)},
	} {
		t.Run(c.name, func(t *testing.T) {
			form := url.Values{}
			if c.token != "" {
				form.Set("csrf", c.token)
			}
			p := e.post("/admin/logout", form)
			if p.status != http.StatusForbidden {
				t.Fatalf("status %d, want 403\n%s", p.status, p.body)
			}
			if !strings.Contains(p.body, "security token") {
				t.Errorf("403 without a clear message:\n%s", p.body)
			}
		})
	}
	if p := e.get("/admin/"); p.status != http.StatusOK {
		t.Fatalf("session ended by a forged logout: %d", p.status)
	}
}

func TestAdminRequiresSession(t *testing.T) {
	e := newAdminEnv(t)
	for _, path := range []string{"/admin/", "/admin/digest/en", "/admin/issues/1", "/admin/issues/1/preview.html", "/admin/articles/1/edit",
		"/admin/account", "/admin/editors", "/admin/audit"} {
		p := e.get(path)
		if p.status != http.StatusSeeOther || p.header.Get("Location") != "/admin/login" {
			t.Errorf("GET %s without session: %d to %q, want 303 to /admin/login", path, p.status, p.header.Get("Location"))
		}
	}
	for _, path := range []string{"/admin/logout", "/admin/issues/1/approve", "/admin/articles/1/hide", "/admin/digest/en/articles",
		"/admin/editors", "/admin/account/logout-everywhere"} {
		p := e.post(path, url.Values{"csrf": {csrfToken(newSessionID())}})
		if p.status != http.StatusForbidden {
			t.Errorf("POST %s without session: %d, want 403", path, p.status)
		}
	}
}

func TestAdminSessionFixation(t *testing.T) {
	e := newAdminEnv(t)
	e.mustLogin()
	before := e.sessionCookie().Value
	// Logging in again while holding a session must replace its id, and the old one must die.
	if p := e.login(testPassword); p.status != http.StatusSeeOther {
		t.Fatalf("second login: %d", p.status)
	}
	after := e.sessionCookie().Value
	if after == before {
		t.Fatal("the session id did not change at login")
	}
	if _, err := e.accounts.Session(context.Background(), before, ""); !errors.Is(err, editors.ErrNoSession) {
		t.Fatalf("the session id held before login: %v, want ErrNoSession", err)
	}
	// A planted cookie that names no session is replaced too.
	planted := newSessionID()
	u, _ := url.Parse(e.srv.URL + "/admin/")
	e.c.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: planted, Path: "/admin"}})
	if p := e.login(testPassword); p.status != http.StatusSeeOther {
		t.Fatalf("login with a planted cookie: %d", p.status)
	}
	if e.sessionCookie().Value == planted {
		t.Fatal("login kept a planted session id")
	}
}

func TestAdminLogout(t *testing.T) {
	e := newAdminEnv(t)
	token := e.mustLogin()
	id := e.sessionCookie().Value
	p := e.post("/admin/logout", url.Values{"csrf": {token}})
	if p.status != http.StatusSeeOther || p.header.Get("Location") != "/admin/login" {
		t.Fatalf("logout: %d to %q", p.status, p.header.Get("Location"))
	}
	if e.sessionCookie() != nil {
		t.Error("the session cookie survived logout")
	}
	if p := e.get("/admin/"); p.status != http.StatusSeeOther {
		t.Errorf("GET /admin/ after logout: %d, want 303 to the login", p.status)
	}
	// Replaying the old cookie does not help: the session is gone from the database.
	u, _ := url.Parse(e.srv.URL + "/admin/")
	e.c.Jar.SetCookies(u, []*http.Cookie{{Name: sessionCookie, Value: id, Path: "/admin"}})
	if p := e.get("/admin/"); p.status != http.StatusSeeOther {
		t.Errorf("GET /admin/ with the logged-out cookie: %d, want 303", p.status)
	}
	got := strings.Join(e.audit(), "\n")
	if !strings.Contains(got, testEmail+" login editor ") || !strings.Contains(got, testEmail+" logout editor ") {
		t.Errorf("audit log lacks the login and logout:\n%s", got)
	}
}

// TestSharedPassword: NEWSLETTER_ADMIN_PASSWORD, kept one release for compatibility, logs in as an
// admin with no account (empty address) while no editor has a password of their own; every page
// says how to move on; once an editor has a password it is refused, and its sessions end.
func TestSharedPassword(t *testing.T) {
	const shared = "the old shared password"
	e := newAdminEnvWith(t, testdb.New(t), editors.Options{SharedPassword: shared})
	p := e.get("/admin/login")
	if !strings.Contains(p.body, "leave the address empty") {
		t.Errorf("the login page does not tell how the shared password logs in:\n%s", p.body)
	}
	if p := e.loginAs("", "wrong"); p.status != http.StatusUnauthorized {
		t.Fatalf("a wrong shared password: %d, want 401", p.status)
	}
	if p := e.loginAs("", shared); p.status != http.StatusSeeOther {
		t.Fatalf("the shared password: %d, want 303\n%s", p.status, p.body)
	}
	home := e.get("/admin/")
	if home.status != http.StatusOK || !strings.Contains(home.body, "newsletter editors add you@example.org --role admin") {
		t.Fatalf("the overview with the shared password: %d, no banner:\n%s", home.status, home.body)
	}
	if p := e.get("/admin/editors"); p.status != http.StatusOK {
		t.Errorf("the shared password is no admin: GET /admin/editors %d", p.status)
	}
	// An admin invites themself; the shared session lives on until the link is used.
	token := e.csrf("/admin/editors")
	p = e.post("/admin/editors", url.Values{"csrf": {token}, "email": {"first@news.example"}, "role": {"admin"}})
	link := setupLink.FindString(p.body)
	if p.status != http.StatusOK || link == "" {
		t.Fatalf("invite: %d, no link:\n%s", p.status, p.body)
	}
	if p := e.get("/admin/"); p.status != http.StatusOK {
		t.Fatalf("the shared session after an invitation: %d", p.status)
	}
	path := strings.TrimPrefix(link, "http://news.example")
	if p := e.post(path, url.Values{"password": {testPassword}, "confirm": {testPassword}}); p.status != http.StatusOK {
		t.Fatalf("setting the password: %d\n%s", p.status, p.body)
	}
	if p := e.get("/admin/"); p.status != http.StatusSeeOther {
		t.Errorf("the shared session once an editor has a password: %d, want 303 to the login", p.status)
	}
	if p := e.loginAs("", shared); p.status != http.StatusForbidden || !strings.Contains(p.body, "no longer works") {
		t.Errorf("the shared password once an editor has one: %d\n%s", p.status, p.body)
	}
	got := strings.Join(e.audit(), "\n")
	for _, want := range []string{"unknown login.failed (shared password)", "shared password login (password)",
		"shared password editor.add editor ", "first@news.example account.password.set editor "} {
		if !strings.Contains(got, want) {
			t.Errorf("audit log lacks %q:\n%s", want, got)
		}
	}
}

func TestAdminSessionLimits(t *testing.T) {
	clock := &testClock{t: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)}
	db := testdb.New(t)
	e := newAdminEnvWith(t, db, editors.Options{Now: clock.now})
	e.adminID = e.addEditor(testEmail, editors.Admin)
	e.mustLogin()
	clock.add(editors.SessionIdle - time.Minute)
	if p := e.get("/admin/"); p.status != http.StatusOK {
		t.Fatalf("used within the idle limit: %d", p.status)
	}
	clock.add(editors.SessionIdle + time.Second)
	if p := e.get("/admin/"); p.status != http.StatusSeeOther {
		t.Fatalf("after the idle limit: %d, want 303", p.status)
	}
}
