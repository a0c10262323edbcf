package send

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"newsletter/digest"
	"newsletter/internal/textclean"
)

// ledger is the deliveries table, one row per (issue, reader) under a unique constraint: which
// readers an issue goes to, and how far each is. The engine claims rows, sends, and marks them.
type ledger struct {
	db  *sqlx.DB
	now func() time.Time
}

// StartSending fixes an issue's recipients in the ledger and moves it to 'sending' (see
// ledger.startSending); Sender.Start does this after keeping the archive copy, and wakes Run.
func StartSending(ctx context.Context, store *digest.Store, issueID int64) (int, error) {
	return ledger{db: store.DB(), now: store.Now}.startSending(ctx, issueID)
}

// startSending fixes the issue's recipients, one ledger row per confirmed reader with an active
// subscription to its newsletter, in a single statement, and moves the issue to 'sending', all in one transaction. A draft or
// approved issue starts; one already sending or paused creates nothing (0, nil); a finished,
// cancelled or skipped one is digest.ErrConflict.
func (l ledger) startSending(ctx context.Context, issueID int64) (created int, err error) {
	tx, err := l.db.BeginTxx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("start sending: %w", err)
	}
	defer tx.Rollback()
	var iss struct {
		NewsletterID int64  `db:"newsletter_id"`
		Status       string `db:"status"`
		Lang         string `db:"lang"`
	}
	if err := tx.GetContext(ctx, &iss, `SELECT newsletter_id, status, lang FROM issues WHERE id = $1 FOR UPDATE`, issueID); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return 0, fmt.Errorf("start sending: issue %d: %w", issueID, digest.ErrNotFound)
		}
		return 0, fmt.Errorf("start sending: %w", err)
	}
	switch iss.Status {
	case digest.StatusSending, digest.StatusPaused:
		return 0, nil
	case digest.StatusDraft, digest.StatusApproved:
	default:
		return 0, fmt.Errorf("start sending: issue %d is %s: %w", issueID, iss.Status, digest.ErrConflict)
	}
	// A reader gets a newsletter while their global status is confirmed and their subscription
	// to it active.
	// An edition in one language goes to the readers of that language, and to those whose language
	// the newsletter is not written in when it is the newsletter's first; a digest has one
	// language and goes to all its readers. Fixed here: a reader who changes language mid-send
	// keeps the copy they were given.
	res, err := tx.ExecContext(ctx, `INSERT INTO deliveries (issue_id, subscriber_id)
		SELECT $1, sub.subscriber_id FROM subscriptions sub JOIN subscribers s ON s.id = sub.subscriber_id
		JOIN newsletters n ON n.id = sub.newsletter_id
		WHERE sub.newsletter_id = $2 AND sub.state = 'active' AND s.status = 'confirmed'
		  AND (n.kind = 'digest' OR s.lang = $3 OR ($3 = n.langs[1] AND NOT s.lang = ANY(n.langs)))
		ON CONFLICT DO NOTHING`, issueID, iss.NewsletterID, iss.Lang)
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
		pause_reason = '' WHERE id = $1`, issueID, l.now().UTC()); err != nil {
		return 0, fmt.Errorf("start sending: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("start sending: %w", err)
	}
	return int(n), nil
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
// erased, or left the issue's newsletter) since sending started are marked skipped (and returned
// with that status). The lease is the crash safety: a row is marked sent only after its message
// was accepted, and a row whose claimer died becomes due again (at once when its owner's lock is
// gone, see releaseDead; else after the lease).
//
// Rows are taken in subscriber order after the cursor `after`: walking the primary key forward
// passes each row's dead versions once, where a scan of the due index from its start would wade
// through every row already sent (their old index entries stay until vacuum) on every claim.
func (l ledger) claim(ctx context.Context, issueID, owner int64, n int, lease time.Duration, after int64) ([]claimedRow, error) {
	var rows []claimedRow
	err := l.db.SelectContext(ctx, &rows, `WITH due AS (
			SELECT d.subscriber_id FROM deliveries d
			WHERE d.issue_id = $1 AND d.subscriber_id > $5 AND d.status = 'queued' AND d.next_attempt_at <= now()
			  AND EXISTS (SELECT 1 FROM issues i WHERE i.id = $1 AND i.status = 'sending')
			ORDER BY d.subscriber_id
			LIMIT $2
			FOR UPDATE OF d SKIP LOCKED
		), reader AS (
			-- gets: confirmed and still subscribed to the issue's newsletter. The lateral
			-- LIMIT 1 keeps it one key probe per row: a join or EXISTS was planned as a scan
			-- of the newsletter's every subscription on each claim.
			SELECT due.subscriber_id, s.id, s.status, s.uuid, s.email, s.name,
				coalesce(s.status = 'confirmed' AND sub.active, false) AS gets
			FROM due LEFT JOIN subscribers s ON s.id = due.subscriber_id
			LEFT JOIN LATERAL (SELECT true AS active FROM subscriptions sub
				WHERE sub.subscriber_id = due.subscriber_id AND sub.state = 'active'
				  AND sub.newsletter_id = (SELECT newsletter_id FROM issues WHERE id = $1) LIMIT 1) sub ON true
		), leased AS (
			UPDATE deliveries d SET
				status = CASE WHEN s.gets THEN 'queued' ELSE 'skipped' END,
				last_error = CASE WHEN s.id IS NULL THEN 'reader erased'
					WHEN s.status <> 'confirmed' THEN 'reader ' || s.status
					WHEN NOT s.gets THEN 'reader left the newsletter' ELSE d.last_error END,
				next_attempt_at = now() + $3 * interval '1 millisecond',
				claimed_by = CASE WHEN s.gets THEN $4::bigint END
			FROM reader s
			WHERE d.issue_id = $1 AND d.subscriber_id = s.subscriber_id
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

func (l ledger) newRecorder(ctx context.Context) (*recorder, error) {
	conn, err := l.db.Connx(ctx)
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

// markRetry records a temporary failure: the row is due again after delay, or failed for good when
// final (the retry policy's last attempt). It reports whether the row is now failed. A row no
// longer queued is left alone: a mark written late (the database was away, and meanwhile another
// sender took the row over and its message was accepted) must not send the reader a second copy.
func (l ledger) markRetry(ctx context.Context, issueID, subscriberID int64, reason string, delay time.Duration, final bool) (failed bool, err error) {
	err = l.db.GetContext(ctx, &failed, `UPDATE deliveries SET attempts = attempts + 1, claimed_by = NULL, last_error = $3,
			next_attempt_at = now() + $4 * interval '1 millisecond',
			status = CASE WHEN $5 THEN 'failed' ELSE 'queued' END
		WHERE issue_id = $1 AND subscriber_id = $2 AND status = 'queued' RETURNING status = 'failed'`,
		issueID, subscriberID, textclean.ClipLine(reason, digest.MaxReason), delay.Milliseconds(), final)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("mark retry: %w", err)
	}
	return failed, nil
}

// markFailed records a permanent failure, on a row still queued, like markRetry.
func (l ledger) markFailed(ctx context.Context, issueID, subscriberID int64, reason string) error {
	_, err := l.db.ExecContext(ctx, `UPDATE deliveries SET status = 'failed', attempts = attempts + 1, claimed_by = NULL,
		last_error = $3 WHERE issue_id = $1 AND subscriber_id = $2 AND status = 'queued'`, issueID, subscriberID, textclean.ClipLine(reason, digest.MaxReason))
	if err != nil {
		return fmt.Errorf("mark failed: %w", err)
	}
	return nil
}

// release hands leased rows back unsent (shutdown, pause), due at once. Only rows still leased to
// owner change, so a lease that expired and went to another sender is left alone.
func (l ledger) release(ctx context.Context, issueID, owner int64, ids []int64) error {
	if len(ids) == 0 {
		return nil
	}
	_, err := l.db.ExecContext(ctx, `UPDATE deliveries SET next_attempt_at = now(), claimed_by = NULL
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
func (l ledger) releaseDead(ctx context.Context, issueID, me int64) (int, error) {
	var owners []int64
	if err := l.db.SelectContext(ctx, &owners, `SELECT DISTINCT claimed_by FROM deliveries
		WHERE status = 'queued' AND claimed_by IS NOT NULL AND claimed_by <> $2 AND issue_id = $1`, issueID, me); err != nil {
		return 0, fmt.Errorf("release dead: %w", err)
	}
	total := 0
	for _, o := range owners {
		n, err := l.releaseOwner(ctx, issueID, o)
		if err != nil {
			return total, err
		}
		total += n
	}
	return total, nil
}

func (l ledger) releaseOwner(ctx context.Context, issueID, owner int64) (int, error) {
	tx, err := l.db.BeginTxx(ctx, nil)
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
func (l ledger) finishIfDone(ctx context.Context, issueID int64) (bool, error) {
	res, err := l.db.ExecContext(ctx, `UPDATE issues SET status = 'sent', finished_at = $2
		WHERE id = $1 AND status = 'sending'
		  AND NOT EXISTS (SELECT 1 FROM deliveries WHERE issue_id = $1 AND status = 'queued')`, issueID, l.now().UTC())
	if err != nil {
		return false, fmt.Errorf("finish: %w", err)
	}
	n, _ := res.RowsAffected()
	return n > 0, nil
}

// nextDue is how long until the issue's next queued row is due (0 when one is due now, -1 when
// none is queued).
func (l ledger) nextDue(ctx context.Context, issueID int64) (time.Duration, error) {
	var ms sql.NullFloat64
	if err := l.db.GetContext(ctx, &ms, `SELECT extract(epoch FROM min(next_attempt_at) - now()) * 1000
		FROM deliveries WHERE issue_id = $1 AND status = 'queued'`, issueID); err != nil {
		return 0, fmt.Errorf("next due: %w", err)
	}
	if !ms.Valid {
		return -1, nil
	}
	return max(0, time.Duration(ms.Float64)*time.Millisecond), nil
}

// issueStatus returns the issue's status and pause reason.
func (l ledger) issueStatus(ctx context.Context, id int64) (status, reason string, err error) {
	var row struct {
		Status string `db:"status"`
		Reason string `db:"pause_reason"`
	}
	if err := l.db.GetContext(ctx, &row, `SELECT status, pause_reason FROM issues WHERE id = $1`, id); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return "", "", fmt.Errorf("issue %d: %w", id, digest.ErrNotFound)
		}
		return "", "", fmt.Errorf("issue %d: %w", id, err)
	}
	return row.Status, row.Reason, nil
}

// sendingIssues lists the issues in 'sending', oldest first.
func (l ledger) sendingIssues(ctx context.Context) ([]int64, error) {
	var ids []int64
	if err := l.db.SelectContext(ctx, &ids, `SELECT id FROM issues WHERE status = 'sending' ORDER BY started_at, id`); err != nil {
		return nil, fmt.Errorf("sending issues: %w", err)
	}
	return ids, nil
}

// lockOwner takes the session advisory lock that tells other senders this one is alive; the
// returned connection holds it until closed.
func (l ledger) lockOwner(ctx context.Context, owner int64) (*sqlx.Conn, error) {
	conn, err := l.db.Connx(ctx)
	if err != nil {
		return nil, fmt.Errorf("sender lock: %w", err)
	}
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1)`, owner); err != nil {
		conn.Close()
		return nil, fmt.Errorf("sender lock: %w", err)
	}
	return conn, nil
}
