package digest

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"newsletter/internal/testdb"
)

// testClock is a settable clock for session expiry.
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

func TestAdminSessionLifecycle(t *testing.T) {
	db := testdb.New(t)
	ctx := context.Background()
	clock := &testClock{t: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)}
	s := editorSessions{db: db, now: clock.now}

	id, err := s.create(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if len(id) != sessionCookieLen {
		t.Fatalf("session id length %d, want %d", len(id), sessionCookieLen)
	}
	if err := s.check(ctx, id); err != nil {
		t.Fatalf("fresh session: %v", err)
	}
	var stored []byte
	if err := db.Get(&stored, `SELECT id_hash FROM admin_sessions`); err != nil {
		t.Fatal(err)
	}
	if string(stored) == id {
		t.Fatal("the session id itself is stored; want only its hash")
	}

	t.Run("NewIDAtLogin", func(t *testing.T) {
		id2, err := s.create(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if id2 == id {
			t.Fatal("login kept the old session id")
		}
		if err := s.check(ctx, id); !errors.Is(err, errNoSession) {
			t.Fatalf("old session after a new login: %v, want errNoSession", err)
		}
		id = id2
	})
	t.Run("IdleExpiry", func(t *testing.T) {
		clock.add(sessionIdle - time.Minute)
		if err := s.check(ctx, id); err != nil {
			t.Fatalf("used within the idle limit: %v", err)
		}
		clock.add(sessionIdle - time.Minute) // still alive: the last check touched it
		if err := s.check(ctx, id); err != nil {
			t.Fatalf("used again within the idle limit: %v", err)
		}
		clock.add(sessionIdle + time.Second)
		if err := s.check(ctx, id); !errors.Is(err, errNoSession) {
			t.Fatalf("after idle limit: %v, want errNoSession", err)
		}
	})
	t.Run("AbsoluteExpiry", func(t *testing.T) {
		id, err := s.create(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		for elapsed := time.Duration(0); elapsed < sessionMax-sessionIdle; elapsed += sessionIdle / 2 {
			clock.add(sessionIdle / 2)
			if err := s.check(ctx, id); err != nil {
				t.Fatalf("active session at %v: %v", elapsed, err)
			}
		}
		clock.add(sessionIdle - time.Minute)
		if err := s.check(ctx, id); err != nil {
			t.Fatalf("a minute before %v: %v", sessionMax, err)
		}
		clock.add(2 * time.Minute)
		if err := s.check(ctx, id); !errors.Is(err, errNoSession) {
			t.Fatalf("a minute after %v, though active: %v, want errNoSession", sessionMax, err)
		}
	})
	t.Run("Logout", func(t *testing.T) {
		id, err := s.create(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.end(ctx, id); err != nil {
			t.Fatal(err)
		}
		if err := s.check(ctx, id); !errors.Is(err, errNoSession) {
			t.Fatalf("after logout: %v, want errNoSession", err)
		}
	})
	t.Run("Garbage", func(t *testing.T) {
		for _, v := range []string{"", "x", newSessionID()} {
			if err := s.check(ctx, v); !errors.Is(err, errNoSession) {
				t.Errorf("check(%q) = %v, want errNoSession", v, err)
			}
		}
	})
}

func TestAdminLoginThrottleStore(t *testing.T) {
	db := testdb.New(t)
	ctx := context.Background()
	clock := &testClock{t: time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)}
	s := editorSessions{db: db, now: clock.now}

	for i := 0; i < loginClientLimit; i++ {
		if err := s.throttled(ctx, "192.0.2.1"); err != nil {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
		if err := s.failed(ctx, "192.0.2.1"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.throttled(ctx, "192.0.2.1"); !errors.Is(err, errLoginThrottled) {
		t.Fatalf("after %d failures: %v, want errLoginThrottled", loginClientLimit, err)
	}
	if err := s.throttled(ctx, "192.0.2.2"); err != nil {
		t.Fatalf("another client: %v", err)
	}
	clock.add(loginWindow + time.Second)
	if err := s.throttled(ctx, "192.0.2.1"); err != nil {
		t.Fatalf("after the window: %v", err)
	}

	// Many clients, each under its own limit, together hit the global one.
	for i := 0; i < loginGlobalLimit; i++ {
		if err := s.failed(ctx, "198.51.100."+string(rune('a'+i%26))); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.throttled(ctx, "203.0.113.9"); !errors.Is(err, errLoginThrottled) {
		t.Fatalf("after %d failures from many clients: %v, want errLoginThrottled", loginGlobalLimit, err)
	}
}

func TestPasswordMatches(t *testing.T) {
	for _, c := range []struct {
		name, configured, given string
		want                    bool
	}{
		{"Right", "correct horse", "correct horse", true},
		{"Wrong", "correct horse", "battery staple", false},
		{"Prefix", "correct horse", "correct", false},
		{"Longer", "correct horse", "correct horse ", false},
		{"EmptyGiven", "correct horse", "", false},
		{"NoneConfigured", "", "", false},
		{"NoneConfiguredAnyGiven", "", "anything", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := passwordMatches(c.configured, c.given); got != c.want {
				t.Errorf("passwordMatches(%q, %q) = %v, want %v", c.configured, c.given, got, c.want)
			}
		})
	}
}

func TestCSRFToken(t *testing.T) {
	a, b := newSessionID(), newSessionID()
	if !csrfValid(a, csrfToken(a)) {
		t.Error("a session's own token is refused")
	}
	if csrfValid(a, csrfToken(b)) {
		t.Error("another session's token is accepted")
	}
	if csrfValid(a, "") {
		t.Error("an empty token is accepted")
	}
	if csrfToken(a) == a {
		t.Error("the token is the session id")
	}
}

func TestClientKey(t *testing.T) {
	for _, c := range []struct{ name, remote, want string }{
		{"IPv4", "192.0.2.7:5123", "192.0.2.7"},
		{"IPv6SamePrefix", "[2001:db8:1:2:aaaa::1]:443", "2001:db8:1:2::/64"},
		{"IPv6OtherHost", "[2001:db8:1:2:bbbb::9]:443", "2001:db8:1:2::/64"},
		{"NoPort", "192.0.2.8", "192.0.2.8"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: c.remote}
			if got := clientKey(r); got != c.want {
				t.Errorf("clientKey(%q) = %q, want %q", c.remote, got, c.want)
			}
		})
	}
}
