package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserSubscribeChoicesWelcome walks a reader through the subscribe form's choice of
// newsletters in headless Chromium: the form offers the newsletters marked for it with the default
// ones ticked (of the digests, the form's language's); she ticks Investigations; the confirmation,
// naming both, is mailed;
// confirming starts exactly those two subscriptions, each resting on her request, and the welcome
// of Investigations (the only one with a welcome in English) arrives once. Its unsubscribe link
// leaves Investigations only; asking for it again on the form while confirmed for the digest sends
// a confirmation that brings it back. Leaving everything and subscribing again sends no second
// welcome.
func TestBrowserSubscribeChoicesWelcome(t *testing.T) {
	s := startService(t, nil)
	if _, err := s.DB.Exec(`INSERT INTO newsletters (slug, kind, names, descriptions, langs, default_on, welcome) VALUES
		('investigations', 'editions', '{"en": "Investigations"}', '{"en": "Our long reads, when they are out"}', '{en}', false,
		 '{"en": {"subject": "Welcome to Investigations", "markdown": "Thank you for **joining**. Our next long read is weeks away."}}')`); err != nil {
		t.Fatal(err)
	}
	b := newBrowser(t)
	subscribe := func() {
		t.Helper()
		do(t, b, "open the form", chromedp.Navigate(s.URL+"/?lang=en"), chromedp.WaitVisible(chromedp.ID("email")))
		ticked := eval(t, b, "ticked", chromedp.Evaluate[[]string](`[...document.querySelectorAll('input[name=newsletter]:checked')].map(i => i.value)`))
		if strings.Join(ticked, " ") != "digest-en" {
			t.Fatalf("ticked by default: %v", ticked)
		}
		do(t, b, "fill the form", chromedp.SendKeys(chromedp.ID("email"), "rita@example.org"),
			chromedp.Click(chromedp.CSS(`input[value=investigations]`)))
		screenshot(t, b, "subscribe-choices")
		if st := press(t, b, "form.card button[type=submit]"); st != http.StatusOK {
			t.Fatalf("subscribe: %d", st)
		}
	}
	confirm := func(n int) {
		t.Helper()
		msgs := s.SMTP.WaitFor(t, n, 30*time.Second)
		body := parseMail(t, msgs[n-1]).Part(t, "text/plain").Body
		if !strings.Contains(body, "- Weekly digest in English\n- Investigations") || strings.Contains(body, "Russian") {
			t.Errorf("the confirmation does not name what was asked for:\n%s", body)
		}
		link := findLink(t, body, "/confirm/")
		do(t, b, "open the confirm link", chromedp.Navigate(link), chromedp.WaitVisible(chromedp.CSS("form button")))
		if st := press(t, b, "form button"); st != http.StatusOK {
			t.Fatalf("confirm: %d", st)
		}
	}
	subscribe()
	confirm(1)
	var active []string
	if err := s.DB.Select(&active, `SELECT n.slug FROM subscriptions sub JOIN newsletters n ON n.id = sub.newsletter_id
		JOIN consents c ON c.id = sub.consent_id AND c.confirmed_at IS NOT NULL
		WHERE sub.state = 'active' ORDER BY n.slug`); err != nil {
		t.Fatal(err)
	}
	if strings.Join(active, " ") != "digest-en investigations" {
		t.Fatalf("active subscriptions resting on the request: %v", active)
	}
	msgs := s.SMTP.WaitFor(t, 2, 30*time.Second)
	welcome := parseMail(t, msgs[1])
	if got := welcome.Get("Subject"); got != "Welcome to Investigations" {
		t.Fatalf("second email: %q", got)
	}
	text := welcome.Part(t, "text/plain").Body
	if !strings.Contains(text, "Thank you for joining") || !strings.Contains(text, "/manage/") || welcome.Get("List-Unsubscribe") == "" {
		t.Errorf("the welcome:\n%s", text)
	}
	if got := welcome.Get("List-Id"); got != "<investigations.gazette.test>" {
		t.Errorf("the welcome's List-Id: %q", got)
	}

	// The welcome's unsubscribe link leaves Investigations only: the page names it and offers
	// "leave everything" beside it, and the digest stays.
	unsub := strings.Trim(welcome.Get("List-Unsubscribe"), "<>")
	if !strings.HasPrefix(unsub, s.URL+"/unsubscribe/") || !strings.Contains(text, unsub) {
		t.Fatalf("the welcome's unsubscribe link %q is not the one in its text", unsub)
	}
	h1 := func() string {
		return eval(t, b, "heading", chromedp.Evaluate[string](`document.querySelector('h1').innerText`))
	}
	do(t, b, "open the welcome's unsubscribe link", chromedp.Navigate(unsub), chromedp.WaitVisible(chromedp.ID("leave-all")))
	if got := h1(); got != "Unsubscribe from Investigations?" {
		t.Errorf("the welcome's unsubscribe page: %q", got)
	}
	if st := press(t, b, "form:not(#leave-all) button"); st != http.StatusOK {
		t.Fatalf("leaving Investigations: %d", st)
	}
	if got := h1(); got != "You left Investigations" {
		t.Errorf("after leaving: %q", got)
	}
	var states []string
	subscriptions := func() string {
		t.Helper()
		states = nil
		if err := s.DB.Select(&states, `SELECT n.slug || ':' || sub.state || ':' || r.status FROM subscriptions sub
			JOIN newsletters n ON n.id = sub.newsletter_id JOIN subscribers r ON r.id = sub.subscriber_id ORDER BY n.slug`); err != nil {
			t.Fatal(err)
		}
		return strings.Join(states, " ")
	}
	if got := subscriptions(); got != "digest-en:active:confirmed investigations:left:confirmed" {
		t.Errorf("after the welcome's link: %s", got)
	}
	// A mail client's RFC 8058 one-click on the same header, later: nothing more changes.
	resp, err := http.Post(unsub, "application/x-www-form-urlencoded", strings.NewReader("List-Unsubscribe=One-Click"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || subscriptions() != "digest-en:active:confirmed investigations:left:confirmed" {
		t.Errorf("one-click again: %d, %s", resp.StatusCode, subscriptions())
	}
	var events []string
	if err := s.DB.Select(&events, `SELECT effect || ':' || coalesce(issue_id::text, '-') FROM reader_events WHERE kind = 'unsubscribe'`); err != nil {
		t.Fatal(err)
	}
	if strings.Join(events, " ") != "left:-" {
		t.Errorf("unsubscribe events: %v", events)
	}

	// Still confirmed for the digest, she asks for Investigations again on the form: a
	// confirmation naming what she asked for, and confirming brings it back, with no second welcome.
	if _, err := s.DB.Exec(`UPDATE subscribers SET confirmation_sent_at = now() - interval '1 day'`); err != nil {
		t.Fatal(err) // past the throttle on confirmations
	}
	subscribe()
	confirm(3)
	if got := subscriptions(); got != "digest-en:active:confirmed investigations:active:confirmed" {
		t.Errorf("after asking again while confirmed: %s", got)
	}

	// She leaves everything and subscribes again: a new confirmation, no second welcome.
	if _, err := s.DB.Exec(`UPDATE subscribers SET status = 'unsubscribed', unsubscribed_at = now() - interval '1 hour';
		UPDATE subscriptions SET state = 'left', left_at = now() - interval '1 hour'`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DB.Exec(`UPDATE subscribers SET confirmation_sent_at = now() - interval '1 day'`); err != nil {
		t.Fatal(err)
	}
	subscribe()
	confirm(4)
	time.Sleep(3 * time.Second) // the mailer polls every 2 s: a second welcome would be out by now
	if n := len(s.SMTP.To("rita@example.org")); n != 4 {
		t.Errorf("%d emails, want 4 (confirm, welcome, confirm, confirm)", n)
	}
}
