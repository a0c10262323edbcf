package web

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"newsletter/internal/clientaddr"
)

// Limits of the editors' sessions and of the login throttle.
const (
	sessionIdle     = 12 * time.Hour
	sessionMax      = 7 * 24 * time.Hour
	sessionTouchGap = time.Minute // last_seen_at is written at most this often per session

	loginWindow      = 15 * time.Minute
	loginClientLimit = 10  // failed logins one client may make per window
	loginGlobalLimit = 100 // failed logins all clients together may make per window
)

// Cookie names of the editor pages.
const (
	sessionCookie    = "newsletter_admin"
	loginCSRFCookie  = "newsletter_admin_login"
	deviceCookie     = "newsletter_admin_device"
	sessionCookieLen = 43 // base64url of 32 random bytes
	deviceMaxAge     = 90 * 24 * time.Hour
)

var (
	errLoginThrottled = errors.New("too many failed logins; wait a few minutes and try again")
	errNoSession      = errors.New("no valid editor session")
)

// editorSessions keeps the editors' sessions and the failed-login counts in PostgreSQL, so several
// serve processes on one database share them. It holds no state of its own.
type editorSessions struct {
	db  *sqlx.DB
	now func() time.Time
}

// newSessionID returns a fresh random cookie value (32 bytes).
func newSessionID() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error()) // never fails on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func hashSessionID(id string) []byte {
	sum := sha256.Sum256([]byte(id))
	return sum[:]
}

// create starts a session and returns its cookie value. The old session, if the browser brought
// one, ends here: a login always gets a new id, so a planted cookie is worth nothing.
func (s editorSessions) create(ctx context.Context, oldID string) (string, error) {
	id := newSessionID()
	now := s.now()
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return "", fmt.Errorf("digest: session: %w", err)
	}
	defer tx.Rollback()
	if oldID != "" {
		if _, err := tx.ExecContext(ctx, `DELETE FROM admin_sessions WHERE id_hash = $1`, hashSessionID(oldID)); err != nil {
			return "", fmt.Errorf("digest: session: %w", err)
		}
	}
	// Expired sessions are swept at each login; nothing else needs them.
	if _, err := tx.ExecContext(ctx, `DELETE FROM admin_sessions WHERE last_seen_at < $1 OR created_at < $2`,
		now.Add(-sessionIdle), now.Add(-sessionMax)); err != nil {
		return "", fmt.Errorf("digest: session: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO admin_sessions (id_hash, created_at, last_seen_at) VALUES ($1, $2, $2)`,
		hashSessionID(id), now); err != nil {
		return "", fmt.Errorf("digest: session: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return "", fmt.Errorf("digest: session: %w", err)
	}
	return id, nil
}

// check reports whether id names a live session, and keeps it alive.
func (s editorSessions) check(ctx context.Context, id string) error {
	if len(id) != sessionCookieLen {
		return errNoSession
	}
	var row struct {
		CreatedAt  time.Time `db:"created_at"`
		LastSeenAt time.Time `db:"last_seen_at"`
	}
	err := s.db.GetContext(ctx, &row, `SELECT created_at, last_seen_at FROM admin_sessions WHERE id_hash = $1`, hashSessionID(id))
	if errors.Is(err, sql.ErrNoRows) {
		return errNoSession
	}
	if err != nil {
		return fmt.Errorf("digest: session: %w", err)
	}
	now := s.now()
	if now.Sub(row.LastSeenAt) > sessionIdle || now.Sub(row.CreatedAt) > sessionMax {
		return errNoSession
	}
	if now.Sub(row.LastSeenAt) > sessionTouchGap {
		if _, err := s.db.ExecContext(ctx, `UPDATE admin_sessions SET last_seen_at = $2 WHERE id_hash = $1`, hashSessionID(id), now); err != nil {
			return fmt.Errorf("digest: session: %w", err)
		}
	}
	return nil
}

// end deletes a session (logout).
func (s editorSessions) end(ctx context.Context, id string) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM admin_sessions WHERE id_hash = $1`, hashSessionID(id)); err != nil {
		return fmt.Errorf("digest: session: %w", err)
	}
	return nil
}

// throttled reports whether client, or everyone together, failed to log in too often lately. It
// is asked before the password is even compared, so a throttled guess learns nothing. A known
// device (knownDevice) is held to its own client's limit only, so guesses from elsewhere cannot
// lock out an editor's own browser.
func (s editorSessions) throttled(ctx context.Context, client string, knownDevice bool) error {
	var n struct {
		Client int `db:"client"`
		All    int `db:"total"`
	}
	err := s.db.GetContext(ctx, &n, `SELECT count(*) FILTER (WHERE client = $1) AS client, count(*) AS total
		FROM admin_login_failures WHERE at > $2`, client, s.now().Add(-loginWindow))
	if err != nil {
		return fmt.Errorf("digest: login throttle: %w", err)
	}
	if n.Client >= loginClientLimit || (n.All >= loginGlobalLimit && !knownDevice) {
		return errLoginThrottled
	}
	return nil
}

// failed records a failed login of client and forgets the ones too old to count.
func (s editorSessions) failed(ctx context.Context, client string) error {
	now := s.now()
	if _, err := s.db.ExecContext(ctx, `WITH old AS (DELETE FROM admin_login_failures WHERE at <= $3)
		INSERT INTO admin_login_failures (client, at) VALUES ($1, $2)`, client, now, now.Add(-loginWindow)); err != nil {
		return fmt.Errorf("digest: login throttle: %w", err)
	}
	return nil
}

// passwordMatches compares the SHA-256 digests of both, in constant time; hashing first makes the
// comparison independent of the lengths too. An empty configured password matches nothing.
func passwordMatches(configured, given string) bool {
	if configured == "" {
		return false
	}
	a := sha256.Sum256([]byte(configured))
	b := sha256.Sum256([]byte(given))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// csrfToken is the session's form token: an HMAC of a fixed label keyed by the session id. It is
// the same for the whole session, needs no storage, and does not reveal the id.
func csrfToken(sessionID string) string {
	m := hmac.New(sha256.New, []byte(sessionID))
	m.Write([]byte("newsletter admin csrf"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// csrfValid compares a submitted token with the session's, in constant time.
func csrfValid(sessionID, got string) bool {
	want := csrfToken(sessionID)
	return subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}

// csrfEqual compares the login form's token with its cookie, in constant time.
func csrfEqual(cookie, form string) bool {
	return cookie != "" && subtle.ConstantTimeCompare([]byte(cookie), []byte(form)) == 1
}

// clientKey names the client for the login throttle: its address (the proxy's X-Forwarded-For
// entry when trustProxy), IPv6 grouped by /64. Behind a proxy without trustProxy every client
// shares the proxy's address, so the per-client limit then acts as a second global one.
func clientKey(r *http.Request, trustProxy bool) string {
	return clientaddr.Key(clientaddr.Of(r, trustProxy))
}

// deviceToken is the value of the device cookie a browser gets at a successful login: a random id
// and its HMAC under key, so only this service can have issued it. It holds no session and grants
// nothing but an exemption from the global login throttle (see throttled).
func deviceToken(key []byte) string {
	id := make([]byte, 16)
	rand.Read(id)
	return base64.RawURLEncoding.EncodeToString(id) + "." + deviceMAC(key, id)
}

func deviceMAC(key, id []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("newsletter editor device\x00"))
	m.Write(id)
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// deviceValid reports whether token is a device cookie this service issued (with key; none without).
func deviceValid(key []byte, token string) bool {
	if len(key) == 0 || len(token) > 200 {
		return false
	}
	idPart, mac, ok := strings.Cut(token, ".")
	id, err := base64.RawURLEncoding.DecodeString(idPart)
	if !ok || err != nil || len(id) != 16 {
		return false
	}
	return hmac.Equal([]byte(mac), []byte(deviceMAC(key, id)))
}

// sessionCookieFor builds the session cookie; an empty value (with MaxAge -1) removes it.
func sessionCookieFor(value string, secure bool) *http.Cookie {
	c := &http.Cookie{
		Name:     sessionCookie,
		Value:    value,
		Path:     "/admin",
		HttpOnly: true,
		Secure:   secure,
		SameSite: http.SameSiteLaxMode,
	}
	if value == "" {
		c.MaxAge = -1
	} else {
		c.MaxAge = int(sessionMax / time.Second)
	}
	return c
}
