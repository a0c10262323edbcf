package web

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

func benchAllow(l *rateLimiter, ip string, now time.Time) bool {
	ok, _ := l.allow(ip, now)
	return ok
}

// floodAddrs returns n addresses, each in a /64 of its own, inside two /48s.
func floodAddrs(n int) []string {
	out := make([]string, n)
	for i := range out {
		var b [16]byte
		copy(b[:], netip.MustParseAddr("2001:470:1f00::").AsSlice())
		b[5] = byte(i & 1)
		b[6], b[7] = byte(i>>9), byte(i>>1)
		b[15] = 1
		out[i] = netip.AddrFrom16(b).String()
	}
	return out
}

// BenchmarkRateLimit is the cost of one call: steady, 4,096 IPv4 clients taking turns; flood48,
// new /64s of two /48s after 100,000 of them (the map limiter before the per-network tables swept
// its whole map on each such call: 1.6 ms).
func BenchmarkRateLimit(b *testing.B) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	b.Run("steady", func(b *testing.B) {
		l := newRateLimiter(5)
		ips := make([]string, 4096)
		for i := range ips {
			ips[i] = fmt.Sprintf("198.%d.%d.%d", 18+i>>16, (i>>8)&255, i&255)
		}
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			benchAllow(l, ips[i%len(ips)], t0.Add(time.Duration(i)*time.Millisecond))
		}
	})
	b.Run("flood48", func(b *testing.B) {
		l := newRateLimiter(5)
		ips := floodAddrs(200_000)
		for i, ip := range ips[:100_000] {
			benchAllow(l, ip, t0.Add(time.Duration(i)*time.Microsecond))
		}
		now := t0.Add(time.Second)
		b.ResetTimer()
		for i := 0; b.Loop(); i++ {
			benchAllow(l, ips[100_000+i%100_000], now)
		}
	})
}
