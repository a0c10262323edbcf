package subscribers

import (
	"context"
	"fmt"
	"time"
)

// AuditRecord is one audit log entry about a reader, as the reader's page lists it. The log is
// written by package editors, which names the editor; this store only reads a reader's trail.
type AuditRecord struct {
	At     time.Time `db:"at"`
	Actor  string    `db:"actor"`
	Action string    `db:"action"`
	Detail string    `db:"detail"`
}

// AuditTrail returns the latest limit entries about the reader with that uuid, newest first.
func (s *Store) AuditTrail(ctx context.Context, uuid string, limit int) ([]AuditRecord, error) {
	if _, ok := parseUUID(uuid); !ok {
		return nil, ErrNotFound
	}
	var out []AuditRecord
	if err := s.db.SelectContext(ctx, &out, `
		SELECT at, actor, action, detail FROM audit_log WHERE target = $1 ORDER BY at DESC, id DESC LIMIT $2`, uuid, limit); err != nil {
		return nil, fmt.Errorf("audit trail: %w", err)
	}
	return out, nil
}
