package feeds

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"newsletter/digest"
	"newsletter/internal/testdb"
)

func TestParseRetryAfter(t *testing.T) {
	now := ingestNow
	for v, want := range map[string]time.Time{
		"":                              {},
		"soon":                          {},
		"-5":                            {},
		"0":                             {},
		"120":                           now.Add(2 * time.Minute),
		" 3600 ":                        now.Add(time.Hour),
		"999999999":                     now.Add(maxRetryAfter),
		"Wed, 25 Nov 2026 09:30:00 GMT": time.Date(2026, 11, 25, 9, 30, 0, 0, time.UTC),
		"Tue, 24 Nov 2026 09:30:00 GMT": {}, // already past
		"Fri, 25 Dec 2026 09:30:00 GMT": now.Add(maxRetryAfter),
	} {
		if got := parseRetryAfter(v, now); !got.Equal(want) {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", v, got, want)
		}
	}
}

// feedHTTPServer answers each path as the test says, and counts the requests for each.
type feedHTTPServer struct {
	mu   sync.Mutex
	hits map[string]int
	mux  *http.ServeMux
}

func newFeedHTTPServer() *feedHTTPServer {
	return &feedHTTPServer{hits: map[string]int{}, mux: http.NewServeMux()}
}

func (s *feedHTTPServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.hits[r.URL.Path]++
	s.mu.Unlock()
	s.mux.ServeHTTP(w, r)
}

func (s *feedHTTPServer) count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

func (s *feedHTTPServer) feed(path, guid string) {
	s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(testFeedXML(testFeedItemXML(guid, "Title "+guid, "text"))))
	})
}

func (s *feedHTTPServer) redirect(path, to string, code int) {
	s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, to, code) })
}

func (s *feedHTTPServer) status(path string, code int, retryAfter string) {
	s.mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		http.Error(w, "server text the editors need not see", code)
	})
}

func feedStatusOf(t *testing.T, s *digest.Store, u string) Status {
	t.Helper()
	all, err := List(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range all {
		if st.URL == u {
			return st
		}
	}
	t.Fatalf("no feed row for %s", u)
	return Status{}
}

// TestIngestHTTPStatuses: a 301 or 308 moves the feed (a 302 or 307 does not), a 410 turns it
// off, a 429 or 503 with Retry-After holds the next fetch back, and failures in a row are counted.
func TestIngestHTTPStatuses(t *testing.T) {
	ctx := context.Background()
	clock := &testClock{t: ingestNow}
	s := digest.NewStore(testdb.New(t), clock.now)
	fs := newFeedHTTPServer()
	srv := httptest.NewServer(fs)
	defer srv.Close()
	fs.redirect("/moved", "/new-home", http.StatusMovedPermanently)
	fs.feed("/new-home", "moved")
	fs.redirect("/moved-308", "/new-home", http.StatusPermanentRedirect)
	fs.redirect("/temporary", "/elsewhere", http.StatusFound)
	fs.redirect("/temporary-307", "/elsewhere", http.StatusTemporaryRedirect)
	fs.feed("/elsewhere", "temporary")
	// 301 then 302: the feed lives at the 302's source now; where that points is its own business.
	fs.redirect("/chain", "/chain-mid", http.StatusMovedPermanently)
	fs.redirect("/chain-mid", "/chain-end", http.StatusFound)
	fs.feed("/chain-end", "chain")
	fs.status("/gone", http.StatusGone, "")
	fs.status("/busy", http.StatusTooManyRequests, "120")
	fs.status("/down", http.StatusServiceUnavailable, ingestNow.Add(time.Hour).Format(http.TimeFormat))
	fs.status("/down-no-date", http.StatusServiceUnavailable, "")
	fs.status("/broken", http.StatusInternalServerError, "60") // Retry-After counts on 429 and 503 only
	ing := NewIngester(s, nil, Options{AllowPrivate: true}, nil, nil)
	poll := func(path string) Result { return ing.Poll(ctx, Config{"en", srv.URL + path}) }

	t.Run("PermanentRedirect", func(t *testing.T) {
		for _, path := range []string{"/moved", "/moved-308"} {
			r := poll(path)
			if r.Err != nil || r.MovedTo != srv.URL+"/new-home" {
				t.Fatalf("%s: %+v", path, r)
			}
			if st := feedStatusOf(t, s, srv.URL+path); st.FetchURL != srv.URL+"/new-home" || st.URL != srv.URL+path {
				t.Errorf("%s: status %+v: want the configured URL kept and the new one to fetch", path, st)
			}
			before := fs.count(path)
			if r := poll(path); r.Err != nil {
				t.Fatalf("%s again: %+v", path, r)
			}
			if fs.count(path) != before {
				t.Errorf("%s: fetched the old URL again after a permanent redirect", path)
			}
		}
		// The articles keep the configured URL as their feed.
		if a := ingestArticlesByGUID(t, s, "en")["moved"]; a.FeedURL != srv.URL+"/moved" {
			t.Errorf("article's feed = %q", a.FeedURL)
		}
	})
	t.Run("TemporaryRedirect", func(t *testing.T) {
		for _, path := range []string{"/temporary", "/temporary-307"} {
			for range 2 {
				if r := poll(path); r.Err != nil || r.MovedTo != "" {
					t.Fatalf("%s: %+v", path, r)
				}
			}
			if fs.count(path) != 2 {
				t.Errorf("%s fetched %d times, want 2", path, fs.count(path))
			}
			if st := feedStatusOf(t, s, srv.URL+path); st.FetchURL != "" {
				t.Errorf("%s: fetch URL %q after a temporary redirect", path, st.FetchURL)
			}
		}
	})
	t.Run("PermanentThenTemporary", func(t *testing.T) {
		if r := poll("/chain"); r.Err != nil || r.MovedTo != srv.URL+"/chain-mid" {
			t.Fatalf("%+v", r)
		}
	})
	t.Run("Gone", func(t *testing.T) {
		r := poll("/gone")
		if r.Err == nil || r.Err.Error() != "HTTP 410 Gone: the feed is gone, no longer fetched" || !r.Gone {
			t.Fatalf("first poll: %+v", r)
		}
		st := feedStatusOf(t, s, srv.URL+"/gone")
		if st.GoneAt == nil || !st.GoneAt.Equal(ingestNow) || !st.Failing() {
			t.Errorf("status %+v", st)
		}
		clock.add(24 * time.Hour)
		defer clock.add(-24 * time.Hour)
		if r := poll("/gone"); !r.Skipped || !r.Gone || r.Err != nil || fs.count("/gone") != 1 {
			t.Errorf("second poll: %+v, %d fetches", r, fs.count("/gone"))
		}
		// An operator's explicit run tries it again; a success turns it back on.
		fs.feed("/gone/", "back") // the same server, now answering under a subtree
		retry := NewIngester(s, nil, Options{AllowPrivate: true, RetryGone: true}, nil, nil)
		if r := retry.Poll(ctx, Config{"en", srv.URL + "/gone"}); !r.Gone || fs.count("/gone") != 2 {
			t.Errorf("retry: %+v, %d fetches", r, fs.count("/gone"))
		}
		if st := feedStatusOf(t, s, srv.URL+"/gone"); st.GoneAt == nil || !st.GoneAt.Equal(ingestNow) {
			t.Errorf("a second 410 moved gone_at: %+v", st.GoneAt)
		}
		if r := retry.Poll(ctx, Config{"en", srv.URL + "/gone/"}); r.Err != nil {
			t.Errorf("another feed: %+v", r)
		}
		if _, err := s.DB().Exec(`UPDATE feeds SET gone_at = now() WHERE url = $1`, srv.URL+"/gone/"); err != nil {
			t.Fatal(err)
		}
		if r := retry.Poll(ctx, Config{"en", srv.URL + "/gone/"}); r.Err != nil || r.Skipped {
			t.Errorf("retrying a gone feed that answers: %+v", r)
		}
		if st := feedStatusOf(t, s, srv.URL+"/gone/"); st.GoneAt != nil || st.Failing() {
			t.Errorf("after a success: %+v", st)
		}
	})
	t.Run("RetryAfter", func(t *testing.T) {
		for _, path := range []string{"/down", "/busy"} {
			want := ingestNow.Add(time.Hour) // the HTTP date /down sends
			if path == "/busy" {
				want = clock.now().Add(2 * time.Minute)
			}
			wait := want.Sub(clock.now())
			r := poll(path)
			if r.Err == nil || !strings.Contains(r.Err.Error(), "no fetch before") || !r.RetryAfter.Equal(want) {
				t.Fatalf("%s: %+v", path, r)
			}
			if st := feedStatusOf(t, s, srv.URL+path); st.RetryAfter == nil || !st.RetryAfter.Equal(r.RetryAfter) {
				t.Errorf("%s: status %+v", path, st)
			}
			clock.add(wait - time.Second)
			if r := poll(path); !r.Skipped || r.Err != nil || fs.count(path) != 1 {
				t.Errorf("%s a second before: %+v, %d fetches", path, r, fs.count(path))
			}
			clock.add(time.Second)
			if r := poll(path); r.Skipped || fs.count(path) != 2 {
				t.Errorf("%s when the time came: %+v, %d fetches", path, r, fs.count(path))
			}
		}
		for _, path := range []string{"/down-no-date", "/broken"} {
			if r := poll(path); r.Err == nil || !r.RetryAfter.IsZero() {
				t.Errorf("%s: %+v", path, r)
			}
			if r := poll(path); r.Skipped || fs.count(path) != 2 {
				t.Errorf("%s held back: %+v", path, r)
			}
		}
	})
	t.Run("FailuresInARow", func(t *testing.T) {
		u := srv.URL + "/broken" // failed twice above
		if st := feedStatusOf(t, s, u); st.Failures != 2 || st.Failing() {
			t.Fatalf("after two failures: %+v", st)
		}
		r := poll("/broken")
		if r.Err == nil || r.Err.Error() != "HTTP 500 Internal Server Error" {
			t.Errorf("error %v: want the standard text, not the server's", r.Err)
		}
		if st := feedStatusOf(t, s, u); st.Failures != feedFailingPolls || !st.Failing() {
			t.Errorf("after three failures: %+v", st)
		}
		fs.feed("/broken/", "fixed")
		if r := ing.Poll(ctx, Config{"en", u + "/"}); r.Err != nil {
			t.Fatal(r)
		}
		if _, err := s.DB().Exec(`UPDATE feeds SET failures = 5 WHERE url = $1`, u+"/"); err != nil {
			t.Fatal(err)
		}
		ing.Poll(ctx, Config{"en", u + "/"})
		if st := feedStatusOf(t, s, u+"/"); st.Failures != 0 || st.Failing() {
			t.Errorf("a success leaves %+v", st)
		}
	})
}

// TestAdminFeedStatus: the overview shows each feed's state, failing and gone feeds in red, and
// no feed URL's credentials.

// testClock is a settable clock, safe for concurrent use.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *testClock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *testClock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}
