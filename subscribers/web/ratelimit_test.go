package web

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

var rlT0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

func TestRateLimiterClientWindow(t *testing.T) {
	l := newRateLimiter(2)
	steps := []struct {
		client    string
		at        time.Duration
		want      bool
		wantRetry time.Duration
	}{
		{"192.0.2.1", 0, true, 0},
		{"192.0.2.1", 10 * time.Second, true, 0},
		{"192.0.2.1", 20 * time.Second, false, 40 * time.Second},
		{"192.0.2.1", 21 * time.Second, false, 39 * time.Second}, // a refusal counts nowhere
		{"192.0.2.2", 20 * time.Second, true, 0},
		{"192.0.2.1", 60 * time.Second, true, 0}, // the first request left the window
		{"192.0.2.1", 61 * time.Second, false, 9 * time.Second},
		{"::ffff:192.0.2.1", 62 * time.Second, false, 8 * time.Second}, // IPv4-mapped is the same client
		// An IPv6 client is its /64: another address in it is the same client.
		{"2001:db8:1:2::1", 0, true, 0},
		{"2001:db8:1:2:ffff::9", time.Second, true, 0},
		{"2001:db8:1:2::abcd", 2 * time.Second, false, 58 * time.Second},
		{"2001:db8:1:3::1", 2 * time.Second, true, 0},
		// Clients that are no IP address share one allowance.
		{"@", 0, true, 0},
		{"", 0, true, 0},
		{"unix", 0, false, time.Minute},
	}
	for i, s := range steps {
		ok, retry := l.allow(s.client, rlT0.Add(s.at))
		if ok != s.want || retry != s.wantRetry {
			t.Errorf("step %d (%s at %v): allow = %v, %v; want %v, %v", i, s.client, s.at, ok, retry, s.want, s.wantRetry)
		}
	}
	if ok, _ := newRateLimiter(0).allow("192.0.2.1", rlT0); !ok {
		t.Error("limit 0 refused a request")
	}
}

// TestRateLimiterNetworkShare: rotating addresses inside one network buys no more than the
// network's share in a minute, then the network waits as a whole, and others are not held.
func TestRateLimiterNetworkShare(t *testing.T) {
	const limit = 2
	for _, c := range []struct {
		name  string
		addr  func(i int) string
		share int
	}{
		{"IPv4/24", func(i int) string { return fmt.Sprintf("198.51.100.%d", i%256) }, share24},
		{"IPv6/48", func(i int) string { return fmt.Sprintf("2001:db8:7:%x::1", i) }, share48},
		{"IPv6/32", func(i int) string { return fmt.Sprintf("2001:db8:%x:%x::1", i/share48/limit, i) }, share32v6},
	} {
		t.Run(c.name, func(t *testing.T) {
			l := newRateLimiter(limit)
			admitted := 0
			for i := range 5000 {
				if ok, _ := l.allow(c.addr(i), rlT0.Add(time.Duration(i)*time.Millisecond)); ok {
					admitted++
				}
			}
			// 5 seconds of requests: the burst, plus what the bucket refilled meanwhile.
			want := c.share*limit + c.share*limit*5/60
			if admitted < c.share*limit || admitted > want+1 {
				t.Errorf("admitted %d, want %d..%d", admitted, c.share*limit, want+1)
			}
			ok, retry := l.allow(c.addr(9999), rlT0.Add(5*time.Second))
			if ok || retry <= 0 || retry > time.Minute {
				t.Errorf("a new address in the network: allow = %v, retry %v; want a refusal within a minute", ok, retry)
			}
			if ok, _ := l.allow(c.addr(9999), rlT0.Add(5*time.Second+retry)); !ok {
				t.Errorf("refused again after the Retry-After of %v", retry)
			}
			for _, other := range []string{"203.0.113.9", "2a00:1450:4001::1"} {
				if ok, _ := l.allow(other, rlT0.Add(5*time.Second)); !ok {
					t.Errorf("client %s elsewhere refused", other)
				}
			}
		})
	}
}

// TestRateLimiterFlood48 is the flood that held the old limiter full: two tunnel-broker /48s
// sending from a new /64 each time. New clients elsewhere, and in other /48s of the same
// provider, are still admitted, and memory stays within the tables.
func TestRateLimiterFlood48(t *testing.T) {
	const limit = 5
	l := newRateLimiter(limit)
	flood := floodAddrs(200_000)
	admitted := 0
	for i, ip := range flood {
		if ok, _ := l.allow(ip, rlT0.Add(time.Duration(i)*200*time.Microsecond)); ok {
			admitted++
		}
	}
	now := rlT0.Add(40 * time.Second)
	// Two /48s, 40 seconds: each its burst and two thirds of a minute's refill.
	if most := 2 * (share48*limit + share48*limit*2/3 + 1); admitted > most {
		t.Errorf("the flood got %d requests through, want at most %d", admitted, most)
	}
	if n, most := l.size(), 5*tableSize; n > most {
		t.Errorf("%d entries remembered, want at most %d", n, most)
	}
	for _, fresh := range []string{"203.0.113.9", "2a00:1450:4001:81c::200e", "2001:470:abcd:1::2"} {
		if ok, retry := l.allow(fresh, now); !ok {
			t.Errorf("fresh client %s refused (retry %v) after the flood", fresh, retry)
		}
	}
	if ok, _ := l.allow("2001:470:1f00:ffff::1", now); ok {
		t.Error("a new /64 in a flooding /48 admitted")
	}
}

// TestRateLimiterManyNetworks floods from more networks than the tables hold: the least recently
// seen entries make room, nobody is locked out, and a limited client that keeps asking stays
// limited.
func TestRateLimiterManyNetworks(t *testing.T) {
	const size = 64
	l := newRateLimiterSized(1, time.Minute, size)
	if ok, _ := l.allow("192.0.2.50", rlT0); !ok {
		t.Fatal("first request refused")
	}
	for i := range 20_000 {
		at := rlT0.Add(time.Duration(i) * time.Millisecond)
		ip := netip.AddrFrom4([4]byte{10 + byte(i>>16), byte(i >> 8), byte(i), 1}).String()
		if ok, _ := l.allow(ip, at); !ok {
			t.Fatalf("request %d from its own /24 refused", i)
		}
		if i%(size/2) == 0 {
			if ok, _ := l.allow("192.0.2.50", at); ok {
				t.Fatalf("the limited client was admitted again after %d other networks", i)
			}
		}
	}
	if n := l.size(); n > 5*size {
		t.Errorf("%d entries remembered, want at most %d", n, 5*size)
	}
	if ok, _ := l.allow("2001:db8::1", rlT0.Add(30*time.Second)); !ok {
		t.Error("a fresh client refused after the flood")
	}
}

// TestRateLimiterForgetsIdle: clients idle for a minute leave the tables as later requests pass,
// so their addresses do not stay in memory.
func TestRateLimiterForgetsIdle(t *testing.T) {
	l := newRateLimiter(5)
	for i := range 50 {
		l.allow(fmt.Sprintf("198.51.%d.7", i), rlT0)
	}
	if n := l.size(); n != 100 {
		t.Fatalf("%d entries for 50 clients in 50 /24s, want 100", n)
	}
	for i := range 30 {
		l.allow("203.0.113.9", rlT0.Add(time.Minute+time.Duration(i)*time.Second))
	}
	if n := l.size(); n != 2 {
		t.Errorf("%d entries after the others were idle for a minute, want 2 (one client, its /24)", n)
	}
}
