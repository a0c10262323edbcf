package digest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

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

// StartSending fixes the issue's recipients, one ledger row per confirmed reader of its language
// in a single statement, and moves the issue to 'sending', all in one transaction. A draft or
// approved issue starts; one already sending or paused creates nothing (0, nil); a finished,
// cancelled or skipped one is ErrConflict.
func (s *Store) StartSending(ctx context.Context, issueID int64) (created int, err error) {
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("start sending: %w", err)
	}
	defer tx.Rollback()
	var iss struct {
		Lang   string `db:"lang"`
		Status string `db:"status"`
	}
	if err := tx.GetContext(ctx, &iss, `SELECT lang, status FROM issues WHERE id = $1 FOR UPDATE`, issueID); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return 0, fmt.Errorf("start sending: issue %d: %w", issueID, ErrNotFound)
		}
		return 0, fmt.Errorf("start sending: %w", err)
	}
	switch iss.Status {
	case StatusSending, StatusPaused:
		return 0, nil
	case StatusDraft, StatusApproved:
	default:
		return 0, fmt.Errorf("start sending: issue %d is %s: %w", issueID, iss.Status, ErrConflict)
	}
	res, err := tx.ExecContext(ctx, `INSERT INTO deliveries (issue_id, subscriber_id)
		SELECT $1, id FROM subscribers WHERE lang = $2 AND status = 'confirmed'
		ON CONFLICT DO NOTHING`, issueID, iss.Lang)
	if err != nil {
		return 0, fmt.Errorf("start sending: ledger: %w", err)
	}
	n, _ := res.RowsAffected()
	// Fresh statistics for the claim's plan: without them a large new ledger looks empty to the
	// planner, which then sorts every queued row on every claim instead of walking the key.
	if n > 1000 {
		if _, err := tx.ExecContext(ctx, `ANALYZE deliveries`); err != nil {
			return 0, fmt.Errorf("start sending: analyze: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE issues SET status = 'sending', started_at = COALESCE(started_at, $2),
		pause_reason = '' WHERE id = $1`, issueID, s.now().UTC()); err != nil {
		return 0, fmt.Errorf("start sending: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("start sending: %w", err)
	}
	return int(n), nil
}

// Pause stops the sending of an issue; messages in flight finish, the rest stay queued.
func (s *Store) Pause(ctx context.Context, id int64, reason string) error {
	reason = textclean.ClipLine(reason, maxReason)
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

// claimedRow is a leased ledger row with what the message needs of its reader.
type claimedRow struct {
	SubscriberID int64  `db:"subscriber_id"`
	Attempts     int    `db:"attempts"`
	UUID         string `db:"uuid"`
	Email        string `db:"email"`
	Name         string `db:"name"`
	Status       string `db:"status"` // skipped: the reader left, nothing to send
}

// claim leases up to n due rows of a sending issue to owner for lease, in one statement: rows
// locked by another claimer are passed over, and rows whose reader left (unsubscribed, bounced,
// erased) since sending started are marked skipped (and returned with that status). The lease is the crash
// safety: a row is marked sent only after its message was accepted, and a row whose claimer died
// becomes due again (at once when its owner's lock is gone, see releaseDead; else after the lease).
//
// Rows are taken in subscriber order after the cursor `after`: walking the primary key forward
// passes each row's dead versions once, where a scan of the due index from its start would wade
// through every row already sent (their old index entries stay until vacuum) on every claim.
func (s *Store) claim(ctx context.Context, issueID, owner int64, n int, lease time.Duration, after int64) ([]claimedRow, error) {
	var rows []claimedRow
	err := s.db.SelectContext(ctx, &rows, `WITH due AS (
			SELECT d.subscriber_id FROM deliveries d
			WHERE d.issue_id = $1 AND d.subscriber_id > $5 AND d.status = 'queued' AND d.next_attempt_at <= now()
			  AND EXISTS (SELECT 1 FROM issues i WHERE i.id = $1 AND i.status = 'sending')
			ORDER BY d.subscriber_id
			LIMIT $2
			FOR UPDATE OF d SKIP LOCKED
		), leased AS (
			UPDATE deliveries d SET
				status = CASE WHEN s.status IS DISTINCT FROM 'confirmed' THEN 'skipped' ELSE 'queued' END,
				last_error = CASE WHEN s.id IS NULL THEN 'reader erased'
					WHEN s.status <> 'confirmed' THEN 'reader ' || s.status ELSE d.last_error END,
				next_attempt_at = now() + $3 * interval '1 millisecond',
				claimed_by = CASE WHEN s.status IS DISTINCT FROM 'confirmed' THEN NULL ELSE $4::bigint END
			FROM due LEFT JOIN subscribers s ON s.id = due.subscriber_id
			WHERE d.issue_id = $1 AND d.subscriber_id = due.subscriber_id
			RETURNING d.subscriber_id, d.attempts, d.status, s.uuid, s.email, s.name
		)
		SELECT subscriber_id, attempts, status, COALESCE(uuid::text, '') AS uuid, COALESCE(email, '') AS email,
			COALESCE(name, '') AS name
		FROM leased ORDER BY subscriber_id`, issueID, n, lease.Milliseconds(), owner, after)
	if err != nil {
		return nil, fmt.Errorf("claim: %w", err)
	}
	return rows, nil
}

const markSentSQL = `UPDATE deliveries SET status = 'sent', sent_at = now(), attempts = attempts + 1,
	claimed_by = NULL, last_error = '' WHERE issue_id = $1 AND subscriber_id = ANY($2::bigint[])`

// recorder records accepted messages on a connection of its own, with the statement prepared (one
// round trip per batch) and without waiting for the WAL flush (synchronous_commit off): a commit
// survives the sending process being killed, since the database has it; only a crash of the
// database server itself could lose the last moments of marks, and then those readers get a second
// copy with the same Message-ID.
type recorder struct {
	conn *sqlx.Conn
	stmt *sql.Stmt
}

func (s *Store) newRecorder(ctx context.Context) (*recorder, error) {
	conn, err := s.db.Connx(ctx)
	if err != nil {
		return nil, fmt.Errorf("recorder: %w", err)
	}
	if _, err := conn.ExecContext(ctx, `SET synchronous_commit = off`); err != nil {
		conn.Close()
		return nil, fmt.Errorf("recorder: %w", err)
	}
	stmt, err := conn.PrepareContext(ctx, markSentSQL)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("recorder: %w", err)
	}
	return &recorder{conn: conn, stmt: stmt}, nil
}

// markSent records messages the SMTP server accepted.
func (r *recorder) markSent(ctx context.Context, issueID int64, ids []int64) error {
	if _, err := r.stmt.ExecContext(ctx, issueID, pq.Array(ids)); err != nil {
		return fmt.Errorf("mark sent: %w", err)
	}
	return nil
}

func (r *recorder) close() {
	r.stmt.Close()
	r.conn.Close()
}

// markRetry records a temporary failure: the row is due again after backoff, or failed for good
// once it used its last attempt.
func (s *Store) markRetry(ctx context.Context, issueID, subscriberID int64, reason string, backoff time.Duration, maxAttempts int) (failed bool, err error) {
	err = s.db.GetContext(ctx, &failed, `UPDATE deliveries SET attempts = attempts + 1, claimed_by = NULL, last_error = $3,
			next_attempt_at = now() + $4 * interval '1 millisecond',
			status = CASE WHEN attempts + 1 >= $5 THEN 'failed' ELSE 'queued' END
		WHERE issue_id = $1 AND subscriber_id = $2 RETURNING status = 'failed'`,
		issueID, subscriberID, textclean.ClipLine(reason, maxReason), backoff.Milliseconds(), maxAttempts)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("mark retry: %w", err)
	}
	return failed, nil
}

// markFailed records a permanent failure.
func (s *Store) markFailed(ctx context.Context, issueID, subscriberID int64, reason string) error {
	_, err := s.db.ExecContext(ctx, `UPDATE deliveries SET status = 'failed', attempts = attempts + 1, claimed_by = NULL,
		last_error = $3 WHERE issue_id = $1 AND subscriber_id = $2`, issueID, subscriberID, textclean.ClipLine(reason, maxReason))
	if err != nil {
		return fmt.Errorf("mark failed: %w", err)
	}
	return nil
}

// release hands leased rows back unsent (shutdown, pause), due at once. Only rows still leased to
// owner change, so a lease that expired and went to another sender is left alone.
func (s *Store) release(ctx context.Context, issueID, owner int64, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := s.db.ExecContext(ctx, `UPDATE deliveries SET next_attempt_at = now(), claimed_by = NULL
		WHERE issue_id = $1 AND subscriber_id = ANY($2::bigint[]) AND status = 'queued' AND claimed_by = $3`,
		issueID, pq.Array(ids), owner)
	if err != nil {
		return fmt.Errorf("release: %w", err)
	}
	return nil
}

// releaseDead makes the leases of sending processes that died due again at once. Each sending
// process holds a session advisory lock on its owner key while it lives; a key whose lock can be
// taken belongs to a dead process (PostgreSQL drops a session's locks when its connection ends).
func (s *Store) releaseDead(ctx context.Context, issueID, me int64) (int, error) {
	var owners []int64
	if err := s.db.SelectContext(ctx, &owners, `SELECT DISTINCT claimed_by FROM deliveries
		WHERE status = 'queued' AND claimed_by IS NOT NULL AND claimed_by <> $2 AND issue_id = $1`, issueID, me); err != nil {
		return 0, fmt.Errorf("release dead: %w", err)
	}
	total := 0
	for _, o := range owners {
		n, err := s.releaseOwner(ctx, issueID, o)
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

func (s *Store) releaseOwner(ctx context.Context, issueID, owner int64) (int, error) {
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("release dead: %w", err)
	}
	defer tx.Rollback()
	var free bool
	if err := tx.GetContext(ctx, &free, `SELECT pg_try_advisory_xact_lock($1)`, owner); err != nil {
		return 0, fmt.Errorf("release dead: %w", err)
	}
	if !free {
		return 0, nil
	}
	res, err := tx.ExecContext(ctx, `UPDATE deliveries SET next_attempt_at = now(), claimed_by = NULL
		WHERE issue_id = $1 AND status = 'queued' AND claimed_by = $2`, issueID, owner)
	if err != nil {
		return 0, fmt.Errorf("release dead: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), tx.Commit()
}

// finishIfDone marks a sending issue sent once no reader is queued; it reports whether the issue
// is finished now.
func (s *Store) finishIfDone(ctx context.Context, issueID int64) (bool, error) {
	res, err := s.db.ExecContext(ctx, `UPDATE issues SET status = 'sent', finished_at = $2
		WHERE id = $1 AND status = 'sending'
		  AND NOT EXISTS (SELECT 1 FROM deliveries WHERE issue_id = $1 AND status = 'queued')`, issueID, s.now().UTC())
	if err != nil {
		return false, fmt.Errorf("finish: %w", err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// nextDue is how long until the issue's next queued row is due (0 when one is due now, -1 when
// none is queued).
func (s *Store) nextDue(ctx context.Context, issueID int64) (time.Duration, error) {
	var ms sql.NullFloat64
	if err := s.db.GetContext(ctx, &ms, `SELECT extract(epoch FROM min(next_attempt_at) - now()) * 1000
		FROM deliveries WHERE issue_id = $1 AND status = 'queued'`, issueID); err != nil {
		return 0, fmt.Errorf("next due: %w", err)
	}
	if !ms.Valid {
		return -1, nil
	}
	return max(0, time.Duration(ms.Float64)*time.Millisecond), nil
}

// issueStatus returns the issue's status and pause reason.
func (s *Store) issueStatus(ctx context.Context, id int64) (status, reason string, err error) {
	var row struct {
		Status string `db:"status"`
		Reason string `db:"pause_reason"`
	}
	if err := s.db.GetContext(ctx, &row, `SELECT status, pause_reason FROM issues WHERE id = $1`, id); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return "", "", fmt.Errorf("issue %d: %w", id, ErrNotFound)
		}
		return "", "", fmt.Errorf("issue %d: %w", id, err)
	}
	return row.Status, row.Reason, nil
}

// sendingIssues lists the issues in 'sending', oldest first.
func (s *Store) sendingIssues(ctx context.Context) ([]int64, error) {
	var ids []int64
	if err := s.db.SelectContext(ctx, &ids, `SELECT id FROM issues WHERE status = 'sending' ORDER BY started_at, id`); err != nil {
		return nil, fmt.Errorf("sending issues: %w", err)
	}
	return ids, nil
}

// lockOwner takes the session advisory lock that tells other senders this one is alive; the
// returned connection holds it until closed.
func (s *Store) lockOwner(ctx context.Context, owner int64) (*sqlx.Conn, error) {
	conn, err := s.db.Connx(ctx)
	if err != nil {
		return nil, fmt.Errorf("sender lock: %w", err)
	}
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, owner); err != nil {
		conn.Close()
		return nil, fmt.Errorf("sender lock: %w", err)
	}
	return conn, nil
}

// ConfirmedReaders counts the readers an issue of lang would go to if it started now.
func (s *Store) ConfirmedReaders(ctx context.Context, lang string) (int, error) {
	var n int
	if err := s.db.GetContext(ctx, &n, `SELECT count(*) FROM subscribers WHERE lang = $1 AND status = 'confirmed'`, lang); err != nil {
		return 0, fmt.Errorf("confirmed readers: %w", err)
	}
	return n, nil
}
