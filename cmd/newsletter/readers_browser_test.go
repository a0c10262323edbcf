package main

import (
	"context"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"newsletter/subscribers"
)

// seedReaderHistory fills the list with three months of readers: confirmations, unsubscribes,
// bounces and complaints spread over the weeks, so the chart has something to draw.
func seedReaderHistory(t *testing.T, s *service) {
	t.Helper()
	for _, q := range []string{
		`INSERT INTO subscribers (email, lang, status, confirmed_at)
		 SELECT 'reader' || g || '@gazette.test', CASE WHEN g % 3 = 0 THEN 'ru' ELSE 'en' END, 'confirmed', now()
		 FROM generate_series(1, 80) g`,
		`INSERT INTO subscriptions (subscriber_id, newsletter_id)
		 SELECT s.id, n.id FROM subscribers s JOIN newsletters n ON n.kind = 'digest' AND n.lang = s.lang`,
		`INSERT INTO consents (subscriber_id, source, text_version, created_at, confirmed_at)
		 SELECT id, 'form', 'v1', at, at FROM (SELECT id, now() - ((id * 37) % 84) * interval '1 day' AS at FROM subscribers) x`,
		`UPDATE subscribers SET status = 'unsubscribed', unsubscribed_at = now() - ((id * 11) % 80) * interval '1 day' WHERE id % 5 = 0`,
		`UPDATE subscribers SET status = 'bounced', bounced_at = now() - ((id * 13) % 80) * interval '1 day', bounce_reason = '550 5.1.1 no such user' WHERE id % 9 = 1`,
		`UPDATE subscribers SET status = 'complained', complained_at = now() - ((id * 7) % 80) * interval '1 day' WHERE id % 17 = 2`,
		`INSERT INTO subscribers (email, lang, status) VALUES ('waiting@gazette.test', 'en', 'pending')`,
	} {
		s.DB.MustExec(q)
	}
}

// TestBrowserReaders drives the readers' pages in headless Chromium: from the overview's
// navigation to the figures and the weekly chart (drawn, labelled, no wider than a phone), a
// lookup by address, the reader's page, a language change, and an unsubscribe through its confirm
// step. It saves screenshots of each page for a person to look at.
func TestBrowserReaders(t *testing.T) {
	const password = "editor password for the readers test"
	const ann = "ann@gazette.test"
	s := startService(t, map[string]string{"NEWSLETTER_ADMIN_PASSWORD": password})
	seedReaderHistory(t, s)
	// Ann signs up through the form and confirms from her email: her consent is on record.
	if r := s.PostForm(t, "/subscribe", url.Values{"email": {ann}, "name": {"Ann"}, "lang": {"en"}}); r.Status != 200 {
		t.Fatalf("subscribe: %d", r.Status)
	}
	if r := s.PostForm(t, findLink(t, parseMail(t, s.SMTP.WaitFor(t, 1, 30*time.Second)[0]).Part(t, "text/plain").Body, "/confirm/"), nil); r.Status != 200 {
		t.Fatalf("confirm: %d", r.Status)
	}
	// One issue went to her, and a mailbox provider later reported a soft bounce of it.
	var annID, issueID int64
	s.DB.Get(&annID, `SELECT id FROM subscribers WHERE email = $1`, ann)
	if err := s.DB.Get(&issueID, `INSERT INTO issues (newsletter_id, lang, window_start, window_end, status, started_at, finished_at)
		VALUES ((SELECT id FROM newsletters WHERE slug = 'digest-en'), 'en', now() - interval '8 days', now() - interval '1 day', 'sent', now() - interval '1 day', now() - interval '1 day') RETURNING id`); err != nil {
		t.Fatal(err)
	}
	s.DB.MustExec(`INSERT INTO deliveries (issue_id, subscriber_id, status, attempts, sent_at) VALUES ($1, $2, 'sent', 2, now() - interval '1 day')`, issueID, annID)
	s.DB.MustExec(`INSERT INTO reader_events (kind, subscriber_id, issue_id, reason, source, external_id, occurred_at)
		VALUES ('soft', $1, $2, '452 4.2.2 <address>: mailbox full', 'imap', 'browser-1', now() - interval '20 hours')`, annID, issueID)

	ctx := newBrowser(t)
	do(t, ctx, "log in", chromedp.EmulateViewport(1280, 900), chromedp.Navigate(s.URL+"/admin/login"), chromedp.WaitVisible(chromedp.ID("password")),
		chromedp.SendKeys(chromedp.ID("password"), password))
	if st := press(t, ctx, "form.card button[type=submit]"); st != 200 {
		t.Fatalf("login answered %d", st)
	}
	// The overview's navigation leads to the readers' pages.
	if st := press(t, ctx, `header nav a[href="/admin/readers"]`); st != 200 {
		t.Fatalf("the readers' page answered %d", st)
	}
	if h1 := eval(t, ctx, "heading", chromedp.Text(chromedp.CSS("h1"))); h1 != "Readers" {
		t.Fatalf("the navigation led to %q", h1)
	}

	// The chart is drawn: one bar per figure that is not zero, each with a size on screen, and
	// its labels are text in the page (read by screen readers, found by search).
	sum, err := subscribers.NewStore(s.DB, []byte(e2eSecret)).Summary(context.Background(), 12)
	if err != nil {
		t.Fatal(err)
	}
	wantBars := 0
	for _, w := range sum.Weeks {
		for _, v := range []int{w.Confirmed, w.Unsubscribed, w.Bounced, w.Complained} {
			if v > 0 {
				wantBars++
			}
		}
	}
	if wantBars < 12 {
		t.Fatalf("the seeded history gives only %d bars", wantBars)
	}
	drawn := eval(t, ctx, "bars drawn", chromedp.Evaluate[int](`[...document.querySelectorAll('figure.chart svg rect.bar')].filter(r => { const b = r.getBoundingClientRect(); return b.width > 0 && b.height > 0; }).length`))
	if drawn != wantBars {
		t.Errorf("%d bars drawn, want %d", drawn, wantBars)
	}
	labels := eval(t, ctx, "chart labels", chromedp.Evaluate[[]string](`[...document.querySelectorAll('figure.chart svg text')].map(t => t.textContent)`))
	joined := strings.Join(labels, "|")
	for _, want := range []string{"Confirmations (", "Unsubscribes (", "Bounces (", "Complaints (", "weeks from Monday, UTC", sum.Weeks[11].Start.UTC().Format("2 Jan")} {
		if !strings.Contains(joined, want) {
			t.Errorf("the chart lacks the label %q: %v", want, labels)
		}
	}
	if name := eval(t, ctx, "chart name", chromedp.Evaluate[string](`(() => { const s = document.querySelector('figure.chart svg'); return s.getAttribute('role') + ': ' + s.getAttribute('aria-labelledby').split(' ').map(id => document.getElementById(id).textContent).join(' '); })()`)); !strings.HasPrefix(name, "img: New confirmations") {
		t.Errorf("the chart is announced as %q", name)
	}
	rows := eval(t, ctx, "table rows", chromedp.Evaluate[int](`document.querySelectorAll('table.weekly tbody tr').length`))
	if rows != 12 {
		t.Errorf("the chart's table has %d rows, want 12", rows)
	}
	if problems := eval(t, ctx, "check readers page", chromedp.Evaluate[[]string](adminChecks)); len(problems) > 0 {
		t.Errorf("readers page: %s", strings.Join(problems, "; "))
	}
	screenshot(t, ctx, "admin-readers")
	do(t, ctx, "phone view", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2), chromedp.EmulateMobile), chromedp.Reload(),
		chromedp.WaitVisible(chromedp.CSS("figure.chart svg")))
	if problems := eval(t, ctx, "check readers page on a phone", chromedp.Evaluate[[]string](adminChecks)); len(problems) > 0 {
		t.Errorf("readers page on a phone: %s", strings.Join(problems, "; "))
	}
	screenshot(t, ctx, "admin-readers-phone")
	do(t, ctx, "desktop again", chromedp.EmulateViewport(1280, 900), chromedp.Reload(), chromedp.WaitVisible(chromedp.ID("lookup-email")))

	// A lookup by her address opens Ann's page, named by her uuid.
	do(t, ctx, "type the address", chromedp.SendKeys(chromedp.ID("lookup-email"), "Ann@Gazette.test"))
	if st := press(t, ctx, `form[action="/admin/readers/lookup"] button`); st != 200 {
		t.Fatalf("the lookup answered %d", st)
	}
	loc := eval(t, ctx, "location", chromedp.Location())
	if !readerPath.MatchString(strings.TrimPrefix(loc, s.URL)) {
		t.Fatalf("the lookup led to %s", loc)
	}
	page := strings.Join(strings.Fields(eval(t, ctx, "reader page", chromedp.Text(chromedp.CSS("main")))), " ")
	for _, want := range []string{ann, "Status confirmed", "consent, confirmed", "other", "#" + strconv.FormatInt(issueID, 10) + " · en",
		"mailbox full", "soft", "imap", "lookup found"} {
		if !strings.Contains(page, want) {
			t.Errorf("the reader's page lacks %q:\n%s", want, page)
		}
	}
	// Consents keep the browser family only: a client that is no browser is "other".
	if strings.Contains(page, "Go-http-client") {
		t.Errorf("the reader's page shows the whole user agent:\n%s", page)
	}
	if problems := eval(t, ctx, "check reader page", chromedp.Evaluate[[]string](adminChecks)); len(problems) > 0 {
		t.Errorf("reader page: %s", strings.Join(problems, "; "))
	}
	screenshot(t, ctx, "admin-reader")

	// Her language, to Russian.
	do(t, ctx, "choose Russian", chromedp.SetValue(chromedp.ID("reader-lang"), "ru"))
	if st := press(t, ctx, `form[action$="/lang"] button`); st != 200 {
		t.Fatalf("the language change answered %d", st)
	}
	if notice := eval(t, ctx, "notice", chromedp.Text(chromedp.CSS("p.notice"))); notice != "Language changed." {
		t.Errorf("after the change: %q", notice)
	}
	var lang, status string
	if s.DB.Get(&lang, `SELECT lang FROM subscribers WHERE id = $1`, annID); lang != "ru" {
		t.Errorf("language %q, want ru", lang)
	}

	// Unsubscribe: the button opens the confirm step, which wants its box ticked.
	if st := press(t, ctx, `form[action$="/unsubscribe"] button`); st != 200 {
		t.Fatalf("the confirm step answered %d", st)
	}
	if h1 := eval(t, ctx, "confirm step", chromedp.Text(chromedp.CSS("h1"))); h1 != "Unsubscribe this reader?" {
		t.Fatalf("the confirm step says %q", h1)
	}
	if problems := eval(t, ctx, "check confirm step", chromedp.Evaluate[[]string](adminChecks)); len(problems) > 0 {
		t.Errorf("confirm step: %s", strings.Join(problems, "; "))
	}
	screenshot(t, ctx, "admin-reader-unsubscribe")
	// Unticked, the browser keeps the form: nothing changes.
	do(t, ctx, "press unticked", chromedp.Click(chromedp.CSS("form.confirm-step button")), chromedp.Sleep(300*time.Millisecond))
	if s.DB.Get(&status, `SELECT status FROM subscribers WHERE id = $1`, annID); status != "confirmed" {
		t.Fatalf("an unticked confirm step changed the reader to %s", status)
	}
	do(t, ctx, "tick the box", chromedp.Click(chromedp.ID("confirm")))
	if st := press(t, ctx, "form.confirm-step button"); st != 200 {
		t.Fatalf("the unsubscribe answered %d", st)
	}
	if notice := eval(t, ctx, "notice", chromedp.Text(chromedp.CSS("p.notice"))); !strings.HasPrefix(notice, "Unsubscribed") {
		t.Errorf("after unsubscribing: %q", notice)
	}
	if st := eval(t, ctx, "status", chromedp.Text(chromedp.CSS(".bar .status"))); strings.ToLower(st) != "unsubscribed" {
		t.Errorf("the page shows the status %q", st)
	}
	if s.DB.Get(&status, `SELECT status FROM subscribers WHERE id = $1`, annID); status != "unsubscribed" {
		t.Errorf("status %q, want unsubscribed", status)
	}
	if n := eval(t, ctx, "unsubscribe button", chromedp.Evaluate[int](`document.querySelectorAll('form[action$="/unsubscribe"]').length`)); n != 0 {
		t.Error("the page still offers to unsubscribe a reader who left")
	}
	screenshot(t, ctx, "admin-reader-unsubscribed")
}
