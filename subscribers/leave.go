package subscribers

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"

	"newsletter/newsletters"
)

// An issue's unsubscribe link (and its RFC 8058 one-click POST) leaves the newsletter of that
// issue only; a link of no issue (older emails, the confirmation email) leaves everything.

// Departure is what an unsubscribe through an issue's link did.
type Departure struct {
	// Newsletter is the issue's newsletter; its ID is 0 for a link of no issue (or of an issue
	// that is gone), which left everything.
	Newsletter newsletters.Newsletter
	// Left: the reader left it now (false on a second click, or when they did not get it).
	Left bool
	// Remaining is how many newsletters the reader still gets a subscription to.
	Remaining int
}

// IssueNewsletter is NewsletterOf the newsletter of issue issueID; ErrNotFound when there is no
// such issue.
func (s *Store) IssueNewsletter(ctx context.Context, subscriberID, issueID int64) (newsletters.Newsletter, bool, error) {
	var newsletterID int64
	err := s.db.GetContext(ctx, &newsletterID, `SELECT newsletter_id FROM issues WHERE id = $1`, issueID)
	if errors.Is(err, sql.ErrNoRows) {
		return newsletters.Newsletter{}, false, ErrNotFound
	}
	if err != nil {
		return newsletters.Newsletter{}, false, fmt.Errorf("issue newsletter: %w", err)
	}
	return s.NewsletterOf(ctx, subscriberID, newsletterID)
}

// LeaveIssue is the unsubscribe link of issue issueID: the reader leaves that issue's newsletter,
// in one transaction with their row locked. Leaving the last newsletter they get unsubscribes
// them (status 'unsubscribed'), as the link always did. An 'unsubscribe' event for the issue is
// kept when they leave now (effect 'unsubscribed' when it was their last, else 'left'), so the
// issue's figures count it; a second click changes and records nothing. A link of no issue
// (issueID 0), or of an issue that is gone, leaves everything (UnsubscribeFrom's old rule).
func (s *Store) LeaveIssue(ctx context.Context, uuid string, issueID int64) (Subscriber, Departure, error) {
	var d Departure
	if issueID <= 0 {
		sub, err := s.Unsubscribe(ctx, uuid)
		return sub, d, err
	}
	tx, sub, err := s.lockReader(ctx, uuid)
	if err != nil {
		return sub, d, err
	}
	defer tx.Rollback()
	var newsletterID int64
	err = tx.GetContext(ctx, &newsletterID, `SELECT newsletter_id FROM issues WHERE id = $1`, issueID)
	if errors.Is(err, sql.ErrNoRows) {
		tx.Rollback()
		sub, err := s.unsubscribeAll(ctx, uuid, issueID)
		return sub, d, err
	}
	if err != nil {
		return sub, d, fmt.Errorf("unsubscribe: %w", err)
	}
	n, err := newsletters.Get(ctx, tx, newsletterID)
	if err != nil {
		return sub, d, fmt.Errorf("unsubscribe: %w", err)
	}
	return s.leave(ctx, tx, sub, n, issueID)
}

// LeaveNewsletter is the unsubscribe link of an email of newsletter newsletterID that is not an
// issue (a welcome): LeaveIssue's rule and event, the event naming no issue. A newsletter that is
// gone leaves everything.
func (s *Store) LeaveNewsletter(ctx context.Context, uuid string, newsletterID int64) (Subscriber, Departure, error) {
	var d Departure
	tx, sub, err := s.lockReader(ctx, uuid)
	if err != nil {
		return sub, d, err
	}
	defer tx.Rollback()
	n, err := newsletters.Get(ctx, tx, newsletterID)
	if errors.Is(err, newsletters.ErrNotFound) {
		tx.Rollback()
		sub, err := s.Unsubscribe(ctx, uuid)
		return sub, d, err
	}
	if err != nil {
		return sub, d, fmt.Errorf("unsubscribe: %w", err)
	}
	return s.leave(ctx, tx, sub, n, 0)
}

// lockReader begins the transaction of an unsubscribe link with the reader's row locked, so
// departures of one reader (and a Confirm) apply one at a time. The caller rolls tx back.
func (s *Store) lockReader(ctx context.Context, uuid string) (*sqlx.Tx, Subscriber, error) {
	var sub Subscriber
	if _, ok := parseUUID(uuid); !ok {
		return nil, sub, ErrNotFound
	}
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return nil, sub, fmt.Errorf("unsubscribe: %w", err)
	}
	err = tx.GetContext(ctx, &sub, `SELECT `+subscriberColumns+` FROM subscribers WHERE uuid = $1 FOR UPDATE`, uuid)
	if err != nil {
		tx.Rollback()
		if errors.Is(err, sql.ErrNoRows) {
			return nil, sub, ErrNotFound
		}
		return nil, sub, fmt.Errorf("unsubscribe: %w", err)
	}
	return tx, sub, nil
}

// leave takes the locked reader sub out of newsletter n in tx and commits: an
// 'unsubscribe' event (for issue issueID, or none when 0) when they leave now, their status
// 'unsubscribed' when it was their last.
func (s *Store) leave(ctx context.Context, tx *sqlx.Tx, sub Subscriber, n newsletters.Newsletter, issueID int64) (Subscriber, Departure, error) {
	d := Departure{Newsletter: n}
	newsletterID := n.ID
	res, err := tx.ExecContext(ctx, `UPDATE subscriptions SET state = 'left', left_at = now()
		WHERE subscriber_id = $1 AND newsletter_id = $2 AND state = 'active'`, sub.ID, newsletterID)
	if err != nil {
		return sub, d, fmt.Errorf("unsubscribe: %w", err)
	}
	left, _ := res.RowsAffected()
	d.Left = left > 0
	if err := tx.GetContext(ctx, &d.Remaining, `SELECT count(*) FROM subscriptions WHERE subscriber_id = $1 AND state = 'active'`, sub.ID); err != nil {
		return sub, d, fmt.Errorf("unsubscribe: %w", err)
	}
	if !d.Left {
		return sub, d, nil // nothing changed: a second click, or a newsletter they did not get
	}
	effect := "left"
	if d.Remaining == 0 && (sub.Status == StatusPending || sub.Status == StatusConfirmed) {
		effect = "unsubscribed"
		if err := tx.GetContext(ctx, &sub, `UPDATE subscribers SET status = 'unsubscribed', unsubscribed_at = now(), updated_at = now()
			WHERE id = $1 RETURNING `+subscriberColumns, sub.ID); err != nil {
			return sub, d, fmt.Errorf("unsubscribe: %w", err)
		}
	}
	// The external id keeps a newsletter's link apart from an issue's: "n" and the newsletter for
	// the first, the issue for the second.
	scope := fmt.Sprint(issueID)
	if issueID == 0 {
		scope = fmt.Sprintf("n%d", newsletterID)
	}
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO reader_events (kind, subscriber_id, issue_id, source, external_id, occurred_at, effect)
		VALUES ('unsubscribe', $1, NULLIF($2::bigint, 0), 'link',
			'unsubscribe:' || $3::text || ':' || $5::text || ':' || (extract(epoch FROM now()) * 1000000)::bigint, now(), $4)
		ON CONFLICT (source, external_id) DO NOTHING`, sub.ID, issueID, sub.UUID, effect, scope); err != nil {
		return sub, d, fmt.Errorf("unsubscribe: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return sub, d, fmt.Errorf("unsubscribe: %w", err)
	}
	return sub, d, nil
}

// NewsletterOf returns newsletter newsletterID and whether the reader subscriberID has an active
// subscription to it; ErrNotFound when there is no such newsletter.
func (s *Store) NewsletterOf(ctx context.Context, subscriberID, newsletterID int64) (newsletters.Newsletter, bool, error) {
	n, err := newsletters.Get(ctx, s.db, newsletterID)
	if errors.Is(err, newsletters.ErrNotFound) {
		return n, false, ErrNotFound
	}
	if err != nil {
		return n, false, fmt.Errorf("newsletter: %w", err)
	}
	var active bool
	err = s.db.GetContext(ctx, &active, `SELECT EXISTS (SELECT 1 FROM subscriptions
		WHERE subscriber_id = $1 AND newsletter_id = $2 AND state = 'active')`, subscriberID, newsletterID)
	if err != nil {
		return n, false, fmt.Errorf("newsletter: %w", err)
	}
	return n, active, nil
}

// ActiveCount is how many newsletters the reader subscriberID has an active subscription to (0
// when it cannot be read: the page then offers no "leave everything", the link still works).
func (s *Store) ActiveCount(ctx context.Context, subscriberID int64) int {
	var n int
	if err := s.db.GetContext(ctx, &n, `SELECT count(*) FROM subscriptions WHERE subscriber_id = $1 AND state = 'active'`, subscriberID); err != nil {
		return 0
	}
	return n
}
