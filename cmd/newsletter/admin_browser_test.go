package main

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/emersion/go-smtp"

	"newsletter/digest"
)

// adminChecks are the reader pages' checks, with the editor pages' hidden form tokens left out of
// the label rule (a hidden field has no label to have).
var adminChecks = strings.Replace(pageChecks, "'input, select, textarea'", "'input:not([type=hidden]), select, textarea'", 1)

// articleTitles lists the titles of the coming issue's table on the digest page, in order.
const articleTitles = `[...document.querySelectorAll('table.list tbody tr td:nth-child(2) a')].map(a => a.textContent)`

// TestBrowserEditor drives the editor pages in headless Chromium: log in, open the coming digest
// with its sandboxed preview, move an article, send a test, approve. It saves screenshots of each
// page for a person to look at.
func TestBrowserEditor(t *testing.T) {
	const password = "editor password for the browser test"
	s := startService(t, map[string]string{"NEWSLETTER_ADMIN_PASSWORD": password})
	if _, err := digest.NewStore(s.DB, nil).SeedDemo(context.Background(), []string{"en", "ru"}); err != nil {
		t.Fatal(err)
	}
	ctx := newBrowser(t)

	// The editor pages send a browser without a session to the login.
	do(t, ctx, "open the editor pages", chromedp.EmulateViewport(1280, 900), chromedp.Navigate(s.URL+"/admin/"), chromedp.WaitVisible(chromedp.ID("password")))
	if loc := eval(t, ctx, "location", chromedp.Location()); !strings.HasSuffix(loc, "/admin/login") {
		t.Fatalf("without a session /admin/ shows %s", loc)
	}
	if problems := eval(t, ctx, "check login page", chromedp.Evaluate[[]string](adminChecks)); len(problems) > 0 {
		t.Errorf("login page: %s", strings.Join(problems, "; "))
	}
	screenshot(t, ctx, "admin-login")

	do(t, ctx, "wrong password", chromedp.SendKeys(chromedp.ID("password"), "guess"))
	if st := press(t, ctx, "form.card button[type=submit]"); st != 401 {
		t.Fatalf("a wrong password answered %d, want 401", st)
	}
	do(t, ctx, "right password", chromedp.WaitVisible(chromedp.ID("password")), chromedp.SendKeys(chromedp.ID("password"), password))
	if st := press(t, ctx, "form.card button[type=submit]"); st != 200 {
		t.Fatalf("login answered %d", st)
	}
	if h1 := eval(t, ctx, "overview", chromedp.Text(chromedp.CSS("h1"))); h1 != "Editor overview" {
		t.Fatalf("after login: %q", h1)
	}

	// The coming English digest: the preview frame next to the text part.
	do(t, ctx, "open the digest", chromedp.Navigate(s.URL+"/admin/digest/en"), chromedp.WaitVisible(chromedp.CSS(".preview iframe")))
	before := eval(t, ctx, "titles", chromedp.Evaluate[[]string](articleTitles))
	if len(before) < 4 {
		t.Fatalf("the digest page lists %d articles: %v", len(before), before)
	}
	// The text part wraps at 72 columns, so compare with the whitespace folded.
	if text := eval(t, ctx, "text part", chromedp.Text(chromedp.CSS(".preview pre"))); !strings.Contains(strings.Join(strings.Fields(text), " "), before[0]) {
		t.Errorf("the text part lacks the lead %q", before[0])
	}
	src := eval(t, ctx, "frame src", chromedp.Evaluate[string](`document.querySelector('.preview iframe').getAttribute('src')`))
	sandbox := eval(t, ctx, "frame sandbox", chromedp.Evaluate[string](`document.querySelector('.preview iframe').getAttribute('sandbox')`))
	if sandbox != "" {
		t.Errorf("preview frame sandbox=%q, want the empty (strictest) sandbox", sandbox)
	}
	// The frame is sandboxed into its own origin, so its content is read from the page it loads.
	waitFrameLoaded(t, ctx, s.URL+src)

	// Move the second article down: it swaps with the third in the table and in the email.
	if st := press(t, ctx, "table.list tbody tr:nth-child(2) form[action$='/down'] button"); st != 200 {
		t.Fatalf("moving down answered %d", st)
	}
	after := eval(t, ctx, "titles after the move", chromedp.Evaluate[[]string](articleTitles))
	if len(after) != len(before) || after[0] != before[0] || after[1] == before[1] {
		t.Errorf("after moving the second article down: %v, was %v", after, before)
	}
	if notice := eval(t, ctx, "notice", chromedp.Text(chromedp.CSS("p.notice"))); notice != "Order changed." {
		t.Errorf("notice %q", notice)
	}
	if problems := eval(t, ctx, "check digest page", chromedp.Evaluate[[]string](adminChecks)); len(problems) > 0 {
		t.Errorf("digest page: %s", strings.Join(problems, "; "))
	}

	// A test to the editor's own address.
	do(t, ctx, "fill the test address", chromedp.SendKeys(chromedp.ID("test-to"), "editor@gazette.test"))
	if st := press(t, ctx, "form[action$='/test'] button"); st != 200 {
		t.Fatalf("test send answered %d", st)
	}
	if notice := eval(t, ctx, "notice", chromedp.Text(chromedp.CSS("p.notice"))); notice != "Test sent." {
		t.Errorf("after the test send: %q", notice)
	}
	m := parseMail(t, s.SMTP.WaitFor(t, 1, 30*time.Second)[0])
	if subj := m.Get("Subject"); !strings.HasPrefix(subj, "[TEST] ") {
		t.Errorf("test subject %q", subj)
	}
	if !strings.Contains(m.Part(t, "text/html").Body, after[1]) {
		t.Errorf("the test email lacks %q", after[1])
	}
	do(t, ctx, "wait for the frame", chromedp.WaitVisible(chromedp.CSS(".preview iframe")), chromedp.Sleep(500*time.Millisecond))
	screenshot(t, ctx, "admin-digest-en")

	// An editor on a phone gets the same page in one column, nothing wider than the screen.
	do(t, ctx, "phone view", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile),
		chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(".preview iframe")), chromedp.Sleep(time.Second))
	if problems := eval(t, ctx, "check digest page on a phone", chromedp.Evaluate[[]string](adminChecks)); len(problems) > 0 {
		t.Errorf("digest page on a phone: %s", strings.Join(problems, "; "))
	}
	// Chromium does not paint a cross-origin frame that is off screen: bring it into view first.
	do(t, ctx, "show the frame", chromedp.Evaluate[chromedp.Void](`document.querySelector('.preview iframe').scrollIntoView()`), chromedp.Sleep(time.Second))
	screenshot(t, ctx, "admin-digest-en-phone")
	do(t, ctx, "desktop again", chromedp.EmulateViewport(1280, 900), chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS(".preview iframe")))

	// Approve: the issue is then read-only, and the overview says so.
	if st := press(t, ctx, "form[action$='/approve'] button"); st != 200 {
		t.Fatalf("approve answered %d", st)
	}
	if status := eval(t, ctx, "status", chromedp.Text(chromedp.CSS(".bar .status"))); strings.ToLower(status) != "approved" {
		t.Errorf("after approving: status %q", status)
	}
	var st string
	if err := s.DB.Get(&st, `SELECT status FROM issues WHERE lang = 'en'`); err != nil || st != "approved" {
		t.Errorf("issue status %q, %v; want approved", st, err)
	}
	var ledger int
	s.DB.Get(&ledger, `SELECT count(*) FROM deliveries`)
	if ledger != 0 {
		t.Errorf("the test send left %d ledger rows", ledger)
	}

	// The approved issue goes out to three readers, one of whom the mail server refuses; its page
	// then shows the final report.
	for _, email := range []string{"ann@gazette.test", "bob@gazette.test", "gone@gazette.test"} {
		if _, err := s.DB.Exec(`INSERT INTO subscribers (email, lang, status, confirmed_at) VALUES ($1, 'en', 'confirmed', now())`, email); err != nil {
			t.Fatal(err)
		}
	}
	subscribeAll(t, s.DB)
	s.SMTP.OnRcpt(func(to string) error {
		if to == "gone@gazette.test" {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "No such user here"}
		}
		return nil
	})
	var issueID int64
	if err := s.DB.Get(&issueID, `SELECT id FROM issues WHERE lang = 'en'`); err != nil {
		t.Fatal(err)
	}
	// The editor sends it now rather than waiting for the schedule: "Send now…" opens to the
	// button that names the readers it reaches.
	do(t, ctx, "reload the approved digest", chromedp.Reload(), chromedp.WaitVisible(chromedp.CSS("details.send-now summary")))
	do(t, ctx, "open send now", chromedp.Click(chromedp.CSS("details.send-now summary")), chromedp.WaitVisible(chromedp.CSS("details.send-now button")))
	if label := eval(t, ctx, "send now label", chromedp.Text(chromedp.CSS("details.send-now button"))); label != "Send to 3 readers now" {
		t.Errorf("send now button says %q", label)
	}
	screenshot(t, ctx, "admin-digest-send-now")
	if st := press(t, ctx, "details.send-now button"); st != 200 {
		t.Fatalf("send now answered %d", st)
	}
	if flash := eval(t, ctx, "flash", chromedp.Text(chromedp.CSS(".notice"))); !strings.Contains(flash, "Sending started") {
		t.Errorf("after send now the page says %q", flash)
	}
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		if err := s.DB.Get(&st, `SELECT status FROM issues WHERE id = $1`, issueID); err != nil {
			t.Fatal(err)
		}
		if st == "sent" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the issue is still %s after a minute", st)
		}
	}
	do(t, ctx, "the issue report", chromedp.Navigate(fmt.Sprintf("%s/admin/issues/%d", s.URL, issueID)), chromedp.WaitVisible(chromedp.CSS("h1")))
	report := strings.Join(strings.Fields(eval(t, ctx, "report", chromedp.Text(chromedp.CSS("main")))), " ")
	for _, want := range []string{"Recipients 3", "Sent 2", "Failed for good 1", "Failures by reason", "No such user here"} {
		if !strings.Contains(report, want) {
			t.Errorf("issue report lacks %q:\n%s", want, report)
		}
	}
	if problems := eval(t, ctx, "check issue report", chromedp.Evaluate[[]string](adminChecks)); len(problems) > 0 {
		t.Errorf("issue report: %s", strings.Join(problems, "; "))
	}
	screenshot(t, ctx, "admin-issue-report")

	do(t, ctx, "the Russian digest", chromedp.Navigate(s.URL+"/admin/digest/ru"), chromedp.WaitVisible(chromedp.CSS(".preview iframe")), chromedp.Sleep(500*time.Millisecond))
	screenshot(t, ctx, "admin-digest-ru")
	do(t, ctx, "the overview", chromedp.Navigate(s.URL+"/admin/"), chromedp.WaitVisible(chromedp.CSS("h1")))
	if problems := eval(t, ctx, "check overview", chromedp.Evaluate[[]string](adminChecks)); len(problems) > 0 {
		t.Errorf("overview: %s", strings.Join(problems, "; "))
	}
	screenshot(t, ctx, "admin-overview")

	do(t, ctx, "the article form", chromedp.Navigate(s.URL+"/admin/digest/ru/articles/new"), chromedp.WaitVisible(chromedp.ID("title")))
	if problems := eval(t, ctx, "check article form", chromedp.Evaluate[[]string](adminChecks)); len(problems) > 0 {
		t.Errorf("article form: %s", strings.Join(problems, "; "))
	}
	screenshot(t, ctx, "admin-article-new")

	// The preview on its own, as the frame shows it.
	do(t, ctx, "the preview page", chromedp.Navigate(s.URL+src), chromedp.WaitVisible(chromedp.CSS("body")))
	screenshot(t, ctx, "admin-preview-en")

	// Logging out ends the session: the pages send the browser back to the login.
	do(t, ctx, "back to the overview", chromedp.Navigate(s.URL+"/admin/"), chromedp.WaitVisible(chromedp.CSS("header nav form button")))
	if st := press(t, ctx, "header nav form button"); st != 200 {
		t.Fatalf("logout answered %d", st)
	}
	do(t, ctx, "after logout", chromedp.Navigate(s.URL+"/admin/digest/en"), chromedp.WaitVisible(chromedp.ID("password")))
}

// waitFrameLoaded checks that the preview frame loaded the digest (200) rather than a login page
// or an error. The frame is sandboxed into an origin of its own, so the page cannot look inside
// it; the browser's resource timing says what it fetched.
func waitFrameLoaded(t *testing.T, ctx context.Context, previewURL string) {
	t.Helper()
	res := eval(t, ctx, "frame loaded", chromedp.Evaluate[[]string](`new Promise(resolve => {
		const seen = () => performance.getEntriesByType('resource').filter(e => e.initiatorType === 'iframe').map(e => e.name + ' ' + e.responseStatus);
		const start = Date.now();
		const poll = () => { const s = seen(); if (s.length || Date.now() - start > 10000) resolve(s); else setTimeout(poll, 100); };
		poll();
	})`, chromedp.EvalAwaitPromise))
	if len(res) != 1 || res[0] != previewURL+" 200" {
		t.Errorf("the preview frame loaded %v, want %s with 200", res, previewURL)
	}
	if h := eval(t, ctx, "frame height", chromedp.Evaluate[float64](`document.querySelector('.preview iframe').getBoundingClientRect().height`)); h < 400 {
		t.Errorf("the preview frame is %.0f px high", h)
	}
}
