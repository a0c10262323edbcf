package web

import (
	"net/netip"
	"sync"
	"time"
)

// rateLimiter allows each client at most limit requests in any sliding minute, and each network
// around it a larger share: an IPv4 client is its address, inside its /24; an IPv6 client is its
// /64 (the block one line usually gets), inside its /48 (a site) and its /32 (a provider). So
// rotating through the /64s of a /48, or the addresses of a /24, buys no more than the network's
// share, and a flood from one network leaves the others alone.
//
// Memory is bounded by fixed-size tables, one per level, each forgetting its least recently seen
// entry to make room, and entries idle for a minute as later requests pass. A table is never full in the sense of refusing someone: under a flood from
// more networks than a table holds, the least recently seen client starts afresh, which loosens
// the limit for some and locks nobody out. Every call costs O(1): a few map lookups and list moves.
type rateLimiter struct {
	limit  int
	window time.Duration

	mu     sync.Mutex
	levels []*limitLevel
}

// limitLevel is one prefix length of one address family.
type limitLevel struct {
	v6     bool
	bits   int  // prefix length counted together
	client bool // the client's own level: an exact sliding minute of limit requests
	// interval and tolerance are the network levels' token bucket (GCRA): one request every
	// interval on average, bursts of window/interval.
	interval, tolerance int64
	tab                 *limitTable
}

// Network shares, as multiples of the per-client limit, and the table sizes.
const (
	share24   = 16 // an IPv4 /24
	share48   = 16 // an IPv6 /48
	share32v6 = 64 // an IPv6 /32
	tableSize = 1 << 14
	// logBudget caps the timestamps kept by one client table (8 bytes each), whatever the limit.
	logBudget = 1 << 20
)

func newRateLimiter(limit int) *rateLimiter {
	return newRateLimiterSized(limit, time.Minute, tableSize)
}

func newRateLimiterSized(limit int, window time.Duration, size int) *rateLimiter {
	l := &rateLimiter{limit: limit, window: window}
	if limit <= 0 {
		return l
	}
	clientSize := min(size, max(1024, logBudget/limit))
	bucket := func(v6 bool, bits, share int) *limitLevel {
		iv := max(1, int64(window)/int64(share*limit))
		return &limitLevel{v6: v6, bits: bits, interval: iv, tolerance: int64(window) - iv, tab: newLimitTable(size, 0)}
	}
	l.levels = []*limitLevel{
		bucket(false, 24, share24),
		{v6: false, bits: 32, client: true, tab: newLimitTable(clientSize, limit)},
		bucket(true, 32, share32v6),
		bucket(true, 48, share48),
		{v6: true, bits: 64, client: true, tab: newLimitTable(clientSize, limit)},
	}
	return l
}

// otherKey is the one key of every client that is not an IP address (a Unix socket, say): they
// share one allowance. No address maps to it: IPv4 keys are IPv4-mapped.
var otherKey = [16]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

// allow records a request of client (an IP address as clientaddr.Of gives it) at now and reports
// whether it is within the limits; when it is not, retry is how long until it would be. A refused
// request is counted nowhere, so hammering costs a client nothing more than the refusals.
func (l *rateLimiter) allow(client string, now time.Time) (ok bool, retry time.Duration) {
	if l == nil || l.limit <= 0 {
		return true, 0
	}
	var keys [5][16]byte
	var use [5]bool
	if ip, err := netip.ParseAddr(client); err == nil {
		ip = ip.Unmap().WithZone("")
		for i, lv := range l.levels {
			if lv.v6 == ip.Is6() {
				keys[i] = netip.PrefixFrom(ip, lv.bits).Masked().Addr().As16()
				use[i] = true
			}
		}
	} else {
		keys[1], use[1] = otherKey, true
	}
	t := now.UnixNano()
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, lv := range l.levels {
		lv.tab.expire(t-int64(l.window), 2)
	}
	var slots [5]int32
	refused := false
	for i, lv := range l.levels {
		slots[i] = -1
		if !use[i] {
			continue
		}
		s, found := lv.tab.find(keys[i], t)
		if !found {
			continue // unknown: within its allowance
		}
		slots[i] = s
		if wait := lv.wait(s, t, l.limit, int64(l.window)); wait > 0 {
			refused, retry = true, max(retry, time.Duration(wait))
		}
	}
	if refused {
		return false, retry
	}
	for i, lv := range l.levels {
		if !use[i] {
			continue
		}
		s := slots[i]
		if s < 0 {
			s = lv.tab.add(keys[i], t)
		}
		lv.charge(s, t, l.limit)
	}
	return true, 0
}

// wait is how long, in nanoseconds, slot s of the level must wait before a request at t fits; 0
// when it fits now. For a client it also forgets requests that left the window.
func (lv *limitLevel) wait(s int32, t int64, limit int, window int64) int64 {
	e := &lv.tab.slots[s]
	if !lv.client {
		tat := max(e.tat, t)
		return max(0, tat-t-lv.tolerance)
	}
	times := lv.tab.ring(s)
	for e.n > 0 && t-times[e.first] >= window {
		e.first = (e.first + 1) % int32(limit)
		e.n--
	}
	if int(e.n) < limit {
		return 0
	}
	return times[e.first] + window - t
}

// charge counts a request at t against slot s, after wait said it fits.
func (lv *limitLevel) charge(s int32, t int64, limit int) {
	e := &lv.tab.slots[s]
	if !lv.client {
		e.tat = max(e.tat, t) + lv.interval
		return
	}
	lv.tab.ring(s)[(e.first+e.n)%int32(limit)] = t
	e.n++
}

// limitTable is a fixed-size map from a key to a slot, kept in least-recently-seen order.
type limitTable struct {
	size       int
	ringLen    int
	index      map[[16]byte]int32
	slots      []limitSlot
	times      []int64 // ringLen timestamps per slot, for client tables
	free       []int32 // slots that expire emptied
	head, tail int32   // most and least recently seen; -1 when empty
}

type limitSlot struct {
	key        [16]byte
	prev, next int32
	seen       int64 // when its client last asked
	tat        int64 // bucket: the theoretical arrival time of the next request (GCRA)
	first, n   int32 // client: the oldest timestamp's place in the ring, and how many are kept
}

func newLimitTable(size, ringLen int) *limitTable {
	return &limitTable{size: size, ringLen: ringLen, index: make(map[[16]byte]int32), head: -1, tail: -1}
}

func (tb *limitTable) ring(s int32) []int64 {
	return tb.times[int(s)*tb.ringLen : int(s+1)*tb.ringLen]
}

// find returns key's slot and makes it the most recently seen: a network that keeps asking stays
// remembered while it is refused.
func (tb *limitTable) find(key [16]byte, t int64) (int32, bool) {
	s, ok := tb.index[key]
	if ok {
		tb.slots[s].seen = t
		tb.unlink(s)
		tb.pushFront(s)
	}
	return s, ok
}

// expire forgets up to n of the least recently seen entries last seen at or before cutoff: an
// entry idle for a window holds nothing a fresh one would not, and the addresses should not stay.
// A few each call keep the cost constant; what a burst leaves goes as later requests pass.
func (tb *limitTable) expire(cutoff int64, n int) {
	for ; n > 0 && tb.tail >= 0 && tb.slots[tb.tail].seen <= cutoff; n-- {
		s := tb.tail
		tb.unlink(s)
		delete(tb.index, tb.slots[s].key)
		tb.free = append(tb.free, s)
	}
}

// add returns a fresh slot for key, reusing the least recently seen one when the table is full.
func (tb *limitTable) add(key [16]byte, t int64) int32 {
	var s int32
	if n := len(tb.free); n > 0 {
		s, tb.free = tb.free[n-1], tb.free[:n-1]
	} else if len(tb.slots) < tb.size {
		s = int32(len(tb.slots))
		tb.slots = append(tb.slots, limitSlot{})
		tb.times = append(tb.times, make([]int64, tb.ringLen)...)
	} else {
		s = tb.tail
		tb.unlink(s)
		delete(tb.index, tb.slots[s].key)
	}
	tb.slots[s] = limitSlot{key: key, seen: t}
	tb.index[key] = s
	tb.pushFront(s)
	return s
}

func (tb *limitTable) unlink(s int32) {
	e := &tb.slots[s]
	if e.prev >= 0 {
		tb.slots[e.prev].next = e.next
	} else {
		tb.head = e.next
	}
	if e.next >= 0 {
		tb.slots[e.next].prev = e.prev
	} else {
		tb.tail = e.prev
	}
}

func (tb *limitTable) pushFront(s int32) {
	e := &tb.slots[s]
	e.prev, e.next = -1, tb.head
	if tb.head >= 0 {
		tb.slots[tb.head].prev = s
	}
	tb.head = s
	if tb.tail < 0 {
		tb.tail = s
	}
}

// size is how many entries all levels remember (tests).
func (l *rateLimiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := 0
	for _, lv := range l.levels {
		n += len(lv.tab.index)
	}
	return n
}
