package dovecottest

import (
	"bytes"
	"crypto/tls"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

const testMessage = "From: a@example.org\r\nTo: bounces@example.org\r\nSubject: hello\r\nMessage-ID: <1@example.org>\r\n\r\nbody\r\n"

func TestAppendAndRead(t *testing.T) {
	s := Start(t, Options{})
	s.Append(t, "INBOX", []byte(testMessage))
	s.Append(t, "Other", []byte(testMessage))
	got := s.Messages(t, "INBOX")
	if len(got) != 1 || !bytes.Equal(got[0].Raw, []byte(testMessage)) {
		t.Fatalf("INBOX = %+v", got)
	}
	if got[0].Has(`\Seen`) {
		t.Error("reading marked the message seen")
	}
	if boxes := s.Mailboxes(t); !slices.Contains(boxes, "INBOX") || !slices.Contains(boxes, "Other") {
		t.Errorf("mailboxes %q", boxes)
	}
	if got := s.Messages(t, "Missing"); got != nil {
		t.Errorf("a missing mailbox has %d messages", len(got))
	}
	if !strings.Contains(s.Log(), "Login: user=<"+User+">") {
		t.Errorf("the log does not show the login:\n%s", s.Log())
	}
}

func TestWrongPasswordRefused(t *testing.T) {
	s := Start(t, Options{})
	c, err := imapclient.DialInsecure(s.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Login(User, "wrong").Wait(); err == nil {
		t.Fatal("login with a wrong password succeeded")
	}
}

func TestTLS(t *testing.T) {
	s := Start(t, Options{TLS: true})
	// STARTTLS is offered. (Dovecot counts a loopback connection as secure, so it would take the
	// password in clear here; from elsewhere it refuses it before STARTTLS.)
	c, err := imapclient.DialInsecure(s.Addr(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	caps, err := c.Capability().Wait()
	if err != nil {
		t.Fatal(err)
	}
	if !caps.Has(imap.CapStartTLS) {
		t.Fatalf("STARTTLS not offered: %v", caps)
	}
	s.Append(t, "INBOX", []byte(testMessage))
	if got := s.Messages(t, "INBOX"); len(got) != 1 {
		t.Fatalf("INBOX has %d messages", len(got))
	}
	// A client that does not trust the certificate fails.
	if _, err := imapclient.DialStartTLS(s.Addr(), &imapclient.Options{TLSConfig: &tls.Config{ServerName: Hostname}}); err == nil {
		t.Fatal("STARTTLS with an untrusted certificate succeeded")
	}
}

func TestStopRemovesEverything(t *testing.T) {
	s := Start(t, Options{})
	s.Stop()
	s.Stop() // again: harmless
	if s.greets() {
		t.Fatal("still greets after Stop")
	}
	if _, err := os.Stat(s.dir); err != nil {
		t.Fatalf("the directory went before the test ended: %v", err)
	}
}

// The harness fails, never skips, without Dovecot.
func TestMissingDovecot(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	saved := searchDirs
	searchDirs = []string{t.TempDir()}
	defer func() { searchDirs = saved }()
	_, err := findDovecot()
	if err == nil || !strings.Contains(err.Error(), "apt-get install dovecot-imapd") {
		t.Fatalf("findDovecot = %v", err)
	}
}
