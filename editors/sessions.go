package editors

import (
	"context"
	"crypto/hmac"
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

// SharedName names the shared password's sessions on pages and in the audit log.
const SharedName = "shared password"

// Session is a live session and its editor.
type Session struct {
	SID        int64 // names the session on pages (never the cookie)
	Editor     Editor
	Stage      string
	CreatedAt  time.Time
	LastSeenAt time.Time
	IP         string
	Device     string // the browser's family and major version: "Firefox 128"
	Hash       []byte // SHA-256 of the cookie, as stored: tells sessions apart in the audit log
}

// Shared reports whether the session was opened with the shared password (no account).
func (s Session) Shared() bool { return s.Editor.Shared }

// HashCookie is what the store keeps of a session cookie: a copy of the table is no cookie.
func HashCookie(cookie string) []byte {
	sum := sha256.Sum256([]byte(cookie))
	return sum[:]
}

// StartSession opens a session for ed at stage, under the epoch their credentials had when ed was
// read (so a change in between leaves it dead), and returns its cookie. device is the browser's
// family and major version as the caller reduced it (never the whole user agent). The session
// the browser brought (oldCookie), if any, ends: a login always gets a new id, so a planted
// cookie is worth nothing.
func (s *Store) StartSession(ctx context.Context, ed Editor, stage, oldCookie, ip, device string) (string, error) {
	if ed.Shared {
		return s.startSession(ctx, nil, s.sharedKey(), 0, StageFull, oldCookie, ip, device)
	}
	return s.startSession(ctx, &ed.ID, nil, ed.epoch, stage, oldCookie, ip, device)
}

func (s *Store) startSession(ctx context.Context, editorID *int64, shared []byte, epoch int, stage, oldCookie, ip, device string) (string, error) {
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
	if _, err := tx.ExecContext(ctx, `INSERT INTO admin_sessions (id_hash, editor_id, shared, epoch, stage, created_at, last_seen_at, ip, device)
		VALUES ($1, $2, $3, $4, $5, $6, $6, left($7, 64), left($8, 100))`,
		HashCookie(cookie), editorID, shared, epoch, stage, now, ip, device); err != nil {
		return "", wrap("session", err)
	}
	if err := tx.Commit(); err != nil {
		return "", wrap("session", err)
	}
	return cookie, nil
}

// sessionRow is an admin_sessions row as stored.
type sessionRow struct {
	SID        int64     `db:"sid"`
	EditorID   *int64    `db:"editor_id"`
	Shared     []byte    `db:"shared"`
	Epoch      int       `db:"epoch"`
	Stage      string    `db:"stage"`
	CreatedAt  time.Time `db:"created_at"`
	LastSeenAt time.Time `db:"last_seen_at"`
	IP         string    `db:"ip"`
	Device     string    `db:"device"`
	IDHash     []byte    `db:"id_hash"`
}

const sessionColumns = `sid, editor_id, shared, epoch, stage, created_at, last_seen_at, ip, device, id_hash`

func (r sessionRow) session(ed Editor) Session {
	return Session{SID: r.SID, Editor: ed, Stage: r.Stage, CreatedAt: r.CreatedAt, LastSeenAt: r.LastSeenAt, IP: r.IP, Device: r.Device, Hash: r.IDHash}
}

// live reports whether the session is within its limits at now.
func (r sessionRow) live(now time.Time) bool {
	if r.Stage == StageCode && now.Sub(r.CreatedAt) > CodeStepMax {
		return false
	}
	return now.Sub(r.LastSeenAt) <= SessionIdle && now.Sub(r.CreatedAt) <= SessionMax
}

// sharedEditor is who a shared-password session acts as: an admin with no account.
func sharedEditor() Editor {
	return Editor{Name: SharedName, Role: Admin, HasPassword: true, Shared: true}
}

// Session returns the live session of cookie with its editor as they are now, and keeps it alive
// (with the address it was last used from). A session of a disabled editor, or from before their
// credentials last changed, is ErrNoSession; so is a shared-password session once that password
// changed or is unset, or once an editor has set a password of their own.
func (s *Store) Session(ctx context.Context, cookie, ip string) (Session, error) {
	if len(cookie) != SessionCookieLen {
		return Session{}, ErrNoSession
	}
	var r sessionRow
	err := s.db.GetContext(ctx, &r, `SELECT `+sessionColumns+` FROM admin_sessions WHERE id_hash = $1`, HashCookie(cookie))
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
	var ed Editor
	if r.EditorID == nil {
		key := s.sharedKey()
		if key == nil || !hmac.Equal(key, r.Shared) {
			return Session{}, ErrNoSession
		}
		retired, err := s.SharedRetired(ctx)
		if err != nil {
			return Session{}, err
		}
		if retired {
			return Session{}, ErrNoSession
		}
		ed = sharedEditor()
	} else {
		er, err := s.get(ctx, s.db, *r.EditorID)
		if errors.Is(err, ErrNotFound) {
			return Session{}, ErrNoSession
		}
		if err != nil {
			return Session{}, err
		}
		if er.Epoch != r.Epoch || er.DisabledAt != nil || er.PasswordHash == nil {
			return Session{}, ErrNoSession
		}
		ed = er.editor()
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
	return r.session(ed), nil
}

// Sessions lists the editor's live sessions past the code step, most recently used first.
func (s *Store) Sessions(ctx context.Context, editorID int64) ([]Session, error) {
	er, err := s.get(ctx, s.db, editorID)
	if err != nil {
		return nil, err
	}
	if er.DisabledAt != nil {
		return nil, nil
	}
	var rows []sessionRow
	if err := s.db.SelectContext(ctx, &rows, `SELECT `+sessionColumns+` FROM admin_sessions
		WHERE editor_id = $1 AND stage = 'full' AND epoch = $2 ORDER BY last_seen_at DESC, sid DESC`, editorID, er.Epoch); err != nil {
		return nil, wrap("sessions", err)
	}
	now := s.now()
	var out []Session
	for _, r := range rows {
		if r.live(now) {
			out = append(out, r.session(er.editor()))
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
func (s *Store) Renew(ctx context.Context, ed Editor, cookie, ip, device string) (string, error) {
	return s.StartSession(ctx, ed, StageFull, cookie, ip, device)
}
