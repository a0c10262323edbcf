package subscribers

import (
	"context"
	"database/sql"
	"time"

	"github.com/jmoiron/sqlx"
)

// SubscriptionEntry is one of a reader's subscriptions as the editors' reader page shows it: the
// newsletter, its state, since when, and what it rests on (a consent's source, or an import).
type SubscriptionEntry struct {
	Slug          string         `db:"slug"`
	Names         []byte         `db:"names"`
	State         string         `db:"state"`
	CreatedAt     time.Time      `db:"created_at"`
	LeftAt        *time.Time     `db:"left_at"`
	ConsentSource sql.NullString `db:"consent_source"`
	ImportID      sql.NullInt64  `db:"import_id"`
}

// readerSubscriptions lists the reader's subscriptions, active ones first, then by newsletter.
func readerSubscriptions(ctx context.Context, q sqlx.QueryerContext, subscriberID int64) ([]SubscriptionEntry, error) {
	var out []SubscriptionEntry
	err := sqlx.SelectContext(ctx, q, &out, `
		SELECT n.slug, n.names, sub.state, sub.created_at, sub.left_at, c.source AS consent_source, sub.import_id
		FROM subscriptions sub JOIN newsletters n ON n.id = sub.newsletter_id
		LEFT JOIN consents c ON c.id = sub.consent_id
		WHERE sub.subscriber_id = $1
		ORDER BY sub.state = 'left', n.kind = 'editions', n.lang, n.slug`, subscriberID)
	return out, err
}

// DataSubscription is one subscription as the reader's own data export gives it.
type DataSubscription struct {
	Newsletter string     `db:"slug" json:"newsletter"`
	State      string     `db:"state" json:"state"`
	Since      time.Time  `db:"created_at" json:"since"`
	LeftAt     *time.Time `db:"left_at" json:"left_at,omitempty"`
	// RestsOn is what started it: the source of the reader's consent ("form", "api", "manage") or "import".
	RestsOn string `db:"rests_on" json:"rests_on"`
}

// dataSubscriptions lists the reader's subscriptions for their data export.
func dataSubscriptions(ctx context.Context, q sqlx.QueryerContext, subscriberID int64) ([]DataSubscription, error) {
	out := []DataSubscription{}
	err := sqlx.SelectContext(ctx, q, &out, `
		SELECT n.slug, sub.state, sub.created_at, sub.left_at,
			coalesce(c.source, CASE WHEN sub.import_id IS NOT NULL THEN 'import' END, '') AS rests_on
		FROM subscriptions sub JOIN newsletters n ON n.id = sub.newsletter_id
		LEFT JOIN consents c ON c.id = sub.consent_id
		WHERE sub.subscriber_id = $1 ORDER BY n.slug`, subscriberID)
	return out, err
}
