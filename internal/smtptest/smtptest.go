// Package smtptest runs a real in-process SMTP server (github.com/emersion/go-smtp) for tests: it
// keeps every message it accepts and can be told to refuse recipients, answer each recipient's
// attempts from a script (421, 451, 550, dropped connections), go slow, or discard messages
// quickly (benchmarks).
package smtptest

import (
	"bytes"
	"errors"
	"io"
	"net"
	"net/mail"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
)

// Message is one accepted message as it arrived.
type Message struct {
	From string
	To   []string
	Data []byte
}

// Parsed returns the message parsed by net/mail.
func (m Message) Parsed() (*mail.Message, error) { return mail.ReadMessage(bytes.NewReader(m.Data)) }

// Mode is what the server keeps of accepted messages.
type Mode int

const (
	KeepAll     Mode = iota // the whole message (default)
	KeepHeaders             // only the header block, for tests that send thousands
	Discard                 // nothing but the count, for benchmarks
)

// Stage is the point of a transaction where a scripted answer applies.
type Stage int

const (
	AtRcpt Stage = iota // the reply to RCPT TO
	AtData              // the reply after the message data
)

// Answer is one scripted reply to one attempt: Code (e.g. 421, 451, 550) at Stage, or, with Drop,
// the connection closed instead of replying (at AtData: after part of the message was read).
type Answer struct {
	At   Stage
	Code int
	Drop bool
}

// Server is a running SMTP server.
type Server struct {
	Addr string // host:port
	Host string
	Port int

	srv *smtp.Server
	mu  sync.Mutex
	got []Message
	// rcptHook, when set, may refuse a recipient by returning an *smtp.SMTPError.
	rcptHook func(to string) error
	// dataHook, when set, may refuse a message after DATA.
	dataHook func(m Message) error
	mailHook func(from string) error
	script   map[string][]Answer
	attempts map[string]int
	delay    time.Duration
	mode     Mode
	count    atomic.Int64
	sessions atomic.Int64
	notify   chan struct{}
}

// Start starts a server on a loopback port and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// Listen starts a server on addr outside a test (the bench command); Close stops it.
func Listen(addr string) (*Server, error) {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{Addr: l.Addr().String(), Host: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port, notify: make(chan struct{}, 1),
		script: map[string][]Answer{}, attempts: map[string]int{}}
	s.srv = smtp.NewServer(backend{s})
	s.srv.Domain = "localhost"
	s.srv.AllowInsecureAuth = true
	s.srv.MaxMessageBytes = 10 << 20
	// Offered as real servers offer it, so a relay in front (postfixtest) can pass on internationalised mail.
	s.srv.EnableSMTPUTF8 = true
	s.srv.ReadTimeout = 30 * time.Second
	s.srv.WriteTimeout = 30 * time.Second
	go s.srv.Serve(l)
	return s, nil
}

// Close stops the server.
func (s *Server) Close() error { return s.srv.Close() }

// URL is the NEWSLETTER_SMTP_URL that reaches this server.
func (s *Server) URL() string { return "smtp://" + s.Addr }

// OnRcpt sets a function that may refuse recipients (return &smtp.SMTPError{Code: 550, ...}).
func (s *Server) OnRcpt(f func(to string) error) { s.mu.Lock(); s.rcptHook = f; s.mu.Unlock() }

// OnData sets a function that may refuse a message after its data arrived.
func (s *Server) OnData(f func(m Message) error) { s.mu.Lock(); s.dataHook = f; s.mu.Unlock() }

// OnMail sets a function that may refuse the sender (MAIL FROM).
func (s *Server) OnMail(f func(from string) error) { s.mu.Lock(); s.mailHook = f; s.mu.Unlock() }

// Script answers the attempts to deliver to rcpt (counted at RCPT TO) with answers in order; the
// attempts after the last answer succeed.
func (s *Server) Script(rcpt string, answers ...Answer) {
	s.mu.Lock()
	s.script[strings.ToLower(rcpt)] = answers
	s.mu.Unlock()
}

// Attempts returns how many times rcpt was offered (RCPT TO); not counted in Discard mode.
func (s *Server) Attempts(rcpt string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.attempts[strings.ToLower(rcpt)]
}

// SetDelay makes every message take d before it is accepted (a slow server).
func (s *Server) SetDelay(d time.Duration) { s.mu.Lock(); s.delay = d; s.mu.Unlock() }

// SetMode sets what is kept of accepted messages.
func (s *Server) SetMode(m Mode) { s.mu.Lock(); s.mode = m; s.mu.Unlock() }

// Sessions returns how many SMTP connections have been opened (greeted) so far.
func (s *Server) Sessions() int { return int(s.sessions.Load()) }

// Count returns how many messages were accepted, in any mode.
func (s *Server) Count() int { return int(s.count.Load()) }

// Messages returns a copy of what was accepted so far.
func (s *Server) Messages() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.got...)
}

// WaitFor waits until at least n messages arrived, failing the test after timeout.
func (s *Server) WaitFor(t testing.TB, n int, timeout time.Duration) []Message {
	t.Helper()
	deadline := time.After(timeout)
	for {
		if m := s.Messages(); len(m) >= n {
			return m
		}
		select {
		case <-s.notify:
		case <-deadline:
			t.Fatalf("smtptest: waited %v for %d messages, got %d", timeout, n, len(s.Messages()))
		}
	}
}

// To returns the accepted messages addressed to rcpt (case-insensitive).
func (s *Server) To(rcpt string) []Message {
	var out []Message
	for _, m := range s.Messages() {
		for _, to := range m.To {
			if strings.EqualFold(to, rcpt) {
				out = append(out, m)
			}
		}
	}
	return out
}

type backend struct{ s *Server }

func (b backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	b.s.sessions.Add(1)
	return &session{s: b.s, conn: c}, nil
}

type session struct {
	s      *Server
	conn   *smtp.Conn
	msg    Message
	atData *Answer
}

func (x *session) AuthPlain(username, password string) error { return nil }

func (x *session) Mail(from string, _ *smtp.MailOptions) error {
	x.s.mu.Lock()
	hook := x.s.mailHook
	x.s.mu.Unlock()
	if hook != nil {
		if err := hook(from); err != nil {
			return err
		}
	}
	x.msg = Message{From: from}
	return nil
}

var errDropped = errors.New("smtptest: connection dropped")

func (x *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.s.mu.Lock()
	hook := x.s.rcptHook
	key := strings.ToLower(to)
	n := x.s.attempts[key]
	if x.s.mode != Discard {
		// A benchmark's sink keeps nothing per recipient, so its memory does not grow with the list.
		x.s.attempts[key] = n + 1
	}
	var ans *Answer
	if sc := x.s.script[key]; n < len(sc) {
		a := sc[n]
		ans = &a
	}
	x.s.mu.Unlock()
	if ans != nil && ans.At == AtRcpt {
		if ans.Drop {
			x.conn.Conn().Close()
			return errDropped
		}
		return &smtp.SMTPError{Code: ans.Code, EnhancedCode: smtp.NoEnhancedCode, Message: "scripted answer"}
	}
	if ans != nil && ans.At == AtData {
		x.atData = ans
	}
	if hook != nil {
		if err := hook(to); err != nil {
			return err
		}
	}
	x.msg.To = append(x.msg.To, to)
	return nil
}

func (x *session) Data(r io.Reader) error {
	x.s.mu.Lock()
	hook, delay, mode := x.s.dataHook, x.s.delay, x.s.mode
	x.s.mu.Unlock()
	if ans := x.atData; ans != nil {
		x.atData = nil
		if ans.Drop {
			io.ReadFull(r, make([]byte, 512))
			x.conn.Conn().Close()
			return errDropped
		}
		io.Copy(io.Discard, r)
		return &smtp.SMTPError{Code: ans.Code, EnhancedCode: smtp.NoEnhancedCode, Message: "scripted answer"}
	}
	m := x.msg
	if mode == Discard {
		if _, err := io.Copy(io.Discard, r); err != nil {
			return err
		}
	} else {
		b, err := io.ReadAll(r)
		if err != nil {
			return err
		}
		if mode == KeepHeaders {
			if i := bytes.Index(b, []byte("\r\n\r\n")); i >= 0 {
				b = b[:i+4]
			}
		}
		m.Data = b
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	if hook != nil {
		if err := hook(m); err != nil {
			return err
		}
	}
	x.s.count.Add(1)
	if mode != Discard {
		x.s.mu.Lock()
		x.s.got = append(x.s.got, m)
		x.s.mu.Unlock()
	}
	select {
	case x.s.notify <- struct{}{}:
	default:
	}
	return nil
}

func (x *session) Reset()        { x.msg = Message{}; x.atData = nil }
func (x *session) Logout() error { return nil }
