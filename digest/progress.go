package digest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"newsletter/internal/textclean"
)

// Delivery statuses of the ledger.
const (
	DeliveryQueued  = "queued"
	DeliverySent    = "sent"
	DeliveryFailed  = "failed"
	DeliverySkipped = "skipped"
)

// Progress is where an issue's sending stands.
type Progress struct {
	IssueID     int64      `db:"id"`
	Lang        string     `db:"lang"`
	Status      string     `db:"status"`
	PauseReason string     `db:"pause_reason"`
	StartedAt   *time.Time `db:"started_at"`
	FinishedAt  *time.Time `db:"finished_at"`
	Total       int        `db:"total"`
	Queued      int        `db:"queued"`
	Sent        int        `db:"sent"`
	Failed      int        `db:"failed"`
	Skipped     int        `db:"skipped"`
}

// Done reports whether every reader of the issue was sent, failed for good or skipped.
func (p Progress) Done() bool {
	return p.Queued == 0 && p.Status != StatusDraft && p.Status != StatusApproved
}

// Duration is how long the sending took, or has taken so far.
func (p Progress) Duration(now time.Time) time.Duration {
	if p.StartedAt == nil {
		return 0
	}
	if p.FinishedAt != nil {
		return p.FinishedAt.Sub(*p.StartedAt)
	}
	return now.Sub(*p.StartedAt)
}

// FailureReason is one reason readers of an issue were not sent, and how many.
type FailureReason struct {
	Reason string `db:"reason"`
	Count  int    `db:"count"`
}

// Pause stops the sending of an issue; messages in flight finish, the rest stay queued.
func (s *Store) Pause(ctx context.Context, id int64, reason string) error {
	reason = textclean.ClipLine(reason, MaxReason)
	return s.changeStatus(ctx, id, "pause", `UPDATE issues SET status = 'paused', pause_reason = $2
		WHERE id = $1 AND status = 'sending'`, reason)
}

// Resume continues a paused issue.
func (s *Store) Resume(ctx context.Context, id int64) error {
	return s.changeStatus(ctx, id, "resume", `UPDATE issues SET status = 'sending', pause_reason = ''
		WHERE id = $1 AND status = 'paused'`)
}

// Cancel stops an issue for good: the readers not sent yet are skipped. A draft or approved issue
// is cancelled before it starts.
func (s *Store) Cancel(ctx context.Context, id int64) error {
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("cancel: %w", err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE issues SET status = 'cancelled', finished_at = $2
		WHERE id = $1 AND status IN ('draft', 'approved', 'sending', 'paused')`, id, s.now().UTC())
	if err != nil {
		return fmt.Errorf("cancel: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		if _, err := issueByID(ctx, tx, id); err != nil {
			return err
		}
		return fmt.Errorf("cancel: issue %d has finished: %w", id, ErrConflict)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE deliveries SET status = 'skipped', last_error = 'issue cancelled', claimed_by = NULL
		WHERE issue_id = $1 AND status = 'queued'`, id); err != nil {
		return fmt.Errorf("cancel: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("cancel: %w", err)
	}
	return nil
}

func (s *Store) changeStatus(ctx context.Context, id int64, what, query string, args ...any) error {
	res, err := s.db.ExecContext(ctx, query, append([]any{id}, args...)...)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		return nil
	}
	iss, err := issueByID(ctx, s.db, id)
	if err != nil {
		return err
	}
	return fmt.Errorf("%s: issue %d is %s: %w", what, id, iss.Status, ErrConflict)
}

// Progress counts the issue's ledger by status.
func (s *Store) Progress(ctx context.Context, id int64) (Progress, error) {
	var p Progress
	err := s.db.GetContext(ctx, &p, `SELECT i.id, i.lang, i.status, i.pause_reason, i.started_at, i.finished_at,
			count(d.subscriber_id) AS total,
			count(*) FILTER (WHERE d.status = 'queued') AS queued,
			count(*) FILTER (WHERE d.status = 'sent') AS sent,
			count(*) FILTER (WHERE d.status = 'failed') AS failed,
			count(*) FILTER (WHERE d.status = 'skipped') AS skipped
		FROM issues i LEFT JOIN deliveries d ON d.issue_id = i.id
		WHERE i.id = $1 GROUP BY i.id`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Progress{}, fmt.Errorf("progress: issue %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Progress{}, fmt.Errorf("progress: %w", err)
	}
	return p, nil
}

// FailureReasons groups the issue's failed deliveries by reason, most frequent first.
func (s *Store) FailureReasons(ctx context.Context, id int64) ([]FailureReason, error) {
	var out []FailureReason
	if err := s.db.SelectContext(ctx, &out, `SELECT last_error AS reason, count(*) AS count FROM deliveries
		WHERE issue_id = $1 AND status = 'failed' GROUP BY last_error ORDER BY count(*) DESC, last_error LIMIT 50`, id); err != nil {
		return nil, fmt.Errorf("failure reasons: %w", err)
	}
	return out, nil
}

// ConfirmedReaders counts the readers an issue of lang would go to if it started now: confirmed,
// with an active subscription to the language's digest.
func (s *Store) ConfirmedReaders(ctx context.Context, lang string) (int, error) {
	var n int
	if err := s.db.GetContext(ctx, &n, `SELECT count(*) FROM subscriptions sub
		JOIN newsletters n ON n.id = sub.newsletter_id AND n.kind = 'digest' AND n.lang = $1
		JOIN subscribers s ON s.id = sub.subscriber_id
		WHERE sub.state = 'active' AND s.status = 'confirmed'`, lang); err != nil {
		return 0, fmt.Errorf("confirmed readers: %w", err)
	}
	return n, nil
}
