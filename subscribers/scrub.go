package subscribers

import (
	"context"
	"fmt"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"newsletter/internal/textclean"
)

// scrubTraces takes the erased reader's address out of the texts kept after them, in the erasing
// transaction: their deliveries' last SMTP error (the ledger stays, without them) and their
// bounce and complaint events' reasons, both kept for the per-issue figures, and the pause reason
// of any issue. Their own rows (consents, queued emails, the last bounce's reason) went with them.
func scrubTraces(ctx context.Context, tx *sqlx.Tx, subscriberID int64, email string) error {
	sc := textclean.NewAddressScrubber(email)
	type text struct {
		Key  int64  `db:"key"`
		Text string `db:"text"`
	}
	// Each query names the rows and their key; each update takes keys and texts as $1 and $2, and
	// the reader as $3 where the rows are theirs.
	for _, t := range []struct {
		what, query, update string
		own                 bool // rows of this reader: scrub the local part too
	}{
		{"deliveries", `SELECT issue_id AS key, last_error AS text FROM deliveries WHERE subscriber_id = $1 AND last_error <> ''`,
			`UPDATE deliveries d SET last_error = u.text FROM unnest($1::bigint[], $2::text[]) AS u(key, text)
			 WHERE d.subscriber_id = $3 AND d.issue_id = u.key`, true},
		{"events", `SELECT id AS key, reason AS text FROM reader_events WHERE subscriber_id = $1 AND reason <> ''`,
			`UPDATE reader_events e SET reason = u.text FROM unnest($1::bigint[], $2::text[]) AS u(key, text)
			 WHERE e.subscriber_id = $3 AND e.id = u.key`, true},
		{"issues", `SELECT id AS key, pause_reason AS text FROM issues WHERE pause_reason <> ''`,
			`UPDATE issues i SET pause_reason = u.text FROM unnest($1::bigint[], $2::text[]) AS u(key, text)
			 WHERE i.id = u.key`, false},
	} {
		var rows []text
		var args []any
		scrub := sc.Address
		if t.own {
			args, scrub = []any{subscriberID}, sc.All
		}
		if err := tx.SelectContext(ctx, &rows, t.query, args...); err != nil {
			return fmt.Errorf("scrub %s: %w", t.what, err)
		}
		var keys []int64
		var texts []string
		for _, r := range rows {
			if s := scrub(r.Text); s != r.Text {
				keys, texts = append(keys, r.Key), append(texts, s)
			}
		}
		if len(keys) == 0 {
			continue
		}
		if _, err := tx.ExecContext(ctx, t.update, append([]any{pq.Array(keys), pq.Array(texts)}, args...)...); err != nil {
			return fmt.Errorf("scrub %s: %w", t.what, err)
		}
	}
	return nil
}
