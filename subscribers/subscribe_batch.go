package subscribers

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"newsletter/internal/httpx"
	"newsletter/internal/textclean"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// Subscriptions that arrive together are written together: one statement and one commit (one WAL
// flush) for a batch instead of one per reader. Under load each commit is the bottleneck, not the
// rows; alone, a subscription is a batch of one and waits for nobody.
const (
	maxSubscribeBatch      = 64 // rows in one statement
	maxSubscribeCommitters = 2  // batches in flight at once
	subscribeBatchTimeout  = 30 * time.Second
)

// subscription is one validated opt-in waiting to be written.
type subscription struct {
	email, name, lang string
	consent           Consent

	key  string        // lower-cased address: a batch holds each at most once (ON CONFLICT)
	err  error         // the outcome, set before done is closed
	done chan struct{} // closed once written or failed
	lead chan struct{} // signalled when this waiting subscription is to commit the next batch
}

// subscribeBatcher is group commit without a goroutine of its own: a subscription that finds fewer
// than maxSubscribeCommitters batches in flight commits a batch itself (its own row plus whatever
// waits); the others queue. A committer that finishes hands its slot to the oldest waiting one, so
// each request commits at most one batch and nothing waits for a flush nobody will do.
type subscribeBatcher struct {
	db *sqlx.DB

	prepMu sync.Mutex
	stmt   *sql.Stmt

	mu      sync.Mutex
	queue   []*subscription
	running int

	lastQueued atomic.Int64 // unix nanoseconds when a subscription last had to wait for a slot
}

// busyWindow is how long after a subscription last waited for a committer slot the batcher
// counts as busy (busy).
const busyWindow = 100 * time.Millisecond

// busy reports whether subscriptions have lately had to queue: the database (or the CPU) is
// saturated by them, and background work should make way.
func (b *subscribeBatcher) busy() bool {
	return time.Now().UnixNano()-b.lastQueued.Load() < int64(busyWindow)
}

func (b *subscribeBatcher) subscribe(ctx context.Context, s *subscription) error {
	s.key = strings.ToLower(s.email)
	s.done = make(chan struct{})
	s.lead = make(chan struct{}, 1)
	b.mu.Lock()
	if b.running < maxSubscribeCommitters {
		b.running++
		b.mu.Unlock()
		b.commit(ctx, s)
		return s.err
	}
	b.queue = append(b.queue, s)
	b.mu.Unlock()
	b.lastQueued.Store(time.Now().UnixNano())

	select {
	case <-s.done:
		return s.err
	case <-s.lead:
		b.commit(ctx, s)
		return s.err
	case <-ctx.Done():
	}
	// Gone before it was taken: leave the queue. Already taken: its batch is being written (or it
	// was just handed a committer slot, which it must use), so see it through.
	b.mu.Lock()
	for i, q := range b.queue {
		if q == s {
			b.queue = append(b.queue[:i], b.queue[i+1:]...)
			b.mu.Unlock()
			return fmt.Errorf("subscribe: %w", ctx.Err())
		}
	}
	b.mu.Unlock()
	select {
	case <-s.done:
	case <-s.lead:
		b.commit(ctx, s)
	}
	return s.err
}

// commit writes a batch led by s (which holds a committer slot), then passes the slot on.
func (b *subscribeBatcher) commit(ctx context.Context, s *subscription) {
	b.mu.Lock()
	batch := []*subscription{s}
	seen := map[string]bool{s.key: true}
	rest := b.queue[:0]
	for _, q := range b.queue {
		if len(batch) < maxSubscribeBatch && !seen[q.key] {
			seen[q.key] = true
			batch = append(batch, q)
		} else {
			rest = append(rest, q)
		}
	}
	clear(b.queue[len(rest):])
	b.queue = rest
	b.mu.Unlock()
	// Rows locked in one order by every batch: two batches never wait on each other in a cycle.
	slices.SortFunc(batch, func(x, y *subscription) int { return strings.Compare(x.key, y.key) })

	// The batch is everyone's: one reader's request ending must not cancel the others' write.
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), subscribeBatchTimeout)
	err := b.write(wctx, batch)
	if err != nil && len(batch) > 1 && !httpx.Unavailable(err) {
		// One row the batch could not take fails only itself: write each on its own.
		for _, q := range batch {
			q.err = b.write(wctx, []*subscription{q})
		}
	} else {
		for _, q := range batch {
			q.err = err
		}
	}
	cancel()
	for _, q := range batch {
		if q.err != nil {
			q.err = fmt.Errorf("subscribe: %w", q.err)
		}
		if q != s {
			close(q.done)
		}
	}

	b.mu.Lock()
	if len(b.queue) > 0 {
		next := b.queue[0]
		b.queue = b.queue[1:]
		next.lead <- struct{}{} // the slot moves to next: running stays as it is
	} else {
		b.running--
	}
	b.mu.Unlock()
}

// write records a batch of subscription requests in one statement, so in one implicit
// transaction. A request never changes a reader who exists: not their status, name, language or
// suppression (anyone may post anyone's address). For each, the reader (new: pending, with the
// name and language asked for; known: untouched), the request (a consent row, open until the
// owner confirms it, see Store.Confirm), and a queued confirmation email where one may go: to a
// pending reader or one who left (unsubscribed, complained), never to a confirmed or bounced one,
// and not when one was queued within ConfirmThrottle or is still unsent. The CTEs share one
// snapshot, so the throttle is decided inside the upsert, and RETURNING says whether it queued
// (now() is this transaction's start, so only a value this statement set equals it). The batch
// never holds one address twice (ON CONFLICT may touch a row once per statement).
func (b *subscribeBatcher) write(ctx context.Context, batch []*subscription) error {
	n := len(batch)
	email, name, lang := make([]string, n), make([]string, n), make([]string, n)
	ip, ua, source, text := make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	asked := make([]string, n)
	for i, s := range batch {
		email[i], name[i], lang[i] = s.email, s.name, s.lang
		ids := make([]string, len(s.consent.Newsletters))
		for j, id := range s.consent.Newsletters {
			ids[j] = strconv.FormatInt(id, 10)
		}
		asked[i] = strings.Join(ids, ",")
		ip[i], ua[i] = textclean.ClipBytes(s.consent.IP, 64), ReduceUserAgent(s.consent.UserAgent)
		source[i], text[i] = s.consent.Source, textclean.ClipBytes(s.consent.TextVersion, 64)
	}
	return b.exec(ctx, pq.StringArray(email), pq.StringArray(name), pq.StringArray(lang), pq.StringArray(ip), pq.StringArray(ua),
		pq.StringArray(source), pq.StringArray(text), int(ConfirmThrottle/time.Second), pq.StringArray(asked))
}

// exec runs subscribeSQL as a statement prepared once per connection (parsed and planned once, not
// per batch), or unprepared while preparing fails (the database is away; the error comes next).
func (b *subscribeBatcher) exec(ctx context.Context, args ...any) error {
	b.prepMu.Lock()
	stmt := b.stmt
	if stmt == nil {
		if st, err := b.db.PrepareContext(ctx, subscribeSQL); err == nil {
			b.stmt, stmt = st, st
		}
	}
	b.prepMu.Unlock()
	var err error
	if stmt != nil {
		_, err = stmt.ExecContext(ctx, args...)
	} else {
		_, err = b.db.ExecContext(ctx, subscribeSQL, args...)
	}
	return err
}

const subscribeSQL = `
		WITH input AS (
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $9::text[])
				AS t(email, name, lang, ip, user_agent, source, text_version, newsletters)
		), reader AS (
			INSERT INTO subscribers AS r (email, name, lang, status, confirmation_sent_at)
			SELECT email, name, lang, 'pending', now() FROM input
			ON CONFLICT (lower(email)) DO UPDATE SET
				confirmation_sent_at = CASE
					WHEN (r.status IN ('pending', 'unsubscribed', 'complained')
					      -- A confirmed reader asking for a newsletter they do not get yet.
					      OR r.status = 'confirmed' AND EXISTS (
					         SELECT 1 FROM input i JOIN newsletters n ON CASE WHEN i.newsletters = ''
					             THEN n.kind = 'digest' AND n.lang = i.lang
					             ELSE n.id = ANY(string_to_array(i.newsletters, ',')::bigint[]) END
					         WHERE lower(i.email) = lower(r.email) AND NOT EXISTS (SELECT 1 FROM subscriptions sub
					             WHERE sub.subscriber_id = r.id AND sub.newsletter_id = n.id AND sub.state = 'active')))
					 AND (r.confirmation_sent_at IS NULL OR r.confirmation_sent_at <= now() - $8 * interval '1 second')
					 AND NOT EXISTS (SELECT 1 FROM outbox o
					                 WHERE o.subscriber_id = r.id AND o.kind = 'confirm' AND o.sent_at IS NULL
					                   AND o.skipped_at IS NULL AND o.failed_at IS NULL)
					THEN now() ELSE r.confirmation_sent_at END
			RETURNING r.id, lower(r.email) AS key, r.confirmation_sent_at = now() AS queue
		), request AS (
			INSERT INTO consents (subscriber_id, ip, user_agent, source, text_version, name, lang)
			SELECT reader.id, input.ip, input.user_agent, input.source, input.text_version, input.name, input.lang
			FROM reader JOIN input ON lower(input.email) = reader.key
			RETURNING id, subscriber_id
		), asked AS (
			-- What each request asks for: the newsletters named, else its language's digest.
			INSERT INTO consent_newsletters (consent_id, newsletter_id)
			SELECT request.id, n.id
			FROM request JOIN reader ON reader.id = request.subscriber_id
			JOIN input ON lower(input.email) = reader.key
			JOIN newsletters n ON CASE WHEN input.newsletters = ''
				THEN n.kind = 'digest' AND n.lang = input.lang
				ELSE n.id = ANY(string_to_array(input.newsletters, ',')::bigint[]) END
		)
		INSERT INTO outbox (kind, subscriber_id) SELECT 'confirm', id FROM reader WHERE queue`
