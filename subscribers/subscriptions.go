package subscribers

import (
	"context"
	"fmt"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// Subscriptions (migration 0020): a reader receives newsletter N while their status is confirmed
// and their subscription to N is active. Until readers choose newsletters themselves, a reader
// has one: the digest of their language. These keep it right on every path that changes a reader.

// activateDigest makes the reader's subscription to the digest of lang active, resting on the
// consent consentID (their confirmed request) or the import importID (0: none).
func activateDigest(ctx context.Context, tx sqlx.ExecerContext, subscriberID int64, lang string, consentID, importID int64) error {
	_, err := tx.ExecContext(ctx, `
		INSERT INTO subscriptions AS sub (subscriber_id, newsletter_id, consent_id, import_id)
		SELECT $1, n.id, nullif($3::bigint, 0), nullif($4::bigint, 0) FROM newsletters n WHERE n.kind = 'digest' AND n.lang = $2
		ON CONFLICT (subscriber_id, newsletter_id) DO UPDATE SET
			consent_id = EXCLUDED.consent_id, import_id = EXCLUDED.import_id,
			created_at = CASE WHEN sub.state = 'left' THEN now() ELSE sub.created_at END,
			state = 'active', left_at = NULL`, subscriberID, lang, consentID, importID)
	if err != nil {
		return fmt.Errorf("subscription: %w", err)
	}
	return nil
}

// activateRequested makes active the reader's subscription to each newsletter their confirmed
// request consentID asked for (consent_newsletters), each resting on that request; a request that
// names none (there is none since migration 0021 gave every older request its language's digest)
// activates the digest of lang. Subscriptions it did not ask for stay as they are.
func activateRequested(ctx context.Context, tx sqlx.ExecerContext, subscriberID int64, lang string, consentID int64) error {
	res, err := tx.ExecContext(ctx, `
		INSERT INTO subscriptions AS sub (subscriber_id, newsletter_id, consent_id)
		SELECT $1, cn.newsletter_id, $2 FROM consent_newsletters cn WHERE cn.consent_id = $2
		ON CONFLICT (subscriber_id, newsletter_id) DO UPDATE SET
			consent_id = EXCLUDED.consent_id, import_id = NULL,
			created_at = CASE WHEN sub.state = 'left' THEN now() ELSE sub.created_at END,
			state = 'active', left_at = NULL`, subscriberID, consentID)
	if err != nil {
		return fmt.Errorf("subscriptions: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return activateDigest(ctx, tx, subscriberID, lang, consentID, 0)
	}
	return nil
}

// queueWelcomes queues the welcome of each newsletter the confirmed request consentID started
// that has one in the reader's language (no other language stands in: a welcome in a language the
// reader did not choose is worse than none), once per subscription: welcomed_at is set with the
// queueing, so a reader who leaves and comes back, or a request confirmed again, gets no second.
func queueWelcomes(ctx context.Context, tx sqlx.ExecerContext, subscriberID, consentID int64) error {
	_, err := tx.ExecContext(ctx, `
		WITH w AS (
			UPDATE subscriptions sub SET welcomed_at = now()
			FROM newsletters n, subscribers s
			WHERE sub.subscriber_id = $1 AND sub.consent_id = $2 AND sub.state = 'active' AND sub.welcomed_at IS NULL
			  AND n.id = sub.newsletter_id AND s.id = sub.subscriber_id
			  AND coalesce(n.welcome -> s.lang ->> 'markdown', '') <> ''
			RETURNING sub.newsletter_id
		)
		INSERT INTO outbox (kind, subscriber_id, newsletter_id) SELECT 'welcome', $1, newsletter_id FROM w`, subscriberID, consentID)
	if err != nil {
		return fmt.Errorf("welcome: %w", err)
	}
	return nil
}

// leaveAll marks every active subscription of the readers left: unsubscribing leaves
// everything, until each email's link leaves its own newsletter.
func leaveAll(ctx context.Context, tx sqlx.ExecerContext, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := tx.ExecContext(ctx, `UPDATE subscriptions SET state = 'left', left_at = now()
		WHERE subscriber_id = ANY($1::bigint[]) AND state = 'active'`, pq.Array(ids))
	if err != nil {
		return fmt.Errorf("leave subscriptions: %w", err)
	}
	return nil
}

// followLang moves the readers' active digest subscription to the digest of their language as it
// is now (after a change of language), with the consent it rested on: what a reader receives
// follows their language until they choose newsletters themselves.
func followLang(ctx context.Context, tx sqlx.ExecerContext, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := tx.ExecContext(ctx, `
		WITH moved AS (
			UPDATE subscriptions sub SET state = 'left', left_at = now()
			FROM newsletters n, subscribers s
			WHERE sub.subscriber_id = ANY($1::bigint[]) AND sub.state = 'active'
			  AND n.id = sub.newsletter_id AND n.kind = 'digest'
			  AND s.id = sub.subscriber_id AND n.lang <> s.lang
			RETURNING sub.subscriber_id, s.lang, sub.consent_id, sub.import_id
		)
		INSERT INTO subscriptions AS sub (subscriber_id, newsletter_id, consent_id, import_id)
		SELECT m.subscriber_id, n.id, m.consent_id, m.import_id
		FROM moved m JOIN newsletters n ON n.kind = 'digest' AND n.lang = m.lang
		ON CONFLICT (subscriber_id, newsletter_id) DO UPDATE SET
			consent_id = EXCLUDED.consent_id, import_id = EXCLUDED.import_id,
			created_at = now(), state = 'active', left_at = NULL`, pq.Array(ids))
	if err != nil {
		return fmt.Errorf("move subscription: %w", err)
	}
	return nil
}
