package send

import (
	"context"
	"errors"
	"fmt"
	"time"

	"newsletter/digest"
)

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
		tries := o.row.Attempts + 1 // this one included
		delay, final := s.opts.Retry.Delay(tries), s.opts.Retry.Final(tries)
		var failed bool
		e.untilWritten("record retry", func() (err error) {
			failed, err = s.ledger.markRetry(ctx, id, o.row.SubscriberID, o.reason, delay, final)
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
			e.untilWritten("record the refusal", func() error { return s.bounces.RecordRefusal(ctx, o.row.UUID, id, o.reason) })
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
