// Package smtptest runs a real in-process SMTP server (github.com/emersion/go-smtp) for tests: it
// keeps every message it accepts and can be told to refuse recipients or drop connections.
package smtptest

import (
	"bytes"
	"io"
	"net"
	"net/mail"
	"strings"
	"sync"
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

// Server is a running SMTP server.
type Server struct {
	Addr string // host:port
	Host string
	Port int

	srv *smtp.Server
	mu  sync.Mutex
	got []Message
	// RcptHook, when set, may refuse a recipient by returning an *smtp.SMTPError.
	rcptHook func(to string) error
	// dataHook, when set, may refuse a message after DATA.
	dataHook func(m Message) error
	notify   chan struct{}
}

// Start starts a server on a loopback port and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Addr: l.Addr().String(), Host: "127.0.0.1", Port: l.Addr().(*net.TCPAddr).Port, notify: make(chan struct{}, 1)}
	s.srv = smtp.NewServer(backend{s})
	s.srv.Domain = "localhost"
	s.srv.AllowInsecureAuth = true
	s.srv.MaxMessageBytes = 10 << 20
	s.srv.ReadTimeout = 30 * time.Second
	s.srv.WriteTimeout = 30 * time.Second
	go s.srv.Serve(l)
	t.Cleanup(func() { s.srv.Close() })
	return s
}

// URL is the NEWSLETTER_SMTP_URL that reaches this server.
func (s *Server) URL() string { return "smtp://" + s.Addr }

// OnRcpt sets a function that may refuse recipients (return &smtp.SMTPError{Code: 550, ...}).
func (s *Server) OnRcpt(f func(to string) error) { s.mu.Lock(); s.rcptHook = f; s.mu.Unlock() }

// OnData sets a function that may refuse a message after its data arrived.
func (s *Server) OnData(f func(m Message) error) { s.mu.Lock(); s.dataHook = f; s.mu.Unlock() }

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

func (b backend) NewSession(*smtp.Conn) (smtp.Session, error) { return &session{s: b.s}, nil }

type session struct {
	s   *Server
	msg Message
}

func (x *session) AuthPlain(username, password string) error { return nil }
func (x *session) Mail(from string, _ *smtp.MailOptions) error {
	x.msg = Message{From: from}
	return nil
}

func (x *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	x.s.mu.Lock()
	hook := x.s.rcptHook
	x.s.mu.Unlock()
	if hook != nil {
		if err := hook(to); err != nil {
			return err
		}
	}
	x.msg.To = append(x.msg.To, to)
	return nil
}

func (x *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	m := x.msg
	m.Data = b
	x.s.mu.Lock()
	hook := x.s.dataHook
	x.s.mu.Unlock()
	if hook != nil {
		if err := hook(m); err != nil {
			return err
		}
	}
	x.s.mu.Lock()
	x.s.got = append(x.s.got, m)
	x.s.mu.Unlock()
	select {
	case x.s.notify <- struct{}{}:
	default:
	}
	return nil
}

func (x *session) Reset()        { x.msg = Message{} }
func (x *session) Logout() error { return nil }
