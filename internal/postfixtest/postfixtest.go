// Package postfixtest runs a private Postfix (Debian's postfix package) for one test: its own
// configuration, queue and log in a temporary directory, its smtpd on a free loopback port with
// the strict settings of a production relay, and everything it accepts relayed to an in-process
// smtptest sink, so a test sees each message exactly as Postfix passed it on, envelope included.
// The system Postfix is neither used nor needed, and instances run side by side. Postfix starts
// only as root; the tests run as root.
//
// The sink does not offer SMTPUTF8, so Postfix bounces a message whose client asked for SMTPUTF8
// and that has non-ASCII addresses or headers ("SMTPUTF8 is required, but was not offered"). The
// bounces Postfix makes go to the sink too, from the null sender (MAIL FROM:<>).
package postfixtest

import (
	"bufio"
	"bytes"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"newsletter/internal/smtptest"
)

// Hostname is the instance's myhostname: its banner, its EHLO reply and its Received headers.
const Hostname = "mx.postfixtest.invalid"

// Options are what a test changes about the instance; the zero value is the strict relay without
// TLS.
type Options struct {
	// DiscardEHLO are EHLO keywords the smtpd does not offer (smtpd_discard_ehlo_keywords), e.g.
	// "chunking", "pipelining", "8bitmime", "smtputf8".
	DiscardEHLO []string
	// TLS offers STARTTLS with a self-signed certificate for 127.0.0.1, ::1, localhost and Hostname
	// (Server.CertPool trusts it).
	TLS bool
	// RequireTLS refuses mail before STARTTLS (smtpd_tls_security_level = encrypt); implies TLS.
	RequireTLS bool
	// Main are further main.cf settings; one the helper sets too replaces the helper's value.
	Main map[string]string
}

// Server is a running Postfix instance.
type Server struct {
	Host string // 127.0.0.1
	Port int    // the smtpd's port
	// CertFile is the PEM certificate offered with STARTTLS (empty without TLS).
	CertFile string
	// ConfigDir holds main.cf and master.cf: `postconf -c ConfigDir -n` shows the settings.
	ConfigDir string

	tls      bool
	dir      string
	queueDir string
	logFile  string
	cert     *x509.Certificate
	sink     *smtptest.Server
	bins     binaries
	cmd      *exec.Cmd
	out      *lockedBuffer // the master's stdout and stderr (the log proper is in logFile)
	exited   chan struct{}
	stopOnce sync.Once
	marks    atomic.Int64
}

// binaries are the Postfix programs the helper runs.
type binaries struct {
	postfix, postconf, postlog, postqueue, master string
}

// searchDirs are where the Postfix commands are looked for after $PATH: a test run from a user's
// shell may not have the sbin directories in it. A variable so a test can take them away.
var searchDirs = []string{"/usr/sbin", "/usr/local/sbin"}

// findBinaries locates the commands, and the master daemon where postconf says Postfix keeps it.
func findBinaries() (binaries, error) {
	find := func(name string) (string, error) {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
		for _, d := range searchDirs {
			p := filepath.Join(d, name)
			if st, err := os.Stat(p); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
				return p, nil
			}
		}
		return "", fmt.Errorf("%s not found in $PATH or %s: install Debian's postfix (apt-get install postfix)", name, strings.Join(searchDirs, ", "))
	}
	var b binaries
	var err error
	for _, x := range []struct {
		dst  *string
		name string
	}{{&b.postfix, "postfix"}, {&b.postconf, "postconf"}, {&b.postlog, "postlog"}, {&b.postqueue, "postqueue"}} {
		if *x.dst, err = find(x.name); err != nil {
			return b, err
		}
	}
	out, err := exec.Command(b.postconf, "-dh", "daemon_directory").Output()
	if err != nil {
		return b, fmt.Errorf("%s -dh daemon_directory: %v: install Debian's postfix (apt-get install postfix)", b.postconf, err)
	}
	b.master = filepath.Join(strings.TrimSpace(string(out)), "master")
	if _, err := os.Stat(b.master); err != nil {
		return b, fmt.Errorf("the Postfix master daemon: %v: install Debian's postfix (apt-get install postfix)", err)
	}
	return b, nil
}

// Start runs a Postfix instance for the test and returns once its smtpd greets. It relays every
// message it accepts to a sink started for it (Sink), and stops when the test ends, printing its
// log if the test failed. A missing Postfix fails the test: these tests never skip.
func Start(t testing.TB, opts Options) *Server {
	t.Helper()
	bins, err := findBinaries()
	if err != nil {
		t.Fatalf("postfixtest: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Fatalf("postfixtest: Postfix starts only as root; run the tests as root (uid is %d)", os.Geteuid())
	}
	// Started first so it is stopped last: Postfix may still be delivering when the test ends.
	sink := smtptest.Start(t)
	s := &Server{Host: "127.0.0.1", sink: sink, bins: bins, tls: opts.TLS || opts.RequireTLS}
	if s.dir, err = instanceDir(); err != nil {
		t.Fatalf("postfixtest: %v", err)
	}
	t.Cleanup(func() {
		if err := os.RemoveAll(s.dir); err != nil {
			t.Logf("postfixtest: remove %s: %v", s.dir, err)
		}
	})
	s.ConfigDir = filepath.Join(s.dir, "etc")
	s.queueDir = filepath.Join(s.dir, "queue")
	s.logFile = filepath.Join(s.dir, "maillog")
	dataDir := filepath.Join(s.dir, "data")
	for _, d := range []string{s.ConfigDir, s.queueDir, dataDir} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatalf("postfixtest: %v", err)
		}
	}
	// Postfix refuses a data directory that its mail_owner does not own; `postfix check` makes the
	// queue's subdirectories itself.
	if err := chownPostfix(dataDir); err != nil {
		t.Fatalf("postfixtest: %v", err)
	}
	if s.tls {
		var keyFile string
		if s.CertFile, keyFile, s.cert, err = selfSigned(s.ConfigDir); err != nil {
			t.Fatalf("postfixtest: certificate: %v", err)
		}
		opts.Main = maps.Clone(opts.Main)
		if opts.Main == nil {
			opts.Main = map[string]string{}
		}
		// The helper's TLS settings go first, so Options.Main can still change them.
		tlsMain := map[string]string{
			"smtpd_tls_cert_file":           s.CertFile,
			"smtpd_tls_key_file":            keyFile,
			"smtpd_tls_security_level":      "may",
			"smtpd_tls_protocols":           ">=TLSv1.2",
			"smtpd_tls_mandatory_protocols": ">=TLSv1.2",
			"smtpd_tls_loglevel":            "1",
			"smtpd_tls_received_header":     "yes",
		}
		if opts.RequireTLS {
			tlsMain["smtpd_tls_security_level"] = "encrypt"
		}
		for k, v := range tlsMain {
			if _, ok := opts.Main[k]; !ok {
				opts.Main[k] = v
			}
		}
	}

	// The port is picked before the master binds it, so another process may take it in between:
	// a master that exits before its smtpd answers while the port is taken is tried again on
	// another one. (The master reports a failed bind, like every error before its log is set up,
	// to syslog only, so the helper looks at the port itself.)
	for attempt := 1; ; attempt++ {
		s.Port = freePort(t)
		if err := s.writeConfig(opts, dataDir); err != nil {
			t.Fatalf("postfixtest: %v", err)
		}
		if attempt == 1 {
			// Creates the queue's subdirectories with the owners and modes Postfix insists on, and
			// reports what it finds wrong with the configuration.
			out, err := exec.Command(bins.postfix, "-c", s.ConfigDir, "check").CombinedOutput()
			if err != nil {
				t.Fatalf("postfixtest: %s -c %s check: %v\n%s%s", bins.postfix, s.ConfigDir, err, out, s.readLog())
			}
		}
		err := s.run(lifetime(t))
		if err == nil {
			break
		}
		if attempt < 3 && portTaken(s.Addr()) {
			continue
		}
		log := s.readLog()
		if log == "" {
			log = "(empty: the master reports errors before its log is set up to syslog only)\n"
		}
		t.Fatalf("postfixtest: %v\nmaster output:\n%s\nlog:\n%s", err, s.out.String(), log)
	}
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("postfixtest: Postfix log:\n%s", s.readLog())
			if out := s.out.String(); out != "" {
				t.Logf("postfixtest: master output:\n%s", out)
			}
		}
	})
	return s
}

// lifetime is how long the instance may run at most: until a minute after the test binary's
// deadline (go test -timeout), else an hour.
func lifetime(t testing.TB) time.Duration {
	if d, ok := t.(interface{ Deadline() (time.Time, bool) }); ok {
		if end, ok := d.Deadline(); ok {
			return max(time.Until(end), 0) + time.Minute
		}
	}
	return time.Hour
}

// instanceDir makes the instance's private directory. It is not under t.TempDir(), which is
// inside a directory only root may enter: the master opens its lock in the data directory as the
// postfix user, by absolute path, and exits when it cannot. Its name is short because Postfix's
// commands reach the instance's sockets (public/postlog, public/showq) by absolute path, and a
// socket's path may not exceed 107 bytes.
func instanceDir() (string, error) {
	base := os.TempDir()
	if len(base) > 40 || !searchable(base) {
		base = "/tmp"
	}
	dir, err := os.MkdirTemp(base, "postfixtest-")
	if err != nil {
		return "", err
	}
	// MkdirTemp makes it 0700, which would lock the postfix user out.
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

func chownPostfix(path string) error {
	u, err := user.Lookup("postfix")
	if err != nil {
		return fmt.Errorf("the postfix user: %v (install Debian's postfix, which creates it)", err)
	}
	uid, err := strconv.Atoi(u.Uid)
	if err != nil {
		return fmt.Errorf("the postfix user: %v", err)
	}
	return os.Chown(path, uid, -1)
}

// run starts the master daemon and waits until the smtpd greets; on an error it is no longer
// running. The master runs in the foreground as the helper's own child (what `postfix start-fg`
// runs after `postfix check`, without its refusal of machines that configure multi-instance
// Postfix), so the helper knows when it exits and stops it with a signal.
func (s *Server) run(lifetime time.Duration) error {
	s.out = &lockedBuffer{}
	s.exited = make(chan struct{})
	s.stopOnce = sync.Once{}
	// -s keeps stdout; -c makes the master and every daemon it runs read this instance's files.
	// -e ends the master (and so its daemons) on its own after lifetime: a test binary that dies
	// without cleaning up (a timeout panic, a kill) leaves no Postfix running for long. A parent
	// death signal would not do: Linux clears it when the master changes its effective user.
	// MAIL_DEBUG in the environment would run each daemon under a debugger.
	cmd := exec.Command(s.bins.master, "-s", "-c", s.ConfigDir, "-e", strconv.Itoa(int(lifetime/time.Second)))
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, "MAIL_DEBUG=") })
	cmd.Stdout, cmd.Stderr = s.out, s.out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %v", s.bins.master, err)
	}
	s.cmd = cmd
	go func() { cmd.Wait(); close(s.exited) }()
	// A generous bound that only catches a Postfix that hangs; a busy machine still gets there.
	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("the Postfix master exited before its smtpd answered (%v)", cmd.ProcessState)
		case <-time.After(50 * time.Millisecond):
		}
		if s.greets() {
			return nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			return errors.New("the Postfix smtpd did not answer within a minute")
		}
	}
}

// greets reports whether the smtpd answers a connection with its 220 greeting.
func (s *Server) greets() bool {
	c, err := net.DialTimeout("tcp", s.Addr(), time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	// Short, so a port some other program took in the meantime is given up soon; a slow smtpd is
	// simply asked again.
	c.SetDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "220 ") {
		return false
	}
	c.Write([]byte("QUIT\r\n"))
	return true
}

// Stop stops the instance: the master passes SIGTERM on to its daemons and exits. It is called
// when the test ends; calling it earlier (or again) is fine. Messages still queued are lost.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	s.stopOnce.Do(func() {
		pgid := s.cmd.Process.Pid // the master makes itself the leader of a new session
		s.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
		case <-time.After(10 * time.Second):
			syscall.Kill(-pgid, syscall.SIGKILL)
			<-s.exited
		}
		// The daemons got SIGTERM too; wait (briefly) until they are gone so none still writes to
		// the directory about to be removed. A daemon that lingers is killed.
		for i := 0; groupRuns(pgid); i++ {
			if i == 100 {
				syscall.Kill(-pgid, syscall.SIGKILL)
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// groupRuns reports whether a process of the process group still runs. Exited daemons stay in
// the group as zombies until PID 1 reaps them, which can take seconds; they do not count.
func groupRuns(pgid int) bool {
	if syscall.Kill(-pgid, 0) != nil {
		return false
	}
	procs, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	for _, p := range procs {
		if p.Name()[0] < '0' || p.Name()[0] > '9' {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", p.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
		f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) && f[0] != "Z" && f[0] != "X" {
			return true
		}
	}
	return false
}

// Addr is host:port of the smtpd.
func (s *Server) Addr() string { return net.JoinHostPort(s.Host, strconv.Itoa(s.Port)) }

// URL is the NEWSLETTER_SMTP_URL that reaches the smtpd; with TLS it insists on STARTTLS
// (?tls=required), so a sender that would fall back to plain text fails instead.
func (s *Server) URL() string {
	u := "smtp://" + s.Addr()
	if s.tls {
		u += "?tls=required"
	}
	return u
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

// Sink is the server Postfix relays every accepted message to; its Messages are what Postfix
// passed on, envelope included. Scripting it (Script, OnRcpt) makes Postfix defer (retried after a
// second or two) or bounce.
func (s *Server) Sink() *smtptest.Server { return s.sink }

// Messages are the messages that reached the sink so far.
func (s *Server) Messages() []smtptest.Message { return s.sink.Messages() }

// WaitForMessages waits until at least n messages reached the sink and returns them; after timeout
// it fails the test with Postfix's queue (the log is printed at the end of the failed test).
func (s *Server) WaitForMessages(t testing.TB, n int, timeout time.Duration) []smtptest.Message {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if m := s.sink.Messages(); len(m) >= n {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("postfixtest: waited %v for %d messages at the sink, got %d; Postfix's queue:\n%s",
				timeout, n, len(s.sink.Messages()), s.Queue(t))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Log is Postfix's log so far. Postfix's daemons log through the postlogd daemon, which writes a
// moment later; Log first waits until a line logged now has been written, so every line logged
// before the call is in it (a test asserting that no line says "reject" sees them all).
func (s *Server) Log(t testing.TB) string {
	t.Helper()
	if s.running() {
		mark := fmt.Sprintf("postfixtest sync %d", s.marks.Add(1))
		out, err := exec.Command(s.bins.postlog, "-c", s.ConfigDir, "-t", "postfixtest", "-p", "info", mark).CombinedOutput()
		if err != nil {
			t.Fatalf("postfixtest: %s: %v\n%s", s.bins.postlog, err, out)
		}
		deadline := time.Now().Add(30 * time.Second)
		for !strings.Contains(s.readLog(), mark+"\n") {
			if time.Now().After(deadline) {
				t.Fatalf("postfixtest: the log line %q was not written within 30s", mark)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return dropMarks(s.readLog())
}

// Grep returns the lines of Log that match the regular expression expr.
func (s *Server) Grep(t testing.TB, expr string) []string {
	t.Helper()
	re, err := regexp.Compile(expr)
	if err != nil {
		t.Fatalf("postfixtest: Grep: %v", err)
	}
	var out []string
	for line := range strings.Lines(s.Log(t)) {
		if line = strings.TrimSuffix(line, "\n"); re.MatchString(line) {
			out = append(out, line)
		}
	}
	return out
}

// WaitForLog waits until a log line matches the regular expression expr and returns the first
// such line; after timeout it fails the test.
func (s *Server) WaitForLog(t testing.TB, expr string, timeout time.Duration) string {
	t.Helper()
	re, err := regexp.Compile(expr)
	if err != nil {
		t.Fatalf("postfixtest: WaitForLog: %v", err)
	}
	deadline := time.Now().Add(timeout)
	for {
		for line := range strings.Lines(dropMarks(s.readLog())) {
			if line = strings.TrimSuffix(line, "\n"); re.MatchString(line) {
				return line
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("postfixtest: no log line matched %q within %v", expr, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Queue is what `postqueue -p` lists: the messages Postfix still holds, and why.
func (s *Server) Queue(t testing.TB) string {
	t.Helper()
	out, err := exec.Command(s.bins.postqueue, "-c", s.ConfigDir, "-p").CombinedOutput()
	if err != nil {
		return fmt.Sprintf("%s -p: %v\n%s", s.bins.postqueue, err, out)
	}
	return string(out)
}

func (s *Server) running() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

func (s *Server) readLog() string {
	b, err := os.ReadFile(s.logFile)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Sprintf("(reading %s: %v)\n", s.logFile, err)
	}
	return string(b)
}

// dropMarks removes Log's own synchronisation lines.
func dropMarks(log string) string {
	var b strings.Builder
	for line := range strings.Lines(log) {
		if !strings.Contains(line, " postfixtest[") {
			b.WriteString(line)
		}
	}
	return b.String()
}

// freePort finds a loopback port nobody listens on.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("postfixtest: %v", err)
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
