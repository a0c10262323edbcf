package main

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserNewsletters drives the newsletters' and schedule pages in headless Chromium with the
// newsroom in Moscow: a publisher changes the English digest's schedule and sees its next five
// runs in Moscow time, is shown a bad expression's error, skips the next run, creates an editions
// newsletter and writes and previews its welcome; a writer sees the pages and cannot change them.
func TestBrowserNewsletters(t *testing.T) {
	s := startService(t, map[string]string{"NEWSLETTER_TIMEZONE": "Europe/Moscow"})
	addEditor(t, s, "pat@gazette.test", "publisher")
	addEditor(t, s, "wes@gazette.test", "writer")
	var digestID int64
	if err := s.DB.Get(&digestID, `SELECT id FROM newsletters WHERE slug = 'digest-en'`); err != nil {
		t.Fatal(err)
	}
	schedule := s.URL + "/admin/newsletters/" + itoa(digestID) + "/schedule"
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
	login := func(email string) {
		t.Helper()
		do(t, b, "log in as "+email, chromedp.Navigate(s.URL+"/admin/login"), chromedp.WaitVisible(chromedp.ID("email")),
			chromedp.SendKeys(chromedp.ID("email"), email), chromedp.SendKeys(chromedp.ID("password"), editorPassword))
		if st := press(t, b, "form.card button[type=submit]"); st != http.StatusOK {
			t.Fatalf("login as %s: %d", email, st)
		}
	}
	clear := func(id string) chromedp.Action[chromedp.Void] {
		return chromedp.Evaluate[chromedp.Void](`document.getElementById('` + id + `').value = ''`)
	}
	nextRuns := func() []string {
		t.Helper()
		return eval(t, b, "next runs", chromedp.Evaluate[[]string](`[...document.querySelectorAll('#next-runs li')].map(li => li.textContent)`))
	}

	do(t, b, "desktop", chromedp.EmulateViewport(1280, 900))
	login("pat@gazette.test")

	// The default schedule (Mondays 08:00 UTC) shown in Moscow time.
	do(t, b, "open the schedule", chromedp.Navigate(schedule), chromedp.WaitVisible(chromedp.ID("schedule-spec")))
	if runs := nextRuns(); len(runs) != 5 || !strings.HasPrefix(runs[0], "Mon ") || !strings.HasSuffix(runs[0], "11:00 MSK") {
		t.Fatalf("default next runs: %v", runs)
	}
	check("admin-schedule")

	// Fridays at 09:00 in the newsroom's zone.
	do(t, b, "type a schedule", clear("schedule-spec"), chromedp.SendKeys(chromedp.ID("schedule-spec"), "0 9 * * FRI"),
		chromedp.SendKeys(chromedp.ID("max-articles"), "8"))
	if st := press(t, b, "#schedule button[type=submit]"); st != http.StatusOK {
		t.Fatalf("saving the schedule: %d", st)
	}
	runs := nextRuns()
	if len(runs) != 5 {
		t.Fatalf("next runs after saving: %v", runs)
	}
	for i, r := range runs {
		if !strings.HasPrefix(r, "Fri ") || !strings.HasSuffix(r, "09:00 MSK") {
			t.Errorf("run %d: %q, want a Friday at 09:00 MSK", i+1, r)
		}
	}

	// A bad expression: its error on the page, 400, nothing saved.
	do(t, b, "type a bad schedule", clear("schedule-spec"), chromedp.SendKeys(chromedp.ID("schedule-spec"), "every friday at nine"))
	if st := press(t, b, "#schedule button[type=submit]"); st != http.StatusBadRequest {
		t.Fatalf("a bad schedule answered %d, want 400", st)
	}
	if msg := text("#schedule-error"); !strings.Contains(msg, "not a schedule") {
		t.Errorf("error shown: %q", msg)
	}
	check("admin-schedule-error")
	var stored string
	if err := s.DB.Get(&stored, `SELECT schedule FROM newsletters WHERE id = $1`, digestID); err != nil || stored != "0 9 * * FRI" {
		t.Fatalf("stored schedule %q (%v)", stored, err)
	}

	// Skip the next run.
	do(t, b, "reload the schedule", chromedp.Navigate(schedule), chromedp.WaitVisible(chromedp.ID("next-runs")))
	first := nextRuns()[0]
	if st := press(t, b, "form[action$='/schedule/skip'] button"); st != http.StatusOK {
		t.Fatalf("skip: %d", st)
	}
	if note := text("#skip-note"); !strings.Contains(note, first) {
		t.Errorf("skip note %q does not name %q", note, first)
	}
	var skip *time.Time
	if err := s.DB.Get(&skip, `SELECT skip_run_at FROM newsletters WHERE id = $1`, digestID); err != nil || skip == nil || skip.Weekday() != time.Friday {
		t.Fatalf("skip_run_at %v (%v)", skip, err)
	}
	check("admin-schedule-skipped")

	// A new editions newsletter.
	do(t, b, "open the newsletters", chromedp.Navigate(s.URL+"/admin/newsletters"), chromedp.WaitVisible(chromedp.ID("slug")),
		chromedp.SendKeys(chromedp.ID("slug"), "friday-briefing"), chromedp.Click(chromedp.CSS(`input[name=langs][value=en]`)),
		chromedp.SendKeys(chromedp.ID("name_en"), "Friday briefing"), chromedp.SendKeys(chromedp.ID("description_en"), "The week, explained"))
	check("admin-newsletters")
	if st := press(t, b, "#create button[type=submit]"); st != http.StatusOK {
		t.Fatalf("create: %d", st)
	}
	if h1 := text("h1"); h1 != "Friday briefing" {
		t.Fatalf("after creating: %q", h1)
	}

	// Its welcome in English, then the preview.
	do(t, b, "write the welcome", chromedp.SendKeys(chromedp.ID("welcome-subject-en"), "Welcome to the Friday briefing"),
		chromedp.SendKeys(chromedp.ID("welcome-markdown-en"), "Thank you for **joining**.\n\nEvery Friday, the week explained."))
	if st := press(t, b, "#welcome-en button[type=submit]"); st != http.StatusOK {
		t.Fatalf("saving the welcome: %d", st)
	}
	src := eval(t, b, "frame src", chromedp.Evaluate[string](`document.querySelector('#welcome-en iframe').getAttribute('src')`))
	waitFrameLoaded(t, b, s.URL+src)
	preview := s.Get(t, src, "Cookie", "") // without a session: the login, never the text
	if preview.Status == http.StatusOK {
		t.Errorf("the welcome preview answered without a session")
	}
	check("admin-newsletter-welcome")
	// Chromium paints a cross-origin frame only on screen: the frame alone, in view.
	do(t, b, "show the frame", chromedp.Evaluate[chromedp.Void](`document.querySelector('#welcome-en iframe').scrollIntoView()`), chromedp.Sleep(time.Second))
	png := eval(t, b, "frame screenshot", chromedp.CaptureScreenshot())
	if err := os.WriteFile(filepath.Join(screenshotDir, "admin-newsletter-welcome-preview.png"), png, 0o644); err != nil {
		t.Fatal(err)
	}

	// A writer sees the schedule and cannot change it.
	if st := press(t, b, "form[action='/admin/logout'] button"); st != http.StatusOK {
		t.Fatalf("logout: %d", st)
	}
	login("wes@gazette.test")
	do(t, b, "writer opens the schedule", chromedp.Navigate(schedule), chromedp.WaitVisible(chromedp.ID("next-runs")))
	if n := eval(t, b, "save buttons", chromedp.Evaluate[int](`document.querySelectorAll('#schedule button, form[action*="/skip"] button, form[action*="/unskip"] button').length`)); n != 0 {
		t.Errorf("a writer is offered %d buttons that change the schedule", n)
	}
	res, err := chromedp.RunResponse(b, chromedp.Evaluate[chromedp.Void](`document.getElementById('schedule').submit()`))
	if err != nil || res == nil || res.Status != http.StatusForbidden {
		t.Fatalf("a writer's schedule post: %v %v, want 403", res, err)
	}
	check("admin-schedule-writer-403")
}
