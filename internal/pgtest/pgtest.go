// Package pgtest runs a private PostgreSQL server for one test, so a test may stop, kill or restart
// its database without disturbing the shared server other tests use. The server binaries are found
// at run time with `pg_config --bindir`; the data directory lives in the test's temporary
// directory; authentication is trust on loopback and fsync is off. A test fails (never skips) when
// the server cannot start.
package pgtest

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"net"
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

	_ "github.com/lib/pq" // the postgres driver for the readiness probe
)

// Server is a private PostgreSQL server.
type Server struct {
	Port int

	t     testing.TB
	bin   string // directory of initdb and postgres
	data  string
	cred  *syscall.Credential // the unprivileged user to run as when the test runs as root
	mu    sync.Mutex
	cmd   *exec.Cmd
	exit  chan struct{} // closed when cmd has exited
	log   *bytes.Buffer
	logMu *sync.Mutex
}

// Start initialises a data directory in t.TempDir(), starts the server on a free loopback port and
// stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	out, err := exec.Command("pg_config", "--bindir").Output()
	if err != nil {
		t.Fatalf("pgtest: pg_config --bindir (the PostgreSQL server package must be installed): %v", err)
	}
	s := &Server{t: t, bin: strings.TrimSpace(string(out)), log: &bytes.Buffer{}, logMu: &sync.Mutex{}}
	for _, name := range []string{"initdb", "postgres"} {
		if _, err := os.Stat(filepath.Join(s.bin, name)); err != nil {
			t.Fatalf("pgtest: %s not found in %s: %v", name, s.bin, err)
		}
	}
	dir := t.TempDir()
	s.data = filepath.Join(dir, "data")
	if os.Geteuid() == 0 {
		// PostgreSQL refuses to run as root: run it as the postgres account, which must be able to
		// reach its data directory through the test's own temporary directories.
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("pgtest: running as root needs a postgres account to run the server as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		s.cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		for _, d := range []string{dir, filepath.Dir(dir)} {
			if err := os.Chmod(d, 0o755); err != nil {
				t.Fatalf("pgtest: %v", err)
			}
		}
	}
	if err := os.Mkdir(s.data, 0o700); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	if s.cred != nil {
		if err := os.Chown(s.data, int(s.cred.Uid), int(s.cred.Gid)); err != nil {
			t.Fatalf("pgtest: %v", err)
		}
	}
	initdb := s.command(filepath.Join(s.bin, "initdb"), "-D", s.data, "-U", "postgres", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync")
	if out, err := initdb.CombinedOutput(); err != nil {
		t.Fatalf("pgtest: initdb: %v\n%s", err, out)
	}
	s.Port = freePort(t)
	t.Cleanup(s.Stop)
	s.Start()
	return s
}

// URL is a connection URL for database name on this server ("postgres" always exists).
func (s *Server) URL(name string) string {
	return fmt.Sprintf("postgres://postgres@127.0.0.1:%d/%s?sslmode=disable&connect_timeout=5", s.Port, name)
}

// Start starts the server (after Stop) and waits until it accepts connections.
func (s *Server) Start() {
	s.t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd != nil {
		return
	}
	cmd := s.command(filepath.Join(s.bin, "postgres"), "-D", s.data,
		"-c", "listen_addresses=127.0.0.1", "-c", "port="+strconv.Itoa(s.Port), "-c", "unix_socket_directories=",
		"-c", "fsync=off", "-c", "full_page_writes=off",
		"-c", "max_connections=200", "-c", "shared_buffers=64MB")
	w := &lockedWriter{buf: s.log, mu: s.logMu}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("pgtest: start postgres: %v", err)
	}
	exit := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exit)
	}()
	s.cmd, s.exit = cmd, exit
	deadline := time.Now().Add(60 * time.Second)
	for {
		db, err := sql.Open("postgres", s.URL("postgres"))
		if err == nil {
			err = db.Ping()
			db.Close()
		}
		if err == nil {
			return
		}
		select {
		case <-exit:
			s.cmd = nil
			s.t.Fatalf("pgtest: postgres exited at start: %s", s.Log())
		default:
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("pgtest: postgres did not accept connections within a minute: %v\n%s", err, s.Log())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop shuts the server down the way an operator's restart does (fast shutdown: open sessions are
// ended, their transactions rolled back) and waits for it to exit.
func (s *Server) Stop() { s.stop(syscall.SIGINT) }

// Kill ends the server the way a crash does (immediate shutdown, recovery at the next start).
func (s *Server) Kill() { s.stop(syscall.SIGQUIT) }

func (s *Server) stop(sig syscall.Signal) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cmd == nil {
		return
	}
	s.cmd.Process.Signal(sig)
	select {
	case <-s.exit:
	case <-time.After(60 * time.Second):
		s.cmd.Process.Kill()
		<-s.exit
	}
	s.cmd = nil
}

// Restart stops the server, waits pause, and starts it again on the same port.
func (s *Server) Restart(pause time.Duration) {
	s.t.Helper()
	s.Stop()
	time.Sleep(pause)
	s.Start()
}

// Log returns what the server wrote so far.
func (s *Server) Log() string {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return s.log.String()
}

// Ping reports whether the server answers now.
func (s *Server) Ping(ctx context.Context) error {
	db, err := sql.Open("postgres", s.URL("postgres"))
	if err != nil {
		return err
	}
	defer db.Close()
	return db.PingContext(ctx)
}

func (s *Server) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	// Its own process group: a signal meant for the test (Ctrl-C) does not stop the database
	// under it before the cleanup does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: s.cred}
	cmd.Dir = filepath.Dir(s.data)
	cmd.Env = append(os.Environ(), "LC_ALL=C")
	return cmd
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("pgtest: free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

type lockedWriter struct {
	buf *bytes.Buffer
	mu  *sync.Mutex
}

func (w *lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.buf.Len() > 1<<20 {
		return len(p), nil // enough to explain a failure
	}
	return w.buf.Write(p)
}
