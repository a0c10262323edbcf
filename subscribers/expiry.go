package subscribers

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"newsletter/internal/metrics"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultUnconfirmedExpiry is how long a sign-up may stay unconfirmed before it is removed.
const DefaultUnconfirmedExpiry = 30 * 24 * time.Hour

// expireBatch bounds one statement, so a large backlog is removed in short transactions.
const expireBatch = 5000

// ExpireUnconfirmed removes sign-ups left unconfirmed for longer than age since the last request
// (the last confirmation queued, or the sign-up itself), with the requests they were made with,
// and returns how many it removed. A pending reader who never confirmed anything is deleted
// (requests and queued emails go with the row); one who had confirmed before goes back to having
// left. A reader who stays on the list or off it (confirmed, unsubscribed...) loses only the
// requests nobody answered within age.
func (s *Store) ExpireUnconfirmed(ctx context.Context, age time.Duration) (int, error) {
	total := 0
	for {
		var n int
		err := s.db.GetContext(ctx, &n, `
			WITH expired AS (
				SELECT id, subscribed_at,
				       confirmed_at IS NULL AND unsubscribed_at IS NULL AND bounced_at IS NULL AND complained_at IS NULL AS fresh
				FROM subscribers
				WHERE status = 'pending'
				  AND greatest(subscribed_at, confirmation_sent_at) < now() - $1 * interval '1 millisecond'
				ORDER BY id
				LIMIT $2
				FOR UPDATE SKIP LOCKED
			), deleted AS (
				DELETE FROM subscribers s USING expired e WHERE s.id = e.id AND e.fresh RETURNING s.id
			), reverted AS (
				UPDATE subscribers s SET updated_at = now(), status = CASE
					WHEN s.complained_at IS NOT NULL AND s.complained_at >= coalesce(s.unsubscribed_at, '-infinity') THEN 'complained'
					ELSE 'unsubscribed' END
				FROM expired e WHERE s.id = e.id AND NOT e.fresh RETURNING s.id
			), left_all AS (
				-- Back to having left: their subscriptions too.
				UPDATE subscriptions sub SET state = 'left', left_at = now()
				FROM reverted r WHERE sub.subscriber_id = r.id AND sub.state = 'active'
			), request AS (
				DELETE FROM consents c USING expired e
				WHERE c.subscriber_id = e.id AND NOT e.fresh AND c.created_at >= e.subscribed_at
			), unsent AS (
				UPDATE outbox o SET skipped_at = now() FROM expired e
				WHERE o.subscriber_id = e.id AND NOT e.fresh AND o.sent_at IS NULL AND o.skipped_at IS NULL AND o.failed_at IS NULL
			), stale AS (
				-- Requests nobody answered for a reader who stays (confirmed, or left): they go too.
				DELETE FROM consents c USING subscribers s
				WHERE s.id = c.subscriber_id AND s.status <> 'pending' AND c.confirmed_at IS NULL AND c.source <> 'import'
				  AND c.created_at < now() - $1 * interval '1 millisecond'
				RETURNING c.id
			)
			SELECT (SELECT count(*) FROM deleted) + (SELECT count(*) FROM reverted) + (SELECT count(*) FROM stale)`,
			age.Milliseconds(), expireBatch)
		if err != nil {
			return total, fmt.Errorf("expire unconfirmed: %w", err)
		}
		total += n
		if n < expireBatch {
			return total, nil
		}
	}
}

// Expiry removes unconfirmed sign-ups on a schedule (serve runs it).
type Expiry struct {
	store   *Store
	age     time.Duration
	every   time.Duration
	log     *slog.Logger
	expired prometheus.Counter
}

// NewExpiry returns an Expiry of sign-ups older than age, run every interval (default an hour),
// and registers its counter with reg (nil: not registered).
func NewExpiry(store *Store, age, every time.Duration, log *slog.Logger, reg prometheus.Registerer) (*Expiry, error) {
	if every <= 0 {
		every = time.Hour
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Expiry{store: store, age: age, every: every, log: log,
		expired: metrics.Register(reg, prometheus.NewCounter(prometheus.CounterOpts{Name: "newsletter_unconfirmed_expired_total",
			Help: "Sign-ups removed because they stayed unconfirmed too long."}))}, nil
}

// Run expires once at start and then every interval until ctx ends.
func (e *Expiry) Run(ctx context.Context) error {
	t := time.NewTicker(e.every)
	defer t.Stop()
	for {
		n, err := e.store.ExpireUnconfirmed(ctx, e.age)
		e.expired.Add(float64(n))
		switch {
		case err != nil && ctx.Err() == nil:
			e.log.Warn("unconfirmed sign-ups: expiry failed; trying again later", "error", err)
		case n > 0:
			e.log.Info("unconfirmed sign-ups expired", "count", n, "older_than", e.age)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}
