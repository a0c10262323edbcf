package send

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mathrand "math/rand/v2"
	netmail "net/mail"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	gomail "github.com/wneessen/go-mail"
	"golang.org/x/time/rate"

	"newsletter/digest"
	"newsletter/digest/render"
	"newsletter/internal/smtpout"
)

// ErrPaused reports an issue whose sending is paused (by an editor, or by the sender itself after
// a configuration error or too many failures in a row); the issue's pause reason says which.
var ErrPaused = errors.New("sending paused")

// SenderOptions tune the sending engine; zero values take the defaults noted.
type SenderOptions struct {
	From        string // From of every digest; its domain ends every Message-ID
	BaseURL     string // root of the unsubscribe and manage links
	Publication string // the List-Id phrase
	// Secret keys the Message-ID hash, so Message-IDs carry no guessable reader id.
	Secret      []byte
	MaxArticles int // articles shown per issue (0: digest.DefaultMaxArticles)

	Concurrency int           // SMTP connections (default 4)
	Rate        float64       // messages per second across the process (0: no cap)
	MaxAttempts int           // tries per reader before a temporary failure is final (default 5)
	Timeout     time.Duration // per SMTP exchange (default 30s)
	RetryBase   time.Duration // first retry delay, doubled each attempt, with jitter (default 1m)
	RetryMax    time.Duration // longest retry delay (default 1h)
	ConnBackoff time.Duration // first pause of a connection after a 421 or failed dial (default 2s)
	Lease       time.Duration // how long a claimed row is reserved for this process (default 5m)
	BatchSize   int           // rows per claim (default 100)
	// FailureStreak pauses the issue after this many failures in a row (default 50).
	FailureStreak int
	// Poll is how often Run looks for issues to send when not woken (default 5s).
	Poll time.Duration
	DKIM *smtpout.DKIMSigner // nil: messages are not signed
	// NoChunking sends with DATA even where the server offers CHUNKING (tests and benchmarks of
	// that path, which Mailpit, Amazon SES and many relays take).
	NoChunking bool
}

func (o *SenderOptions) defaults() {
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 5
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.RetryBase <= 0 {
		o.RetryBase = time.Minute
	}
	if o.RetryMax <= 0 {
		o.RetryMax = time.Hour
	}
	if o.ConnBackoff <= 0 {
		o.ConnBackoff = 2 * time.Second
	}
	if o.Lease <= 0 {
		o.Lease = 5 * time.Minute
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 100
	}
	if o.FailureStreak <= 0 {
		o.FailureStreak = 50
	}
	if o.Poll <= 0 {
		o.Poll = 5 * time.Second
	}
	o.BaseURL = strings.TrimRight(o.BaseURL, "/")
}

// issueRenderer is what the sender needs of the Renderer.
type issueRenderer interface {
	Render(c digest.IssueContent, rcpt render.Recipient) (render.Rendered, error)
}

// Links makes a reader's signed unsubscribe and manage links (subscribers.Signer is one).
type Links interface {
	UnsubscribeURL(baseURL, uuid string) string
	ManageURL(baseURL, uuid string) string
}

// Bouncer marks a reader bounced once their address is refused for good. A reader who is no
// longer there (erased since) must not be an error: there is nothing left to mark, and the sender
// retries a failed mark until it is written. cmd adapts subscribers.Store to it.
type Bouncer interface {
	MarkBounced(ctx context.Context, subscriberID int64, reason string) error
}

// Sender sends issues to their readers from the ledger, over long-lived SMTP connections.
type Sender struct {
	store   *digest.Store
	ledger  ledger
	render  issueRenderer
	links   Links
	bounces Bouncer
	dialer  smtpout.Dialer
	opts    SenderOptions
	log     *slog.Logger
	metrics senderMetrics
	limiter *rate.Limiter
	from    *netmail.Address
	domain  string
	wake    chan struct{}
}

// NewSender returns a Sender. renderer is the digest Renderer, links signs each reader's links,
// bounces (may be nil) marks refused readers, dialer is the go-mail client of the SMTP relay.
func NewSender(store *digest.Store, renderer issueRenderer, links Links, bounces Bouncer, dialer smtpout.Dialer,
	opts SenderOptions, log *slog.Logger, reg prometheus.Registerer) (*Sender, error) {
	opts.defaults()
	from, err := netmail.ParseAddress(opts.From)
	if err != nil {
		return nil, fmt.Errorf("sender: From %q: %w", opts.From, digest.ErrInvalid)
	}
	if len(opts.Secret) == 0 {
		return nil, fmt.Errorf("sender: no secret: %w", digest.ErrInvalid)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sender{store: store, ledger: ledger{db: store.DB(), now: store.Now}, render: renderer, links: links, bounces: bounces, dialer: dialer, opts: opts,
		log: log, metrics: newSenderMetrics(reg), from: from, domain: domainOf(from.Address), wake: make(chan struct{}, 1)}
	if opts.Rate > 0 {
		s.limiter = rate.NewLimiter(rate.Limit(opts.Rate), max(1, int(opts.Rate/20)))
	}
	return s, nil
}

// Wake tells Run an issue started sending, so it begins now rather than at its next poll.
func (s *Sender) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Start begins sending a draft or approved issue: it keeps the archive copy, fixes the recipients
// in the ledger and wakes Run. It returns how many readers the issue goes to.
func (s *Sender) Start(ctx context.Context, issueID int64) (int, error) {
	c, err := s.store.Content(ctx, issueID, s.opts.MaxArticles)
	if err != nil {
		return 0, err
	}
	archive, err := s.render.Render(c, render.Recipient{})
	if err != nil {
		return 0, err
	}
	if err := s.store.SaveArchive(ctx, issueID, archive.Subject, archive.Preheader, archive.HTML, archive.Text); err != nil {
		return 0, err
	}
	n, err := s.ledger.startSending(ctx, issueID)
	if err != nil {
		return 0, err
	}
	s.Wake()
	return n, nil
}

// Run sends every issue in 'sending', including those a crashed process left, until ctx ends;
// then it finishes the messages in flight and returns, leaving the rest queued.
func (s *Sender) Run(ctx context.Context) error {
	for {
		ids, err := s.ledger.sendingIssues(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Error("digest sender: list issues", "err", err)
		}
		for _, id := range ids {
			if ctx.Err() != nil {
				break
			}
			if err := s.runIssue(ctx, id, nil); err != nil && ctx.Err() == nil {
				s.log.Error("digest sender: issue", "issue", id, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		case <-time.After(s.opts.Poll):
		}
	}
}

// SendIssue sends one issue in the foreground (starting it when it is a draft or approved) and
// returns when every reader was sent, failed for good or skipped. progress, when set, is called
// about twice a second and once at the end. ErrPaused when the issue is or becomes paused.
func (s *Sender) SendIssue(ctx context.Context, issueID int64, progress func(digest.Progress)) error {
	status, reason, err := s.ledger.issueStatus(ctx, issueID)
	if err != nil {
		return err
	}
	switch status {
	case digest.StatusDraft, digest.StatusApproved:
		if _, err := s.Start(ctx, issueID); err != nil {
			return err
		}
	case digest.StatusSending:
	case digest.StatusPaused:
		return fmt.Errorf("issue %d: %w: %s", issueID, ErrPaused, reason)
	case digest.StatusSent:
	default:
		return fmt.Errorf("issue %d is %s: %w", issueID, status, digest.ErrConflict)
	}
	runErr := s.runIssue(ctx, issueID, progress)
	for errors.Is(runErr, errLockLost) && ctx.Err() == nil {
		s.log.Warn("digest sender: " + runErr.Error())
		sleep(ctx, nil, time.Second)
		runErr = s.runIssue(ctx, issueID, progress)
	}
	p, err := s.store.Progress(context.WithoutCancel(ctx), issueID)
	if err != nil {
		return errors.Join(runErr, err)
	}
	if progress != nil {
		progress(p)
	}
	switch {
	case runErr != nil:
		return runErr
	case ctx.Err() != nil:
		return ctx.Err()
	case p.Status == digest.StatusPaused:
		return fmt.Errorf("issue %d: %w: %s", issueID, ErrPaused, p.PauseReason)
	case p.Status != digest.StatusSent:
		return fmt.Errorf("issue %d is %s: %w", issueID, p.Status, digest.ErrConflict)
	}
	return nil
}

// preparedIssue is an issue rendered and encoded once, ready for per-reader filling.
type preparedIssue struct {
	id      int64
	content digest.IssueContent
	headers messageHeaders
	named   *msgTemplate // with the greeting, for readers with a name
	unnamed *msgTemplate
}

func (s *Sender) prepare(ctx context.Context, id int64) (*preparedIssue, error) {
	c, err := s.store.Content(ctx, id, s.opts.MaxArticles)
	if err != nil {
		return nil, err
	}
	p := &preparedIssue{id: id, content: c}
	named, err := s.render.Render(c, render.Marked(true))
	if err != nil {
		return nil, err
	}
	unnamed, err := s.render.Render(c, render.Marked(false))
	if err != nil {
		return nil, err
	}
	p.headers = messageHeaders{From: s.from, Subject: named.Subject, Date: s.store.Now(),
		ListID: listID(s.opts.Publication, c.Issue.Lang, s.domain)}
	if p.named, err = buildTemplate(named, p.headers); err != nil {
		return nil, err
	}
	if p.unnamed, err = buildTemplate(unnamed, p.headers); err != nil {
		return nil, err
	}
	return p, nil
}

// compose appends the reader's message to dst.
func (s *Sender) compose(dst []byte, p *preparedIssue, r claimedRow) ([]byte, error) {
	v := readerValues{
		Email:     r.Email,
		Name:      r.Name,
		MessageID: messageID(s.opts.Secret, p.id, r.UUID, s.domain),
		Unsub:     s.links.UnsubscribeURL(s.opts.BaseURL, r.UUID),
		Manage:    s.links.ManageURL(s.opts.BaseURL, r.UUID),
		To:        formatTo(r.Name, r.Email),
	}
	t := p.unnamed
	if r.Name != "" {
		t = p.named
		if !t.nameFits(r.Name) {
			// A name the renderer would wrap or fold: render this reader's copy on its own.
			rendered, err := s.render.Render(p.content, render.Recipient{Name: r.Name, Email: render.MarkRcpt, UnsubscribeURL: render.MarkUnsub, ManageURL: render.MarkManage})
			if err != nil {
				return dst, err
			}
			if t, err = buildTemplate(rendered, p.headers); err != nil {
				return dst, err
			}
		}
	}
	return t.fill(dst, &v), nil
}

// senderMetrics are the engine's Prometheus metrics.
type senderMetrics struct {
	sent, failed, retried prometheus.Counter
	queue                 prometheus.Gauge
	latency               prometheus.Histogram
}

func newSenderMetrics(reg prometheus.Registerer) senderMetrics {
	m := senderMetrics{
		sent:    prometheus.NewCounter(prometheus.CounterOpts{Name: "newsletter_digest_sent_total", Help: "Digest messages the SMTP server accepted."}),
		failed:  prometheus.NewCounter(prometheus.CounterOpts{Name: "newsletter_digest_failed_total", Help: "Digest deliveries that failed for good."}),
		retried: prometheus.NewCounter(prometheus.CounterOpts{Name: "newsletter_digest_retried_total", Help: "Digest deliveries put back for a later attempt."}),
		queue:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "newsletter_digest_queue_depth", Help: "Readers of the issue being sent not yet sent, failed or skipped."}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "newsletter_digest_send_seconds", Help: "Time of one SMTP transaction (MAIL to accepted DATA).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}),
	}
	if reg == nil {
		return m
	}
	register := func(c prometheus.Collector) prometheus.Collector {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return are.ExistingCollector
			}
		}
		return c
	}
	m.sent = register(m.sent).(prometheus.Counter)
	m.failed = register(m.failed).(prometheus.Counter)
	m.retried = register(m.retried).(prometheus.Counter)
	m.queue = register(m.queue).(prometheus.Gauge)
	m.latency = register(m.latency).(prometheus.Histogram)
	return m
}

// engine sends one issue: a claimer feeds leased rows to one worker per SMTP connection, and a
// recorder writes each outcome to the ledger.
type engine struct {
	s     *Sender
	issue *preparedIssue
	owner int64

	jobs     chan job
	outcomes chan outcome

	haltOnce sync.Once
	halt     chan struct{} // closed on pause or cancel: no more messages start
	// lockLost is set when the connection holding this sender's liveness lock broke (a database
	// restart): other senders may then take its leases, so it must start no more messages.
	lockLost atomic.Bool

	mu       sync.Mutex
	released []int64 // leased rows handed back unsent

	sent, failed, retried, skipped atomic.Int64
	streakMu                       sync.Mutex
	streak                         int // failures in a row
}

type job struct {
	row      claimedRow
	deadline time.Time // after this the lease may have passed to another sender: do not start it
}

type outcomeKind uint8

const (
	outSent outcomeKind = iota
	outRetry
	outFailed        // permanent: the reader's address was refused
	outUndeliverable // permanent for this issue, but no fault of the address (see smtpout.Error.Local)
	outConfig        // our setup was refused (MAIL FROM, AUTH): pause the issue
)

type outcome struct {
	kind   outcomeKind
	row    claimedRow
	reason string
	ack    chan struct{} // outSent: signalled once the row is recorded sent
}

// runIssue sends issueID until every reader is done, the issue stops being 'sending', or ctx ends.
func (s *Sender) runIssue(ctx context.Context, issueID int64, progress func(digest.Progress)) error {
	p, err := s.prepare(ctx, issueID)
	if err != nil {
		if ctx.Err() == nil && (errors.Is(err, digest.ErrNoArticles) || errors.Is(err, errTemplate)) {
			reason := "cannot build the message: " + err.Error()
			s.log.Error("digest sender: pausing issue", "issue", issueID, "reason", reason)
			return errors.Join(err, s.store.Pause(context.WithoutCancel(ctx), issueID, reason))
		}
		return err
	}
	e := &engine{s: s, issue: p, owner: randomOwner(), jobs: make(chan job, s.opts.BatchSize),
		outcomes: make(chan outcome, 2*s.opts.Concurrency), halt: make(chan struct{})}
	lock, err := s.ledger.lockOwner(ctx, e.owner)
	if err != nil {
		return err
	}
	defer lock.Close()
	watchDone := make(chan struct{})
	defer close(watchDone)
	go e.watchLock(lock, watchDone)
	if n, err := s.ledger.releaseDead(ctx, issueID, e.owner); err != nil {
		return err
	} else if n > 0 {
		s.log.Info("digest sender: took over the leases of a stopped sender", "issue", issueID, "rows", n)
	}
	base, err := s.store.Progress(ctx, issueID)
	if err != nil {
		return err
	}
	s.log.Info("digest sender: sending", "issue", issueID, "lang", base.Lang, "total", base.Total, "queued", base.Queued)

	var workers sync.WaitGroup
	for range s.opts.Concurrency {
		workers.Add(1)
		go func() {
			defer workers.Done()
			e.work(ctx)
		}()
	}
	// A few recorders, each on its own connection, so one batch is written while the next gathers:
	// workers wait for their previous message's mark before the next can be accepted.
	recorded := make(chan struct{})
	var recorders sync.WaitGroup
	for range min(2, s.opts.Concurrency) {
		recorders.Add(1)
		go func() {
			defer recorders.Done()
			e.record(ctx)
		}()
	}
	go func() {
		recorders.Wait()
		close(recorded)
	}()
	reportDone := make(chan struct{})
	reported := make(chan struct{})
	go func() {
		defer close(reported)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			live := base
			live.Sent += int(e.sent.Load())
			live.Failed += int(e.failed.Load())
			live.Skipped += int(e.skipped.Load())
			live.Queued = max(0, live.Total-live.Sent-live.Failed-live.Skipped)
			s.metrics.queue.Set(float64(live.Queued))
			if progress != nil {
				progress(live)
			}
			select {
			case <-t.C:
			case <-reportDone:
				return
			}
		}
	}()

	claimErr := e.claimLoop(ctx)
	close(e.jobs)
	workers.Wait()
	close(e.outcomes)
	<-recorded
	close(reportDone)
	<-reported

	e.mu.Lock()
	released := e.released
	e.mu.Unlock()
	if len(released) > 0 {
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := s.ledger.release(rctx, issueID, e.owner, released); err != nil {
			s.log.Warn("digest sender: hand back unsent rows (they become due when their lease ends)", "issue", issueID, "err", err)
		}
	}
	s.log.Info("digest sender: stopped", "issue", issueID, "sent", e.sent.Load(), "failed", e.failed.Load(),
		"retried", e.retried.Load(), "skipped", e.skipped.Load())
	if claimErr != nil && ctx.Err() == nil {
		return claimErr
	}
	if e.lockLost.Load() && ctx.Err() == nil {
		return errLockLost
	}
	return nil
}

// errLockLost ends a run whose liveness lock went away; the caller starts a fresh run, which takes
// a new lock and the leases left behind.
var errLockLost = errors.New("the sender's liveness lock was lost (database restarted?); starting again")

// watchLock checks the liveness lock's connection a few times a second. Once it breaks, another
// sender may see this one as dead and take its leased rows, so no further message may start: the
// engine halts and the run ends with errLockLost. Messages already on the wire finish (they are the
// in-flight copies a restart may duplicate).
func (e *engine) watchLock(lock interface{ PingContext(context.Context) error }, done <-chan struct{}) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := lock.PingContext(ctx)
		cancel()
		if err != nil {
			e.lockLost.Store(true)
			e.stop()
			e.s.log.Warn("digest sender: liveness lock lost; stopping this run", "issue", e.issue.id, "err", err)
			return
		}
	}
}

func randomOwner() int64 {
	var b [8]byte
	rand.Read(b[:])
	return int64(binary.BigEndian.Uint64(b[:]) >> 1)
}

func (e *engine) halted() bool {
	select {
	case <-e.halt:
		return true
	default:
		return false
	}
}

func (e *engine) stop() { e.haltOnce.Do(func() { close(e.halt) }) }

func (e *engine) giveBack(r claimedRow) {
	e.mu.Lock()
	e.released = append(e.released, r.SubscriberID)
	e.mu.Unlock()
}

// claimLoop leases due rows and queues them for the workers until the issue is finished, stops
// being 'sending', or ctx ends.
func (e *engine) claimLoop(ctx context.Context) error {
	s := e.s
	id := e.issue.id
	batch := s.opts.BatchSize
	if s.opts.Rate > 0 {
		batch = max(1, min(batch, int(s.opts.Rate)))
	}
	// A leased row is only started while its lease surely lasts the whole exchange.
	window := s.opts.Lease - s.opts.Timeout - 30*time.Second
	if window < s.opts.Lease/2 {
		window = s.opts.Lease / 2
	}
	lastDead := time.Now()
	var cursor int64 // the last subscriber id claimed; back to 0 once the end of the list is reached
	for {
		if ctx.Err() != nil || e.halted() {
			return nil
		}
		before := time.Now()
		// Not cancelled with ctx: a claim that committed must come back, so its rows can be handed
		// back at once rather than wait out their lease.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		rows, err := s.ledger.claim(cctx, id, e.owner, batch, s.opts.Lease, cursor)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			s.log.Warn("digest sender: claim", "issue", id, "err", err)
			sleep(ctx, e.halt, time.Second)
			continue
		}
		sending := 0
		for i, r := range rows {
			if r.Status != digest.DeliveryQueued {
				e.skipped.Add(1)
				continue
			}
			select {
			case e.jobs <- job{row: r, deadline: before.Add(window)}:
				sending++
			case <-ctx.Done():
				e.giveBackRest(rows[i:])
				return nil
			case <-e.halt:
				e.giveBackRest(rows[i:])
				return nil
			}
		}
		if len(rows) > 0 {
			cursor = rows[len(rows)-1].SubscriberID
		}
		if len(rows) == batch {
			continue
		}
		if cursor > 0 {
			// The end of the list: start over from the beginning for retries and handed-back rows.
			cursor = 0
			continue
		}
		status, _, err := s.ledger.issueStatus(ctx, id)
		if err == nil && status != digest.StatusSending {
			e.stop()
			return nil
		}
		if done, err := s.ledger.finishIfDone(ctx, id); err == nil && done {
			s.log.Info("digest sender: issue sent", "issue", id)
			return nil
		}
		if time.Since(lastDead) > 5*time.Second {
			lastDead = time.Now()
			if n, err := s.ledger.releaseDead(ctx, id, e.owner); err == nil && n > 0 {
				s.log.Info("digest sender: took over the leases of a stopped sender", "issue", id, "rows", n)
				continue
			}
		}
		wait := 250 * time.Millisecond
		if d, err := s.ledger.nextDue(ctx, id); err == nil && d > 0 && d < wait {
			wait = d
		}
		if len(rows) > 0 {
			wait = 0
		}
		sleep(ctx, e.halt, wait)
	}
}

func (e *engine) giveBackRest(rows []claimedRow) {
	for _, r := range rows {
		if r.Status == digest.DeliveryQueued {
			e.giveBack(r)
		}
	}
}

// sleep waits d, or less when ctx ends or stop closes.
func sleep(ctx context.Context, stop <-chan struct{}, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	case <-stop:
	}
}

// work is one SMTP connection: it sends queued jobs one after another over the same connection,
// redialling when it breaks. On the DATA path the next job's envelope goes out with the current
// message's end (smtpout.Conn.Send's next), so the worker takes that job from the queue early.
func (e *engine) work(ctx context.Context) {
	s := e.s
	c := &smtpout.Conn{Dialer: s.dialer, Timeout: s.opts.Timeout, BackoffBase: s.opts.ConnBackoff, NoChunking: s.opts.NoChunking}
	defer c.Close()
	ack := make(chan struct{}, 1)
	pending := false
	waitAck := func() {
		if pending {
			<-ack
			pending = false
		}
	}
	var buf, signed []byte
	var ahead *job // taken from the queue early, its envelope maybe already on the wire
	// takeNext is offered to Send: with a rate limit every message waits its turn instead.
	var takeNext func() (smtpout.Envelope, bool)
	if s.limiter == nil {
		takeNext = func() (smtpout.Envelope, bool) {
			select {
			case j, ok := <-e.jobs:
				if !ok {
					return smtpout.Envelope{}, false
				}
				ahead = &j
				if e.halted() || time.Now().After(j.deadline) {
					return smtpout.Envelope{}, false
				}
				return smtpout.Envelope{From: s.from.Address, To: j.row.Email}, true
			default:
				return smtpout.Envelope{}, false
			}
		}
	}
	for {
		var j job
		if ahead != nil {
			j, ahead = *ahead, nil
		} else {
			var ok bool
			if j, ok = <-e.jobs; !ok {
				break
			}
		}
		if ctx.Err() != nil || e.halted() || time.Now().After(j.deadline) {
			c.Abandon()
			e.giveBack(j.row)
			continue
		}
		if s.limiter != nil {
			if err := s.limiter.Wait(ctx); err != nil {
				e.giveBack(j.row)
				continue
			}
		}
		var err error
		buf, err = s.compose(buf[:0], e.issue, j.row)
		if err != nil {
			c.Abandon()
			e.outcomes <- outcome{kind: outRetry, row: j.row, reason: "compose: " + err.Error()}
			continue
		}
		msg := buf
		if s.opts.DKIM != nil {
			if signed, err = s.opts.DKIM.Sign(signed[:0], buf); err != nil {
				c.Abandon()
				e.outcomes <- outcome{kind: outRetry, row: j.row, reason: "dkim: " + err.Error()}
				continue
			}
			msg = signed
		}
		if err := c.Ensure(ctx); err != nil {
			if ctx.Err() != nil {
				e.giveBack(j.row)
				continue
			}
			e.outcomes <- e.classify(j.row, err)
			c.Pause(ctx, e.halt)
			continue
		}
		start := time.Now()
		err = c.Send(smtpout.Envelope{From: s.from.Address, To: j.row.Email}, msg, waitAck, takeNext)
		if err == nil {
			s.metrics.latency.Observe(time.Since(start).Seconds())
			pending = true
			e.outcomes <- outcome{kind: outSent, row: j.row, ack: ack}
			continue
		}
		e.outcomes <- e.classify(j.row, err)
		if se := smtpout.AsError(err); se != nil && se.Code == 421 {
			c.Pause(ctx, e.halt)
		}
	}
	waitAck()
}

// classify turns an SMTP error into an outcome.
func (e *engine) classify(r claimedRow, err error) outcome {
	se := smtpout.AsError(err)
	reason := err.Error()
	switch {
	case se == nil || !se.Permanent():
		// 4xx, timeouts, dropped connections: try again later.
		return outcome{kind: outRetry, row: r, reason: reason}
	case se.Refused():
		return outcome{kind: outFailed, row: r, reason: reason}
	case se.Local && se.Stage != smtpout.StageMail:
		// An address this relay cannot carry: this issue fails for the reader, who is not bounced.
		return outcome{kind: outUndeliverable, row: r, reason: reason}
	default:
		// Our connection, login or sender was refused: pause until someone fixes the setup.
		return outcome{kind: outConfig, row: r, reason: reason}
	}
}

// record writes outcomes to the ledger, sent rows in batches (one statement for the messages
// accepted while the previous batch was being written), and acknowledges them to their workers.
// Several run at once.
func (e *engine) record(ctx context.Context) {
	s := e.s
	dbctx := context.WithoutCancel(ctx)
	var rec *recorder
	defer func() {
		if rec != nil {
			rec.close()
		}
	}()
	var batch []outcome
	for o := range e.outcomes {
		batch = append(batch[:0], o)
	drain:
		for len(batch) < 1000 {
			select {
			case o, ok := <-e.outcomes:
				if !ok {
					break drain
				}
				batch = append(batch, o)
			default:
				break drain
			}
		}
		var sent []int64
		for _, o := range batch {
			if o.kind == outSent {
				sent = append(sent, o.row.SubscriberID)
			}
		}
		for attempt := 0; len(sent) > 0; attempt++ {
			var err error
			if rec == nil {
				rec, err = s.ledger.newRecorder(dbctx)
			}
			if err == nil {
				if err = rec.markSent(dbctx, e.issue.id, sent); err == nil {
					break
				}
				rec.close()
				rec = nil
			}
			// Workers wait for this before their next message is committed: never lose a mark.
			s.log.Error("digest sender: record sent messages", "issue", e.issue.id, "err", err)
			time.Sleep(min(time.Duration(attempt+1)*time.Second, 10*time.Second))
		}
		for _, o := range batch {
			e.recordOne(dbctx, o)
		}
	}
}

func (e *engine) recordOne(ctx context.Context, o outcome) {
	s := e.s
	id := e.issue.id
	if o.kind == outSent {
		e.streakMu.Lock()
		e.streak = 0
		e.streakMu.Unlock()
		e.sent.Add(1)
		s.metrics.sent.Inc()
		o.ack <- struct{}{}
		return
	}
	e.streakMu.Lock()
	e.streak++
	e.streakMu.Unlock()
	switch o.kind {
	case outRetry:
		backoff := retryDelay(s.opts.RetryBase, s.opts.RetryMax, o.row.Attempts)
		var failed bool
		e.untilWritten("record retry", func() (err error) {
			failed, err = s.ledger.markRetry(ctx, id, o.row.SubscriberID, o.reason, backoff, s.opts.MaxAttempts)
			return err
		})
		if failed {
			e.failed.Add(1)
			s.metrics.failed.Inc()
			s.log.Warn("digest sender: delivery failed after its last attempt", "issue", id, "subscriber", o.row.SubscriberID, "reason", o.reason)
		} else {
			e.retried.Add(1)
			s.metrics.retried.Inc()
		}
	case outFailed, outUndeliverable:
		e.untilWritten("record failure", func() error { return s.ledger.markFailed(ctx, id, o.row.SubscriberID, o.reason) })
		e.failed.Add(1)
		s.metrics.failed.Inc()
		if s.bounces != nil && o.kind == outFailed {
			e.untilWritten("mark reader bounced", func() error { return s.bounces.MarkBounced(ctx, o.row.SubscriberID, o.reason) })
		}
	case outConfig:
		e.giveBack(o.row)
		e.pause(ctx, "the SMTP server refused our sender or login: "+o.reason)
		return
	}
	e.streakMu.Lock()
	streak := e.streak
	e.streakMu.Unlock()
	if streak >= s.opts.FailureStreak {
		e.pause(ctx, fmt.Sprintf("%d failures in a row; the last: %s", streak, o.reason))
	}
}

// untilWritten runs write until it succeeds, like the sent marks: an outcome not written would
// leave its row leased until the lease ends (minutes, holding up the issue), and a failure not
// followed by its bounce would send the next issue to a dead address; the database may be
// restarting.
func (e *engine) untilWritten(what string, write func() error) {
	for attempt := 0; ; attempt++ {
		err := write()
		if err == nil {
			return
		}
		e.s.log.Error("digest sender: "+what, "issue", e.issue.id, "err", err)
		time.Sleep(min(time.Duration(attempt+1)*time.Second, 10*time.Second))
	}
}

// pause stops this issue's sending and records why, for the log and the editor pages.
func (e *engine) pause(ctx context.Context, reason string) {
	if e.halted() {
		return
	}
	e.stop()
	e.s.log.Error("digest sender: pausing issue", "issue", e.issue.id, "reason", reason)
	if err := e.s.store.Pause(ctx, e.issue.id, reason); err != nil && !errors.Is(err, digest.ErrConflict) {
		e.s.log.Error("digest sender: pause", "issue", e.issue.id, "err", err)
	}
}

// retryDelay is the backoff before attempt n+1: base doubled per attempt, jittered to 50-150%.
func retryDelay(base, most time.Duration, attempts int) time.Duration {
	d := base
	for i := 0; i < attempts && d < most; i++ {
		d *= 2
	}
	d = min(d, most)
	return time.Duration(float64(d) * (0.5 + mathrand.Float64()))
}

// TestSender returns the function behind "send a test" (HandlerOptions.TestSend): issue issueID,
// rendered by the same Renderer as the real send, to one address with "[TEST] " before the
// subject, signed with dkim (when set) and sent over a connection of dialer through the same
// transaction code as every reader's copy. It writes no ledger row and counts as no send. There is
// no reader, so the unsubscribe and manage links point at harmless pages of this service.
func TestSender(store *digest.Store, renderer *render.Renderer, dialer smtpout.Dialer, dkim *smtpout.DKIMSigner, from, baseURL string, maxArticles int) func(ctx context.Context, issueID int64, to string) error {
	baseURL = strings.TrimRight(baseURL, "/")
	return func(ctx context.Context, issueID int64, to string) error {
		to, err := testAddress(to)
		if err != nil {
			return fmt.Errorf("test send: address: %w", digest.ErrInvalid)
		}
		c, err := store.Content(ctx, issueID, maxArticles)
		if err != nil {
			return err
		}
		out, err := renderer.Render(c, render.Recipient{Email: to, UnsubscribeURL: baseURL + "/unsubscribe/test-message", ManageURL: baseURL + "/manage/test-message"})
		if err != nil {
			return err
		}
		m := gomail.NewMsg()
		if err := m.From(from); err != nil {
			return fmt.Errorf("test send: from: %w", err)
		}
		if err := m.To(to); err != nil {
			return fmt.Errorf("test send: address: %w", digest.ErrInvalid)
		}
		m.Subject("[TEST] " + out.Subject)
		m.SetDate()
		m.SetMessageIDWithValue(randomHex(16) + ".test@" + testFromDomain(from))
		m.SetBodyString(gomail.TypeTextPlain, out.Text)
		m.AddAlternativeString(gomail.TypeTextHTML, out.HTML)
		var raw bytes.Buffer
		if _, err := m.WriteTo(&raw); err != nil {
			return fmt.Errorf("test send: %w", err)
		}
		msg := raw.Bytes()
		if dkim != nil {
			if msg, err = dkim.Sign(nil, msg); err != nil {
				return fmt.Errorf("test send: dkim: %w", err)
			}
		}
		sender, err := netmail.ParseAddress(from)
		if err != nil {
			return fmt.Errorf("test send: from: %w", err)
		}
		conn := &smtpout.Conn{Dialer: dialer, Timeout: 30 * time.Second}
		defer conn.Close()
		if err := conn.Ensure(ctx); err != nil {
			return fmt.Errorf("test send: %w", err)
		}
		if err := conn.Send(smtpout.Envelope{From: sender.Address, To: to}, msg, func() {}, nil); err != nil {
			return fmt.Errorf("test send: %w", err)
		}
		return nil
	}
}

// testAddress accepts one bare address (no display name, no list), as typed in the form.
func testAddress(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 254 || strings.ContainsAny(s, "\r\n\x00<>,;\" ") {
		return "", digest.ErrInvalid
	}
	addr, err := netmail.ParseAddress(s)
	if err != nil || addr.Address != s || !strings.Contains(s[strings.LastIndexByte(s, '@')+1:], ".") && !strings.HasSuffix(s, "@localhost") {
		return "", digest.ErrInvalid
	}
	return s, nil
}

// testFromDomain is the domain of the From setting (a "Name <addr>" string), for the test
// message's Message-ID.
func testFromDomain(from string) string {
	if a, err := netmail.ParseAddress(from); err == nil {
		if i := strings.LastIndexByte(a.Address, '@'); i >= 0 {
			return a.Address[i+1:]
		}
	}
	return "localhost"
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
