// Package dovecottest runs a private Dovecot IMAP server (Debian's dovecot-imapd) for one test:
// its own configuration, state, mail and log in a temporary directory, IMAP on a free loopback
// port, and one mail user with a password (a passwd-file passdb, a static userdb). The system
// Dovecot is neither used nor needed, and instances run side by side. Dovecot starts only as root
// (it switches to its own users); the tests run as root.
package dovecottest

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-imap/v2"
	"github.com/emersion/go-imap/v2/imapclient"
)

// The mail user every instance has.
const (
	User     = "bounces"
	Password = "dovecottest-password"
)

// Hostname is the name the TLS certificate is issued for (besides 127.0.0.1 and localhost).
const Hostname = "imap.dovecottest.invalid"

// Options are what a test changes about the instance; the zero value is plain IMAP.
type Options struct {
	// TLS offers STARTTLS with a self-signed certificate (Server.CertPool trusts it) and refuses
	// LOGIN before it, as a production server does.
	TLS bool
}

// Server is a running Dovecot instance.
type Server struct {
	Host string // 127.0.0.1
	Port int    // IMAP
	// CertFile is the PEM certificate offered with STARTTLS (empty without TLS).
	CertFile string

	tls      bool
	cert     *x509.Certificate
	dir      string
	confFile string
	logFile  string
	binary   string
	cmd      *exec.Cmd
	out      *lockedBuffer // the master's stdout and stderr (the log proper is in logFile)
	exited   chan struct{}
	stopOnce sync.Once
}

// searchDirs are where dovecot is looked for after $PATH: a test run from a user's shell may not
// have the sbin directories in it.
var searchDirs = []string{"/usr/sbin", "/usr/local/sbin"}

func findDovecot() (string, error) {
	if p, err := exec.LookPath("dovecot"); err == nil {
		return p, nil
	}
	for _, d := range searchDirs {
		p := filepath.Join(d, "dovecot")
		if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("dovecot not found in $PATH or %s: install Debian's dovecot-imapd (apt-get install dovecot-imapd)", strings.Join(searchDirs, ", "))
}

// Start runs a Dovecot instance for the test and returns once it greets on its IMAP port. It
// stops when the test ends, printing its log if the test failed. A missing Dovecot fails the
// test: these tests never skip.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bin, err := findDovecot()
	if err != nil {
		t.Fatalf("dovecottest: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("dovecottest: Dovecot starts only as root; run the tests as root (uid is %d)", os.Geteuid())
	}
	mailUID, mailGID, err := mailOwner()
	if err != nil {
		t.Fatalf("dovecottest: %v", err)
	}
	s := &Server{Host: "127.0.0.1", binary: bin, tls: opts.TLS}
	if s.dir, err = instanceDir(); err != nil {
		t.Fatalf("dovecottest: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(s.dir); err != nil {
			t.Logf("dovecottest: remove %s: %v", s.dir, err)
		}
	})
	s.confFile = filepath.Join(s.dir, "dovecot.conf")
	s.logFile = filepath.Join(s.dir, "dovecot.log")
	mailDir := filepath.Join(s.dir, "mail")
	for _, d := range []string{"run", "state", "mail"} {
		if err := os.Mkdir(filepath.Join(s.dir, d), 0o755); err != nil {
			t.Fatalf("dovecottest: %v", err)
		}
	}
	// The mail processes run as the mail user, who must own the mail directory.
	if err := os.Chown(mailDir, mailUID, mailGID); err != nil {
		t.Fatalf("dovecottest: %v", err)
	}
	// Read by the auth process, which runs as Dovecot's own user: readable by all, in a
	// throwaway directory.
	if err := os.WriteFile(filepath.Join(s.dir, "users"), []byte(User+":{PLAIN}"+Password+"\n"), 0o644); err != nil {
		t.Fatalf("dovecottest: %v", err)
	}
	var keyFile string
	if s.tls {
		if s.CertFile, keyFile, s.cert, err = selfSigned(s.dir); err != nil {
			t.Fatalf("dovecottest: certificate: %v", err)
		}
	}

	// The port is picked before Dovecot binds it, so another process may take it in between: a
	// master that exits before it greets while the port is taken is tried again on another one.
	for attempt := 1; ; attempt++ {
		s.Port = freePort(t)
		if err := os.WriteFile(s.confFile, []byte(s.config(mailDir, keyFile, mailUID, mailGID)), 0o644); err != nil {
			t.Fatalf("dovecottest: %v", err)
		}
		err := s.run()
		if err == nil {
			break
		}
		if attempt < 3 && portTaken(s.Addr()) {
			continue
		}
		t.Fatalf("dovecottest: %v\nmaster output:\n%s\nlog:\n%s", err, s.out.String(), s.Log())
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("dovecottest: Dovecot log:\n%s", s.Log())
			if out := s.out.String(); out != "" {
				t.Logf("dovecottest: master output:\n%s", out)
			}
		}
	})
	return s
}

// config is the instance's whole dovecot.conf: nothing of the system's configuration is read.
func (s *Server) config(mailDir, keyFile string, uid, gid int) string {
	ssl := "ssl = no\ndisable_plaintext_auth = no\n"
	if s.tls {
		ssl = fmt.Sprintf("ssl = yes\nssl_cert = <%s\nssl_key = <%s\nssl_min_protocol = TLSv1.2\ndisable_plaintext_auth = yes\n", s.CertFile, keyFile)
	}
	return fmt.Sprintf(`# dovecottest instance
base_dir = %[1]s/run
state_dir = %[1]s/state
instance_name = dovecottest-%[2]d
log_path = %[3]s
protocols = imap
listen = 127.0.0.1
%[4]sauth_mechanisms = plain login
default_login_user = dovenull
default_internal_user = dovecot
mail_location = maildir:%[5]s/%%u
first_valid_uid = 1
first_valid_gid = 1
service imap-login {
  chroot =
  inet_listener imap {
    address = 127.0.0.1
    port = %[2]d
  }
  inet_listener imaps {
    port = 0
  }
}
service anvil {
  chroot =
}
passdb {
  driver = passwd-file
  args = scheme=PLAIN username_format=%%u %[1]s/users
}
userdb {
  driver = static
  args = uid=%[6]d gid=%[7]d home=%[5]s/%%u
}
namespace inbox {
  inbox = yes
  separator = /
}
`, s.dir, s.Port, s.logFile, ssl, mailDir, uid, gid)
}

// mailOwner is the uid and gid the mail processes run as: nobody's (Dovecot refuses root).
func mailOwner() (uid, gid int, err error) {
	u, err := user.Lookup("nobody")
	if err != nil {
		return 0, 0, fmt.Errorf("the nobody user: %v", err)
	}
	if uid, err = strconv.Atoi(u.Uid); err != nil {
		return 0, 0, err
	}
	gid, err = strconv.Atoi(u.Gid)
	return uid, gid, err
}

// instanceDir makes the instance's private directory. It is not under t.TempDir(), which only
// root may enter: the mail processes run as another user and must reach the mail directory.
// Its name is short because Dovecot's sockets live in it, and a socket's path may not exceed 107
// bytes.
func instanceDir() (string, error) {
	base := os.TempDir()
	if len(base) > 40 || !searchable(base) {
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "dovecottest-")
	if err != nil {
		return "", err
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		os.RemoveAll(dir)
		return "", err
	}
	return dir, nil
}

// searchable reports whether every directory on the way to dir lets other users through.
func searchable(dir string) bool {
	for d := filepath.Clean(dir); ; d = filepath.Dir(d) {
		st, err := os.Stat(d)
		if err != nil || st.Mode().Perm()&0o001 == 0 {
			return false
		}
		if d == filepath.Dir(d) {
			return true
		}
	}
}

// run starts the master in the foreground as the helper's own child and waits until IMAP
// greets; on an error it is no longer running.
func (s *Server) run() error {
	s.out = &lockedBuffer{}
	s.exited = make(chan struct{})
	s.stopOnce = sync.Once{}
	cmd := exec.Command(s.binary, "-F", "-c", s.confFile)
	cmd.Stdout, cmd.Stderr = s.out, s.out
	// Its own process group, so Stop can end every process it started; and the master ends with
	// the test binary even when that dies without cleaning up (the master stays root, so the
	// parent-death signal holds; its children exit when it does).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %v", s.binary, err)
	}
	s.cmd = cmd
	go func() { cmd.Wait(); close(s.exited) }()
	// A generous bound that only catches a Dovecot that hangs; a busy machine still gets there.
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("dovecot exited before it greeted (%v)", cmd.ProcessState)
		case <-time.After(50 * time.Millisecond):
		}
		if s.greets() {
			return nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			return errors.New("dovecot did not greet within a minute")
		}
	}
}

// greets reports whether IMAP answers a connection with its "* OK" greeting.
func (s *Server) greets() bool {
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "* OK") {
		return false
	}
	c.Write([]byte("a LOGOUT\r\n"))
	return true
}

// Stop stops the instance. It is called when the test ends; calling it earlier (or again) is fine.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.stopOnce.Do(func() {
		pgid := s.cmd.Process.Pid
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-s.exited
		}
		// The master has waited for its children; whatever of the group is left is killed, so
		// nothing writes into the directory about to be removed.
		syscall.Kill(-pgid, syscall.SIGKILL)
	})
}

// Addr is host:port of IMAP.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// URL is an imap:// URL with the user's credentials: plain IMAP (?tls=none) without TLS, and
// without a query (STARTTLS, insisted on) with it.
func (s *Server) URL(mailbox string) string {
	u := url.URL{Scheme: "imap", User: url.UserPassword(User, Password), Host: s.Addr(), Path: "/" + mailbox}
	if !s.tls {
		u.RawQuery = "tls=none"
	}
	return u.String()
}

// CertPool trusts the STARTTLS certificate (nil without TLS).
func (s *Server) CertPool() *x509.CertPool {
	if s.cert == nil {
		return nil
	}
	p := x509.NewCertPool()
	p.AddCert(s.cert)
	return p
}

// Log is Dovecot's log so far.
func (s *Server) Log() string {
	b, err := os.ReadFile(s.logFile)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Sprintf("(reading %s: %v)\n", s.logFile, err)
	}
	return string(b)
}

// Dial connects and logs in as User (after STARTTLS with TLS); the connection is closed when the
// test ends.
func (s *Server) Dial(t testing.TB) *imapclient.Client {
	t.Helper()
	var c *imapclient.Client
	var err error
	if s.tls {
		c, err = imapclient.DialStartTLS(s.Addr(), &imapclient.Options{TLSConfig: &tls.Config{RootCAs: s.CertPool(), ServerName: Hostname}})
	} else {
		c, err = imapclient.DialInsecure(s.Addr(), nil)
	}
	if err != nil {
		t.Fatalf("dovecottest: dial: %v", err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Login(User, Password).Wait(); err != nil {
		t.Fatalf("dovecottest: login: %v", err)
	}
	return c
}

// Append stores raw in mailbox (created if missing) with IMAP APPEND, as a delivery would.
func (s *Server) Append(t testing.TB, mailbox string, raw []byte) {
	t.Helper()
	c := s.Dial(t)
	defer func() { c.Logout().Wait() }()
	if mailbox != "INBOX" {
		// ALREADYEXISTS is fine.
		c.Create(mailbox, nil).Wait()
	}
	cmd := c.Append(mailbox, int64(len(raw)), nil)
	if _, err := cmd.Write(raw); err != nil {
		t.Fatalf("dovecottest: append: %v", err)
	}
	if err := cmd.Close(); err != nil {
		t.Fatalf("dovecottest: append: %v", err)
	}
	if _, err := cmd.Wait(); err != nil {
		t.Fatalf("dovecottest: append: %v", err)
	}
}

// Message is one message of a mailbox.
type Message struct {
	UID   uint32
	Flags []string
	Raw   []byte
}

// Has reports whether the message has flag (e.g. `\Flagged`, `\Seen`).
func (m Message) Has(flag string) bool {
	for _, f := range m.Flags {
		if strings.EqualFold(f, flag) {
			return true
		}
	}
	return false
}

// Messages returns every message of mailbox, read-only (nothing is marked seen). A mailbox
// that does not exist has none.
func (s *Server) Messages(t testing.TB, mailbox string) []Message {
	t.Helper()
	c := s.Dial(t)
	defer func() { c.Logout().Wait() }()
	sel, err := c.Select(mailbox, &imap.SelectOptions{ReadOnly: true}).Wait()
	if err != nil {
		if strings.Contains(err.Error(), "NONEXISTENT") || strings.Contains(err.Error(), "doesn't exist") {
			return nil
		}
		t.Fatalf("dovecottest: select %s: %v", mailbox, err)
	}
	if sel.NumMessages == 0 {
		return nil
	}
	var all imap.SeqSet
	all.AddRange(1, 0)
	bufs, err := c.Fetch(all, &imap.FetchOptions{UID: true, Flags: true, BodySection: []*imap.FetchItemBodySection{{Peek: true}}}).Collect()
	if err != nil {
		t.Fatalf("dovecottest: fetch %s: %v", mailbox, err)
	}
	out := make([]Message, 0, len(bufs))
	for _, b := range bufs {
		m := Message{UID: uint32(b.UID), Raw: b.FindBodySection(&imap.FetchItemBodySection{Peek: true})}
		for _, f := range b.Flags {
			m.Flags = append(m.Flags, string(f))
		}
		out = append(out, m)
	}
	return out
}

// Mailboxes lists the user's mailboxes.
func (s *Server) Mailboxes(t testing.TB) []string {
	t.Helper()
	c := s.Dial(t)
	defer func() { c.Logout().Wait() }()
	list, err := c.List("", "*", nil).Collect()
	if err != nil {
		t.Fatalf("dovecottest: list: %v", err)
	}
	var out []string
	for _, l := range list {
		out = append(out, l.Mailbox)
	}
	return out
}

// selfSigned writes a certificate and key for the loopback addresses and Hostname into dir.
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
		Subject:               pkix.Name{CommonName: Hostname},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost", Hostname},
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
	certFile, keyFile = filepath.Join(dir, "imap-cert.pem"), filepath.Join(dir, "imap-key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return "", "", nil, err
	}
	// The master reads the key as root before anything drops privileges, so root alone may read it.
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
		t.Fatalf("dovecottest: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// portTaken reports whether something else listens on addr.
func portTaken(addr string) bool {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return true
	}
	l.Close()
	return false
}

// lockedBuffer collects the master's output, written and read from different goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
