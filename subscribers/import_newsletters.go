package subscribers

import (
	"context"
	"fmt"
	"slices"
	"strings"

	"github.com/jmoiron/sqlx"
)

// The newsletters column of an import and an export: the slugs of the newsletters a reader gets,
// separated by spaces (commas and semicolons are read as separators too, for hand-written files).

// newsletterSlugs maps every newsletter's slug to its id.
func newsletterSlugs(ctx context.Context, q sqlx.QueryerContext) (map[string]int64, error) {
	var rows []struct {
		ID   int64  `db:"id"`
		Slug string `db:"slug"`
	}
	if err := sqlx.SelectContext(ctx, q, &rows, `SELECT id, slug FROM newsletters`); err != nil {
		return nil, fmt.Errorf("newsletters: %w", err)
	}
	out := make(map[string]int64, len(rows))
	for _, r := range rows {
		out[r.Slug] = r.ID
	}
	return out, nil
}

// parseNewsletters reads a newsletters cell: the ids of its slugs (any case, each once), nil for
// an empty cell; or the first slug no newsletter has.
func parseNewsletters(cell string, slugs map[string]int64) (ids []int64, unknown string) {
	for _, slug := range strings.FieldsFunc(cell, func(r rune) bool { return r == ' ' || r == ',' || r == ';' || r == '\t' }) {
		id, ok := slugs[strings.ToLower(slug)]
		if !ok {
			return nil, slug
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
		}
	}
	return ids, ""
}

// importWriteChosen is importWrite for a file with a newsletters column: a reader it adds gets
// the newsletters of their row (none for an empty cell) rather than their language's digest. The
// staging row is found again by the uuid the new reader was given.
var importWriteChosen = func() string {
	const digest = `		FROM ins JOIN newsletters n ON n.kind = 'digest' AND n.lang = ins.lang
`
	if !strings.Contains(importWrite, digest) || !strings.Contains(importWrite, "RETURNING id, lang, status, unsubscribed_at") {
		panic("subscribers: importWrite changed; update importWriteChosen")
	}
	q := strings.Replace(importWrite, "RETURNING id, lang, status, unsubscribed_at", "RETURNING id, uuid, lang, status, unsubscribed_at", 1)
	q = strings.Replace(q, "SELECT ins.id, n.id,", "SELECT ins.id, nl.id,", 1)
	return strings.Replace(q, digest, `		FROM ins JOIN import_staging st ON st.uuid = ins.uuid CROSS JOIN LATERAL unnest(st.newsletters) AS nl(id)
`, 1)
}()

// setChosen gives each reader already present whose row lists newsletters exactly those, resting
// on the import: the others they get are left; the listed ones become active, unless the reader
// has left the list (unsubscribed, bounced, complained: an import never brings them back). Readers
// the import added (their import_id is this import's) have theirs already.
func setChosen(ctx context.Context, tx *sqlx.Tx, importID int64) error {
	_, err := tx.ExecContext(ctx, `
		WITH want AS (
			SELECT s.id, s.status, st.newsletters
			FROM import_staging st JOIN subscribers s ON lower(s.email) = lower(st.email)
			WHERE st.newsletters IS NOT NULL AND s.import_id IS DISTINCT FROM $1::bigint
			  AND NOT EXISTS (SELECT 1 FROM suppressions p WHERE p.email_hash = st.email_hash)
		), gone AS (
			UPDATE subscriptions sub SET state = 'left', left_at = now()
			FROM want w
			WHERE sub.subscriber_id = w.id AND sub.state = 'active' AND sub.newsletter_id <> ALL (w.newsletters)
		)
		INSERT INTO subscriptions AS sub (subscriber_id, newsletter_id, import_id)
		SELECT w.id, nl.id, $1::bigint FROM want w CROSS JOIN LATERAL unnest(w.newsletters) AS nl(id)
		WHERE w.status IN ('pending', 'confirmed')
		ON CONFLICT (subscriber_id, newsletter_id) DO UPDATE SET
			consent_id = NULL, import_id = EXCLUDED.import_id, created_at = now(), state = 'active', left_at = NULL
		WHERE sub.state = 'left'`, importID)
	if err != nil {
		return fmt.Errorf("subscriptions: %w", err)
	}
	return nil
}
