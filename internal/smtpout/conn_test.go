package smtpout_test

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/wneessen/go-mail"

	"newsletter/internal/smtpout"
	"newsletter/internal/smtptest"
)

// dialer is a go-mail client for a plain loopback server, as main builds one.
func dialer(t testing.TB, addr string) *mail.Client {
	t.Helper()
	host, port, _ := strings.Cut(addr, ":")
	var p int
	fmt.Sscan(port, &p)
	c, err := mail.NewClient(host, mail.WithPort(p), mail.WithTLSPolicy(mail.NoTLS), mail.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// message is a small message whose body has lines that need dot-stuffing.
func message(i int) []byte {
	return fmt.Appendf(nil, "From: <news@example.org>\r\nTo: <r%d@example.org>\r\nSubject: %d\r\nMessage-ID: <%d@example.org>\r\n\r\nhello %d\r\n.\r\n.. two dots\r\n.\r\nend\r\n", i, i, i, i)
}

// sendAll sends n messages over one connection, with the next envelope offered to each Send when
// ahead is set, and returns the errors by message.
func sendAll(t *testing.T, c *smtpout.Conn, n int, ahead bool) []error {
	t.Helper()
	errs := make([]error, n)
	env := func(i int) smtpout.Envelope {
		return smtpout.Envelope{From: "bounce@example.org", To: fmt.Sprintf("r%d@example.org", i)}
	}
	for i := range n {
		if err := c.Ensure(context.Background()); err != nil {
			t.Fatal(err)
		}
		var next func() (smtpout.Envelope, bool)
		if ahead && i+1 < n {
			next = func() (smtpout.Envelope, bool) { return env(i + 1), true }
		}
		errs[i] = c.Send(env(i), message(i), func() {}, next)
	}
	c.Close()
	return errs
}

// TestSendRoundTrips counts the turns a client takes (a proxy sees each wait for a reply): with
// PIPELINING the DATA path costs one round trip per message once the next envelope rides with the
// previous message's end, as BDAT does, and every message arrives once, byte for byte.
func TestSendRoundTrips(t *testing.T) {
	const n = 20
	for _, tc := range []struct {
		name       string
		noChunking bool
		ahead      bool
		maxTurns   int
	}{
		{"BDAT with the next envelope", false, true, n + 4},
		{"BDAT per message", false, false, 2*n + 3},
		{"DATA pipelined with the next envelope", true, true, n + 4},
		{"DATA pipelined per message", true, false, 2*n + 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.Start(t)
			proxy := smtptest.StartProxy(t, srv.Addr, 0)
			c := &smtpout.Conn{Dialer: dialer(t, proxy.Addr), Timeout: 10 * time.Second, NoChunking: tc.noChunking}
			for i, err := range sendAll(t, c, n, tc.ahead) {
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
			}
			got := srv.WaitFor(t, n, 5*time.Second)
			if len(got) != n {
				t.Fatalf("%d messages arrived, want %d", len(got), n)
			}
			for i, m := range got {
				if want := message(i); !bytes.Equal(m.Data, want) {
					t.Fatalf("message %d arrived as\n%q\nwant\n%q", i, m.Data, want)
				}
				if m.From != "bounce@example.org" || len(m.To) != 1 || m.To[0] != fmt.Sprintf("r%d@example.org", i) {
					t.Fatalf("message %d: envelope %s -> %v", i, m.From, m.To)
				}
			}
			// Greeting, EHLO and QUIT take their turns too; the rest is per message.
			if turns := proxy.Turns(); turns > int64(tc.maxTurns) {
				t.Errorf("%d turns for %d messages, want at most %d", turns, n, tc.maxTurns)
			}
			t.Logf("%d turns for %d messages", proxy.Turns(), n)
		})
	}
}

// TestSendRefusalsInPipeline: a refused recipient, whether its envelope went alone or rode with the
// previous message's end, fails only its own message, as a permanent refusal of the reader; the
// connection goes on.
func TestSendRefusalsInPipeline(t *testing.T) {
	for _, noChunking := range []bool{false, true} {
		t.Run(fmt.Sprintf("noChunking=%v", noChunking), func(t *testing.T) {
			srv := smtptest.Start(t)
			srv.OnRcpt(func(to string) error {
				if to == "r3@example.org" || to == "r4@example.org" {
					return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user"}
				}
				return nil
			})
			c := &smtpout.Conn{Dialer: dialer(t, srv.Addr), Timeout: 10 * time.Second, NoChunking: noChunking}
			errs := sendAll(t, c, 8, true)
			for i, err := range errs {
				refused := i == 3 || i == 4
				se := smtpout.AsError(err)
				switch {
				case refused && (se == nil || se.Code != 550 || se.Stage != smtpout.StageRcpt || !se.Refused()):
					t.Errorf("message %d: err = %v, want a 550 refusal at RCPT", i, err)
				case !refused && err != nil:
					t.Errorf("message %d: %v", i, err)
				}
			}
			if got := srv.WaitFor(t, 6, 5*time.Second); len(got) != 6 {
				t.Fatalf("%d messages arrived, want 6", len(got))
			}
			if srv.Sessions() != 1 {
				t.Errorf("%d sessions, want the one connection throughout", srv.Sessions())
			}
		})
	}
}

// TestSendRejectsInjectedAddresses: an address that would end the command early never reaches the
// wire, and the refusal says so without blaming the reader's mailbox.
func TestSendRejectsInjectedAddresses(t *testing.T) {
	srv := smtptest.Start(t)
	c := &smtpout.Conn{Dialer: dialer(t, srv.Addr), Timeout: 10 * time.Second}
	if err := c.Ensure(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, to := range []string{"a@example.org>\r\nRCPT TO:<b@example.org", "a@example.org> NOTIFY=NEVER", "a\x00@example.org"} {
		err := c.Send(smtpout.Envelope{From: "bounce@example.org", To: to}, message(0), func() {}, nil)
		se := smtpout.AsError(err)
		if se == nil || !se.Local || se.Refused() {
			t.Errorf("to %q: err = %v, want a local refusal", to, err)
		}
	}
	if err := c.Send(smtpout.Envelope{From: "bounce@example.org", To: "r0@example.org"}, message(0), func() {}, nil); err != nil {
		t.Fatal(err)
	}
	if got := srv.WaitFor(t, 1, 5*time.Second); len(got) != 1 || len(got[0].To) != 1 {
		t.Fatalf("got %+v", got)
	}
}
