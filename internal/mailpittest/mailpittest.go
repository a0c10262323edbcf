// Package mailpittest runs the real Mailpit (bin/mailpit, built with its web UI by
// scripts/build-mailpit) for a test: its own loopback ports, its own throwaway mailbox, stopped when
// the test ends. It is the catcher `make run` uses, so tests that need a real third-party SMTP
// server, its REST API or its web UI in a browser use it rather than the in-process smtptest.
package mailpittest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math/big"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// EnvBinary names an environment variable that overrides where the Mailpit binary is.
const EnvBinary = "NEWSLETTER_TEST_MAILPIT"

// Options are the Mailpit features a test turns on; the zero value is a plain SMTP server that
// accepts every message without a login, as `make run` runs it.
type Options struct {
	// AuthAcceptAny accepts any SMTP login, and none (--smtp-auth-accept-any).
	AuthAcceptAny bool
	// Users, when set, are the only SMTP logins accepted, user to password (--smtp-auth-file).
	// Without AuthAllowInsecure Mailpit then also requires STARTTLS, so set STARTTLS too.
	Users map[string]string
	// AuthAllowInsecure allows PLAIN and LOGIN before STARTTLS (--smtp-auth-allow-insecure);
	// Mailpit refuses a login option without it unless STARTTLS is on.
	AuthAllowInsecure bool
	// STARTTLS offers STARTTLS with a self-signed certificate for 127.0.0.1, ::1 and localhost,
	// made for this server (Server.CertPool trusts it).
	STARTTLS bool
	// RequireSTARTTLS refuses mail from a client that has not started TLS
	// (--smtp-require-starttls); it implies STARTTLS.
	RequireSTARTTLS bool
	// Args are further Mailpit flags (see bin/mailpit --help).
	Args []string
}

// Server is a running Mailpit.
type Server struct {
	Host     string // 127.0.0.1
	SMTPPort int
	WebPort  int
	// CertFile is the PEM certificate offered with STARTTLS (empty without it).
	CertFile string

	cert   *x509.Certificate
	client *http.Client
	cmd    *exec.Cmd
	exited chan struct{}
	log    *lockedBuffer
	once   sync.Once
}

// SMTPAddr is host:port of the SMTP server.
func (s *Server) SMTPAddr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.SMTPPort)) }

// SMTPURL is the SMTP server as NEWSLETTER_SMTP_URL names it, without a login.
func (s *Server) SMTPURL() string { return "smtp://" + s.SMTPAddr() }

// WebURL is the root of the web UI and the REST API, without a trailing slash.
func (s *Server) WebURL() string {
	return "http://" + net.JoinHostPort(s.Host, strconv.Itoa(s.WebPort))
}

// CertPool trusts the STARTTLS certificate (nil without STARTTLS).
func (s *Server) CertPool() *x509.CertPool {
	if s.cert == nil {
		return nil
	}
	p := x509.NewCertPool()
	p.AddCert(s.cert)
	return p
}

// Log is what Mailpit wrote so far.
func (s *Server) Log() string { return s.log.String() }

// Binary is the Mailpit binary the tests run: $NEWSLETTER_TEST_MAILPIT, else bin/mailpit at the
// root of this module (found from the working directory, which go test sets to the package's).
func Binary() (string, error) {
	if p := os.Getenv(EnvBinary); p != "" {
		return p, nil
	}
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "bin", "mailpit"), nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// Start runs Mailpit on free loopback ports with a mailbox in t.TempDir() and returns once its SMTP
// server and web server answer. It stops when the test ends; its log is printed if the test failed.
// A missing binary fails the test: the tests run against the real catcher, never without it.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin, err := Binary()
	if err != nil {
		t.Fatalf("mailpittest: %v", err)
	}
	if _, err := os.Stat(bin); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("mailpittest: Mailpit is not built (%s is missing): run scripts/build-mailpit (or set %s)", bin, EnvBinary)
		}
		t.Fatalf("mailpittest: %v", err)
	}
	dir := t.TempDir()
	var args []string
	s := &Server{Host: "127.0.0.1", client: &http.Client{Timeout: 30 * time.Second}}
	if opts.STARTTLS || opts.RequireSTARTTLS {
		certFile, keyFile, cert, err := selfSigned(dir)
		if err != nil {
			t.Fatalf("mailpittest: certificate: %v", err)
		}
		s.CertFile, s.cert = certFile, cert
		args = append(args, "--smtp-tls-cert", certFile, "--smtp-tls-key", keyFile)
	}
	if opts.RequireSTARTTLS {
		args = append(args, "--smtp-require-starttls")
	}
	if opts.AuthAcceptAny {
		args = append(args, "--smtp-auth-accept-any")
	}
	if len(opts.Users) > 0 {
		file, err := passwdFile(dir, opts.Users)
		if err != nil {
			t.Fatalf("mailpittest: %v", err)
		}
		args = append(args, "--smtp-auth-file", file)
	}
	if opts.AuthAllowInsecure {
		args = append(args, "--smtp-auth-allow-insecure")
	}
	args = append(args, opts.Args...)

	// The ports are picked before Mailpit binds them, so another process may take one in between:
	// a Mailpit that exits before it answers is tried again on other ports.
	for attempt := 1; ; attempt++ {
		s.SMTPPort, s.WebPort = freePort(t), freePort(t)
		err := s.run(bin, append([]string{
			"--smtp", s.SMTPAddr(),
			"--listen", net.JoinHostPort(s.Host, strconv.Itoa(s.WebPort)),
			"--database", filepath.Join(dir, fmt.Sprintf("mailpit-%d.db", attempt)),
			// No calls out of the machine: update checks, reverse DNS of the loopback client.
			"--disable-version-check", "--smtp-disable-rdns",
		}, args...))
		if err == nil {
			t.Cleanup(func() {
				s.stop()
				if t.Failed() {
					t.Logf("mailpit log:\n%s", s.Log())
				}
			})
			return s
		}
		if attempt == 3 || !strings.Contains(s.Log(), "address already in use") {
			t.Fatalf("mailpittest: %s %s: %v\n%s", bin, strings.Join(args, " "), err, s.Log())
		}
	}
}

// run starts Mailpit and waits until it answers; on an error Mailpit is no longer running.
func (s *Server) run(bin string, args []string) error {
	s.log = &lockedBuffer{}
	s.exited = make(chan struct{})
	s.once = sync.Once{}
	cmd := exec.Command(bin, args...)
	// Mailpit reads MP_* variables as flags; one set in the developer's shell must not change
	// the server a test asked for.
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "MP_") })
	cmd.Stdout, cmd.Stderr = s.log, s.log
	if err := cmd.Start(); err != nil {
		return err
	}
	s.cmd = cmd
	go func() { cmd.Wait(); close(s.exited) }()
	// A generous bound that only catches a Mailpit that hangs; a busy machine still gets there.
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("mailpit exited before it answered (%v)", cmd.ProcessState)
		case <-time.After(50 * time.Millisecond):
		}
		if s.ready() {
			return nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return errors.New("mailpit did not answer within a minute")
		}
	}
}

// ready reports whether both the SMTP server and the web server answer.
func (s *Server) ready() bool {
	c, err := net.DialTimeout("tcp", s.SMTPAddr(), time.Second)
	if err != nil {
		return false
	}
	c.Close()
	res, err := s.client.Get(s.WebURL() + "/readyz")
	if err != nil {
		return false
	}
	res.Body.Close()
	return res.StatusCode == http.StatusOK
}

// stop ends Mailpit as Ctrl-C would, then kills it if it does not exit.
func (s *Server) stop() {
	s.once.Do(func() {
		s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			s.cmd.Process.Kill()
			<-s.exited
		}
	})
}

// Message is one message in the mailbox as the REST API summarises it.
type Message struct {
	ID        string // Mailpit's id, for Raw and HTMLCheck
	MessageID string // the Message-ID header, without angle brackets
	From      *mail.Address
	To        []*mail.Address
	Cc        []*mail.Address
	Subject   string
	Created   time.Time
	Size      int
	Snippet   string
}

// Recipients are the addresses in To.
func (m Message) Recipients() []string {
	var out []string
	for _, a := range m.To {
		out = append(out, a.Address)
	}
	return out
}

// Messages lists the whole mailbox, oldest first (GET /api/v1/messages, page by page).
func (s *Server) Messages(t testing.TB) []Message {
	t.Helper()
	var all []Message
	for {
		var page struct {
			Total    int       `json:"messages_count"`
			Messages []Message `json:"messages"`
		}
		s.getJSON(t, "/api/v1/messages?limit=500&start="+strconv.Itoa(len(all)), &page)
		all = append(all, page.Messages...)
		if len(page.Messages) == 0 || len(all) >= page.Total {
			break
		}
	}
	// The API lists the newest first; tests read mail in the order it arrived.
	slices.Reverse(all)
	return all
}

// WaitFor returns the mailbox once it holds at least n messages, oldest first; it fails the test
// if that takes longer than timeout.
func (s *Server) WaitFor(t testing.TB, n int, timeout time.Duration) []Message {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msgs := s.Messages(t)
		if len(msgs) >= n {
			return msgs
		}
		if time.Now().After(deadline) {
			t.Fatalf("mailpittest: %d messages after %s, want %d", len(msgs), timeout, n)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Raw is the message exactly as it was received (GET /api/v1/message/{ID}/raw).
func (s *Server) Raw(t testing.TB, id string) []byte {
	t.Helper()
	return s.get(t, "/api/v1/message/"+url.PathEscape(id)+"/raw")
}

// HTMLCheck is Mailpit's overall score of how well email clients support the message's HTML, the
// percentage supported (GET /api/v1/message/{ID}/html-check, Total.Supported).
func (s *Server) HTMLCheck(t testing.TB, id string) float64 {
	t.Helper()
	var res struct {
		Total struct {
			Tests     int
			Supported float64
		}
	}
	s.getJSON(t, "/api/v1/message/"+url.PathEscape(id)+"/html-check", &res)
	if res.Total.Tests == 0 {
		t.Fatalf("mailpittest: HTML check of %s ran no tests (does the message have an HTML part?)", id)
	}
	return res.Total.Supported
}

func (s *Server) get(t testing.TB, path string) []byte {
	t.Helper()
	res, err := s.client.Get(s.WebURL() + path)
	if err != nil {
		t.Fatalf("mailpittest: GET %s: %v", path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("mailpittest: GET %s: %v", path, err)
	}
	if res.StatusCode != http.StatusOK {
		t.Fatalf("mailpittest: GET %s: %s: %s", path, res.Status, bytes.TrimSpace(b))
	}
	return b
}

func (s *Server) getJSON(t testing.TB, path string, v any) {
	t.Helper()
	if err := json.Unmarshal(s.get(t, path), v); err != nil {
		t.Fatalf("mailpittest: GET %s: %v", path, err)
	}
}

// passwdFile writes users in the htpasswd form Mailpit reads, passwords as {SHA} hashes so that no
// password is mistaken for another hash form.
func passwdFile(dir string, users map[string]string) (string, error) {
	var b strings.Builder
	for _, u := range slices.Sorted(maps.Keys(users)) {
		if u == "" || strings.ContainsAny(u, ": \t\r\n") {
			return "", fmt.Errorf("SMTP user %q: Mailpit's password file cannot hold it", u)
		}
		sum := sha1.Sum([]byte(users[u]))
		fmt.Fprintf(&b, "%s:{SHA}%s\n", u, base64.StdEncoding.EncodeToString(sum[:]))
	}
	file := filepath.Join(dir, "smtp-passwd")
	return file, os.WriteFile(file, []byte(b.String()), 0o600)
}

// selfSigned writes a certificate and key for the loopback names into dir.
func selfSigned(dir string) (certFile, keyFile string, cert *x509.Certificate, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", "", nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 64))
	if err != nil {
		return "", "", nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "mailpittest"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", nil, err
	}
	if cert, err = x509.ParseCertificate(der); err != nil {
		return "", "", nil, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", nil, err
	}
	certFile, keyFile = filepath.Join(dir, "smtp-cert.pem"), filepath.Join(dir, "smtp-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", nil, err
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		return "", "", nil, err
	}
	return certFile, keyFile, cert, nil
}

// freePort finds a loopback port nobody listens on.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// lockedBuffer collects Mailpit's output, written by exec's copying goroutine, read by the test.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
