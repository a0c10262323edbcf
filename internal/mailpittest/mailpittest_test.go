package mailpittest

import (
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"net/smtp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

const htmlMail = "From: Sender <sender@example.org>\r\n" +
	"To: Reader <reader@example.org>\r\n" +
	"Subject: Hello from the test\r\n" +
	"Message-ID: <hello.1@example.org>\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: text/html; charset=utf-8\r\n" +
	"\r\n" +
	"<!doctype html><html><body><p style=\"color:#333\">Hello, reader.</p></body></html>\r\n"

// TestMailbox sends a message over SMTP without a login and reads it back through every method,
// and checks that the web UI's assets are there (a Mailpit built without them shows a blank page).
func TestMailbox(t *testing.T) {
	s := Start(t, Options{})
	if err := smtp.SendMail(s.SMTPAddr(), nil, "sender@example.org", []string{"reader@example.org"}, []byte(htmlMail)); err != nil {
		t.Fatalf("send: %v\n%s", err, s.Log())
	}
	msgs := s.WaitFor(t, 1, 30*time.Second)
	m := msgs[0]
	if len(msgs) != 1 || m.Subject != "Hello from the test" || m.MessageID != "hello.1@example.org" ||
		strings.Join(m.Recipients(), ",") != "reader@example.org" || m.From.Address != "sender@example.org" {
		t.Fatalf("mailbox: %+v", msgs)
	}
	if raw := string(s.Raw(t, m.ID)); !strings.Contains(raw, "Subject: Hello from the test\r\n") || !strings.Contains(raw, "Hello, reader.") {
		t.Errorf("raw message:\n%s", raw)
	}
	if score := s.HTMLCheck(t, m.ID); score <= 0 || score > 100 {
		t.Errorf("HTML check score %v, want a percentage", score)
	}

	// The page is a shell; the UI is the script and the styles it loads.
	for _, path := range []string{"/dist/app.js", "/dist/app.css"} {
		res, err := http.Get(s.WebURL() + path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != 200 || len(b) < 10000 {
			t.Errorf("GET %s: %s, %d bytes: the web UI is missing (build Mailpit with scripts/build-mailpit)", path, res.Status, len(b))
		}
	}
}

// TestLoginAndSTARTTLS: with a password file Mailpit insists on STARTTLS and on a known login;
// a client that trusts the generated certificate gets through.
func TestLoginAndSTARTTLS(t *testing.T) {
	s := Start(t, Options{Users: map[string]string{"editor": "s3cret pass"}, STARTTLS: true})
	send := func(tlsFirst bool, password string) error {
		c, err := smtp.Dial(s.SMTPAddr())
		if err != nil {
			return err
		}
		defer c.Close()
		if tlsFirst {
			if err := c.StartTLS(&tls.Config{ServerName: s.Host, RootCAs: s.CertPool()}); err != nil {
				return err
			}
		}
		if password != "" {
			if err := c.Auth(smtp.PlainAuth("", "editor", password, s.Host)); err != nil {
				return err
			}
		}
		if err := c.Mail("sender@example.org"); err != nil {
			return err
		}
		if err := c.Rcpt("reader@example.org"); err != nil {
			return err
		}
		w, err := c.Data()
		if err != nil {
			return err
		}
		if _, err := io.WriteString(w, htmlMail); err != nil {
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
		return c.Quit()
	}
	refusals := []struct {
		what     string
		tls      bool
		password string
		code     string
	}{
		{"mail without STARTTLS", false, "", "530"},
		{"mail without a login", true, "", "530"},
		{"a wrong password", true, "wrong", "535"},
	}
	for _, r := range refusals {
		if err := send(r.tls, r.password); err == nil || !strings.HasPrefix(err.Error(), r.code) {
			t.Errorf("%s: %v, want a %s refusal", r.what, err, r.code)
		}
	}
	if err := send(true, "s3cret pass"); err != nil {
		t.Fatalf("STARTTLS and the right login: %v", err)
	}
	if n := len(s.WaitFor(t, 1, 30*time.Second)); n != 1 {
		t.Fatalf("%d messages, want 1", n)
	}
}

// TestAcceptAnyLogin: any login over plain text, as a relay that only wants AUTH to be spoken.
func TestAcceptAnyLogin(t *testing.T) {
	s := Start(t, Options{AuthAcceptAny: true, AuthAllowInsecure: true})
	auth := smtp.PlainAuth("", "anyone", "anything", s.Host)
	if err := smtp.SendMail(s.SMTPAddr(), auth, "sender@example.org", []string{"reader@example.org"}, []byte(htmlMail)); err != nil {
		t.Fatalf("send: %v", err)
	}
	s.WaitFor(t, 1, 30*time.Second)
}

// TestMissingBinaryFails: without the binary the test fails and says how to build it; it never
// skips.
func TestMissingBinaryFails(t *testing.T) {
	t.Setenv(EnvBinary, t.TempDir()+"/no-mailpit")
	ft := &fakeT{TB: t}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // Fatalf ends the goroutine, as it ends a test
		defer wg.Done()
		Start(ft, Options{})
	}()
	wg.Wait()
	if !ft.failed || ft.skipped || !strings.Contains(ft.msg, "run scripts/build-mailpit") {
		t.Fatalf("failed %v, skipped %v, message %q", ft.failed, ft.skipped, ft.msg)
	}
}

// fakeT records how Start ends a test instead of ending the real one.
type fakeT struct {
	testing.TB
	failed, skipped bool
	msg             string
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(format string, args ...any) {
	f.failed, f.msg = true, fmt.Sprintf(format, args...)
	runtime.Goexit()
}
func (f *fakeT) Fatal(args ...any)     { f.failed, f.msg = true, fmt.Sprint(args...); runtime.Goexit() }
func (f *fakeT) Errorf(string, ...any) { f.failed = true }
func (f *fakeT) Skip(...any)           { f.skipped = true; runtime.Goexit() }
func (f *fakeT) Skipf(string, ...any)  { f.skipped = true; runtime.Goexit() }
func (f *fakeT) SkipNow()              { f.skipped = true; runtime.Goexit() }
