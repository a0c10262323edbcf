package postfixtest

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"fmt"
	"net"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/wneessen/go-mail"

	"newsletter/internal/smtptest"
)

// rawClient speaks SMTP line by line, to see exactly what Postfix answers.
type rawClient struct {
	t *testing.T
	c net.Conn
	r *bufio.Reader
}

// dialRaw connects to the smtpd and reads its greeting.
func dialRaw(t *testing.T, s *Server) *rawClient {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.Addr(), 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(60 * time.Second))
	rc := &rawClient{t: t, c: c, r: bufio.NewReader(c)}
	if code, text := rc.reply(); code != 220 {
		t.Fatalf("greeting: %d %s", code, text)
	}
	return rc
}

// cmd sends one command and returns the reply's code and its lines (without the codes).
func (rc *rawClient) cmd(line string) (int, string) {
	rc.t.Helper()
	if _, err := fmt.Fprintf(rc.c, "%s\r\n", line); err != nil {
		rc.t.Fatalf("%s: %v", line, err)
	}
	return rc.reply()
}

func (rc *rawClient) reply() (int, string) {
	rc.t.Helper()
	var lines []string
	for {
		l, err := rc.r.ReadString('\n')
		if err != nil {
			rc.t.Fatalf("reading a reply: %v (so far %q)", err, lines)
		}
		l = strings.TrimRight(l, "\r\n")
		if len(l) < 4 {
			rc.t.Fatalf("short reply line %q", l)
		}
		lines = append(lines, l[4:])
		if l[3] == ' ' {
			code, err := strconv.Atoi(l[:3])
			if err != nil {
				rc.t.Fatalf("reply %q", l)
			}
			return code, strings.Join(lines, "\n")
		}
	}
}

// ehloKeywords returns the keywords of an EHLO reply, upper-cased, without their parameters.
func ehloKeywords(reply string) map[string]bool {
	kw := map[string]bool{}
	for i, l := range strings.Split(reply, "\n") {
		if i == 0 { // the server's name
			continue
		}
		kw[strings.ToUpper(strings.Fields(l)[0])] = true
	}
	return kw
}

// newMessage is a plain message with every header a test checks set, so its bytes do not change
// between writing it and sending it.
func newMessage(t *testing.T, id string) *mail.Msg {
	t.Helper()
	m := mail.NewMsg()
	if err := m.From("Sender <sender@example.org>"); err != nil {
		t.Fatal(err)
	}
	if err := m.To("Reader <reader@example.com>"); err != nil {
		t.Fatal(err)
	}
	m.Subject("Through Postfix")
	m.SetMessageIDWithValue(id)
	m.SetDate()
	m.SetGenHeader("X-Postfixtest", "kept as sent")
	m.SetBodyString(mail.TypeTextPlain, "Hello through a strict relay.\r\n")
	return m
}

// checkRelayed asserts that the sink holds exactly the one message m, with the envelope sent and
// every byte as written, behind the Received header(s) Postfix put on top.
func checkRelayed(t *testing.T, s *Server, m *mail.Msg) {
	t.Helper()
	var want bytes.Buffer
	if _, err := m.WriteTo(&want); err != nil {
		t.Fatal(err)
	}
	s.WaitForMessages(t, 1, 60*time.Second)
	// "removed" is logged when the queue lets go of the message after its last delivery, so a
	// second copy could not follow it.
	s.WaitForLog(t, `: removed$`, 60*time.Second)
	got := s.Messages()
	if len(got) != 1 {
		t.Fatalf("the sink got %d messages, want exactly 1", len(got))
	}
	g := got[0]
	if g.From != "sender@example.org" || len(g.To) != 1 || g.To[0] != "reader@example.com" {
		t.Errorf("envelope: MAIL FROM %q, RCPT TO %q", g.From, g.To)
	}
	if !bytes.HasPrefix(g.Data, []byte("Received: from ")) || !bytes.HasSuffix(g.Data, want.Bytes()) {
		t.Errorf("the relayed message is not the one sent behind a Received header:\n--- sent\n%s\n--- relayed\n%s", want.Bytes(), g.Data)
	}
	p, err := g.Parsed()
	if err != nil {
		t.Fatal(err)
	}
	if p.Header.Get("X-Postfixtest") != "kept as sent" || p.Header.Get("Subject") != "Through Postfix" {
		t.Errorf("headers: %v", p.Header)
	}
	var complaints []string
	for _, l := range s.Grep(t, `reject|warning|fatal|panic|status=(deferred|bounced)`) {
		// Postfix's daemons warn when the machine's clock jumps: about the host, not the mail.
		if !regexp.MustCompile(`(?i)clock|time jump`).MatchString(l) {
			complaints = append(complaints, l)
		}
	}
	if len(complaints) > 0 {
		t.Errorf("the log has complaints:\n%s", strings.Join(complaints, "\n"))
	}
}

// TestRelaysToSink sends one message with go-mail through Postfix and finds it at the sink once,
// intact; it logs how long Postfix takes to start, to pass the message on and to stop.
func TestRelaysToSink(t *testing.T) {
	t.Parallel()
	began := time.Now()
	s := Start(t, Options{})
	t.Logf("Postfix started in %v", time.Since(began))
	if s.URL() != "smtp://"+s.Addr() {
		t.Errorf("URL %q", s.URL())
	}

	m := newMessage(t, "relayed.1@example.org")
	c, err := mail.NewClient(s.Host, mail.WithPort(s.Port), mail.WithTLSPolicy(mail.NoTLS), mail.WithTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	if err := c.DialAndSend(m); err != nil {
		t.Fatalf("send: %v", err)
	}
	s.WaitForMessages(t, 1, 60*time.Second)
	t.Logf("one message from the client to the sink in %v", time.Since(sent))
	checkRelayed(t, s, m)

	stopping := time.Now()
	s.Stop()
	t.Logf("Postfix stopped in %v", time.Since(stopping))
}

// TestStrict shows the instance holds a client to the rules a lenient server lets pass.
func TestStrict(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})

	rc := dialRaw(t, s)
	if code, text := rc.cmd("MAIL FROM:<sender@example.org>"); code != 503 {
		t.Errorf("MAIL before EHLO: %d %s, want 503 (smtpd_helo_required)", code, text)
	}
	code, text := rc.cmd("EHLO client.example.org")
	if code != 250 {
		t.Fatalf("EHLO: %d %s", code, text)
	}
	kw := ehloKeywords(text)
	for _, k := range []string{"PIPELINING", "8BITMIME", "SMTPUTF8", "CHUNKING"} {
		if !kw[k] {
			t.Errorf("EHLO does not offer %s:\n%s", k, text)
		}
	}
	if kw["STARTTLS"] {
		t.Errorf("EHLO offers STARTTLS without Options.TLS:\n%s", text)
	}
	if code, text := rc.cmd("MAIL FROM:bare@example.org"); code/100 != 5 {
		t.Errorf("MAIL FROM without angle brackets: %d %s, want 5xx (strict_rfc821_envelopes)", code, text)
	}
	if code, text := rc.cmd("MAIL FROM:<sender@example.org>"); code != 250 {
		t.Fatalf("MAIL FROM: %d %s", code, text)
	}
	if code, text := rc.cmd("RCPT TO:<reader@localhost>"); code/100 != 5 {
		t.Errorf("RCPT TO a name without a domain: %d %s, want 5xx (reject_non_fqdn_recipient)", code, text)
	}
	if code, text := rc.cmd("RCPT TO:<reader@example.com>"); code != 250 {
		t.Errorf("RCPT TO: %d %s (loopback may relay)", code, text)
	}
	rc.cmd("QUIT")
	if lines := s.Grep(t, `NOQUEUE: reject: RCPT from .*<reader@localhost>`); len(lines) != 1 {
		t.Errorf("the log does not show the refused recipient:\n%s", s.Log(t))
	}
}

// TestOptions takes an extension away (DiscardEHLO) and changes a setting (Main).
func TestOptions(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{DiscardEHLO: []string{"chunking"}, Main: map[string]string{"message_size_limit": "20000000"}})
	code, text := dialRaw(t, s).cmd("EHLO client.example.org")
	if code != 250 {
		t.Fatalf("EHLO: %d %s", code, text)
	}
	if kw := ehloKeywords(text); kw["CHUNKING"] || !kw["PIPELINING"] || !kw["8BITMIME"] || !kw["SMTPUTF8"] {
		t.Errorf("EHLO with CHUNKING discarded:\n%s", text)
	}
	if !strings.Contains(text, "\nSIZE 20000000\n") {
		t.Errorf("EHLO does not show Main's message_size_limit:\n%s", text)
	}
}

// TestRetriesDeferred has the sink refuse a recipient once with a 451: Postfix retries within
// seconds and the message arrives once.
func TestRetriesDeferred(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{})
	s.Sink().Script("reader@example.com", smtptest.Answer{At: smtptest.AtRcpt, Code: 451})
	c, err := mail.NewClient(s.Host, mail.WithPort(s.Port), mail.WithTLSPolicy(mail.NoTLS), mail.WithTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	sent := time.Now()
	if err := c.DialAndSend(newMessage(t, "deferred.1@example.org")); err != nil {
		t.Fatalf("send: %v", err)
	}
	s.WaitForMessages(t, 1, 60*time.Second)
	t.Logf("deferred once, then delivered %v after it was sent", time.Since(sent))
	s.WaitForLog(t, `: removed$`, 60*time.Second)
	if n := len(s.Messages()); n != 1 || s.Sink().Attempts("reader@example.com") != 2 {
		t.Errorf("%d messages at the sink after %d attempts, want 1 after 2", n, s.Sink().Attempts("reader@example.com"))
	}
	if len(s.Grep(t, `status=deferred \(host 127\.0\.0\.1.* said: 451 `)) != 1 || len(s.Grep(t, `status=sent`)) != 1 {
		t.Errorf("the log does not show one deferral and one delivery:\n%s", s.Log(t))
	}
}

// TestTLS offers STARTTLS and takes a message over it, the certificate checked.
func TestTLS(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{TLS: true})
	if s.URL() != "smtp://"+s.Addr()+"?tls=required" {
		t.Errorf("URL %q", s.URL())
	}
	code, text := dialRaw(t, s).cmd("EHLO client.example.org")
	if code != 250 || !ehloKeywords(text)["STARTTLS"] {
		t.Fatalf("EHLO does not offer STARTTLS: %d\n%s", code, text)
	}

	m := newMessage(t, "tls.1@example.org")
	c, err := mail.NewClient(s.Host, mail.WithPort(s.Port), mail.WithTLSPolicy(mail.TLSMandatory),
		mail.WithTLSConfig(&tls.Config{RootCAs: s.CertPool(), ServerName: s.Host}), mail.WithTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.DialAndSend(m); err != nil {
		t.Fatalf("send: %v", err)
	}
	checkRelayed(t, s, m)
	if lines := s.Grep(t, `smtpd\[.*TLS connection established from`); len(lines) == 0 {
		t.Errorf("the log shows no TLS session:\n%s", s.Log(t))
	}
}

// TestRequireTLS refuses mail before STARTTLS.
func TestRequireTLS(t *testing.T) {
	t.Parallel()
	s := Start(t, Options{RequireTLS: true})
	rc := dialRaw(t, s)
	if code, text := rc.cmd("EHLO client.example.org"); code != 250 || !ehloKeywords(text)["STARTTLS"] {
		t.Fatalf("EHLO: %d\n%s", code, text)
	}
	if code, text := rc.cmd("MAIL FROM:<sender@example.org>"); code != 530 {
		t.Errorf("MAIL FROM before STARTTLS: %d %s, want 530", code, text)
	}
}

// fatalTB records the message a helper fails the test with.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// TestMissingPostfix fails (never skips) and says what to install.
func TestMissingPostfix(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	dirs := searchDirs
	searchDirs = nil
	defer func() { searchDirs = dirs }()

	f := &fatalTB{}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Start(f, Options{})
	}()
	<-done
	if !strings.Contains(f.msg, "install Debian's postfix") {
		t.Errorf("failure message %q", f.msg)
	}
}
