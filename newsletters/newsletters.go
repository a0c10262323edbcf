// Package newsletters is what a reader can subscribe to: the digests, one per language today, and
// later the editions editors write. The rows are migration 0020's; the reader list
// (subscribers) and the sender (digest) reach them through SQL joins, so neither imports this.
package newsletters

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
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
	// Names and Descriptions are keyed by language ("en", "ru").
	Names        Texts `db:"names"`
	Descriptions Texts `db:"descriptions"`
	// Langs: a digest's one language; the languages an editions newsletter is written in.
	Langs pq.StringArray `db:"langs"`
	// Lang is a digest's language ("" for editions).
	Lang string `db:"lang"`
	// Schedule, MaxArticles and RequireApproval of a digest; nil takes the setting
	// (NEWSLETTER_DIGEST_SCHEDULE, _MAX_ARTICLES, _REQUIRE_APPROVAL).
	Schedule        *string `db:"schedule"`
	MaxArticles     *int    `db:"max_articles"`
	RequireApproval *bool   `db:"require_approval"`
	// OnForm: the subscribe form offers it; DefaultOn: ticked there by default.
	OnForm    bool `db:"on_form"`
	DefaultOn bool `db:"default_on"`
	// Welcome is the welcome email per language; a language without one sends none.
	Welcome Welcomes `db:"welcome"`
	// SkipRunAt is the scheduled run of a digest an editor chose to skip.
	SkipRunAt *time.Time `db:"skip_run_at"`
	CreatedAt time.Time  `db:"created_at"`
}

// Name is the newsletter's name in lang, else in English, else any, else its slug.
func (n Newsletter) Name(lang string) string {
	if v := n.Names.In(lang); v != "" {
		return v
	}
	return n.Slug
}

// Texts is a jsonb object of texts keyed by language.
type Texts map[string]string

// In returns the text in lang, else in English, else the first by language order, else "".
func (t Texts) In(lang string) string {
	if v := t[lang]; v != "" {
		return v
	}
	if v := t["en"]; v != "" {
		return v
	}
	keys := make([]string, 0, len(t))
	for k, v := range t {
		if v != "" {
			keys = append(keys, k)
		}
	}
	if len(keys) == 0 {
		return ""
	}
	slices.Sort(keys)
	return t[keys[0]]
}

// Scan reads a jsonb object.
func (t *Texts) Scan(src any) error { return scanJSON(src, t) }

// Value writes a jsonb object.
func (t Texts) Value() (driver.Value, error) { return valueJSON(t) }

// Welcome is one language's welcome email, in Markdown as an edition.
type Welcome struct {
	Subject  string `json:"subject"`
	Markdown string `json:"markdown"`
}

// Welcomes is the welcome email per language (jsonb).
type Welcomes map[string]Welcome

// Scan reads a jsonb object.
func (w *Welcomes) Scan(src any) error { return scanJSON(src, w) }

// Value writes a jsonb object.
func (w Welcomes) Value() (driver.Value, error) { return valueJSON(w) }

func scanJSON(src any, dst any) error {
	var b []byte
	switch v := src.(type) {
	case nil:
		return nil
	case []byte:
		b = v
	case string:
		b = []byte(v)
	default:
		return fmt.Errorf("newsletters: cannot read %T as JSON", src)
	}
	return json.Unmarshal(b, dst)
}

func valueJSON(v any) (driver.Value, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	if string(b) == "null" {
		return "{}", nil
	}
	return string(b), nil
}

// columns are the newsletters columns, lang read as "" for editions.
const columns = `id, slug, kind, names, descriptions, langs, coalesce(lang, '') AS lang, schedule, max_articles,
	require_approval, on_form, default_on, welcome, skip_run_at, created_at`

// ErrNotFound: no such newsletter.
var ErrNotFound = errors.New("newsletters: not found")

// List returns every newsletter: the digests by language first, then editions by slug.
func List(ctx context.Context, db sqlx.QueryerContext) ([]Newsletter, error) {
	var out []Newsletter
	if err := sqlx.SelectContext(ctx, db, &out, `SELECT `+columns+` FROM newsletters
		ORDER BY kind = 'editions', lang, slug`); err != nil {
		return nil, fmt.Errorf("newsletters: %w", err)
	}
	return out, nil
}

// Get returns one newsletter by id; ErrNotFound when there is none.
func Get(ctx context.Context, db sqlx.QueryerContext, id int64) (Newsletter, error) {
	var n Newsletter
	err := sqlx.GetContext(ctx, db, &n, `SELECT `+columns+` FROM newsletters WHERE id = $1`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Newsletter{}, fmt.Errorf("newsletter %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Newsletter{}, fmt.Errorf("newsletter %d: %w", id, err)
	}
	return n, nil
}

// BySlug returns one newsletter by slug; ErrNotFound when there is none.
func BySlug(ctx context.Context, db sqlx.QueryerContext, slug string) (Newsletter, error) {
	var n Newsletter
	err := sqlx.GetContext(ctx, db, &n, `SELECT `+columns+` FROM newsletters WHERE slug = $1`, slug)
	if errors.Is(err, sql.ErrNoRows) {
		return Newsletter{}, fmt.Errorf("newsletter %q: %w", slug, ErrNotFound)
	}
	if err != nil {
		return Newsletter{}, fmt.Errorf("newsletter %q: %w", slug, err)
	}
	return n, nil
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
	if err := sqlx.SelectContext(ctx, db, &out, `SELECT `+columns+`
		FROM newsletters WHERE kind = 'digest' ORDER BY lang`); err != nil {
		return nil, fmt.Errorf("newsletters: %w", err)
	}
	return out, nil
}
