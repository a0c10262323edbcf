package subscribers

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"newsletter/subscribers/bounce"
)

// SoftBounceRun is how many issues in a row with a soft bounce make a reader bounced.
const SoftBounceRun = 3

// RecordEvents keeps bounces and complaints that came back after sending (bounce.Event from the
// bounce mailbox or a provider's webhook) and applies the policy to their readers, all in one
// transaction. Each event is kept once per (Source, ExternalID): one seen before changes nothing,
// so the intakes may hand an event over again. An event about a reader who no longer exists (an
// erased one) is dropped.
//
// The policy, by the reader's status before the event:
//   - A hard bounce: a pending or confirmed reader becomes bounced (no more mail, and no
//     confirmation email either). Every reader gets the bounce noted (bounced_at, kept from the
//     first for one already bounced; the reason; a confirm link from before it no longer works)
//     and the address a 'bounced' suppression, so no import brings it back.
//   - A complaint: a pending, confirmed or unsubscribed reader becomes complained at once; a
//     bounced one stays bounced. Every reader gets complained_at (kept from the first for one
//     already complained) and a 'complained' suppression. As after an unsubscription, only the
//     owner's own confirmation brings them back, and lifts the suppression (Store.Confirm).
//   - A soft bounce is counted. It is treated as a hard bounce when the issues the reader was sent
//     (their deliveries the relay accepted, in issue order) hold a run of SoftBounceRun in a row,
//     this event's issue among them, each with a soft bounce recorded; an issue sent to them with
//     no bounce in between is a success and breaks the run. Issues they were not sent (not their
//     language, not yet subscribed, or refused at once by the relay) neither count nor break it.
//     Reports may arrive in any order: the run is looked for around the event's issue whenever
//     one arrives. A soft bounce with no issue is only kept.
//
// An event that happened before the reader's latest confirmation (a late report about mail from
// before they came back) is kept and changes nothing. A suppression already there keeps its
// first reason.
func (s *Store) RecordEvents(ctx context.Context, events []bounce.Event) error {
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("record events: %w", err)
	}
	defer tx.Rollback()
	for _, e := range events {
		if err := s.recordEvent(ctx, tx, e); err != nil {
			return fmt.Errorf("record events: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("record events: %w", err)
	}
	return nil
}

// RecordRefusal keeps a refusal of the reader's address while issue issueID was sent to them (a
// 5xx to RCPT or to the message) as a hard bounce from source smtp, under RecordEvents' policy:
// the reader is bounced and the address suppressed, as for a bounce that comes back later, and
// the event is kept with its reason (addresses taken out), issue and time. The same refusal
// recorded again (a retried write, a resumed run) changes nothing; a reader erased since is
// nothing to record. The digest sender calls it (send.Bouncer).
func (s *Store) RecordRefusal(ctx context.Context, subscriberUUID string, issueID int64, reason string) error {
	return s.RecordEvents(ctx, []bounce.Event{refusal(subscriberUUID, issueID, fmt.Sprintf("issue:%d:%s", issueID, subscriberUUID), reason)})
}

// refusal is the event of an address refused during our own SMTP exchange.
func refusal(subscriberUUID string, issueID int64, externalID, reason string) bounce.Event {
	return bounce.Event{Kind: bounce.Hard, SubscriberUUID: subscriberUUID, IssueID: issueID, Reason: bounce.Reason(reason),
		At: time.Now(), Source: bounce.SourceSMTP, ExternalID: externalID}
}

// UnsubscribeFrom is LeaveIssue without what it left: through issue issueID's link the reader
// leaves that issue's newsletter (everything when it was their last); a link of no issue leaves
// everything.
func (s *Store) UnsubscribeFrom(ctx context.Context, uuid string, issueID int64) (Subscriber, error) {
	sub, _, err := s.LeaveIssue(ctx, uuid, issueID)
	return sub, err
}

// unsubscribeAll is Unsubscribe through the link of issue issueID, an issue no longer there (the
// rule before links left one newsletter): when the reader leaves now, an 'unsubscribe' event is
// kept in the same statement; a second click, or a reader who had already left, records nothing.
func (s *Store) unsubscribeAll(ctx context.Context, uuid string, issueID int64) (Subscriber, error) {
	if _, ok := parseUUID(uuid); !ok {
		return Subscriber{}, ErrNotFound
	}
	var sub Subscriber
	err := s.db.GetContext(ctx, &sub, `
		WITH gone AS (
			UPDATE subscribers SET status = 'unsubscribed', unsubscribed_at = now(), updated_at = now()
			WHERE uuid = $1 AND status IN ('pending', 'confirmed')
			RETURNING `+subscriberColumns+`
		), ev AS (
			INSERT INTO reader_events (kind, subscriber_id, issue_id, source, external_id, occurred_at, effect)
			SELECT 'unsubscribe', g.id, (SELECT i.id FROM issues i WHERE i.id = $2::bigint), 'link',
				'unsubscribe:' || g.uuid::text || ':' || $2::bigint || ':' || (extract(epoch FROM g.unsubscribed_at) * 1000000)::bigint,
				g.unsubscribed_at, 'unsubscribed'
			FROM gone g
			ON CONFLICT (source, external_id) DO NOTHING
		), `+leaveGone+`
		SELECT `+subscriberColumns+` FROM gone`, uuid, issueID)
	if errors.Is(err, sql.ErrNoRows) {
		return s.ByUUID(ctx, uuid)
	}
	if err != nil {
		return sub, fmt.Errorf("unsubscribe: %w", err)
	}
	return sub, nil
}

// eventReader is the part of a reader the policy needs.
type eventReader struct {
	ID          int64      `db:"id"`
	Email       string     `db:"email"`
	Status      Status     `db:"status"`
	ConfirmedAt *time.Time `db:"confirmed_at"`
}

func (s *Store) recordEvent(ctx context.Context, tx *sqlx.Tx, e bounce.Event) error {
	switch e.Kind {
	case bounce.Hard, bounce.Soft, bounce.Complaint:
	default:
		return nil
	}
	switch e.Source {
	case bounce.SourceIMAP, bounce.SourceSES, bounce.SourcePostmark, bounce.SourceMailgun, bounce.SourceSMTP:
	default:
		return nil
	}
	externalID := clipBytes(strings.ToValidUTF8(e.ExternalID, ""), 300)
	if externalID == "" {
		return nil
	}
	// The reader's row is locked, so events about one reader (and a Confirm) apply one at a time.
	var r eventReader
	var err error
	switch {
	case e.SubscriberUUID != "":
		if _, ok := parseUUID(e.SubscriberUUID); !ok {
			return nil
		}
		err = tx.GetContext(ctx, &r, `SELECT id, email, status, confirmed_at FROM subscribers WHERE uuid = $1 FOR UPDATE`, e.SubscriberUUID)
	case e.Email != "":
		err = tx.GetContext(ctx, &r, `SELECT id, email, status, confirmed_at FROM subscribers WHERE lower(email) = lower($1) FOR UPDATE`, strings.TrimSpace(e.Email))
	default:
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	at := e.At
	if at.IsZero() {
		at = time.Now()
	}
	reason := clipBytes(strings.ToValidUTF8(e.Reason, ""), 1000)
	var eventID int64
	var issueID sql.NullInt64
	err = tx.QueryRowxContext(ctx, `
		INSERT INTO reader_events (kind, subscriber_id, issue_id, reason, source, external_id, occurred_at)
		VALUES ($1, $2, (SELECT id FROM issues WHERE id = $3), $4, $5, $6, $7)
		ON CONFLICT (source, external_id) DO NOTHING
		RETURNING id, issue_id`,
		string(e.Kind), r.ID, e.IssueID, reason, string(e.Source), externalID, at).Scan(&eventID, &issueID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil // recorded before: its effect was applied then
	}
	if err != nil {
		return err
	}

	if r.ConfirmedAt != nil && at.Before(*r.ConfirmedAt) {
		return nil // about mail from before the reader's latest opt-in, which their confirmation outdates
	}
	effect := ""
	switch e.Kind {
	case bounce.Hard:
		effect, err = s.applyBounce(ctx, tx, r, reason)
	case bounce.Complaint:
		effect, err = s.applyComplaint(ctx, tx, r)
	case bounce.Soft:
		if issueID.Valid && (r.Status == StatusPending || r.Status == StatusConfirmed) {
			var run bool
			if run, err = softRun(ctx, tx, r.ID, issueID.Int64); err == nil && run {
				effect, err = s.applyBounce(ctx, tx, r, fmt.Sprintf("soft bounces in %d issues in a row; last: %s", SoftBounceRun, reason))
			}
		}
	}
	if err != nil {
		return err
	}
	if effect != "" {
		_, err = tx.ExecContext(ctx, `UPDATE reader_events SET effect = $2 WHERE id = $1`, eventID, effect)
	}
	return err
}

// applyBounce marks the reader bounced (if they were still getting mail) and suppresses the address.
func (s *Store) applyBounce(ctx context.Context, tx *sqlx.Tx, r eventReader, reason string) (string, error) {
	if _, err := tx.ExecContext(ctx, `
		UPDATE subscribers SET
			status = CASE WHEN status IN ('pending', 'confirmed') THEN 'bounced' ELSE status END,
			bounced_at = CASE WHEN status = 'bounced' THEN coalesce(bounced_at, now()) ELSE now() END,
			bounce_reason = $2, updated_at = now()
		WHERE id = $1`, r.ID, reason); err != nil {
		return "", err
	}
	if err := s.suppress(ctx, tx, r.Email, "bounced"); err != nil {
		return "", err
	}
	if r.Status == StatusPending || r.Status == StatusConfirmed {
		return "bounced", nil
	}
	return "", nil
}

// applyComplaint unsubscribes the reader as complained and suppresses the address.
func (s *Store) applyComplaint(ctx context.Context, tx *sqlx.Tx, r eventReader) (string, error) {
	if _, err := tx.ExecContext(ctx, `
		UPDATE subscribers SET
			status = CASE WHEN status IN ('pending', 'confirmed', 'unsubscribed') THEN 'complained' ELSE status END,
			complained_at = CASE WHEN status = 'complained' THEN coalesce(complained_at, now()) ELSE now() END,
			updated_at = now()
		WHERE id = $1`, r.ID); err != nil {
		return "", err
	}
	if err := s.suppress(ctx, tx, r.Email, "complained"); err != nil {
		return "", err
	}
	switch r.Status {
	case StatusPending, StatusConfirmed, StatusUnsubscribed:
		return "complained", nil
	}
	return "", nil
}

func (s *Store) suppress(ctx context.Context, tx *sqlx.Tx, email, reason string) error {
	_, err := tx.ExecContext(ctx, `
		INSERT INTO suppressions (email_hash, reason) VALUES ($1, $2)
		ON CONFLICT (email_hash) DO NOTHING`, s.suppressionHash(email), reason)
	return err
}

// softRun reports whether issue is inside a run of SoftBounceRun issues in a row, among those
// the reader was sent, that each have a soft bounce from the reader (see RecordEvents). A
// reader is sent one row per issue, a few a week: reading them all is cheap.
func softRun(ctx context.Context, tx *sqlx.Tx, subscriberID, issue int64) (bool, error) {
	var seq []struct {
		IssueID int64 `db:"issue_id"`
		Soft    bool  `db:"soft"`
	}
	if err := tx.SelectContext(ctx, &seq, `
		SELECT d.issue_id, EXISTS (
			SELECT 1 FROM reader_events e
			WHERE e.subscriber_id = d.subscriber_id AND e.issue_id = d.issue_id AND e.kind = 'soft') AS soft
		FROM deliveries d
		WHERE d.subscriber_id = $1 AND d.status = 'sent'
		ORDER BY d.issue_id`, subscriberID); err != nil {
		return false, err
	}
	at := -1
	for i, d := range seq {
		if d.IssueID == issue {
			at = i
		}
	}
	if at < 0 || !seq[at].Soft {
		return false, nil
	}
	first, last := at, at
	for first > 0 && seq[first-1].Soft {
		first--
	}
	for last < len(seq)-1 && seq[last+1].Soft {
		last++
	}
	return last-first+1 >= SoftBounceRun, nil
}
