package main

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"newsletter/subscribers"
)

// TestSubscribeEndToEnd runs the whole opt-in through serve: the form, the confirmation email over
// SMTP (parsed as MIME), the confirm page and button, then the unsubscribe link as a mail client's
// RFC 8058 one-click POST.
func TestSubscribeEndToEnd(t *testing.T) {
	tests := []struct {
		name, lang, wantSubject, wantButton string
	}{
		{"English", "en", "The Test Gazette", "Yes, subscribe me"},
		{"Russian", "ru", "The Test Gazette", "Да, подписаться"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := startService(t, nil)
			email := "reader-" + tt.lang + "@example.org"

			page := s.Get(t, "/?lang="+tt.lang)
			if page.Status != 200 || !strings.Contains(page.Body, `<html lang="`+tt.lang+`">`) {
				t.Fatalf("subscribe page: %d", page.Status)
			}
			res := s.PostForm(t, "/subscribe", url.Values{"email": {email}, "name": {"Reader"}, "lang": {tt.lang}})
			if res.Status != 200 {
				t.Fatalf("subscribe: %d\n%s", res.Status, res.Body)
			}

			msgs := s.SMTP.WaitFor(t, 1, 30*time.Second)
			if len(msgs) != 1 || len(msgs[0].To) != 1 || msgs[0].To[0] != email {
				t.Fatalf("want one mail to %s, got %d", email, len(msgs))
			}
			m := parseMail(t, msgs[0])
			if m.Type != "multipart/alternative" {
				t.Errorf("mail is %s, want multipart/alternative", m.Type)
			}
			if !strings.Contains(m.Get("Subject"), tt.wantSubject) {
				t.Errorf("subject %q", m.Get("Subject"))
			}
			text, html := m.Part(t, "text/plain"), m.Part(t, "text/html")
			if text.Charset != "utf-8" || html.Charset != "utf-8" {
				t.Errorf("charsets %q, %q, want utf-8", text.Charset, html.Charset)
			}
			link := findLink(t, text.Body, "/confirm/")
			if htmlLink := findLink(t, html.Body, "/confirm/"); htmlLink != link {
				t.Error("the HTML part links elsewhere than the text part")
			}
			if !strings.HasPrefix(link, s.URL+"/confirm/") {
				t.Fatalf("confirm link %s is not under the base URL", redactToken(link))
			}

			// Mail scanners open links: GET shows one button and changes nothing.
			confirmPage := s.Get(t, link)
			if confirmPage.Status != 200 || strings.Count(confirmPage.Body, "<button") != 1 || !strings.Contains(confirmPage.Body, tt.wantButton) {
				t.Fatalf("confirm page: %d\n%s", confirmPage.Status, confirmPage.Body)
			}
			if st := readerStatus(t, s, email); st != "pending" {
				t.Fatalf("after GET: %s, want pending", st)
			}
			if r := s.PostForm(t, link, nil); r.Status != 200 {
				t.Fatalf("confirm POST: %d", r.Status)
			}
			if st := readerStatus(t, s, email); st != "confirmed" {
				t.Fatalf("after POST: %s, want confirmed", st)
			}

			// A confirmed reader who fills the form again gets the same answer and no new email.
			again := s.PostForm(t, "/subscribe", url.Values{"email": {email}, "name": {"Reader"}, "lang": {tt.lang}})
			if again.Status != 200 || again.Body != res.Body {
				t.Error("a confirmed address got a different answer")
			}

			var uuid string
			if err := s.DB.Get(&uuid, `SELECT uuid FROM subscribers WHERE email = $1`, email); err != nil {
				t.Fatal(err)
			}
			unsub := subscribers.NewSigner([]byte(e2eSecret)).UnsubscribeURL(s.URL, uuid)
			if r := s.Do(t, "POST", unsub, "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click"); r.Status != 200 {
				t.Fatalf("one-click unsubscribe: %d", r.Status)
			}
			if st := readerStatus(t, s, email); st != "unsubscribed" {
				t.Fatalf("after one-click: %s, want unsubscribed", st)
			}

			metrics := s.Get(t, "/metrics").Body
			for _, want := range []string{
				`newsletter_subscribe_requests_total{result="accepted"} 2`,
				`newsletter_confirmations_total 1`,
				`newsletter_unsubscribes_total 1`,
			} {
				if !strings.Contains(metrics, want) {
					t.Errorf("metrics lack %s", want)
				}
			}
			var queued int
			if err := s.DB.Get(&queued, `SELECT count(*) FROM outbox o JOIN subscribers r ON r.id = o.subscriber_id WHERE r.email = $1`, email); err != nil {
				t.Fatal(err)
			}
			if queued != 1 {
				t.Errorf("%d confirmation emails queued for %s, want 1", queued, email)
			}
		})
	}
}

// TestSubscribeServiceHeaders checks what serve adds around the reader pages.
func TestSubscribeServiceHeaders(t *testing.T) {
	s := startService(t, map[string]string{"NEWSLETTER_CORS_ORIGINS": "https://site.example", "NEWSLETTER_SUBSCRIBE_RATE_LIMIT": "2"})
	page := s.Get(t, "/", "Accept-Language", "ru")
	if !strings.Contains(page.Body, `<html lang="ru">`) || page.Header.Get("Content-Security-Policy") == "" {
		t.Errorf("subscribe page: lang or CSP missing")
	}
	if css := s.Get(t, "/static/app.css"); css.Status != 200 || !strings.Contains(css.Body, ".field-error") {
		t.Errorf("stylesheet: %d", css.Status)
	}
	pre := s.Do(t, "OPTIONS", "/subscribe", "", "", "Origin", "https://site.example", "Access-Control-Request-Method", "POST")
	if pre.Status != 204 || pre.Header.Get("Access-Control-Allow-Origin") != "https://site.example" {
		t.Errorf("preflight: %d %v", pre.Status, pre.Header)
	}
	for i := range 2 {
		if r := s.Do(t, "POST", "/subscribe", "application/json", `{"email":"a@example.org"}`, "Origin", "https://site.example"); r.Status != 200 {
			t.Fatalf("request %d: %d", i, r.Status)
		}
	}
	r := s.Do(t, "POST", "/subscribe", "application/json", `{"email":"a@example.org"}`)
	if r.Status != 429 || r.Header.Get("Retry-After") == "" {
		t.Errorf("third request: %d, Retry-After %q", r.Status, r.Header.Get("Retry-After"))
	}
	if tok := s.Get(t, "/confirm/forged"); tok.Status != 404 || tok.Header.Get("Cache-Control") != "no-store" {
		t.Errorf("forged link: %d, Cache-Control %q", tok.Status, tok.Header.Get("Cache-Control"))
	}
}

func readerStatus(t *testing.T, s *service, email string) string {
	t.Helper()
	var st string
	if err := s.DB.Get(&st, `SELECT status FROM subscribers WHERE email = $1`, email); err != nil {
		t.Fatal(err)
	}
	return st
}
