package send

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"net"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	gomail "github.com/wneessen/go-mail"

	"newsletter/digest"
	"newsletter/internal/digesttest"
	"newsletter/internal/smtpout"
	"newsletter/internal/testdb"
	"newsletter/subscribers"
)

var (
	soakReaders   = flag.Int("soak.readers", 20000, "readers of the SMTP soak test (the full run: 200000)")
	soakDropEvery = flag.Int("soak.dropevery", 2500, "accepted messages between two dropped connections in the soak test")
)

// soakSink is an SMTP server for the soak: it answers each reader from a fixed rule (5% get 451 on
// their first attempt, 1% get 550 every time), drops a connection every dropEvery accepted messages
// (alternately after accepting the message, so its reply is lost and a second copy follows, and
// in the middle of the data, so nothing was delivered), and keeps a few bytes per reader, so its
// own memory does not grow while the sender's is measured. (smtptest keeps a map entry or the
// headers per recipient, and its Discard mode does not count attempts, so a scripted 451 would
// repeat for ever there.)
type soakSink struct {
	addr      string
	srv       *smtp.Server
	readers   int
	dropEvery int64

	attempts  []atomic.Uint32 // RCPT offers per reader (index: the N of reader-N@)
	delivered []atomic.Uint32 // messages accepted per reader
	msgID     []atomic.Uint64 // hash of the first copy's Message-ID; 0 before
	idClash   atomic.Int64    // copies whose Message-ID differs from the reader's first copy
	accepted  atomic.Int64    // all accepted messages
	drops     atomic.Int64    // connections dropped after accepting (a lost reply)
	dataDrops atomic.Int64    // connections dropped mid-data (nothing delivered)
	refused   [2]atomic.Int64 // 451 and 550 answers given
	unknown   atomic.Int64    // recipients that are no reader-N
}

// soakRule is what the sink answers reader n: 451 once (5%), 550 always (1%), else accept. A
// multiplicative hash spreads them through the list rather than in runs.
func soakRule(n int) int {
	switch h := uint32(n) * 2654435761 % 1000; {
	case h < 50:
		return 451
	case h < 60:
		return 550
	}
	return 250
}

func startSoakSink(t *testing.T, readers int, dropEvery int) *soakSink {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	k := &soakSink{addr: l.Addr().String(), readers: readers, dropEvery: int64(dropEvery),
		attempts: make([]atomic.Uint32, readers+1), delivered: make([]atomic.Uint32, readers+1), msgID: make([]atomic.Uint64, readers+1)}
	k.srv = smtp.NewServer(k)
	k.srv.Domain = "localhost"
	k.srv.MaxMessageBytes = 10 << 20
	k.srv.ReadTimeout = time.Minute
	k.srv.WriteTimeout = time.Minute
	go k.srv.Serve(l)
	t.Cleanup(func() { k.srv.Close() })
	return k
}

func (k *soakSink) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &soakSession{k: k, conn: c, reader: -1}, nil
}

type soakSession struct {
	k      *soakSink
	conn   *smtp.Conn
	reader int
	buf    bytes.Buffer
}

func (x *soakSession) Mail(string, *smtp.MailOptions) error { x.reader = -1; return nil }

func (x *soakSession) Rcpt(to string, _ *smtp.RcptOptions) error {
	k := x.k
	n, ok := readerNumber(to)
	if !ok || n < 1 || n > k.readers {
		k.unknown.Add(1)
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such reader"}
	}
	attempt := k.attempts[n].Add(1)
	switch soakRule(n) {
	case 451:
		if attempt == 1 {
			k.refused[0].Add(1)
			return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 7, 1}, Message: "greylisted, try again later"}
		}
	case 550:
		k.refused[1].Add(1)
		return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "mailbox unavailable"}
	}
	x.reader = n
	return nil
}

var errSoakDrop = errors.New("soak: connection dropped")

func (x *soakSession) Data(r io.Reader) error {
	k := x.k
	x.buf.Reset()
	if _, err := x.buf.ReadFrom(r); err != nil {
		return err
	}
	if x.reader < 0 {
		return &smtp.SMTPError{Code: 503, EnhancedCode: smtp.EnhancedCode{5, 5, 1}, Message: "no recipient"}
	}
	total := k.accepted.Load() + k.drops.Load() + k.dataDrops.Load()
	if k.dropEvery > 0 && total > 0 && total%k.dropEvery == 0 {
		if (total/k.dropEvery)%2 == 0 {
			// Mid-data: the message never arrived.
			k.dataDrops.Add(1)
			x.conn.Conn().Close()
			return errSoakDrop
		}
		// After accepting: the message is delivered but its reply is lost with the connection.
		k.drops.Add(1)
		k.deliver(x.reader, x.buf.Bytes())
		x.conn.Conn().Close()
		return errSoakDrop
	}
	k.deliver(x.reader, x.buf.Bytes())
	return nil
}

func (k *soakSink) deliver(n int, msg []byte) {
	k.accepted.Add(1)
	k.delivered[n].Add(1)
	h := fnv.New64a()
	h.Write(messageIDOf(msg))
	id := h.Sum64() | 1 // never 0, the "no copy yet" value
	if !k.msgID[n].CompareAndSwap(0, id) && k.msgID[n].Load() != id {
		k.idClash.Add(1)
	}
}

func (x *soakSession) Reset()        { x.reader = -1 }
func (x *soakSession) Logout() error { return nil }

// readerNumber is N of reader-N@example.org.
func readerNumber(addr string) (int, bool) {
	local, _, ok := strings.Cut(addr, "@")
	if !ok || !strings.HasPrefix(local, "reader-") {
		return 0, false
	}
	n, err := strconv.Atoi(strings.TrimPrefix(local, "reader-"))
	return n, err == nil
}

// messageIDOf returns the Message-ID header's value of a raw message (empty when it has none).
func messageIDOf(msg []byte) []byte {
	head := msg
	if i := bytes.Index(msg, []byte("\r\n\r\n")); i >= 0 {
		head = msg[:i+2]
	}
	sc := bufio.NewScanner(bytes.NewReader(head))
	for sc.Scan() {
		line := sc.Bytes()
		if len(line) > 11 && bytes.EqualFold(line[:11], []byte("Message-ID:")) {
			return bytes.TrimSpace(line[11:])
		}
	}
	return nil
}

// memSampler records the heap in use and the resident set size while a run lasts.
type memSampler struct {
	mu                      sync.Mutex
	heapFirst, heapPeak     uint64
	heapLast                uint64
	rssFirst, rssPeak, rssL uint64
	samples                 int
}

func (m *memSampler) sample() {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rss := processRSS()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.samples == 0 {
		m.heapFirst, m.rssFirst = ms.HeapInuse, rss
	}
	m.samples++
	m.heapLast, m.rssL = ms.HeapInuse, rss
	m.heapPeak = max(m.heapPeak, ms.HeapInuse)
	m.rssPeak = max(m.rssPeak, rss)
}

// processRSS is this process's resident set size in bytes (0 where /proc is missing).
func processRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseUint(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb << 10
		}
	}
	return 0
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// TestSoakSMTPFaults sends one issue to -soak.readers readers (default 20,000; the full run is
// 200,000) through a server that greylists 5% of them once, refuses 1% for good and drops a
// connection every -soak.dropevery messages, then checks every reader's outcome.
//
//	go test ./digest/send/ -run TestSoakSMTPFaults -v -timeout 30m -soak.readers=200000
func TestSoakSMTPFaults(t *testing.T) {
	readers := *soakReaders
	const conns = 4
	db := testdb.New(t)
	digesttest.SeedReaders(t, db, "en", readers)
	digesttest.SeedArticles(t, db, "en", 12)
	store := digest.NewStore(db, nil)
	ctx := context.Background()
	iss, err := store.Assemble(ctx, "en", 0)
	if err != nil {
		t.Fatal(err)
	}
	sink := startSoakSink(t, readers, *soakDropEvery)
	host, portText, _ := net.SplitHostPort(sink.addr)
	port, _ := strconv.Atoi(portText)
	client, err := gomail.NewClient(host, gomail.WithPort(port), gomail.WithTLSPolicy(gomail.NoTLS), gomail.WithTimeout(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("soak-secret-0123456789")
	// Quick backoffs through the sender's own options: the outcomes are the same as with the
	// production minutes, the run is not spent waiting.
	opts := SenderOptions{From: "Weekly <digest@news.example>", BaseURL: "https://news.example", Publication: "The Test Weekly",
		Secret: secret, Concurrency: conns, Retry: smtpout.Policy{First: 10 * time.Millisecond, Max: 200 * time.Millisecond},
		Reconnect: smtpout.Policy{First: 10 * time.Millisecond}}
	sender, err := NewSender(store, sendTestRenderer(t), subscribers.NewSigner(secret), subscribers.NewStore(db, secret), client, opts,
		slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelError})), nil)
	if err != nil {
		t.Fatal(err)
	}

	var mem memSampler
	runtime.GC()
	mem.sample()
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(250 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				mem.sample()
			case <-stopSampling:
				return
			}
		}
	}()
	cpuStart := cpuTime()
	start := time.Now()
	// A deadlock guard, not a speed requirement.
	sctx, cancel := context.WithTimeout(ctx, 25*time.Minute)
	defer cancel()
	err = sender.SendIssue(sctx, iss.ID, nil)
	elapsed := time.Since(start)
	cpu := cpuTime() - cpuStart
	close(stopSampling)
	<-sampled
	mem.sample()
	if err != nil {
		t.Fatalf("send: %v", err)
	}

	// The ledger: every reader sent or failed for good with a reason.
	var rows []struct {
		Email     string `db:"email"`
		Status    string `db:"status"`
		LastError string `db:"last_error"`
		Attempts  int    `db:"attempts"`
		Reader    string `db:"reader_status"`
	}
	if err := db.Select(&rows, `SELECT s.email, d.status, d.last_error, d.attempts, s.status AS reader_status
		FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id WHERE d.issue_id = $1`, iss.ID); err != nil {
		t.Fatal(err)
	}
	if len(rows) != readers {
		t.Fatalf("ledger has %d rows for %d readers", len(rows), readers)
	}
	var sent, failed, greylisted, bounced, retriedRows, problems int
	report := func(format string, args ...any) {
		if problems++; problems <= 20 {
			t.Errorf(format, args...)
		}
	}
	for _, r := range rows {
		n, ok := readerNumber(r.Email)
		if !ok {
			report("unexpected reader %s", r.Email)
			continue
		}
		got := int(sink.delivered[n].Load())
		if r.Attempts > 1 {
			retriedRows++
		}
		switch r.Status {
		case digest.DeliverySent:
			sent++
			if got == 0 {
				report("%s is sent in the ledger but the server never accepted its message", r.Email)
			}
		case digest.DeliveryFailed:
			failed++
			if r.LastError == "" {
				report("%s failed without a reason", r.Email)
			}
			if got != 0 {
				report("%s failed in the ledger but received %d copies", r.Email, got)
			}
		default:
			report("%s left %s (%s)", r.Email, r.Status, r.LastError)
		}
		switch soakRule(n) {
		case 451:
			greylisted++
			if r.Status != digest.DeliverySent || r.Attempts < 2 {
				report("greylisted %s: %s after %d attempts (%s), want sent after a retry", r.Email, r.Status, r.Attempts, r.LastError)
			}
		case 550:
			bounced++
			if r.Status != digest.DeliveryFailed || !strings.Contains(r.LastError, "550") || r.Reader != string(subscribers.StatusBounced) {
				report("refused %s: delivery %s (%q), reader %s; want failed with the 550 and the reader bounced", r.Email, r.Status, r.LastError, r.Reader)
			}
		default:
			if r.Status != digest.DeliverySent {
				report("%s: %s (%s), want sent", r.Email, r.Status, r.LastError)
			}
			if r.Reader != string(subscribers.StatusConfirmed) {
				report("%s is %s, want still confirmed", r.Email, r.Reader)
			}
		}
	}
	var dups int
	for n := 1; n <= readers; n++ {
		if c := int(sink.delivered[n].Load()); c > 1 {
			dups += c - 1
		}
	}
	drops := int(sink.drops.Load() + sink.dataDrops.Load())
	if dups > drops*conns {
		t.Errorf("%d duplicate copies, want at most %d (%d dropped connections x %d connections)", dups, drops*conns, drops, conns)
	}
	if c := sink.idClash.Load(); c > 0 {
		t.Errorf("%d second copies carry a different Message-ID than the first", c)
	}
	if u := sink.unknown.Load(); u > 0 {
		t.Errorf("%d messages to addresses that are no reader", u)
	}
	if wantDrops := int(sink.accepted.Load()) / (2 * *soakDropEvery); *soakDropEvery > 0 && drops < wantDrops {
		t.Errorf("only %d connections were dropped; the fault was not exercised", drops)
	}
	p, err := store.Progress(ctx, iss.ID)
	if err != nil {
		t.Fatal(err)
	}
	if p.Status != digest.StatusSent || p.Queued != 0 {
		t.Errorf("issue is %s with %d queued, want sent with none", p.Status, p.Queued)
	}
	// Memory must not grow with the list: a bound well under what keeping anything per reader
	// would take at the full size. The sink's per-reader counters (20 bytes a reader) are in it.
	if limit := uint64(64<<20) + uint64(readers)*24; mem.heapPeak > limit {
		t.Errorf("heap in use peaked at %s, over the %s bound", mib(mem.heapPeak), mib(limit))
	}

	t.Logf("soak: %d readers in %s: %.0f messages/s accepted, CPU %.1fs (test process: sender, sink, go test)",
		readers, elapsed.Round(time.Millisecond), float64(sink.accepted.Load())/elapsed.Seconds(), cpu.Seconds())
	t.Logf("soak: ledger sent %d, failed %d (550 readers %d, all bounced), greylisted %d (451s answered %d, all retried and sent), rows retried %d",
		sent, failed, bounced, greylisted, sink.refused[0].Load(), retriedRows)
	t.Logf("soak: server accepted %d messages, %d duplicates (%d drops after acceptance, %d drops mid-data), Message-ID clashes %d",
		sink.accepted.Load(), dups, sink.drops.Load(), sink.dataDrops.Load(), sink.idClash.Load())
	t.Logf("soak: heap in use first %s, peak %s, last %s; RSS first %s, peak %s, last %s (%d samples)",
		mib(mem.heapFirst), mib(mem.heapPeak), mib(mem.heapLast), mib(mem.rssFirst), mib(mem.rssPeak), mib(mem.rssL), mem.samples)
}

// cpuTime is the CPU time this process used (user + system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
