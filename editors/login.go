package editors

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"database/sql"
	"errors"
	"time"
)

// The login throttle's limits, over a sliding LoginWindow. Every attempt is recorded before its
// password or code is compared, in one transaction under one lock with the count that admits it,
// so however many arrive at once, at most the limit gets compared.
const (
	LoginWindow  = 15 * time.Minute
	ClientLimit  = 10  // attempts one client (IP, IPv6 /64) may make
	AccountLimit = 10  // attempts at one account, from anywhere
	GlobalLimit  = 100 // attempts of everyone together
)

// loginLock is the advisory lock key of the throttle's count-and-record.
const loginLock = 0x6e65_7773_6c6f_6731 // "newslog1"

// attempt records a login attempt of client at account, unless one of the limits is reached
// (ErrThrottled); it returns the attempt's id, which a success removes. A trusted device (one
// the account logged in from before) is held to its client's limit only, so guesses from
// elsewhere lock out neither the account's own browser nor, through the global limit, it.
func (s *Store) attempt(ctx context.Context, client, account string, trusted bool) (int64, error) {
	now := s.now()
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return 0, wrap("login throttle", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(loginLock)); err != nil {
		return 0, wrap("login throttle", err)
	}
	var n struct {
		Client  int `db:"client"`
		Account int `db:"account"`
		All     int `db:"total"`
	}
	if err := tx.GetContext(ctx, &n, `SELECT count(*) FILTER (WHERE client = $1) AS client, count(*) FILTER (WHERE account = $2) AS account,
		count(*) AS total FROM editor_login_attempts WHERE at > $3`, client, account, now.Add(-LoginWindow)); err != nil {
		return 0, wrap("login throttle", err)
	}
	if n.Client >= ClientLimit || (!trusted && (n.Account >= AccountLimit || n.All >= GlobalLimit)) {
		return 0, ErrThrottled
	}
	var id int64
	if err := tx.GetContext(ctx, &id, `WITH old AS (DELETE FROM editor_login_attempts WHERE at <= $3)
		INSERT INTO editor_login_attempts (client, account, at) VALUES ($1, $2, $4) RETURNING id`,
		client, account, now.Add(-LoginWindow), now); err != nil {
		return 0, wrap("login throttle", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, wrap("login throttle", err)
	}
	return id, nil
}

// succeeded forgets attempt id: it was the editor's own.
func (s *Store) succeeded(ctx context.Context, id int64) error {
	if _, err := s.db.ExecContext(ctx, `DELETE FROM editor_login_attempts WHERE id = $1`, id); err != nil {
		return wrap("login throttle", err)
	}
	return nil
}

// Login checks a password login of client (its throttle key) with the address and password typed.
// trustedFor is the editor whose device cookie the browser holds (0: none). It returns the editor
// (with TOTP to check next when ed.TOTP); ErrThrottled before anything is compared; and
// ErrCredentials for an unknown address, a wrong password, an account without a password yet or
// a disabled one, each after the same work. found is the editor the address named, if any (for
// the audit log of a failure).
func (s *Store) Login(ctx context.Context, client, email, password string, trustedFor int64) (ed Editor, found int64, err error) {
	email, _ = NormalizeEmail(email) // "" for what is no address: it names no account
	var r row
	if email != "" {
		err = s.db.GetContext(ctx, &r, `SELECT `+editorColumns+` FROM editors WHERE email = $1`, email)
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return Editor{}, 0, wrap("login", err)
		}
	}
	id, err := s.attempt(ctx, client, "email:"+email, r.ID != 0 && r.ID == trustedFor)
	if err != nil {
		return Editor{}, r.ID, err
	}
	hash := dummyHash()
	if r.PasswordHash != nil {
		hash = *r.PasswordHash
	}
	ok, stale := verifyPassword(hash, password)
	if !ok || r.ID == 0 || r.PasswordHash == nil || r.DisabledAt != nil {
		return Editor{}, r.ID, ErrCredentials
	}
	if err := s.succeeded(ctx, id); err != nil {
		return Editor{}, r.ID, err
	}
	if stale {
		// Today's costs from now on; the epoch stays, as the password is the same.
		s.db.ExecContext(ctx, `UPDATE editors SET password_hash = $2 WHERE id = $1 AND password_hash = $3`, r.ID, hashPassword(password), hash)
	}
	if r.TOTPSecret == nil {
		if err := s.loggedIn(ctx, r.ID); err != nil {
			return Editor{}, r.ID, err
		}
	}
	return r.editor(), r.ID, nil
}

// SharedLogin checks a login with the shared password (NEWSLETTER_ADMIN_PASSWORD, kept for
// compatibility) under the same throttle, its own account key. It returns the shared editor, to
// start a session with; ErrSharedRetired once an editor has a password; ErrCredentials for a
// wrong password or none configured.
func (s *Store) SharedLogin(ctx context.Context, client, password string, trusted bool) (Editor, error) {
	id, err := s.attempt(ctx, client, "shared", trusted)
	if err != nil {
		return Editor{}, err
	}
	// Hashing both makes the comparison's time independent of the lengths.
	a, b := sha256.Sum256([]byte(s.shared.password)), sha256.Sum256([]byte(password))
	if s.shared.key == nil || subtle.ConstantTimeCompare(a[:], b[:]) != 1 {
		return Editor{}, ErrCredentials
	}
	retired, err := s.SharedRetired(ctx)
	if err != nil {
		return Editor{}, err
	}
	if retired {
		return Editor{}, ErrSharedRetired
	}
	if err := s.succeeded(ctx, id); err != nil {
		return Editor{}, err
	}
	return sharedEditor(), nil
}

// checkCurrentPassword compares password with the editor's own, under the login throttle of
// client and the account: a stolen session cannot guess the password faster than a login can.
func (s *Store) checkCurrentPassword(ctx context.Context, client string, r row, password string) error {
	id, err := s.attempt(ctx, client, "email:"+r.Email, false)
	if err != nil {
		return err
	}
	if r.PasswordHash == nil {
		return ErrCredentials
	}
	if ok, _ := verifyPassword(*r.PasswordHash, password); !ok {
		return ErrCredentials
	}
	return s.succeeded(ctx, id)
}

// LoginCode checks the TOTP code of a session at the code step, under the same throttle as
// passwords (the account's limit then counts codes), and returns the editor; a code counts once.
func (s *Store) LoginCode(ctx context.Context, client string, sess Session, code string, trusted bool) (Editor, error) {
	if sess.Stage != StageCode {
		return Editor{}, ErrNoSession
	}
	id, err := s.attempt(ctx, client, "email:"+sess.Editor.Email, trusted)
	if err != nil {
		return Editor{}, err
	}
	if err := s.checkCode(ctx, sess.Editor.ID, code); err != nil {
		return Editor{}, err
	}
	if err := s.succeeded(ctx, id); err != nil {
		return Editor{}, err
	}
	if err := s.loggedIn(ctx, sess.Editor.ID); err != nil {
		return Editor{}, err
	}
	return sess.Editor, nil
}

// checkCode accepts code for the editor's TOTP secret once: the step it belongs to must be later
// than the last one accepted, which moves in the same statement.
func (s *Store) checkCode(ctx context.Context, editorID int64, code string) error {
	r, err := s.get(ctx, s.db, editorID)
	if err != nil {
		return err
	}
	if r.TOTPSecret == nil {
		return ErrCredentials
	}
	secret, err := s.seal.open(editorID, r.TOTPSecret)
	if err != nil {
		return err
	}
	step, ok := totpStep(secret, code, s.now())
	if !ok {
		return ErrCredentials
	}
	res, err := s.db.ExecContext(ctx, `UPDATE editors SET totp_last_step = $2 WHERE id = $1 AND totp_last_step < $2 AND totp_secret = $3`,
		editorID, step, r.TOTPSecret)
	if err != nil {
		return wrap("totp", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return ErrCredentials // used already
	}
	return nil
}

func (s *Store) loggedIn(ctx context.Context, id int64) error {
	if _, err := s.db.ExecContext(ctx, `UPDATE editors SET last_login_at = $2 WHERE id = $1`, id, s.now()); err != nil {
		return wrap("login", err)
	}
	return nil
}
