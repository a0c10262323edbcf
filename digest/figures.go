package digest

import (
	"context"
	"fmt"

	"github.com/lib/pq"
)

// Figures are what came of one issue, counted without tracking anyone (no open pixel, no click
// redirect): the relay's answers in the ledger, the bounce and complaint reports about the
// issue's copies (reader_events), and departures through the issue's own unsubscribe link. Each
// figure counts readers, once each, whichever way a report came.
type Figures struct {
	IssueID   int64 `db:"issue_id"`
	Delivered int   `db:"delivered"` // copies the relay accepted (the ledger's sent rows)
	// HardBounces are readers whose address was refused for good, during sending or reported
	// later; RefusedAtSend are those the relay refused during our own SMTP exchange.
	HardBounces   int `db:"hard"`
	RefusedAtSend int `db:"refused_at_send"`
	SoftBounces   int `db:"soft"`       // readers whose copy failed for a passing reason, reported after sending
	Complaints    int `db:"complaints"` // readers who reported the copy as spam
	Unsubscribes  int `db:"unsubscribes"`
}

// IssueFigures returns the figures of the issues ids, by issue id, in one query; an id that is no
// issue has no entry.
func (s *Store) IssueFigures(ctx context.Context, ids ...int64) (map[int64]Figures, error) {
	var rows []Figures
	if err := s.db.SelectContext(ctx, &rows, `
		SELECT i.id AS issue_id, d.delivered,
			count(DISTINCT e.subscriber_id) FILTER (WHERE e.kind = 'hard') AS hard,
			count(DISTINCT e.subscriber_id) FILTER (WHERE e.kind = 'hard' AND e.source = 'smtp') AS refused_at_send,
			count(DISTINCT e.subscriber_id) FILTER (WHERE e.kind = 'soft') AS soft,
			count(DISTINCT e.subscriber_id) FILTER (WHERE e.kind = 'complaint') AS complaints,
			count(DISTINCT e.subscriber_id) FILTER (WHERE e.kind = 'unsubscribe') AS unsubscribes
		FROM issues i
		CROSS JOIN LATERAL (SELECT count(*) AS delivered FROM deliveries WHERE issue_id = i.id AND status = 'sent') d
		LEFT JOIN reader_events e ON e.issue_id = i.id
		WHERE i.id = ANY($1)
		GROUP BY i.id, d.delivered`, pq.Array(ids)); err != nil {
		return nil, fmt.Errorf("issue figures: %w", err)
	}
	out := make(map[int64]Figures, len(rows))
	for _, f := range rows {
		out[f.IssueID] = f
	}
	return out, nil
}
