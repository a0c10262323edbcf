// Package newsletters is what a reader can subscribe to: the digests, one per language today, and
// later the editions editors write. The rows are migration 0020's; the reader list
// (subscribers) and the sender (digest) reach them through SQL joins, so neither imports this.
package newsletters

import (
	"context"
	"fmt"
	"strings"

	"github.com/jmoiron/sqlx"
)

// Kinds of newsletter.
const (
	KindDigest   = "digest"
	KindEditions = "editions"
)

// Newsletter is one row of the newsletters table.
type Newsletter struct {
	ID   int64  `db:"id"`
	Slug string `db:"slug"`
	Kind string `db:"kind"`
	// Lang is a digest's language ("" for editions).
	Lang      string `db:"lang"`
	OnForm    bool   `db:"on_form"`
	DefaultOn bool   `db:"default_on"`
}

// EnsureDigests adds the digest of each language in langs that has none, so a language added to
// NEWSLETTER_LANGUAGES has its digest before any reader confirms in it (the migration that made
// newsletters records could not read the settings). Concurrent starts agree through the unique
// language index. A language's existing digest is never changed.
func EnsureDigests(ctx context.Context, db sqlx.ExecerContext, langs []string) error {
	for _, l := range langs {
		slug := "digest-" + strings.ToLower(l)
		if _, err := db.ExecContext(ctx, `INSERT INTO newsletters (slug, kind, names, langs)
			SELECT $1, 'digest', jsonb_build_object('en', 'Weekly digest (' || $2 || ')'), ARRAY[$2::text]
			WHERE NOT EXISTS (SELECT 1 FROM newsletters WHERE kind = 'digest' AND lang = $2)
			ON CONFLICT DO NOTHING`, slug, l); err != nil {
			return fmt.Errorf("newsletters: digest of %s: %w", l, err)
		}
	}
	return nil
}

// Digests lists the digest newsletters, by language.
func Digests(ctx context.Context, db sqlx.QueryerContext) ([]Newsletter, error) {
	var out []Newsletter
	if err := sqlx.SelectContext(ctx, db, &out, `SELECT id, slug, kind, coalesce(lang, '') AS lang, on_form, default_on
		FROM newsletters WHERE kind = 'digest' ORDER BY lang`); err != nil {
		return nil, fmt.Errorf("newsletters: %w", err)
	}
	return out, nil
}
