package subscribers

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// What the editors' readers' pages read and do. There is deliberately no way to list readers:
// editors find one reader by their exact address (FindByEmail) and see counts for the rest.

// ReaderCount is how many readers have one status and language.
type ReaderCount struct {
	Status Status `db:"status"`
	Lang   string `db:"lang"`
	N      int    `db:"n"`
}

// WeekFigures are one week's changes to the list. A week starts on Monday at 00:00 UTC.
// Confirmed counts confirmed requests (form and API: the owners' own opt-ins; imports are not
// confirmations); the others count readers by the time their row keeps of each (unsubscribed_at,
// bounced_at, complained_at), so a reader who did the same twice counts once, in the later week,
// and an erased reader counts nowhere.
type WeekFigures struct {
	Start        time.Time `db:"start"`
	Confirmed    int       `db:"confirmed"`
	Unsubscribed int       `db:"unsubscribed"`
	Bounced      int       `db:"bounced"`
	Complained   int       `db:"complained"`
}

// SuppressionCount is how many addresses are suppressed for one reason (erased, bounced, complained).
type SuppressionCount struct {
	Reason string `db:"reason"`
	N      int    `db:"n"`
}

// ListSummary is the reader list in figures: no reader in it.
type ListSummary struct {
	Counts       []ReaderCount
	Weeks        []WeekFigures // oldest first, the current week last
	Suppressions []SuppressionCount
}

// Summary returns the list's figures: readers by status and language, the last weeks' changes
// (weeks of them, the current one included) and the suppressions by reason, from one snapshot.
func (s *Store) Summary(ctx context.Context, weeks int) (ListSummary, error) {
	var sum ListSummary
	if weeks < 1 {
		weeks = 1
	}
	tx, err := s.db.BeginTxx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return sum, fmt.Errorf("summary: %w", err)
	}
	defer tx.Rollback()
	if err := tx.SelectContext(ctx, &sum.Counts, `
		SELECT status, lang, count(*) AS n FROM subscribers GROUP BY status, lang ORDER BY status, lang`); err != nil {
		return sum, fmt.Errorf("summary: %w", err)
	}
	// One pass over each table: every time of interest since the first week, bucketed by the
	// Monday (UTC) that starts its week; generate_series gives empty weeks their zeros.
	if err := tx.SelectContext(ctx, &sum.Weeks, `
		WITH span AS (
			SELECT date_trunc('week', now() AT TIME ZONE 'UTC') - ($1 - 1) * interval '1 week' AS first,
			       date_trunc('week', now() AT TIME ZONE 'UTC') AS last
		), happened AS (
			SELECT 'confirmed' AS kind, c.confirmed_at AS at FROM consents c, span
			WHERE c.source <> 'import' AND c.confirmed_at >= span.first AT TIME ZONE 'UTC'
			UNION ALL
			SELECT t.kind, t.at FROM subscribers s
			CROSS JOIN LATERAL (VALUES ('unsubscribed', s.unsubscribed_at), ('bounced', s.bounced_at), ('complained', s.complained_at)) AS t(kind, at), span
			WHERE t.at >= span.first AT TIME ZONE 'UTC'
		)
		SELECT w.start AT TIME ZONE 'UTC' AS start,
		       count(h.kind) FILTER (WHERE h.kind = 'confirmed') AS confirmed,
		       count(h.kind) FILTER (WHERE h.kind = 'unsubscribed') AS unsubscribed,
		       count(h.kind) FILTER (WHERE h.kind = 'bounced') AS bounced,
		       count(h.kind) FILTER (WHERE h.kind = 'complained') AS complained
		FROM span, generate_series(span.first, span.last, interval '1 week') AS w(start)
		LEFT JOIN happened h ON date_trunc('week', h.at AT TIME ZONE 'UTC') = w.start
		GROUP BY w.start ORDER BY w.start`, weeks); err != nil {
		return sum, fmt.Errorf("summary: %w", err)
	}
	if err := tx.SelectContext(ctx, &sum.Suppressions, `
		SELECT reason, count(*) AS n FROM suppressions GROUP BY reason ORDER BY reason`); err != nil {
		return sum, fmt.Errorf("summary: %w", err)
	}
	return sum, nil
}

// FindByEmail returns the reader with exactly that address (compared as the list stores it:
// normalised, case-insensitive). An address that is not one is a *FieldError; nobody, ErrNotFound.
func (s *Store) FindByEmail(ctx context.Context, email string) (Subscriber, error) {
	var sub Subscriber
	email, err := NormalizeEmail(email)
	if err != nil {
		return sub, err
	}
	err = s.db.GetContext(ctx, &sub, `SELECT `+subscriberColumns+` FROM subscribers WHERE lower(email) = lower($1)`, email)
	if errors.Is(err, sql.ErrNoRows) {
		return sub, ErrNotFound
	}
	if err != nil {
		return sub, fmt.Errorf("find: %w", err)
	}
	return sub, nil
}

// ReaderRecord is what the editors see of one reader.
type ReaderRecord struct {
	Subscriber
	BounceReason string
	Consents     []ConsentEntry
	Deliveries   []DeliveryEntry // the latest RecordDeliveries, newest first
	Events       []EventEntry    // the latest RecordEvents, newest first
	// Subscriptions are the newsletters the reader has, active first (reader_subscriptions.go).
	Subscriptions []SubscriptionEntry
	// Resend says whether a confirmation email may go now (ResendAllowed) or why not; when it
	// is ResendThrottled, ResendAfter is when one may.
	Resend      ResendBlock
	ResendAfter time.Time
}

// How much of a reader's history their record holds: a year of weekly issues, and plenty of
// reports.
const (
	RecordDeliveries = 52
	RecordEvents     = 100
)

// ConsentEntry is one request to subscribe, and whether it became consent.
type ConsentEntry struct {
	ConsentRecord
	Name sql.NullString `db:"name"` // what the request asked for; NULL: as stored
	Lang sql.NullString `db:"lang"`
	// Open: not confirmed, yet a confirm link could still answer it (made after the reader last
	// left, by the form or the API). A request neither confirmed nor open lapsed.
	Open bool `db:"open"`
	// ImportRows is how many rows the file of an import consent had (ImportID set).
	ImportRows int `db:"import_rows"`
}

// DeliveryEntry is the sending ledger's row for the reader and one issue.
type DeliveryEntry struct {
	IssueID   int64      `db:"issue_id"`
	IssueLang string     `db:"issue_lang"`
	Status    string     `db:"status"`
	Attempts  int        `db:"attempts"`
	SentAt    *time.Time `db:"sent_at"`
	LastError string     `db:"last_error"`
}

// EventEntry is one bounce or complaint report about the reader (reader_events).
type EventEntry struct {
	Kind       string        `db:"kind"`
	Source     string        `db:"source"`
	IssueID    sql.NullInt64 `db:"issue_id"`
	Reason     string        `db:"reason"`
	Effect     string        `db:"effect"`
	OccurredAt time.Time     `db:"occurred_at"`
}

// ResendBlock says why no confirmation email may go to a reader now; ResendAllowed when one may.
type ResendBlock string

// The answers of the consent rules to "may a confirmation go now?" (see subscribeBatcher.write):
// only to a reader with an open request, who is pending or left by unsubscribing or complaining,
// never while one is unsent and at most one per ConfirmThrottle. An editor cannot make a request:
// consent is asked for by the address's owner.
const (
	ResendAllowed   ResendBlock = ""
	ResendConfirmed ResendBlock = "confirmed"  // on the list already: nothing to confirm
	ResendBounced   ResendBlock = "bounced"    // the address refused mail for good
	ResendNoRequest ResendBlock = "no-request" // no open request to confirm
	ResendQueued    ResendBlock = "queued"     // one is waiting to be sent
	ResendThrottled ResendBlock = "throttled"  // one was queued less than ConfirmThrottle ago
)

// ErrNoResend: the consent rules allow no confirmation email to the reader now (see ResendRefused).
var ErrNoResend = errors.New("subscribers: no confirmation may go now")

// ResendRefused is the error of a ResendConfirmation the rules do not allow; errors.Is(err,
// ErrNoResend) holds for it.
type ResendRefused struct {
	Block ResendBlock
	After time.Time // for ResendThrottled: when one may go
}

func (e *ResendRefused) Error() string        { return "resend confirmation: " + string(e.Block) }
func (e *ResendRefused) Is(target error) bool { return target == ErrNoResend }

// resendState is what the consent rules look at.
type resendState struct {
	Status    Status     `db:"status"`
	SentAt    *time.Time `db:"confirmation_sent_at"`
	Now       time.Time  `db:"now"`
	Unsent    bool       `db:"unsent"`
	OpenAsked bool       `db:"open"`
}

const resendStateSQL = `
	SELECT s.status, s.confirmation_sent_at, now() AS now,
		EXISTS (SELECT 1 FROM outbox o WHERE o.subscriber_id = s.id AND o.kind = 'confirm'
		        AND o.sent_at IS NULL AND o.skipped_at IS NULL AND o.failed_at IS NULL) AS unsent,
		EXISTS (SELECT 1 FROM consents c WHERE c.subscriber_id = s.id AND c.confirmed_at IS NULL AND c.source <> 'import'
		        AND c.created_at > ` + requestsSince + `) AS open
	FROM subscribers s WHERE s.id = $1`

func (st resendState) verdict() (ResendBlock, time.Time) {
	switch {
	case st.Status == StatusConfirmed && !st.OpenAsked:
		// A confirmed reader's open request asks for more: its confirmation may go again.
		return ResendConfirmed, time.Time{}
	case st.Status == StatusBounced:
		return ResendBounced, time.Time{}
	case !st.OpenAsked:
		return ResendNoRequest, time.Time{}
	case st.Unsent:
		return ResendQueued, time.Time{}
	case st.SentAt != nil && st.Now.Sub(*st.SentAt) < ConfirmThrottle:
		return ResendThrottled, st.SentAt.Add(ConfirmThrottle)
	}
	return ResendAllowed, time.Time{}
}

// Reader returns everything the editors see of the reader with that uuid, from one snapshot.
func (s *Store) Reader(ctx context.Context, uuid string) (ReaderRecord, error) {
	var rec ReaderRecord
	tx, err := s.db.BeginTxx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return rec, fmt.Errorf("reader: %w", err)
	}
	defer tx.Rollback()
	if rec.Subscriber, err = byUUID(ctx, tx, uuid); err != nil {
		return rec, err
	}
	id := rec.ID
	if err := tx.GetContext(ctx, &rec.BounceReason, `SELECT bounce_reason FROM subscribers WHERE id = $1`, id); err != nil {
		return rec, fmt.Errorf("reader: %w", err)
	}
	if err := tx.SelectContext(ctx, &rec.Consents, `
		SELECT c.created_at, c.confirmed_at, c.ip, c.user_agent, c.source, c.text_version, c.name, c.lang,
			c.confirmed_at IS NULL AND c.source <> 'import'
			AND c.created_at > `+requestsSince+` AS open
		FROM consents c JOIN subscribers s ON s.id = c.subscriber_id
		WHERE c.subscriber_id = $1 ORDER BY c.created_at DESC, c.id DESC`, id); err != nil {
		return rec, fmt.Errorf("reader: %w", err)
	}
	imp, err := importConsent(ctx, tx, id)
	if err != nil {
		return rec, fmt.Errorf("reader: %w", err)
	}
	if imp != nil {
		// Newest first, as the rows are: after the requests made since the import.
		i := slices.IndexFunc(rec.Consents, func(c ConsentEntry) bool { return !c.CreatedAt.After(imp.CreatedAt) })
		if i < 0 {
			i = len(rec.Consents)
		}
		rec.Consents = slices.Insert(rec.Consents, i, *imp)
	}
	// The ledger and the reports are read by the reader's row id, which they keep (without a
	// foreign key) for the per-issue figures.
	if err := tx.SelectContext(ctx, &rec.Deliveries, `
		SELECT d.issue_id, i.lang AS issue_lang, d.status, d.attempts, d.sent_at, d.last_error
		FROM deliveries d JOIN issues i ON i.id = d.issue_id
		WHERE d.subscriber_id = $1 ORDER BY d.issue_id DESC LIMIT $2`, id, RecordDeliveries); err != nil {
		return rec, fmt.Errorf("reader: %w", err)
	}
	if err := tx.SelectContext(ctx, &rec.Events, `
		SELECT kind, source, issue_id, reason, effect, occurred_at FROM reader_events
		WHERE subscriber_id = $1 ORDER BY occurred_at DESC, id DESC LIMIT $2`, id, RecordEvents); err != nil {
		return rec, fmt.Errorf("reader: %w", err)
	}
	if rec.Subscriptions, err = readerSubscriptions(ctx, tx, id); err != nil {
		return rec, fmt.Errorf("reader: %w", err)
	}
	var st resendState
	if err := tx.GetContext(ctx, &st, resendStateSQL, id); err != nil {
		return rec, fmt.Errorf("reader: %w", err)
	}
	rec.Resend, rec.ResendAfter = st.verdict()
	return rec, nil
}

// ResendConfirmation queues a confirmation email for the reader's open request, where the consent
// rules allow one now (see ResendBlock); otherwise a *ResendRefused. It makes no request: the
// email confirms one the reader made themselves, so an editor cannot put anyone on the list.
func (s *Store) ResendConfirmation(ctx context.Context, uuid string) error {
	if _, ok := parseUUID(uuid); !ok {
		return ErrNotFound
	}
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("resend confirmation: %w", err)
	}
	defer tx.Rollback()
	// The row lock first, then the rules in a statement of their own: it sees whatever a
	// concurrent subscription that held the lock before us queued.
	var id int64
	err = tx.GetContext(ctx, &id, `SELECT id FROM subscribers WHERE uuid = $1 FOR UPDATE`, uuid)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("resend confirmation: %w", err)
	}
	var st resendState
	if err := tx.GetContext(ctx, &st, resendStateSQL, id); err != nil {
		return fmt.Errorf("resend confirmation: %w", err)
	}
	if block, after := st.verdict(); block != ResendAllowed {
		return &ResendRefused{Block: block, After: after}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE subscribers SET confirmation_sent_at = now() WHERE id = $1`, id); err != nil {
		return fmt.Errorf("resend confirmation: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO outbox (kind, subscriber_id) VALUES ('confirm', $1)`, id); err != nil {
		return fmt.Errorf("resend confirmation: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("resend confirmation: %w", err)
	}
	return nil
}

// SetLang changes the reader's language and nothing else (Update also sets the name, which an
// editor's change must not overwrite with what the page showed a moment ago).
func (s *Store) SetLang(ctx context.Context, uuid, lang string) (Subscriber, error) {
	var sub Subscriber
	lang = strings.TrimSpace(lang)
	if !validLang(lang) {
		return sub, &FieldError{"lang", KeyLangInvalid}
	}
	if _, ok := parseUUID(uuid); !ok {
		return sub, ErrNotFound
	}
	return s.setLang(ctx, "set lang", `
		UPDATE subscribers SET lang = $2, updated_at = now() WHERE uuid = $1
		RETURNING `+subscriberColumns, uuid, lang)
}
