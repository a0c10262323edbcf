package main

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"

	"newsletter/digest"
	"newsletter/subscribers"
	"newsletter/subscribers/bounce"
)

// TestNoReaderDataInLogs runs readers through the service as it runs in production (serve, and
// `digest send` beside it) with the log at debug level: they subscribe from the form and the API
// behind a proxy, a bot fills the honeypot, one client is rate limited, they confirm; a digest
// goes out with a 550 that quotes one reader's address, a provider's webhook bounces another,
// one downloads their data and unsubscribes, two erase themselves. No log line of either process
// holds a reader's address (any case, or its local part) or their IP, and after the erasures no
// stored server text holds the erased addresses.
func TestNoReaderDataInLogs(t *testing.T) {
	const key = "mailgun-privacy-signing-key"
	s := startService(t, map[string]string{
		"NEWSLETTER_TRUST_PROXY":          "true",
		"NEWSLETTER_SUBSCRIBE_RATE_LIMIT": "2",
		"NEWSLETTER_BOUNCE_ADDRESS":       bounceBase,
		"NEWSLETTER_MAILGUN_SIGNING_KEY":  key,
	})
	type reader struct{ email, ip, json string }
	ann := reader{"Ann.Lee@example.org", "203.0.113.77", ""}
	bob := reader{"bob.flow@example.net", "2001:db8:77:1::1234", `{"email":"bob.flow@example.net","name":"Bob","lang":"en"}`}
	carol := reader{"carol.flow@example.com", "198.51.100.23", ""}
	const botIP, botEmail = "192.0.2.99", "honey.pot@example.org"
	forbidden := []string{"ann.lee", "bob.flow", "carol.flow", "honey.pot", "203.0.113.", "2001:db8:77:", "198.51.100.", "192.0.2.99"}

	for _, r := range []reader{ann, bob, carol} {
		var res httpResult
		if r.json != "" {
			res = s.Do(t, "POST", "/subscribe", "application/json", r.json, "Accept", "application/json", "X-Forwarded-For", r.ip,
				"User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0")
		} else {
			res = s.PostForm(t, "/subscribe", url.Values{"email": {r.email}, "name": {"A Reader"}, "lang": {"en"}}, "X-Forwarded-For", r.ip,
				"User-Agent", "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15")
		}
		if res.Status != http.StatusOK {
			t.Fatalf("subscribe %s: %d", r.email, res.Status)
		}
	}
	if res := s.PostForm(t, "/subscribe", url.Values{"email": {botEmail}, "website": {"http://spam.example"}}, "X-Forwarded-For", botIP); res.Status != http.StatusOK {
		t.Fatalf("honeypot: %d", res.Status)
	}
	for range 2 {
		s.PostForm(t, "/subscribe", url.Values{"email": {ann.email}}, "X-Forwarded-For", ann.ip)
	}
	if res := s.PostForm(t, "/subscribe", url.Values{"email": {ann.email}}, "X-Forwarded-For", ann.ip); res.Status != http.StatusTooManyRequests {
		t.Fatalf("a fourth subscribe within the minute: %d, want 429", res.Status)
	}
	for _, m := range s.SMTP.WaitFor(t, 3, 30*time.Second) {
		link := findLink(t, parseMail(t, m).Part(t, "text/plain").Body, "/confirm/")
		if res := s.PostForm(t, link, nil); res.Status != http.StatusOK {
			t.Fatalf("confirm: %d", res.Status)
		}
	}
	uuids := map[string]string{}
	for _, r := range []reader{ann, bob, carol} {
		var uuid string
		if err := s.DB.Get(&uuid, `SELECT uuid::text FROM subscribers WHERE email = $1 AND status = 'confirmed'`, r.email); err != nil {
			t.Fatalf("%s not confirmed: %v", r.email, err)
		}
		uuids[r.email] = uuid
	}

	// The digest: Ann's server refuses her, quoting her address as servers do.
	s.SMTP.OnRcpt(func(to string) error {
		if strings.EqualFold(to, ann.email) {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1},
				Message: "<ANN.LEE@EXAMPLE.ORG>: Recipient address rejected: User unknown in virtual mailbox table (ann.lee)"}
		}
		return nil
	})
	if _, err := digest.NewStore(s.DB, nil).SeedDemo(context.Background(), []string{"en"}); err != nil {
		t.Fatal(err)
	}
	var sendLog lockedBuffer
	app := &App{stdin: strings.NewReader(""), stdout: &sendLog, stderr: &sendLog, getenv: func(k string) string { return s.Env[k] }}
	if code := runApp(context.Background(), app, []string{"digest", "send", "--lang", "en", "--yes"}); code != exitOK {
		t.Fatalf("digest send exited %d:\n%s", code, sendLog.String())
	}
	var issue int64
	if err := s.DB.Get(&issue, `SELECT id FROM issues WHERE lang = 'en' AND status = 'sent'`); err != nil {
		t.Fatal(err)
	}
	if status, _ := readerState(t, s, uuids[ann.email]); status != "bounced" {
		t.Fatalf("Ann is %s after the 550, want bounced", status)
	}

	// Carol's provider reports a bounce through its webhook, quoting her address.
	from := bounce.Address(bounceBase, []byte(e2eSecret), uuids[carol.email], issue)
	if res := s.Do(t, "POST", "/webhooks/mailgun", "application/json", mailgunBody(key, "tok-privacy-1", from, carol.email, time.Now())); res.Status != http.StatusOK {
		t.Fatalf("webhook: %d", res.Status)
	}

	signer := subscribers.NewSigner([]byte(e2eSecret))
	if res := s.Get(t, signer.ManageURL(s.URL, uuids[bob.email])+"/data.json"); res.Status != http.StatusOK {
		t.Fatalf("data export: %d", res.Status)
	}
	if res := s.Do(t, "POST", signer.UnsubscribeURL(s.URL, uuids[bob.email]), "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click"); res.Status != http.StatusOK {
		t.Fatalf("unsubscribe: %d", res.Status)
	}
	for _, r := range []reader{ann, carol} {
		if res := s.PostForm(t, signer.ManageURL(s.URL, uuids[r.email])+"/erase", url.Values{"confirm": {"yes"}}); res.Status != http.StatusOK {
			t.Fatalf("erase %s: %d", r.email, res.Status)
		}
	}

	logs := s.Log() + sendLog.String()
	for _, want := range []string{"honeypot filled", `route="POST /subscribe"`, `route="POST /manage/{token}/erase"`, "digest sender"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the log lacks %q: not the debug-level log of the whole flow", want)
		}
	}
	low := strings.ToLower(logs)
	for _, bad := range forbidden {
		if strings.Contains(low, bad) {
			for _, line := range strings.Split(logs, "\n") {
				if strings.Contains(strings.ToLower(line), bad) {
					t.Errorf("a log line holds %q: %s", bad, line)
				}
			}
		}
	}
	var texts []string
	if err := s.DB.Select(&texts, `SELECT last_error FROM deliveries UNION ALL SELECT reason FROM reader_events
		UNION ALL SELECT pause_reason FROM issues`); err != nil {
		t.Fatal(err)
	}
	for _, txt := range texts {
		if low := strings.ToLower(txt); strings.Contains(low, "ann.lee") || strings.Contains(low, "carol.flow") {
			t.Errorf("a stored server text holds an erased address: %q", txt)
		}
	}
}
