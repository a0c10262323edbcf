package web

import (
	"sync"
	"time"
)

// rateLimiter allows each client at most limit requests in any sliding minute. It remembers the
// times of a client's recent requests only, and forgets clients idle for a minute, so its memory
// is bounded by the clients active in the last minute (and capped by maxClients).
type rateLimiter struct {
	limit      int
	window     time.Duration
	maxClients int

	mu        sync.Mutex
	clients   map[string][]time.Time
	lastSweep time.Time
}

func newRateLimiter(limit int) *rateLimiter {
	return &rateLimiter{limit: limit, window: time.Minute, maxClients: 100_000, clients: map[string][]time.Time{}}
}

// allow records a request of client at now and reports whether it is within the limit; when it is
// not, retry is how long until the oldest counted request leaves the window.
func (l *rateLimiter) allow(client string, now time.Time) (ok bool, retry time.Duration) {
	if l == nil || l.limit <= 0 {
		return true, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.lastSweep) >= l.window || len(l.clients) >= l.maxClients {
		l.sweep(now)
	}
	times := l.clients[client]
	cut := 0
	for cut < len(times) && now.Sub(times[cut]) >= l.window {
		cut++
	}
	times = times[cut:]
	if len(times) >= l.limit {
		l.clients[client] = times
		return false, l.window - now.Sub(times[0])
	}
	if len(l.clients) >= l.maxClients {
		// Still full of active clients after a sweep: refusing a newcomer beats unbounded memory.
		if _, known := l.clients[client]; !known {
			return false, l.window
		}
	}
	l.clients[client] = append(times, now)
	return true, 0
}

// sweep forgets every client whose last request left the window.
func (l *rateLimiter) sweep(now time.Time) {
	for c, times := range l.clients {
		if len(times) == 0 || now.Sub(times[len(times)-1]) >= l.window {
			delete(l.clients, c)
		}
	}
	l.lastSweep = now
}

// size is how many clients are remembered (tests).
func (l *rateLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.clients)
}
