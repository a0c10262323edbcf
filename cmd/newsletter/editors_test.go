package main

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
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
