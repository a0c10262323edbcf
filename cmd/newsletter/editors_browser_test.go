package main

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"newsletter/digest"
	"newsletter/editors"
)

// TestBrowserEditorAccounts walks an admin's first steps in headless Chromium, with TOTP required
// for admins: the link from `newsletter editors add`, the password, the TOTP setup the pages insist
// on (QR code, secret), a login with the code, my account and sessions (ending another device's),
// inviting a writer, an editor's page, and the audit log with a filter. It saves screenshots of
// the accounts, sessions and audit pages.
func TestBrowserEditorAccounts(t *testing.T) {
	s := startService(t, map[string]string{"NEWSLETTER_ADMIN_TOTP": "required"})
	ctx := context.Background()
	if _, err := digest.NewStore(s.DB, nil).SeedDemo(ctx, []string{"en", "ru"}); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := s.cli(t, "editors", "add", "ada@gazette.test", "--role", "admin", "--name", "Ada Admin")
	if code != exitOK {
		t.Fatalf("editors add: %d\n%s", code, errOut)
	}
	link := strings.TrimSpace(out)
	b := newBrowser(t)
	check := func(name string) {
		t.Helper()
		if problems := eval(t, b, "check "+name, chromedp.Evaluate[[]string](adminChecks)); len(problems) > 0 {
			t.Errorf("%s: %s", name, strings.Join(problems, "; "))
		}
		screenshot(t, b, name)
	}
	text := func(sel string) string {
		t.Helper()
		return strings.Join(strings.Fields(eval(t, b, sel, chromedp.Text(chromedp.CSS(sel)))), " ")
	}

	// The one-time link sets the password.
	do(t, b, "open the link", chromedp.EmulateViewport(1280, 900), chromedp.Navigate(link), chromedp.WaitVisible(chromedp.ID("password")))
	check("admin-setup-password")
	do(t, b, "type the password", chromedp.SendKeys(chromedp.ID("password"), editorPassword), chromedp.SendKeys(chromedp.ID("confirm"), editorPassword))
	if st := press(t, b, "form.card button[type=submit]"); st != http.StatusOK {
		t.Fatalf("setting the password: %d", st)
	}
	if h1 := text("h1"); h1 != "Password set" {
		t.Fatalf("after setting the password: %q", h1)
	}

	login := func(what string) int64 {
		t.Helper()
		do(t, b, what, chromedp.Navigate(s.URL+"/admin/login"), chromedp.WaitVisible(chromedp.ID("email")),
			chromedp.SendKeys(chromedp.ID("email"), "ada@gazette.test"), chromedp.SendKeys(chromedp.ID("password"), editorPassword))
		return press(t, b, "form.card button[type=submit]")
	}
	// TOTP is required for admins: the pages send Ada to set it up before anything else.
	if st := login("log in"); st != http.StatusOK {
		t.Fatalf("login: %d", st)
	}
	if h1 := text("h1"); h1 != "Two-factor login" || !strings.Contains(text("p.notice.bad"), "Admins need two-factor login") {
		t.Fatalf("an admin without TOTP lands on %q", h1)
	}
	do(t, b, "try the readers' page", chromedp.Navigate(s.URL+"/admin/readers"), chromedp.WaitVisible(chromedp.ID("totp-secret")))
	secret, uri := text("#totp-secret"), text("#totp-uri")
	if len(secret) != 32 || !strings.HasPrefix(uri, "otpauth://totp/The%20Test%20Gazette:ada@gazette.test?") {
		t.Fatalf("TOTP setup shows secret %q, URI %q", secret, uri)
	}
	if w := eval(t, b, "QR code", chromedp.Evaluate[float64](`document.querySelector('img.qr').naturalWidth`)); w == 0 {
		t.Error("the QR code does not load (is data: allowed for images?)")
	}
	check("admin-totp-setup")
	// The replay and the next code below derive from this moment, not from the clock when they are
	// typed: a 30-second step can turn in between, making "the same code" a fresh one.
	switchedAt := time.Now()
	switchCode := editors.TOTPCode(secret, switchedAt)
	do(t, b, "type the code", chromedp.SendKeys(chromedp.ID("code"), switchCode))
	if st := press(t, b, "form.stack button[type=submit]"); st != http.StatusOK {
		t.Fatalf("switching TOTP on: %d", st)
	}
	if flash := text("p.notice"); !strings.HasPrefix(flash, "Two-factor login is on") {
		t.Fatalf("after switching TOTP on: %q", flash)
	}

	// Log out; a login now asks for the code, and a code counts once.
	if st := press(t, b, "header nav form button"); st != http.StatusOK {
		t.Fatalf("logout: %d", st)
	}
	if st := login("log in with TOTP"); st != http.StatusOK {
		t.Fatalf("password step: %d", st)
	}
	check("admin-login-code")
	do(t, b, "a used code", chromedp.SendKeys(chromedp.ID("code"), switchCode))
	if st := press(t, b, "form.card button[type=submit]"); st != http.StatusUnauthorized {
		t.Errorf("the code that switched TOTP on, again: %d, want 401", st)
	}
	do(t, b, "the next code", chromedp.WaitVisible(chromedp.ID("code")), chromedp.SendKeys(chromedp.ID("code"), editors.TOTPCode(secret, switchedAt.Add(30*time.Second))))
	if st := press(t, b, "form.card button[type=submit]"); st != http.StatusOK {
		t.Fatalf("code step: %d", st)
	}
	if h1 := text("h1"); h1 != "Editor overview" {
		t.Fatalf("after the code: %q", h1)
	}

	// Another device of Ada's, and her sessions: she ends it.
	store := editors.NewStore(s.DB, []byte(e2eSecret), editors.Options{})
	ada, err := store.ByEmail(ctx, "ada@gazette.test")
	if err != nil {
		t.Fatal(err)
	}
	other, err := store.StartSession(ctx, ada, editors.StageFull, "", "198.51.100.7", "Firefox 128")
	if err != nil {
		t.Fatal(err)
	}
	do(t, b, "my account", chromedp.Navigate(s.URL+"/admin/account"), chromedp.WaitVisible(chromedp.ID("sessions")))
	rows := text("#sessions tbody")
	if !strings.Contains(rows, "Firefox 128") || !strings.Contains(rows, "198.51.100.7") || !strings.Contains(rows, "this session") {
		t.Errorf("the sessions list: %q", rows)
	}
	check("admin-account-sessions")
	if st := press(t, b, "#sessions tbody tr:not(:has(.tag)) button"); st != http.StatusOK {
		t.Fatalf("ending the other session: %d", st)
	}
	if _, err := store.Session(ctx, other, ""); err == nil {
		t.Error("the ended session still works")
	}

	// Invite a writer: the page shows the one-time link.
	do(t, b, "editors", chromedp.Navigate(s.URL+"/admin/editors"), chromedp.WaitVisible(chromedp.ID("invite-email")),
		chromedp.SendKeys(chromedp.ID("invite-email"), "will@gazette.test"), chromedp.SendKeys(chromedp.ID("invite-name"), "Will Writer"))
	if st := press(t, b, "form.row button[type=submit]"); st != http.StatusOK {
		t.Fatalf("invite: %d", st)
	}
	if l := text("#setup-link"); !strings.HasPrefix(l, s.URL+"/admin/setup/") {
		t.Fatalf("the invitation shows %q", l)
	}
	check("admin-editor-invited")
	do(t, b, "editors again", chromedp.Navigate(s.URL+"/admin/editors"), chromedp.WaitVisible(chromedp.ID("editors")))
	if rows := strings.ToLower(text("#editors tbody")); !strings.Contains(rows, "will@gazette.test will writer writer invited") {
		t.Errorf("the editors list: %q", rows)
	}
	check("admin-editors")
	do(t, b, "Ada's page", chromedp.Navigate(s.URL+"/admin/editors/"+itoa(ada.ID)), chromedp.WaitVisible(chromedp.ID("sessions")))
	check("admin-editor")
	// Her sessions' End buttons post under her page, not under the viewer's own account.
	endAction := eval(t, b, "an End button", chromedp.AttributeValue("#sessions tbody form", "action")).Value
	if prefix := "/admin/editors/" + itoa(ada.ID) + "/sessions/"; !strings.HasPrefix(endAction, prefix) || !strings.HasSuffix(endAction, "/end") {
		t.Errorf("an End button on Ada's page posts to %q, want %s…/end", endAction, prefix)
	}
	// The last admin stays one.
	if st := press(t, b, `form[action$="/disable"] button`); st != http.StatusConflict {
		t.Errorf("disabling the last admin: %d, want 409", st)
	}

	// The audit log, and a filter.
	do(t, b, "audit log", chromedp.Navigate(s.URL+"/admin/audit"), chromedp.WaitVisible(chromedp.ID("audit")))
	all := text("#audit tbody")
	for _, want := range []string{"cli editor.add", "ada@gazette.test account.password.set", "ada@gazette.test account.totp.on",
		"ada@gazette.test login.failed", "ada@gazette.test session.end", "ada@gazette.test editor.add", "ada@gazette.test editor.disable"} {
		if !strings.Contains(all, want) {
			t.Errorf("the audit log lacks %q:\n%s", want, all)
		}
	}
	check("admin-audit")
	do(t, b, "filter", chromedp.SetValue(chromedp.ID("f-action"), "login"))
	if st := press(t, b, "form.filters button"); st != http.StatusOK {
		t.Fatalf("filter: %d", st)
	}
	n := eval(t, b, "rows", chromedp.Evaluate[float64](`document.querySelectorAll('#audit tbody tr').length`))
	logins := eval(t, b, "login rows", chromedp.Evaluate[float64](`[...document.querySelectorAll('#audit tbody tr td:nth-child(3)')].filter(td => td.textContent === 'login').length`))
	if n != 2 || logins != 2 {
		t.Errorf("filtered by login: %v rows, %v of them logins; want 2", n, logins)
	}
	check("admin-audit-filtered")
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }
