package newsletters

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// What the editor pages change: an editions newsletter's creation, any newsletter's names,
// descriptions and form flags, a digest's schedule and skip, and the welcome texts. Newsletters
// are never deleted (the table's trigger refuses it), so there is no function for it.

// Errors of the editor pages' changes.
var (
	// ErrInvalid: the input breaks a rule; the error's text says which, in our own words.
	ErrInvalid = errors.New("invalid")
	// ErrSlugTaken: another newsletter has that slug.
	ErrSlugTaken = errors.New("slug taken")
)

// Limits of a newsletter's texts, in characters.
const (
	MaxName        = 100
	MaxDescription = 500
	MaxSlug        = 64
)

var slugPattern = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// CheckSlug reports whether slug may name a newsletter (in URLs and the subscribe form).
func CheckSlug(slug string) error {
	if slug == "" || len(slug) > MaxSlug || !slugPattern.MatchString(slug) {
		return fmt.Errorf("a slug is 1 to %d lower-case letters a-z, digits and single hyphens between them, such as weekly-briefing: %w", MaxSlug, ErrInvalid)
	}
	return nil
}

// CheckLine checks one line of text an editor typed (a name, a description, a subject): valid
// UTF-8, at most max characters, no line break, control or invisible formatting character (a
// direction override would make a name read differently from what it is).
func CheckLine(what, s string, max int) error {
	if !utf8.ValidString(s) {
		return fmt.Errorf("the %s is not valid text: %w", what, ErrInvalid)
	}
	if n := utf8.RuneCountInString(s); n > max {
		return fmt.Errorf("the %s has %d characters, at most %d: %w", what, n, max, ErrInvalid)
	}
	for _, r := range s {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) && r != '\u200d' { // a joiner is part of some emoji
			return fmt.Errorf("the %s may not hold line breaks or control characters: %w", what, ErrInvalid)
		}
	}
	return nil
}

// Texts of a newsletter an editor sets: names and descriptions per language, and the form flags.
type Fields struct {
	Names, Descriptions Texts
	OnForm, DefaultOn   bool
}

// check validates the fields for a newsletter written in langs: a name in each, texts within
// their limits, no language outside allowed.
func (f *Fields) check(langs, allowed []string) error {
	f.Names, f.Descriptions = trimTexts(f.Names), trimTexts(f.Descriptions)
	for _, l := range langs {
		if f.Names[l] == "" {
			return fmt.Errorf("give it a name in %s: %w", l, ErrInvalid)
		}
	}
	for l, v := range f.Names {
		if !contains(allowed, l) {
			return fmt.Errorf("language %q is not one of the configured languages: %w", l, ErrInvalid)
		}
		if err := CheckLine("name in "+l, v, MaxName); err != nil {
			return err
		}
	}
	for l, v := range f.Descriptions {
		if !contains(allowed, l) {
			return fmt.Errorf("language %q is not one of the configured languages: %w", l, ErrInvalid)
		}
		if err := CheckLine("description in "+l, v, MaxDescription); err != nil {
			return err
		}
	}
	return nil
}

func trimTexts(t Texts) Texts {
	out := Texts{}
	for k, v := range t {
		if v = strings.TrimSpace(v); v != "" {
			out[k] = v
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// CreateEditions adds an editions newsletter written in langs (each one of allowed, the configured
// languages). ErrInvalid for a bad slug, language or text; ErrSlugTaken when the slug is in use.
func CreateEditions(ctx context.Context, db sqlx.QueryerContext, slug string, langs, allowed []string, f Fields) (Newsletter, error) {
	if err := CheckSlug(slug); err != nil {
		return Newsletter{}, err
	}
	if len(langs) == 0 {
		return Newsletter{}, fmt.Errorf("choose at least one language it is written in: %w", ErrInvalid)
	}
	seen := map[string]bool{}
	for _, l := range langs {
		if !contains(allowed, l) || seen[l] {
			return Newsletter{}, fmt.Errorf("language %q is not one of the configured languages: %w", l, ErrInvalid)
		}
		seen[l] = true
	}
	if err := f.check(langs, allowed); err != nil {
		return Newsletter{}, err
	}
	var n Newsletter
	err := sqlx.GetContext(ctx, db, &n, `INSERT INTO newsletters (slug, kind, names, descriptions, langs, on_form, default_on)
		VALUES ($1, 'editions', $2, $3, $4, $5, $6) RETURNING `+columns,
		slug, f.Names, f.Descriptions, pq.StringArray(langs), f.OnForm, f.DefaultOn)
	var pe *pq.Error
	if errors.As(err, &pe) && pe.Code == "23505" {
		return Newsletter{}, fmt.Errorf("newsletter %q: %w", slug, ErrSlugTaken)
	}
	if err != nil {
		return Newsletter{}, fmt.Errorf("newsletter %q: %w", slug, err)
	}
	return n, nil
}

// UpdateFields sets a newsletter's names, descriptions and form flags (allowed: the configured
// languages). ErrNotFound, ErrInvalid.
func UpdateFields(ctx context.Context, db sqlx.ExtContext, id int64, allowed []string, f Fields) error {
	n, err := Get(ctx, db, id)
	if err != nil {
		return err
	}
	if err := f.check(n.Langs, allowed); err != nil {
		return err
	}
	_, err = db.ExecContext(ctx, `UPDATE newsletters SET names = $2, descriptions = $3, on_form = $4, default_on = $5 WHERE id = $1`,
		id, f.Names, f.Descriptions, f.OnForm, f.DefaultOn)
	if err != nil {
		return fmt.Errorf("newsletter %d: %w", id, err)
	}
	return nil
}

// Schedule is a digest's own schedule settings; nil takes the setting.
type Schedule struct {
	Spec            *string
	MaxArticles     *int
	RequireApproval *bool
}

// SetSchedule saves a digest's schedule settings (the caller has parsed Spec). A skip is dropped
// with a changed expression: the time it named may be none of the new schedule's.
func SetSchedule(ctx context.Context, db sqlx.ExecerContext, id int64, s Schedule) error {
	if s.MaxArticles != nil && (*s.MaxArticles < 1 || *s.MaxArticles > 100) {
		return fmt.Errorf("most articles is a number from 1 to 100: %w", ErrInvalid)
	}
	if s.Spec != nil && (len(*s.Spec) == 0 || len(*s.Spec) > 200) {
		return fmt.Errorf("a schedule has 1 to 200 characters: %w", ErrInvalid)
	}
	res, err := db.ExecContext(ctx, `UPDATE newsletters SET schedule = $2, max_articles = $3, require_approval = $4,
		skip_run_at = CASE WHEN schedule IS NOT DISTINCT FROM $2 THEN skip_run_at END
		WHERE id = $1 AND kind = 'digest'`, id, s.Spec, s.MaxArticles, s.RequireApproval)
	if err != nil {
		return fmt.Errorf("newsletter %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("digest %d: %w", id, ErrNotFound)
	}
	return nil
}

// SetSkip sets (at) or clears (nil) the run of a digest an editor skips.
func SetSkip(ctx context.Context, db sqlx.ExecerContext, id int64, at *time.Time) error {
	res, err := db.ExecContext(ctx, `UPDATE newsletters SET skip_run_at = $2 WHERE id = $1 AND kind = 'digest'`, id, at)
	if err != nil {
		return fmt.Errorf("newsletter %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return fmt.Errorf("digest %d: %w", id, ErrNotFound)
	}
	return nil
}

// SetWelcome sets a newsletter's welcome in lang; both fields empty removes it (no welcome in
// that language). The caller checks the texts; one statement, so concurrent saves of two
// languages both stay.
func SetWelcome(ctx context.Context, db sqlx.ExecerContext, id int64, lang string, w Welcome) error {
	var err error
	if w.Subject == "" && w.Markdown == "" {
		_, err = db.ExecContext(ctx, `UPDATE newsletters SET welcome = welcome - $2 WHERE id = $1`, id, lang)
	} else {
		_, err = db.ExecContext(ctx, `UPDATE newsletters SET welcome = welcome || jsonb_build_object($2::text, jsonb_build_object('subject', $3::text, 'markdown', $4::text)) WHERE id = $1`,
			id, lang, w.Subject, w.Markdown)
	}
	if err != nil {
		return fmt.Errorf("newsletter %d: %w", id, err)
	}
	return nil
}

// ActiveReaders counts, per newsletter, the readers who get it: an active subscription and a
// confirmed reader.
func ActiveReaders(ctx context.Context, db sqlx.QueryerContext) (map[int64]int, error) {
	var rows []struct {
		ID int64 `db:"newsletter_id"`
		N  int   `db:"n"`
	}
	if err := sqlx.SelectContext(ctx, db, &rows, `SELECT s.newsletter_id, count(*) AS n FROM subscriptions s
		JOIN subscribers r ON r.id = s.subscriber_id AND r.status = 'confirmed'
		WHERE s.state = 'active' GROUP BY s.newsletter_id`); err != nil {
		return nil, fmt.Errorf("newsletters: readers: %w", err)
	}
	out := map[int64]int{}
	for _, r := range rows {
		out[r.ID] = r.N
	}
	return out, nil
}

// Run is one scheduled run of a digest (schedule_runs).
type Run struct {
	ScheduledAt time.Time  `db:"scheduled_at"`
	FinishedAt  *time.Time `db:"finished_at"`
	Outcome     string     `db:"outcome"`
	IssueID     *int64     `db:"issue_id"`
}

// Runs returns a digest's last limit runs, newest first.
func Runs(ctx context.Context, db sqlx.QueryerContext, id int64, limit int) ([]Run, error) {
	var out []Run
	if err := sqlx.SelectContext(ctx, db, &out, `SELECT scheduled_at, finished_at, outcome, issue_id FROM schedule_runs
		WHERE newsletter_id = $1 ORDER BY scheduled_at DESC LIMIT $2`, id, limit); err != nil {
		return nil, fmt.Errorf("newsletter %d: runs: %w", id, err)
	}
	return out, nil
}
