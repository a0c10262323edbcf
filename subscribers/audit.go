package subscribers

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"newsletter/internal/textclean"
)

// AuditEntry is one line of the audit log: who (Actor, and the session they acted in) did what
// (Action) to which reader (Target, their uuid: never the address), and anything else worth
// keeping (Detail, such as the language set).
type AuditEntry struct {
	Actor   string
	Session []byte // a hash of the session, never the session id itself
	Action  string
	Target  string // the reader's uuid; "" when there is none (a lookup that found nobody)
	Detail  string
}

// AuditRecord is a stored AuditEntry, as a reader's page lists it.
type AuditRecord struct {
	At     time.Time `db:"at"`
	Actor  string    `db:"actor"`
	Action string    `db:"action"`
	Detail string    `db:"detail"`
}

// Audit records e in the audit log. A Target that is not a uuid is refused (ErrInvalid), so no
// address can land in the log by mistake.
func (s *Store) Audit(ctx context.Context, e AuditEntry) error {
	var target sql.NullString
	if e.Target != "" {
		if _, ok := parseUUID(e.Target); !ok {
			return fmt.Errorf("audit: target %w", ErrInvalid)
		}
		target = sql.NullString{String: e.Target, Valid: true}
	}
	actor, action := strings.TrimSpace(e.Actor), strings.TrimSpace(e.Action)
	if actor == "" || action == "" {
		return fmt.Errorf("audit: actor and action: %w", ErrInvalid)
	}
	if _, err := s.db.ExecContext(ctx, `
		INSERT INTO audit_log (actor, session_hash, action, target, detail) VALUES ($1, $2, $3, $4, $5)`,
		textclean.ClipBytes(actor, 200), e.Session, textclean.ClipBytes(action, 50), target, textclean.ClipBytes(e.Detail, 500)); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
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
