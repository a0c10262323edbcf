package subscribers

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// TestSubscribeBatchOneBadRow: a row the database refuses fails only its own subscription; the
// others in its batch are written with their consent and confirmation.
func TestSubscribeBatchOneBadRow(t *testing.T) {
	db, s := newStore(t)
	ctx := context.Background()
	b := s.batch
	// Queue subscriptions as if they arrived while a batch was in flight, then let one commit them.
	var waiting []*subscription
	for i, email := range []string{"one@example.com", "x", "two@example.com", "One@example.com"} {
		sub := &subscription{email: email, lang: "en", consent: formConsent}
		sub.key, sub.done, sub.lead = fmt.Sprint(i, email), make(chan struct{}), make(chan struct{}, 1)
		waiting = append(waiting, sub)
	}
	waiting[3].key = "one@example.com" // the same address as the first: never in one batch with it
	waiting[0].key = "one@example.com"
	b.queue = slices.Clone(waiting) // the batcher reorders its own queue in place
	b.running = 1
	leader := &subscription{email: "lead@example.com", lang: "en", consent: formConsent,
		key: "lead@example.com", done: make(chan struct{}), lead: make(chan struct{}, 1)}
	b.commit(ctx, leader)
	if leader.err != nil {
		t.Fatalf("leader: %v", leader.err)
	}
	for _, i := range []int{0, 1, 2} {
		<-waiting[i].done
	}
	if waiting[1].err == nil {
		t.Error(`address "x" (too short for the table) was accepted`)
	}
	for _, i := range []int{0, 2} {
		if waiting[i].err != nil {
			t.Errorf("%s failed with the bad row: %v", waiting[i].email, waiting[i].err)
		}
	}
	// The duplicate waited for the next batch and took the committer slot with it.
	select {
	case <-waiting[3].lead:
	default:
		t.Fatal("the duplicate address was neither written nor handed the next batch")
	}
	b.commit(ctx, waiting[3])
	if waiting[3].err != nil {
		t.Fatalf("duplicate: %v", waiting[3].err)
	}
	if b.running != 0 || len(b.queue) != 0 {
		t.Errorf("after the batches: running %d, queued %d; want 0, 0", b.running, len(b.queue))
	}
	for _, email := range []string{"lead@example.com", "one@example.com", "two@example.com"} {
		sub := reader(t, db, email)
		c := countsFor(t, db, sub.ID)
		if c.consents < 1 || c.outbox != 1 {
			t.Errorf("%s: %d consents, %d queued confirmations; want >= 1 and 1", email, c.consents, c.outbox)
		}
	}
	if n := countRows(t, db, `SELECT count(*) FROM consents c JOIN subscribers s ON s.id = c.subscriber_id WHERE lower(s.email) = 'one@example.com'`); n != 2 {
		t.Errorf("one@example.com: %d consents, want 2 (it subscribed twice, once as One@example.com)", n)
	}
}

// TestSubscribeBatchConcurrent: many concurrent subscriptions, some for one address, all succeed
// and each address has exactly one queued confirmation.
func TestSubscribeBatchConcurrent(t *testing.T) {
	db, s := newStore(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Go(func() {
			errs <- s.Subscribe(ctx, fmt.Sprintf("reader%d@example.com", i%50), "", "en", formConsent)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := countRows(t, db, `SELECT count(*) FROM subscribers`); n != 50 {
		t.Errorf("%d readers, want 50", n)
	}
	if n := countRows(t, db, `SELECT count(*) FROM outbox`); n != 50 {
		t.Errorf("%d queued confirmations, want 50 (one per address)", n)
	}
	if n := countRows(t, db, `SELECT count(*) FROM consents`); n != 200 {
		t.Errorf("%d consents, want 200", n)
	}
	if b := s.batch; b.running != 0 || len(b.queue) != 0 {
		t.Errorf("after the run: running %d, queued %d; want 0, 0", b.running, len(b.queue))
	}
	// 200 at once cannot all hold a committer slot: some queued, which makes the store busy for
	// busyWindow after.
	last := s.batch.lastQueued.Load()
	if last == 0 {
		t.Fatal("200 concurrent subscriptions, and none queued")
	}
	if busy, want := s.Busy(), time.Since(time.Unix(0, last)) < busyWindow; busy != want {
		t.Errorf("Busy() = %v %s after the last one queued", busy, time.Since(time.Unix(0, last)))
	}
	s.batch.lastQueued.Store(time.Now().Add(-busyWindow - time.Millisecond).UnixNano())
	if s.Busy() {
		t.Error("busy longer than busyWindow after the last queueing")
	}
}
