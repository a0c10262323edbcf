package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserEditions drives the editions' pages in headless Chromium: a writer writes an edition
// in Markdown and sees it rendered beside the text, sends herself a test (caught by the SMTP
// server), cannot approve; a publisher approves and sends it now; the subscribed reader receives it
// once, and the archive shows it at the address its "view in browser" link names.
func TestBrowserEditions(t *testing.T) {
	s := startService(t, nil)
	addEditor(t, s, "wes@gazette.test", "writer")
	addEditor(t, s, "pat@gazette.test", "publisher")
	var nl int64
	if err := s.DB.Get(&nl, `INSERT INTO newsletters (slug, kind, names, langs) VALUES
		('investigations', 'editions', '{"en": "Investigations", "ru": "Расследования"}', '{en,ru}') RETURNING id`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB.Exec(`WITH r AS (INSERT INTO subscribers (email, name, lang, status, confirmed_at)
		VALUES ('reader@example.org', 'Rita', 'en', 'confirmed', now()) RETURNING id)
		INSERT INTO subscriptions (subscriber_id, newsletter_id) SELECT id, $1 FROM r`, nl); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t)
	check := func(name string) {
		t.Helper()
		if problems := eval(t, b, "check "+name, chromedp.Evaluate[[]string](adminChecks)); len(problems) > 0 {
			t.Errorf("%s: %s", name, strings.Join(problems, "; "))
		}
		screenshot(t, b, name)
	}
	login := func(email string) {
		t.Helper()
		do(t, b, "log in as "+email, chromedp.Navigate(s.URL+"/admin/login"), chromedp.WaitVisible(chromedp.ID("email")),
			chromedp.SendKeys(chromedp.ID("email"), email), chromedp.SendKeys(chromedp.ID("password"), editorPassword))
		if st := press(t, b, "form.card button[type=submit]"); st != http.StatusOK {
			t.Fatalf("login as %s: %d", email, st)
		}
	}
	do(t, b, "desktop", chromedp.EmulateViewport(1280, 900))
	login("wes@gazette.test")

	do(t, b, "open the editions", chromedp.Navigate(s.URL+"/admin/editions"), chromedp.WaitVisible(chromedp.ID("subject-"+itoa(nl))),
		chromedp.SendKeys(chromedp.ID("subject-"+itoa(nl)), "The harbour files"),
		chromedp.SendKeys(chromedp.ID("markdown-"+itoa(nl)), "# What we found\n\nThe council **knew**."))
	check("admin-editions")
	if st := press(t, b, "form[action='/admin/editions'] button"); st != http.StatusOK {
		t.Fatalf("new edition: %d", st)
	}
	var id int64
	if err := s.DB.Get(&id, `SELECT id FROM issues WHERE newsletter_id = $1`, nl); err != nil {
		t.Fatal(err)
	}
	// The preview frame renders the saved text as readers get it.
	waitFrameLoaded(t, b, s.URL+"/admin/issues/"+itoa(id)+"/preview.html")
	if text := eval(t, b, "text part", chromedp.Evaluate[string](`document.getElementById('text').textContent`)); !strings.Contains(text, "The council knew") {
		t.Errorf("text part: %q", text)
	}
	// Edit and save: the preview follows.
	do(t, b, "edit", chromedp.Evaluate[chromedp.Void](`document.getElementById('markdown').value += "\n\nAnd *said nothing*."`))
	if st := press(t, b, "#edit button[type=submit]"); st != http.StatusOK {
		t.Fatalf("save: %d", st)
	}
	preview := s.Get(t, "/admin/issues/"+itoa(id)+"/preview.html", "Cookie", "")
	if preview.Status == http.StatusOK {
		t.Error("the preview answered without a session")
	}
	check("admin-edition")
	if n := eval(t, b, "approve buttons", chromedp.Evaluate[int](`document.querySelectorAll('#approve').length`)); n != 0 {
		t.Error("a writer is offered Approve")
	}
	do(t, b, "test address", chromedp.SendKeys(chromedp.ID("to"), "wes@gazette.test"))
	if st := press(t, b, "form.test button"); st != http.StatusOK {
		t.Fatalf("test send: %d", st)
	}
	if msgs := s.SMTP.To("wes@gazette.test"); len(msgs) != 1 || !strings.Contains(string(msgs[0].Data), "[TEST]") {
		t.Fatalf("test messages: %d", len(msgs))
	}

	if st := press(t, b, "form[action='/admin/logout'] button"); st != http.StatusOK {
		t.Fatalf("logout: %d", st)
	}
	login("pat@gazette.test")
	do(t, b, "open the edition", chromedp.Navigate(s.URL+"/admin/editions/"+itoa(id)), chromedp.WaitVisible(chromedp.ID("approve")))
	if st := press(t, b, "#approve"); st != http.StatusOK {
		t.Fatalf("approve: %d", st)
	}
	// A time in the past is refused with a message.
	do(t, b, "past time", chromedp.Evaluate[chromedp.Void](`document.getElementById('send_at').value = '2020-01-01T08:00'`))
	if st := press(t, b, "form[action$='/schedule'] button"); st != http.StatusBadRequest {
		t.Errorf("scheduling in the past: %d, want 400", st)
	}
	do(t, b, "back", chromedp.Navigate(s.URL+"/admin/editions/"+itoa(id)), chromedp.WaitVisible(chromedp.ID("send-now")))
	if st := press(t, b, "#send-now"); st != http.StatusOK {
		t.Fatalf("send now: %d", st)
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(s.SMTP.To("reader@example.org")) == 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	msgs := s.SMTP.To("reader@example.org")
	if len(msgs) != 1 {
		t.Fatalf("the reader received %d messages", len(msgs))
	}
	text := parseMail(t, msgs[0]).Part(t, "text/plain").Body
	if !strings.Contains(text, "said nothing") || !strings.Contains(text, "/archive/editions/"+itoa(id)) {
		t.Errorf("the reader's text part:\n%s", text)
	}
	for time.Now().Before(deadline) {
		var status string
		s.DB.Get(&status, `SELECT status FROM issues WHERE id = $1`, id)
		if status == "sent" {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	do(t, b, "the archive", chromedp.Navigate(s.URL+"/archive/editions/"+itoa(id)), chromedp.WaitVisible(chromedp.CSS("body")))
	if body := eval(t, b, "archive text", chromedp.Text(chromedp.CSS("body"))); !strings.Contains(body, "What we found") || strings.Contains(body, "Rita") {
		t.Errorf("archive page: %q", body)
	}
	// The archive's list names the edition's newsletter and links its own address; so does the feed.
	do(t, b, "the archive's list", chromedp.Navigate(s.URL+"/archive"), chromedp.WaitVisible(chromedp.CSS("table.list")))
	row := eval(t, b, "the edition's row", chromedp.Evaluate[string](`(() => {
		const a = document.querySelector('a[href="/archive/editions/`+itoa(id)+`"]');
		return a ? a.closest('td').innerText : '';
	})()`))
	if !strings.Contains(row, "Investigations · The harbour files") {
		t.Errorf("the archive's row of the edition: %q", row)
	}
	if feed := s.Get(t, "/archive.xml").Body; !strings.Contains(feed, "<link>"+s.URL+"/archive/editions/"+itoa(id)+"</link>") {
		t.Errorf("the feed lacks the edition's address:\n%s", feed)
	}
	if r := s.Get(t, "/archive/editions/999999"); r.Status != http.StatusNotFound {
		t.Errorf("an unknown edition: %d", r.Status)
	}
}
