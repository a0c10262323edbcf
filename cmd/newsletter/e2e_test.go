package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"io"
	"maps"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"newsletter/internal/pgdb"
	"newsletter/internal/smtptest"
	"newsletter/internal/testdb"
)

// e2eSecret signs the links of every service the tests start, so a test can sign links of its own.
const e2eSecret = "2e291c072edad77b71e83a6ac11ddff86ac6890af7a1d6474b9032cffae3e29b" // 32 random bytes in hex, as NEWSLETTER_SECRET must be

// service is one `newsletter serve`, run in the test's process through runApp against its own
// database and its own SMTP server, exactly as the binary runs it.
type service struct {
	URL  string           // http://127.0.0.1:PORT, also NEWSLETTER_BASE_URL
	SMTP *smtptest.Server // receives every email the service sends
	DB   *sqlx.DB         // the service's database, migrated
	Env  map[string]string

	log    *lockedBuffer
	cancel context.CancelFunc
	exited chan int
	status int
	once   sync.Once
}

// startService runs serve with test defaults (fresh database, in-process SMTP, a free loopback
// port, a fixed secret, no rate limit) overridden by env, and returns once it listens. The service
// stops when the test ends; its log is printed if the test failed.
func startService(t *testing.T, env map[string]string) *service {
	t.Helper()
	return startServiceApp(t, env, nil)
}

// startServiceApp is startService with tune applied to the App before it runs (test seams such as
// the SMTP relay's trusted certificates).
func startServiceApp(t *testing.T, env map[string]string, tune func(*App)) *service {
	t.Helper()
	smtp := smtptest.Start(t)
	dbURL := testdb.URL(t)
	port := freePort(t)
	s := &service{
		URL:  "http://127.0.0.1:" + strconv.Itoa(port),
		SMTP: smtp,
		Env: map[string]string{
			"NEWSLETTER_DATABASE_URL":         dbURL,
			"NEWSLETTER_SMTP_URL":             smtp.URL(),
			"NEWSLETTER_HTTP_ADDR":            "127.0.0.1:" + strconv.Itoa(port),
			"NEWSLETTER_BASE_URL":             "http://127.0.0.1:" + strconv.Itoa(port),
			"NEWSLETTER_SECRET":               e2eSecret,
			"NEWSLETTER_PUBLICATION_NAME":     "The Test Gazette",
			"NEWSLETTER_FROM":                 "The Test Gazette <digest@gazette.test>",
			"NEWSLETTER_SUBSCRIBE_RATE_LIMIT": "0",
			"NEWSLETTER_LOG_LEVEL":            "debug",
		},
		log:    &lockedBuffer{},
		exited: make(chan int, 1),
	}
	maps.Copy(s.Env, env)
	if v, ok := env["NEWSLETTER_BASE_URL"]; ok {
		s.URL = strings.TrimRight(v, "/")
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	app := &App{stdin: strings.NewReader(""), stdout: s.log, stderr: s.log, getenv: func(k string) string { return s.Env[k] }, ready: make(chan string, 1)}
	if tune != nil {
		tune(app)
	}
	go func() { s.exited <- runApp(ctx, app, []string{"serve"}) }()
	t.Cleanup(func() {
		if code := s.Stop(); code != exitOK && !t.Failed() {
			t.Errorf("serve exited with %d", code)
		}
		if t.Failed() {
			t.Logf("service log:\n%s", s.log.String())
		}
	})
	select {
	case addr := <-app.ready:
		if !strings.HasSuffix(s.Env["NEWSLETTER_HTTP_ADDR"], ":0") && addr != s.Env["NEWSLETTER_HTTP_ADDR"] {
			t.Fatalf("serve listens on %s, want %s", addr, s.Env["NEWSLETTER_HTTP_ADDR"])
		}
	case code := <-s.exited:
		s.exited <- code
		t.Fatalf("serve exited with %d before listening:\n%s", code, s.log.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("serve did not listen within a minute:\n%s", s.log.String())
	}
	db, err := pgdb.Open(context.Background(), s.Env["NEWSLETTER_DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	s.DB = db
	return s
}

// Stop ends serve as SIGTERM would and returns its exit status; later calls return the same.
func (s *service) Stop() int {
	s.once.Do(func() {
		s.cancel()
		select {
		case s.status = <-s.exited:
		case <-time.After(60 * time.Second):
			s.status = -1
		}
	})
	return s.status
}

// Log is what the service wrote to stderr so far.
func (s *service) Log() string { return s.log.String() }

// freePort finds a loopback port nobody listens on, so the base URL can name it before serve starts.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// httpResult is an answer read in full.
type httpResult struct {
	Status int
	Header http.Header
	Body   string
}

// noRedirect is a client that shows redirects instead of following them and keeps no cookies.
var noRedirect = &http.Client{
	Timeout:       30 * time.Second,
	CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
}

// Do sends a request to the service; path may be absolute (a link from an email) or start with "/".
func (s *service) Do(t *testing.T, method, path, contentType, body string, header ...string) httpResult {
	t.Helper()
	u := path
	if strings.HasPrefix(path, "/") {
		u = s.URL + path
	}
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	res, err := noRedirect.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, redactToken(u), err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return httpResult{Status: res.StatusCode, Header: res.Header, Body: string(b)}
}

// Get is Do for a GET.
func (s *service) Get(t *testing.T, path string, header ...string) httpResult {
	t.Helper()
	return s.Do(t, "GET", path, "", "", header...)
}

// PostForm posts url-encoded values.
func (s *service) PostForm(t *testing.T, path string, v url.Values, header ...string) httpResult {
	t.Helper()
	return s.Do(t, "POST", path, "application/x-www-form-urlencoded", v.Encode(), header...)
}

// mailPart is one leaf part of a received email, its body decoded.
type mailPart struct {
	ContentType string // media type, e.g. "text/plain"
	Charset     string
	Body        string
}

// receivedMail is an accepted message, parsed as MIME.
type receivedMail struct {
	Header map[string][]string
	Parts  []mailPart // leaf parts, in order
	Type   string     // top-level media type
}

// Part returns the first part of media type mt.
func (m receivedMail) Part(t *testing.T, mt string) mailPart {
	t.Helper()
	for _, p := range m.Parts {
		if p.ContentType == mt {
			return p
		}
	}
	t.Fatalf("mail has no %s part (parts: %+v)", mt, m.Parts)
	return mailPart{}
}

// Get returns a header's first value, RFC 2047-decoded.
func (m receivedMail) Get(name string) string {
	v := m.Header[http.CanonicalHeaderKey(name)]
	if len(v) == 0 {
		return ""
	}
	dec, err := new(mime.WordDecoder).DecodeHeader(v[0])
	if err != nil {
		return v[0]
	}
	return dec
}

// parseMail parses msg as MIME, decoding every leaf part's transfer encoding.
func parseMail(t *testing.T, msg smtptest.Message) receivedMail {
	t.Helper()
	pm, err := msg.Parsed()
	if err != nil {
		t.Fatalf("mail does not parse: %v", err)
	}
	m := receivedMail{Header: pm.Header}
	mt, params, err := mime.ParseMediaType(pm.Header.Get("Content-Type"))
	if err != nil {
		t.Fatalf("mail Content-Type %q: %v", pm.Header.Get("Content-Type"), err)
	}
	m.Type = mt
	m.Parts = walkPart(t, mt, params, pm.Header.Get("Content-Transfer-Encoding"), pm.Body)
	return m
}

func walkPart(t *testing.T, mt string, params map[string]string, cte string, body io.Reader) []mailPart {
	t.Helper()
	if strings.HasPrefix(mt, "multipart/") {
		var out []mailPart
		mr := multipart.NewReader(body, params["boundary"])
		for {
			p, err := mr.NextRawPart()
			if err == io.EOF {
				return out
			}
			if err != nil {
				t.Fatalf("mail part: %v", err)
			}
			pmt, pparams, err := mime.ParseMediaType(p.Header.Get("Content-Type"))
			if err != nil {
				t.Fatalf("part Content-Type %q: %v", p.Header.Get("Content-Type"), err)
			}
			out = append(out, walkPart(t, pmt, pparams, p.Header.Get("Content-Transfer-Encoding"), p)...)
		}
	}
	var r io.Reader = body
	switch strings.ToLower(cte) {
	case "quoted-printable":
		r = quotedprintable.NewReader(body)
	case "base64":
		r = base64.NewDecoder(base64.StdEncoding, body)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decode %s part: %v", mt, err)
	}
	return []mailPart{{ContentType: mt, Charset: strings.ToLower(params["charset"]), Body: string(bytes.ReplaceAll(b, []byte("\r\n"), []byte("\n")))}}
}

// linkPattern finds http(s) URLs in plain text or HTML attributes.
var linkPattern = regexp.MustCompile(`https?://[^\s"'<>]+`)

// findLink returns the only distinct link in text whose path contains marker (e.g. "/confirm/").
func findLink(t *testing.T, text, marker string) string {
	t.Helper()
	var found []string
	for _, l := range linkPattern.FindAllString(text, -1) {
		l = strings.ReplaceAll(l, "&amp;", "&")
		if strings.Contains(l, marker) && (len(found) == 0 || found[0] != l) {
			found = append(found, l)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want one link with %s, found %d", marker, len(found))
	}
	return found[0]
}

// redactToken hides the signed part of a link in test output.
func redactToken(u string) string {
	return regexp.MustCompile(`/(confirm|unsubscribe|manage)/[^/?#]+`).ReplaceAllString(u, "/$1/TOKEN")
}

// lockedBuffer is the service's stderr: written by its goroutines, read by the test.
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
