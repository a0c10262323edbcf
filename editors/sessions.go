package editors

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"time"
)

// Limits of the editors' sessions.
const (
	SessionIdle     = 12 * time.Hour
	SessionMax      = 7 * 24 * time.Hour
	CodeStepMax     = 10 * time.Minute // a session waiting for the TOTP code lives this long
	sessionTouchGap = time.Minute      // last_seen_at is written at most this often per session
	// SessionCookieLen is the length of a session's cookie value: base64url of 32 random bytes.
	SessionCookieLen = 43
)

// Session stages: after the password, an editor with TOTP is at StageCode until the code.
const (
	StageCode = "totp"
	StageFull = "full"
)

// Session is a live session and its editor.
type Session struct {
	SID        int64 // names the session on pages (never the cookie)
	Editor     Editor
	Stage      string
	CreatedAt  time.Time
	LastSeenAt time.Time
	IP         string
	Device     string // the browser's family and major version, and the system: "Firefox 128 on Linux"
	Hash       []byte // SHA-256 of the cookie, as stored: tells sessions apart in the audit log
}

// HashCookie is what the store keeps of a session cookie: a copy of the table is no cookie.
func HashCookie(cookie string) []byte {
	sum := sha256.Sum256([]byte(cookie))
	return sum[:]
}

// StartSession opens a session for ed at stage, under the epoch their credentials had when ed was
// read (so a change in between leaves it dead), and returns its cookie. The
// session the browser brought (oldCookie), if any, ends: a login always gets a new id, so a
// planted cookie is worth nothing.
func (s *Store) StartSession(ctx context.Context, ed Editor, stage, oldCookie, ip, userAgent string) (string, error) {
	cookie := newToken()
	now := s.now()
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return "", wrap("session", err)
	}
	defer tx.Rollback()
	if oldCookie != "" {
		if _, err := tx.ExecContext(ctx, `DELETE FROM admin_sessions WHERE id_hash = $1`, HashCookie(oldCookie)); err != nil {
			return "", wrap("session", err)
		}
	}
	// Expired sessions are swept at each login; nothing else needs them.
	if _, err := tx.ExecContext(ctx, `DELETE FROM admin_sessions WHERE last_seen_at < $1 OR created_at < $2 OR (stage = 'totp' AND created_at < $3)`,
		now.Add(-SessionIdle), now.Add(-SessionMax), now.Add(-CodeStepMax)); err != nil {
		return "", wrap("session", err)
	}
	// The device is reduced in the database by the same function as a reader's user agent.
	if _, err := tx.ExecContext(ctx, `INSERT INTO admin_sessions (id_hash, editor_id, epoch, stage, created_at, last_seen_at, ip, device)
		VALUES ($1, $2, $3, $4, $5, $5, left($6, 64), left(device_label($7), 100))`,
		HashCookie(cookie), ed.ID, ed.epoch, stage, now, ip, userAgent); err != nil {
		return "", wrap("session", err)
	}
	if err := tx.Commit(); err != nil {
		return "", wrap("session", err)
	}
	return cookie, nil
}

type sessionRow struct {
	row
	SID        int64     `db:"sid"`
	Stage      string    `db:"stage"`
	SCreatedAt time.Time `db:"s_created_at"`
	LastSeenAt time.Time `db:"last_seen_at"`
	IP         string    `db:"ip"`
	Device     string    `db:"device"`
	SEpoch     int       `db:"epoch"`
	IDHash     []byte    `db:"id_hash"`
}

func (r sessionRow) session() Session {
	return Session{SID: r.SID, Editor: r.editor(), Stage: r.Stage, CreatedAt: r.SCreatedAt, LastSeenAt: r.LastSeenAt, IP: r.IP, Device: r.Device,
		Hash: r.IDHash}
}

const sessionColumns = `s.sid, s.stage, s.created_at AS s_created_at, s.last_seen_at, s.ip, s.device, s.epoch, s.id_hash,
	e.id, e.email, e.name, e.role, e.password_hash, e.totp_secret, e.totp_pending, e.totp_last_step, e.session_epoch,
	e.created_at, e.password_changed_at, e.last_login_at, e.disabled_at`

// live reports whether the session is within its limits at now.
func (r sessionRow) live(now time.Time) bool {
	if r.Stage == StageCode && now.Sub(r.SCreatedAt) > CodeStepMax {
		return false
	}
	return now.Sub(r.LastSeenAt) <= SessionIdle && now.Sub(r.SCreatedAt) <= SessionMax
}

// Session returns the live session of cookie with its editor as they are now, and keeps it alive
// (with the address it was last used from). A session of a disabled editor, or from before their
// credentials last changed, is ErrNoSession.
func (s *Store) Session(ctx context.Context, cookie, ip string) (Session, error) {
	if len(cookie) != SessionCookieLen {
		return Session{}, ErrNoSession
	}
	var r sessionRow
	err := s.db.GetContext(ctx, &r, `SELECT `+sessionColumns+` FROM admin_sessions s JOIN editors e ON e.id = s.editor_id
		WHERE s.id_hash = $1 AND s.epoch = e.session_epoch AND e.disabled_at IS NULL AND e.password_hash IS NOT NULL`, HashCookie(cookie))
	if errors.Is(err, sql.ErrNoRows) {
		return Session{}, ErrNoSession
	}
	if err != nil {
		return Session{}, wrap("session", err)
	}
	now := s.now()
	if !r.live(now) {
		return Session{}, ErrNoSession
	}
	if now.Sub(r.LastSeenAt) > sessionTouchGap || (ip != "" && ip != r.IP) {
		if _, err := s.db.ExecContext(ctx, `UPDATE admin_sessions SET last_seen_at = $2, ip = left($3, 64) WHERE id_hash = $1`,
			r.IDHash, now, ip); err != nil {
			return Session{}, wrap("session", err)
		}
		r.LastSeenAt = now
		if ip != "" {
			r.IP = ip
		}
	}
	return r.session(), nil
}

// Sessions lists the editor's live sessions past the code step, most recently used first.
func (s *Store) Sessions(ctx context.Context, editorID int64) ([]Session, error) {
	var rows []sessionRow
	if err := s.db.SelectContext(ctx, &rows, `SELECT `+sessionColumns+` FROM admin_sessions s JOIN editors e ON e.id = s.editor_id
		WHERE s.editor_id = $1 AND s.stage = 'full' AND s.epoch = e.session_epoch AND e.disabled_at IS NULL
		ORDER BY s.last_seen_at DESC, s.sid DESC`, editorID); err != nil {
		return nil, wrap("sessions", err)
	}
	now := s.now()
	var out []Session
	for _, r := range rows {
		if r.live(now) {
			out = append(out, r.session())
		}
	}
	return out, nil
}

// EndSession ends the session of cookie (logout).
func (s *Store) EndSession(ctx context.Context, cookie string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM admin_sessions WHERE id_hash = $1`, HashCookie(cookie)); err != nil {
		return wrap("session", err)
	}
	return nil
}

// EndSessionByID ends one session of the editor, named as the sessions list names it.
func (s *Store) EndSessionByID(ctx context.Context, editorID, sid int64) error {
	res, err := s.db.ExecContext(ctx, `DELETE FROM admin_sessions WHERE editor_id = $1 AND sid = $2`, editorID, sid)
	if err != nil {
		return wrap("session", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}

// EndAllSessions ends every session of the editor, this one included ("log out everywhere"): the
// epoch moves on, so even a session being opened at this moment is dead.
func (s *Store) EndAllSessions(ctx context.Context, editorID int64) error {
	_, err := s.update(ctx, editorID, true, `UPDATE editors SET session_epoch = session_epoch + 1 WHERE id = $1 RETURNING `+editorColumns)
	return err
}

// Renew replaces the session of cookie with a new one at StageFull for ed (after the code step,
// and after a change of the editor's own credentials, with ed as it is after the change), and
// returns the new cookie.
func (s *Store) Renew(ctx context.Context, ed Editor, cookie, ip, userAgent string) (string, error) {
	return s.StartSession(ctx, ed, StageFull, cookie, ip, userAgent)
}
