package send

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"newsletter/digest"
	"newsletter/internal/smtpout"
	"newsletter/internal/textclean"
)

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
	p, err := s.prepare(ctx, issueID, "")
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
	c := &smtpout.Conn{Dialer: s.dialer, Timeout: s.opts.Timeout, Reconnect: s.opts.Reconnect, NoChunking: s.opts.NoChunking}
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
				return smtpout.Envelope{From: s.returnPath(j.row, e.issue.id), To: j.row.Email}, true
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
		err = c.Send(smtpout.Envelope{From: s.returnPath(j.row, e.issue.id), To: j.row.Email}, msg, waitAck, takeNext)
		if err == nil {
			s.metrics.latency.Observe(time.Since(start).Seconds())
			pending = true
			e.outcomes <- outcome{kind: outSent, row: j.row, ack: ack}
			continue
		}
		e.outcomes <- e.classify(j.row, err)
		if smtpout.PauseAfter(err) {
			c.Pause(ctx, e.halt)
		}
	}
	waitAck()
}

// classify turns an SMTP error into an outcome, by the retry policy's verdict.
func (e *engine) classify(r claimedRow, err error) outcome {
	kind := outRetry
	switch smtpout.Classify(err) {
	case smtpout.Refused:
		kind = outFailed
	case smtpout.Undeliverable:
		// This issue fails for the reader, who is not bounced: the address may be fine elsewhere.
		kind = outUndeliverable
	case smtpout.Setup:
		// Our connection, login or sender was refused: pause until someone fixes the setup.
		kind = outConfig
	}
	// Servers quote the recipient: the reason is kept in the ledger, shown to editors, grouped on
	// the issue's report and logged, and needs no address for any of that.
	return outcome{kind: kind, row: r, reason: textclean.NewAddressScrubber(r.Email).All(err.Error())}
}
