package editors

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"strings"
	"time"
	"unicode/utf8"
)

// The audit log (table audit_log, append-only: a trigger refuses UPDATE, DELETE and TRUNCATE)
// says who did what, when, to which object and from where: one row for every change an editor
// makes, every login, failed login, logout and ended session, every reader looked up or viewed,
// and what the command line did to the reader list (actor CLIActor).

// CLIActor is the actor of what the command line does.
const CLIActor = "cli"

// AuditEntry is one row to write.
type AuditEntry struct {
	// Editor is who acted; for a shared-password session its Label. Zero with Actor set.
	Editor Editor
	// Actor overrides the editor's label: CLIActor, or "unknown" for a failed login at no account.
	Actor   string
	Session []byte // the session's hash (Session.Hash), never its cookie
	IP      string
	Action  string // short and fixed: "login", "issue.approve", "reader.view"
	// Object names what was acted on: "issue 7", "article 12", "editor 3", "reader UUID".
	Object string
	Target string // a reader's uuid, for the reader's page; never an address
	Detail string
}

var uuidPattern = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// Audit writes e. A target that is not a uuid is refused (ErrInvalid), so no address lands in
// the log by mistake.
func (s *Store) Audit(ctx context.Context, e AuditEntry) error {
	var target sql.NullString
	if e.Target != "" {
		if !uuidPattern.MatchString(e.Target) {
			return fmt.Errorf("editors: audit target: %w", ErrInvalid)
		}
		target = sql.NullString{String: e.Target, Valid: true}
	}
	actor := e.Actor
	var editorID sql.NullInt64
	if actor == "" {
		actor = e.Editor.Label()
		if e.Editor.ID != 0 {
			editorID = sql.NullInt64{Int64: e.Editor.ID, Valid: true}
		}
	}
	actor, action := strings.TrimSpace(actor), strings.TrimSpace(e.Action)
	if actor == "" || action == "" {
		return fmt.Errorf("editors: audit actor and action: %w", ErrInvalid)
	}
	if _, err := s.db.ExecContext(ctx, `INSERT INTO audit_log (at, editor_id, actor, session_hash, ip, action, object, target, detail)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
		s.now(), editorID, clip(actor, 200), e.Session, clip(e.IP, 64), clip(action, 50), clip(e.Object, 100), target, clip(e.Detail, 500)); err != nil {
		return wrap("audit", err)
	}
	return nil
}

// clip cuts s to at most n bytes on a character boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// AuditRecord is one stored row.
type AuditRecord struct {
	ID       int64         `db:"id"`
	At       time.Time     `db:"at"`
	EditorID sql.NullInt64 `db:"editor_id"`
	Actor    string        `db:"actor"`
	IP       string        `db:"ip"`
	Action   string        `db:"action"`
	Object   string        `db:"object"`
	Target   *string       `db:"target"`
	Detail   string        `db:"detail"`
}

// AuditFilter chooses rows of the audit log; zero fields choose all.
type AuditFilter struct {
	Actor  string    // exactly: an address, CLIActor, SharedName
	Action string    // exactly
	Object string    // exactly ("issue 7"), or a kind ("issue": every issue)
	From   time.Time // at or after
	To     time.Time // before
	Before int64     // rows older than this id (the next page)
	Limit  int       // at most this many (default 50, at most 500)
}

// AuditLog returns the rows f chooses, newest first.
func (s *Store) AuditLog(ctx context.Context, f AuditFilter) ([]AuditRecord, error) {
	if f.Limit <= 0 {
		f.Limit = 50
	}
	f.Limit = min(f.Limit, 500)
	var from, to sql.NullTime
	if !f.From.IsZero() {
		from = sql.NullTime{Time: f.From, Valid: true}
	}
	if !f.To.IsZero() {
		to = sql.NullTime{Time: f.To, Valid: true}
	}
	objectKind := strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`).Replace(f.Object) + " %"
	var out []AuditRecord
	if err := s.db.SelectContext(ctx, &out, `SELECT id, at, editor_id, actor, ip, action, object, target, detail FROM audit_log
		WHERE ($1 = '' OR actor = $1) AND ($2 = '' OR action = $2) AND ($3 = '' OR object = $3 OR object LIKE $4)
		  AND ($5::timestamptz IS NULL OR at >= $5) AND ($6::timestamptz IS NULL OR at < $6) AND ($7 = 0 OR id < $7)
		ORDER BY id DESC LIMIT $8`, f.Actor, f.Action, f.Object, objectKind, from, to, f.Before, f.Limit); err != nil {
		return nil, wrap("audit log", err)
	}
	return out, nil
}

// AuditActors and AuditActions list the values the filters can take, for the page's choices.
func (s *Store) AuditActors(ctx context.Context) ([]string, error) {
	var out []string
	if err := s.db.SelectContext(ctx, &out, `SELECT DISTINCT actor FROM audit_log ORDER BY actor LIMIT 1000`); err != nil {
		return nil, wrap("audit log", err)
	}
	return out, nil
}

// AuditActions lists the actions the log holds.
func (s *Store) AuditActions(ctx context.Context) ([]string, error) {
	var out []string
	if err := s.db.SelectContext(ctx, &out, `SELECT DISTINCT action FROM audit_log ORDER BY action LIMIT 1000`); err != nil {
		return nil, wrap("audit log", err)
	}
	return out, nil
}
