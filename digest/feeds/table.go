package feeds

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"

	"newsletter/digest"
	"newsletter/internal/textclean"
)

// Status is what the editor pages show of one feed.
type Status struct {
	URL           string     `db:"url"`
	Lang          string     `db:"lang"`
	ETag          string     `db:"etag"`
	LastModified  string     `db:"last_modified"`
	LastFetchedAt *time.Time `db:"last_fetched_at"`
	LastOKAt      *time.Time `db:"last_ok_at"`
	LastError     string     `db:"last_error"`
	FetchURL      string     `db:"fetch_url"`   // where a permanent redirect moved it; "" for URL
	Failures      int        `db:"failures"`    // polls failed in a row
	RetryAfter    *time.Time `db:"retry_after"` // the server asked for no fetch before then
	GoneAt        *time.Time `db:"gone_at"`     // answered 410 Gone: no longer polled
}

// feedColumns are the feeds table's columns, as Status reads them.
const feedColumns = `url, lang, etag, last_modified, last_fetched_at, last_ok_at, last_error, fetch_url, failures, retry_after, gone_at`

// feedFailingPolls is how many polls in a row a feed must fail to show in red on the editor
// pages: with the default 15-minute schedule, three is 45 minutes, past a blip such as one
// timeout or a server restart, and long before a weekly digest.
const feedFailingPolls = 3

// Failing reports whether the editor pages show the feed in red: gone, or failed
// feedFailingPolls polls in a row.
func (f Status) Failing() bool { return f.GoneAt != nil || f.Failures >= feedFailingPolls }

// DisplayURL is the configured URL as the editor pages show it: no credentials, no query values.
func (f Status) DisplayURL() string { return RedactURL(f.URL) }

// DisplayFetchURL is where the feed moved, shown as DisplayURL; "" when it did not move.
func (f Status) DisplayFetchURL() string {
	if f.FetchURL == "" {
		return ""
	}
	return RedactURL(f.FetchURL)
}

// feedState returns the feed's row, creating it on first sight.
func (i *Ingester) feedState(ctx context.Context, f Config) (Status, error) {
	var st Status
	err := i.store.DB().GetContext(ctx, &st, `
		INSERT INTO feeds (url, lang, newsletter_id)
		VALUES ($1, $2, (SELECT id FROM newsletters WHERE kind = 'digest' AND lang = $2))
		ON CONFLICT (url) DO UPDATE SET lang = EXCLUDED.lang, newsletter_id = EXCLUDED.newsletter_id
		RETURNING `+feedColumns, f.URL, f.Lang)
	if err != nil {
		return st, fmt.Errorf("feed state: %w", err)
	}
	return st, nil
}

// feedOK records a successful fetch, where a permanent redirect moved the feed ("" if none did)
// and the validators to send next time.
func (i *Ingester) feedOK(ctx context.Context, feedURL, movedTo, etag, lastModified string) error {
	return feedOKTx(ctx, i.store.DB(), i.store.Now(), feedURL, movedTo, etag, lastModified)
}

// feedOKTx: a success clears the failure count, any Retry-After and a 410.
func feedOKTx(ctx context.Context, tx sqlx.ExecerContext, now time.Time, feedURL, movedTo, etag, lastModified string) error {
	if len(movedTo) > 2000 {
		movedTo = "" // not kept, not cut: the redirect is followed again next time
	}
	_, err := tx.ExecContext(ctx, `
		UPDATE feeds SET etag = $2, last_modified = $3, last_fetched_at = $4, last_ok_at = $4, last_error = '',
			fetch_url = CASE WHEN $5 = '' THEN fetch_url ELSE $5 END,
			failures = 0, retry_after = NULL, gone_at = NULL
		WHERE url = $1`, feedURL, textclean.ClipBytes(etag, 500), textclean.ClipBytes(lastModified, 100), now, movedTo)
	if err != nil {
		return fmt.Errorf("record feed: %w", err)
	}
	return nil
}

// feedFailed records a failed fetch, the time before which the server asked for no other (nil:
// none) and whether it answered 410 Gone (only a success undoes that). The validators stay, so
// the next fetch is still conditional.
func (i *Ingester) feedFailed(ctx context.Context, feedURL, msg string, retryAfter *time.Time, gone bool) error {
	_, err := i.store.DB().ExecContext(ctx, `
		UPDATE feeds SET last_fetched_at = $2, last_error = $3, failures = failures + 1, retry_after = $4,
			gone_at = CASE WHEN $5 THEN COALESCE(gone_at, $2) ELSE gone_at END
		WHERE url = $1`,
		feedURL, i.store.Now(), textclean.ClipBytes(textclean.FoldSpace(msg), 500), retryAfter, gone)
	return err
}

// storeFeed upserts the feed's items and records the fetch, in one transaction: the new validators
// are kept only if the items were.
func (i *Ingester) storeFeed(ctx context.Context, f Config, fetched *fetchedFeed) (created, updated int, err error) {
	now := i.store.Now()
	tx, err := i.store.DB().BeginTxx(ctx, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("store feed: %w", err)
	}
	defer tx.Rollback()
	// A feed's first successful fetch is its baseline (digest/window.go): what it already carries is
	// stored, but it is not news. The row lock makes two first fetches at once agree.
	var baseline bool
	err = tx.GetContext(ctx, &baseline, `SELECT last_ok_at IS NULL FROM feeds WHERE url = $1 FOR UPDATE`, f.URL)
	if errors.Is(err, sql.ErrNoRows) {
		baseline, err = true, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("store feed: %w", err)
	}
	for _, item := range fetched.items {
		a := item.article
		a.FeedURL = f.URL
		inserted, changed, err := digest.UpsertFeedArticle(ctx, tx, a, item.date, now, baseline)
		if err != nil {
			return 0, 0, err
		}
		switch {
		case inserted:
			created++
		case changed:
			updated++
		}
	}
	if err := feedOKTx(ctx, tx, now, f.URL, fetched.movedTo, fetched.etag, fetched.lastModified); err != nil {
		return 0, 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, 0, fmt.Errorf("store feed: %w", err)
	}
	return created, updated, nil
}

// List returns every feed seen so far with its last fetch and error, by language and URL.
func List(ctx context.Context, store *digest.Store) ([]Status, error) {
	var feeds []Status
	err := store.DB().SelectContext(ctx, &feeds, `SELECT `+feedColumns+` FROM feeds ORDER BY lang, url`)
	if err != nil {
		return nil, fmt.Errorf("feeds: %w", err)
	}
	return feeds, nil
}
