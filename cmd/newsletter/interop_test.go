package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"

	"newsletter/internal/mailpittest"
	"newsletter/internal/postfixtest"
	"newsletter/internal/smtptest"
	"newsletter/subscribers/bounce"
)

// relay is one SMTP server of the interop matrix: where the service sends, and what arrived.
type relay struct {
	url      string
	roots    *x509.CertPool
	received func(t *testing.T) []smtptest.Message // every message that arrived, envelope and bytes
	check    func(t *testing.T)                    // the server's own view once all is done
}

// TestInteropMatrix sends, through the whole service, a confirmation and then both languages'
// digests to servers we did not write (Postfix from Debian with strict settings and with
// extensions taken away one after another, STARTTLS required; Mailpit with AUTH PLAIN and LOGIN
// over STARTTLS) and to our in-process one. Each server must get every message exactly once,
// headers intact and DKIM valid, from the reader's signed VERP address (NEWSLETTER_BOUNCE_ADDRESS),
// which a strict Postfix takes and passes on as the envelope sender.
func TestInteropMatrix(t *testing.T) {
	postfix := func(opts postfixtest.Options) func(t *testing.T) relay {
		return func(t *testing.T) relay {
			p := postfixtest.Start(t, opts)
			return relay{url: p.URL(), roots: p.CertPool(),
				received: func(*testing.T) []smtptest.Message { return p.Messages() },
				check: func(t *testing.T) {
					// Postfix deferred or refused nothing of ours: a strict server's reject shows here.
					if lines := p.Grep(t, `(?i)\b(reject|warning: .*(pipelining|syntax)|improper command pipelining)`); len(lines) > 0 {
						t.Errorf("Postfix logged:\n%s", strings.Join(lines, "\n"))
					}
				}}
		}
	}
	mailpit := func(mechanism string) func(t *testing.T) relay {
		return func(t *testing.T) relay {
			m := mailpittest.Start(t, mailpittest.Options{Users: map[string]string{"newsletter": "s3cret pass"}, RequireSTARTTLS: true})
			u := url.URL{Scheme: "smtp", User: url.UserPassword("newsletter", "s3cret pass"), Host: m.SMTPAddr(),
				RawQuery: "tls=required&auth=" + mechanism}
			return relay{url: u.String(), roots: m.CertPool(),
				received: func(t *testing.T) []smtptest.Message {
					var out []smtptest.Message
					for _, msg := range m.Messages(t) {
						raw := m.Raw(t, msg.ID)
						// Mailpit writes the envelope sender into the stored copy as Return-Path.
						out = append(out, smtptest.Message{From: returnPathOf(t, raw), To: msg.Recipients(), Data: raw})
					}
					return out
				},
				check: func(*testing.T) {}}
		}
	}
	cases := []struct {
		name  string
		relay func(t *testing.T) relay
	}{
		{"in-process go-smtp", nil},
		{"Postfix strict", postfix(postfixtest.Options{})},
		{"Postfix without CHUNKING", postfix(postfixtest.Options{DiscardEHLO: []string{"chunking"}})},
		{"Postfix without CHUNKING, PIPELINING", postfix(postfixtest.Options{DiscardEHLO: []string{"chunking", "pipelining"}})},
		{"Postfix without CHUNKING, PIPELINING, 8BITMIME", postfix(postfixtest.Options{DiscardEHLO: []string{"chunking", "pipelining", "8bitmime"}})},
		{"Postfix without CHUNKING, PIPELINING, 8BITMIME, SMTPUTF8", postfix(postfixtest.Options{DiscardEHLO: []string{"chunking", "pipelining", "8bitmime", "smtputf8"}})},
		{"Postfix STARTTLS required", postfix(postfixtest.Options{RequireTLS: true})},
		{"Mailpit AUTH PLAIN over STARTTLS", mailpit("plain")},
		{"Mailpit AUTH LOGIN over STARTTLS", mailpit("login")},
	}
	keyFile, txt := interopDKIMKey(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			env := map[string]string{
				"NEWSLETTER_DKIM_DOMAIN": "gazette.test", "NEWSLETTER_DKIM_SELECTOR": "interop", "NEWSLETTER_DKIM_KEY_FILE": keyFile,
				"NEWSLETTER_POSTAL_ADDRESS": "The Test Gazette, 1 Example Street, Riga", "NEWSLETTER_DEMO": "true",
				"NEWSLETTER_BOUNCE_ADDRESS": interopBounce,
			}
			var r relay
			if tc.relay != nil {
				r = tc.relay(t)
				env["NEWSLETTER_SMTP_URL"] = r.url
			}
			s := startServiceApp(t, env, func(a *App) { a.smtpRoots = r.roots })
			if tc.relay == nil {
				r = relay{received: func(*testing.T) []smtptest.Message { return s.SMTP.Messages() }, check: func(*testing.T) {}}
			}
			interopWalk(t, s, r, txt)
		})
	}
}

// interopWalk subscribes a reader and confirms through the mailed link (a welcome follows), adds
// readers of both languages, runs `digest send --lang all --yes`, and checks what the relay
// received.
func interopWalk(t *testing.T, s *service, r relay, dkimTXT string) {
	ctx := context.Background()
	const subscriber = "anna@example.org"
	// The Russian digest has a welcome: it goes out after the confirmation, through the same relay.
	if _, err := s.DB.Exec(`UPDATE newsletters SET welcome = '{"ru": {"subject": "Добро пожаловать", "markdown": "Спасибо, что вы **с нами**."}}'
		WHERE slug = 'digest-ru'`); err != nil {
		t.Fatal(err)
	}
	if res := s.PostForm(t, "/subscribe", url.Values{"email": {subscriber}, "name": {"Анна Каренина"}, "lang": {"ru"}}); res.Status != 200 {
		t.Fatalf("subscribe: %d", res.Status)
	}
	confirm := waitReceived(t, r, 1)[0]
	checkInteropMessage(t, confirm, subscriber, dkimTXT)
	checkReturnPath(t, s, confirm, 0)
	m := parseMail(t, confirm)
	for name, want := range map[string]string{"Subject": "Подтвердите подписку", "Auto-Submitted": "auto-generated"} {
		if got := m.Get(name); !strings.Contains(got, want) {
			t.Errorf("confirmation %s = %q, want it to contain %q", name, got, want)
		}
	}
	link := findLink(t, m.Part(t, "text/plain").Body, "/confirm/")
	u, err := url.Parse(link)
	if err != nil {
		t.Fatal(err)
	}
	if res := s.Do(t, "POST", u.Path, "application/x-www-form-urlencoded", ""); res.Status != 200 {
		t.Fatalf("confirm: %d", res.Status)
	}
	welcome := waitReceived(t, r, 2)[1]
	checkInteropMessage(t, welcome, subscriber, dkimTXT)
	checkReturnPath(t, s, welcome, 0)
	w := parseMail(t, welcome)
	if w.Get("List-Id") != "<digest-ru.gazette.test>" || w.Get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click" ||
		!strings.Contains(w.Part(t, "text/plain").Body, "Спасибо, что вы с нами") {
		t.Errorf("the welcome: List-Id %q, List-Unsubscribe-Post %q", w.Get("List-Id"), w.Get("List-Unsubscribe-Post"))
	}

	// More readers, as an import would leave them: two more in Russian, three in English.
	if _, err := s.DB.Exec(`INSERT INTO subscribers (email, name, lang, status, confirmed_at) VALUES
		('boris@example.org', 'Борис', 'ru', 'confirmed', now()), ('vera@example.org', '', 'ru', 'confirmed', now()),
		('alice@example.org', 'Alice O''Neil', 'en', 'confirmed', now()), ('bob@example.org', 'Bob "the Builder"', 'en', 'confirmed', now()),
		('carol@example.org', '', 'en', 'confirmed', now())`); err != nil {
		t.Fatal(err)
	}
	subscribeAll(t, s.DB)
	readers := map[string]string{subscriber: "ru", "boris@example.org": "ru", "vera@example.org": "ru",
		"alice@example.org": "en", "bob@example.org": "en", "carol@example.org": "en"}
	var out, errOut lockedBuffer
	app := &App{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut, getenv: func(k string) string { return s.Env[k] }, smtpRoots: r.roots}
	if code := runApp(ctx, app, []string{"digest", "send", "--lang", "all", "--yes"}); code != exitOK {
		t.Fatalf("digest send exited %d:\n%s%s", code, out.String(), errOut.String())
	}
	all := waitReceived(t, r, 2+len(readers))
	time.Sleep(300 * time.Millisecond) // a duplicate would show now
	if again := r.received(t); len(again) != len(all) {
		t.Fatalf("%d messages arrived, want %d: a duplicate", len(again), len(all))
	}
	got := map[string]int{}
	for _, msg := range all[2:] {
		if len(msg.To) != 1 {
			t.Fatalf("a digest for %v", msg.To)
		}
		to := msg.To[0]
		got[to]++
		checkInteropMessage(t, msg, to, dkimTXT)
		var issue int64
		if err := s.DB.Get(&issue, `SELECT id FROM issues WHERE lang = $1 AND status = 'sent'`, readers[to]); err != nil {
			t.Fatal(err)
		}
		checkReturnPath(t, s, msg, issue)
		d := parseMail(t, msg)
		for _, h := range []string{"List-Unsubscribe", "List-Unsubscribe-Post", "List-Id", "Precedence", "Date"} {
			if d.Get(h) == "" {
				t.Errorf("digest to %s has no %s", to, h)
			}
		}
		if d.Get("List-Unsubscribe-Post") != "List-Unsubscribe=One-Click" || d.Get("Precedence") != "bulk" {
			t.Errorf("digest to %s: List-Unsubscribe-Post %q, Precedence %q", to, d.Get("List-Unsubscribe-Post"), d.Get("Precedence"))
		}
		if !strings.Contains(d.Get("List-Id"), "<digest-"+readers[to]+".gazette.test>") {
			t.Errorf("digest to %s (%s): List-Id %q", to, readers[to], d.Get("List-Id"))
		}
		if !strings.Contains(d.Part(t, "text/plain").Body, "1 Example Street") {
			t.Errorf("digest to %s lost its footer", to)
		}
	}
	for email := range readers {
		if got[email] != 1 {
			t.Errorf("%s got %d digests, want 1", email, got[email])
		}
	}
	r.check(t)
}

// interopBounce is the bounce address of the matrix.
const interopBounce = "bounces@gazette.test"

// checkReturnPath checks that msg's envelope sender is its reader's VERP address for issue (0: a
// confirmation), signed with the service's secret.
func checkReturnPath(t *testing.T, s *service, msg smtptest.Message, issue int64) {
	t.Helper()
	var want string
	if err := s.DB.Get(&want, `SELECT uuid::text FROM subscribers WHERE lower(email) = lower($1)`, msg.To[0]); err != nil {
		t.Fatal(err)
	}
	uuid, got, err := bounce.Parse(msg.From, interopBounce, []byte(e2eSecret))
	if err != nil || uuid != want || got != issue {
		t.Errorf("envelope sender to %s: %q reads %q, issue %d, %v; want the reader's VERP address for issue %d", msg.To[0], msg.From, uuid, got, err, issue)
	}
}

// returnPathOf is the address of a stored message's Return-Path header.
func returnPathOf(t *testing.T, raw []byte) string {
	t.Helper()
	m, err := smtptest.Message{Data: raw}.Parsed()
	if err != nil {
		t.Fatal(err)
	}
	return strings.Trim(m.Header.Get("Return-Path"), "<> ")
}

// waitReceived waits until n messages arrived and returns them.
func waitReceived(t *testing.T, r relay, n int) []smtptest.Message {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		msgs := r.received(t)
		if len(msgs) >= n {
			return msgs
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited a minute for %d messages, %d arrived", n, len(msgs))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// checkInteropMessage checks one arrived message: for to, with the headers every message has, and
// a DKIM signature that verifies against the test's key.
func checkInteropMessage(t *testing.T, msg smtptest.Message, to, dkimTXT string) {
	t.Helper()
	if len(msg.To) != 1 || !strings.EqualFold(msg.To[0], to) {
		t.Fatalf("message for %v, want %s", msg.To, to)
	}
	m := parseMail(t, msg)
	if !strings.Contains(m.Get("To"), to) || !strings.Contains(m.Get("From"), "digest@gazette.test") ||
		!strings.HasSuffix(m.Get("Message-Id"), "@gazette.test>") || m.Type != "multipart/alternative" {
		t.Errorf("headers to %s: To %q, From %q, Message-ID %q, type %s", to, m.Get("To"), m.Get("From"), m.Get("Message-Id"), m.Type)
	}
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(msg.Data), &dkim.VerifyOptions{LookupTXT: func(domain string) ([]string, error) {
		if domain != "interop._domainkey.gazette.test" {
			return nil, errors.New("no record " + domain)
		}
		return []string{dkimTXT}, nil
	}})
	if err != nil || len(vs) != 1 || vs[0].Err != nil {
		var why []string
		for _, v := range vs {
			why = append(why, fmt.Sprint(v.Err))
		}
		t.Errorf("DKIM of the message to %s: %v %v", to, err, why)
	}
}

// interopDKIMKey writes an Ed25519 key for the matrix and returns its file and DNS record.
func interopDKIMKey(t *testing.T) (file, txt string) {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	file = filepath.Join(t.TempDir(), "dkim.pem")
	if err := os.WriteFile(file, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return file, "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(pub)
}
