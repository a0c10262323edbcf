package editors

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// LinkTTL is how long a link to set a password works.
const LinkTTL = 72 * time.Hour

// Options are the store's plain settings.
type Options struct {
	// Issuer names the service in authenticator apps (the publication's name).
	Issuer string
	// Now is the clock (nil: time.Now).
	Now func() time.Time
	// SharedPassword is NEWSLETTER_ADMIN_PASSWORD, kept for one release for compatibility: it
	// logs in as an admin with no account while no editor has a password ("" : never).
	SharedPassword string
}

// Store keeps the editors' accounts, links, sessions, login attempts and the audit log in
// PostgreSQL; it holds no state of its own, so any number of processes share it.
type Store struct {
	db     *sqlx.DB
	seal   sealer
	issuer string
	now    func() time.Time
	shared struct {
		password string
		key      []byte // keyed hash of password, kept with its sessions; nil: no shared password
	}
}

// NewStore returns the store over db; secret is the service secret, which seals TOTP secrets.
func NewStore(db *sqlx.DB, secret []byte, opts Options) *Store {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Issuer == "" {
		opts.Issuer = "newsletter"
	}
	s := &Store{db: db, seal: newSealer(secret), issuer: opts.Issuer, now: opts.Now}
	if opts.SharedPassword != "" {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte("newsletter shared editor password v1\x00"))
		m.Write([]byte(opts.SharedPassword))
		s.shared.password, s.shared.key = opts.SharedPassword, m.Sum(nil)
	}
	return s
}

// sharedKey is what a shared-password session keeps of the password it was opened with; nil
// when there is none.
func (s *Store) sharedKey() []byte { return s.shared.key }

// HasSharedPassword reports whether NEWSLETTER_ADMIN_PASSWORD is set.
func (s *Store) HasSharedPassword() bool { return s.shared.key != nil }

// SharedRetired reports whether an editor has a password of their own, which retires the shared
// password for good.
func (s *Store) SharedRetired(ctx context.Context) (bool, error) {
	var yes bool
	if err := s.db.GetContext(ctx, &yes, `SELECT EXISTS (SELECT 1 FROM editors WHERE password_hash IS NOT NULL)`); err != nil {
		return false, wrap("editors", err)
	}
	return yes, nil
}

// Now is the store's clock.
func (s *Store) Now() time.Time { return s.now() }

// row is an editors row as stored.
type row struct {
	ID                int64      `db:"id"`
	Email             string     `db:"email"`
	Name              string     `db:"name"`
	Role              string     `db:"role"`
	PasswordHash      *string    `db:"password_hash"`
	TOTPSecret        []byte     `db:"totp_secret"`
	TOTPPending       []byte     `db:"totp_pending"`
	TOTPLastStep      int64      `db:"totp_last_step"`
	Epoch             int        `db:"session_epoch"`
	CreatedAt         time.Time  `db:"created_at"`
	PasswordChangedAt *time.Time `db:"password_changed_at"`
	LastLoginAt       *time.Time `db:"last_login_at"`
	DisabledAt        *time.Time `db:"disabled_at"`
}

const editorColumns = `id, email, name, role, password_hash, totp_secret, totp_pending, totp_last_step, session_epoch,
	created_at, password_changed_at, last_login_at, disabled_at`

func (r row) editor() Editor {
	role, _ := ParseRole(r.Role)
	return Editor{ID: r.ID, Email: r.Email, Name: r.Name, Role: role, HasPassword: r.PasswordHash != nil, TOTP: r.TOTPSecret != nil,
		CreatedAt: r.CreatedAt, PasswordChangedAt: r.PasswordChangedAt, LastLoginAt: r.LastLoginAt, DisabledAt: r.DisabledAt, epoch: r.Epoch}
}

func wrap(what string, err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return fmt.Errorf("editors: %s: %w", what, err)
}

// Link is a one-time link's token: the path segment after /admin/setup/.
type Link struct {
	Token     string
	Purpose   string // invite or reset
	ExpiresAt time.Time
}

func newToken() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error()) // never fails on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func tokenHash(token string) []byte {
	sum := sha256.Sum256([]byte(token))
	return sum[:]
}

// Add creates an editor with no password yet and returns them with the link that sets it.
func (s *Store) Add(ctx context.Context, email, name string, role Role) (Editor, Link, error) {
	email, err := NormalizeEmail(email)
	if err != nil {
		return Editor{}, Link{}, err
	}
	if err := CheckName(name); err != nil {
		return Editor{}, Link{}, err
	}
	if role < Writer || role > Admin {
		return Editor{}, Link{}, fmt.Errorf("editors: role: %w", ErrInvalid)
	}
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return Editor{}, Link{}, wrap("add", err)
	}
	defer tx.Rollback()
	var r row
	err = tx.GetContext(ctx, &r, `INSERT INTO editors (email, name, role, created_at) VALUES ($1, $2, $3, $4)
		RETURNING `+editorColumns, email, name, role.String(), s.now())
	var pqErr *pq.Error
	if errors.As(err, &pqErr) && pqErr.Code == "23505" {
		return Editor{}, Link{}, ErrExists
	}
	if err != nil {
		return Editor{}, Link{}, wrap("add", err)
	}
	link, err := s.newLink(ctx, tx, r.ID, "invite")
	if err != nil {
		return Editor{}, Link{}, err
	}
	if err := tx.Commit(); err != nil {
		return Editor{}, Link{}, wrap("add", err)
	}
	return r.editor(), link, nil
}

// newLink replaces the editor's links with a fresh one.
func (s *Store) newLink(ctx context.Context, tx *sqlx.Tx, editorID int64, purpose string) (Link, error) {
	now := s.now()
	link := Link{Token: newToken(), Purpose: purpose, ExpiresAt: now.Add(LinkTTL)}
	if _, err := tx.ExecContext(ctx, `DELETE FROM editor_links WHERE editor_id = $1 OR expires_at < $2`, editorID, now); err != nil {
		return Link{}, wrap("link", err)
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO editor_links (token_hash, editor_id, purpose, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)`,
		tokenHash(link.Token), editorID, purpose, now, link.ExpiresAt); err != nil {
		return Link{}, wrap("link", err)
	}
	return link, nil
}

// Reset ends everything the editor's credentials opened: the password and TOTP are cleared, every
// session ends, and a fresh link (the only way back in) is returned. A disabled editor stays so.
func (s *Store) Reset(ctx context.Context, id int64) (Editor, Link, error) {
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return Editor{}, Link{}, wrap("reset", err)
	}
	defer tx.Rollback()
	var r row
	err = tx.GetContext(ctx, &r, `UPDATE editors SET password_hash = NULL, totp_secret = NULL, totp_pending = NULL,
		session_epoch = session_epoch + 1 WHERE id = $1 RETURNING `+editorColumns, id)
	if err != nil {
		return Editor{}, Link{}, wrap("reset", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM admin_sessions WHERE editor_id = $1`, id); err != nil {
		return Editor{}, Link{}, wrap("reset", err)
	}
	link, err := s.newLink(ctx, tx, id, "reset")
	if err != nil {
		return Editor{}, Link{}, err
	}
	if err := tx.Commit(); err != nil {
		return Editor{}, Link{}, wrap("reset", err)
	}
	return r.editor(), link, nil
}

// lockEditors takes the editors table for the rest of tx, so a change that must leave an admin
// (keepAnAdmin) sees every other one: two admins demoting each other at once cannot both succeed.
// Editors are few and rarely change, so the lock costs nothing.
func lockEditors(ctx context.Context, tx *sqlx.Tx) error {
	if _, err := tx.ExecContext(ctx, `LOCK TABLE editors IN SHARE ROW EXCLUSIVE MODE`); err != nil {
		return wrap("lock", err)
	}
	return nil
}

// keepAnAdmin refuses, inside tx, a change to before (an enabled admin until now) that left no
// enabled admin at all.
func keepAnAdmin(ctx context.Context, tx *sqlx.Tx, before row) error {
	if before.Role != Admin.String() || before.DisabledAt != nil {
		return nil
	}
	var n int
	if err := tx.GetContext(ctx, &n, `SELECT count(*) FROM editors WHERE role = 'admin' AND disabled_at IS NULL`); err != nil {
		return wrap("admins", err)
	}
	if n == 0 {
		return ErrLastAdmin
	}
	return nil
}

// LinkEditor returns the editor a link sets the password of, while the link works.
func (s *Store) LinkEditor(ctx context.Context, token string) (Editor, Link, error) {
	var r struct {
		row
		Purpose   string    `db:"purpose"`
		ExpiresAt time.Time `db:"expires_at"`
	}
	if len(token) != 43 {
		return Editor{}, Link{}, ErrLinkExpired
	}
	err := s.db.GetContext(ctx, &r, `SELECT e.id, e.email, e.name, e.role, e.password_hash, e.totp_secret, e.totp_pending, e.totp_last_step,
		e.session_epoch, e.created_at, e.password_changed_at, e.last_login_at, e.disabled_at, l.purpose, l.expires_at
		FROM editor_links l JOIN editors e ON e.id = l.editor_id WHERE l.token_hash = $1`, tokenHash(token))
	if errors.Is(err, sql.ErrNoRows) {
		return Editor{}, Link{}, ErrLinkExpired
	}
	if err != nil {
		return Editor{}, Link{}, wrap("link", err)
	}
	if !s.now().Before(r.ExpiresAt) || r.DisabledAt != nil {
		return Editor{}, Link{}, ErrLinkExpired
	}
	return r.editor(), Link{Token: token, Purpose: r.Purpose, ExpiresAt: r.ExpiresAt}, nil
}

// UseLink sets the password of the link's editor and spends the link; every session of theirs
// ends (a reset's purpose), and the editor is returned as they are now.
func (s *Store) UseLink(ctx context.Context, token, password string) (Editor, error) {
	if err := CheckPassword(password); err != nil {
		return Editor{}, err
	}
	ed, _, err := s.LinkEditor(ctx, token)
	if err != nil {
		return Editor{}, err
	}
	hash := hashPassword(password)
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return Editor{}, wrap("set password", err)
	}
	defer tx.Rollback()
	// The DELETE is the spend: of two uses at once, one finds the row gone.
	res, err := tx.ExecContext(ctx, `DELETE FROM editor_links WHERE token_hash = $1 AND editor_id = $2 AND expires_at > $3`, tokenHash(token), ed.ID, s.now())
	if err != nil {
		return Editor{}, wrap("set password", err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return Editor{}, ErrLinkExpired
	}
	var r row
	if err := tx.GetContext(ctx, &r, `UPDATE editors SET password_hash = $2, password_changed_at = $3, session_epoch = session_epoch + 1
		WHERE id = $1 AND disabled_at IS NULL RETURNING `+editorColumns, ed.ID, hash, s.now()); err != nil {
		return Editor{}, wrap("set password", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM admin_sessions WHERE editor_id = $1`, ed.ID); err != nil {
		return Editor{}, wrap("set password", err)
	}
	if err := tx.Commit(); err != nil {
		return Editor{}, wrap("set password", err)
	}
	return r.editor(), nil
}

// Get returns the editor with id.
func (s *Store) Get(ctx context.Context, id int64) (Editor, error) {
	r, err := s.get(ctx, s.db, id)
	return r.editor(), err
}

func (s *Store) get(ctx context.Context, q sqlx.QueryerContext, id int64) (row, error) {
	var r row
	if err := sqlx.GetContext(ctx, q, &r, `SELECT `+editorColumns+` FROM editors WHERE id = $1`, id); err != nil {
		return row{}, wrap("get", err)
	}
	return r, nil
}

// ByEmail returns the editor with that address (in any case).
func (s *Store) ByEmail(ctx context.Context, email string) (Editor, error) {
	email, err := NormalizeEmail(email)
	if err != nil {
		return Editor{}, ErrNotFound
	}
	var r row
	if err := s.db.GetContext(ctx, &r, `SELECT `+editorColumns+` FROM editors WHERE email = $1`, email); err != nil {
		return Editor{}, wrap("get", err)
	}
	return r.editor(), nil
}

// List returns every editor, admins first, then by address.
func (s *Store) List(ctx context.Context) ([]Editor, error) {
	var rows []row
	if err := s.db.SelectContext(ctx, &rows, `SELECT `+editorColumns+` FROM editors
		ORDER BY CASE role WHEN 'admin' THEN 0 WHEN 'publisher' THEN 1 ELSE 2 END, email`); err != nil {
		return nil, wrap("list", err)
	}
	out := make([]Editor, len(rows))
	for i, r := range rows {
		out[i] = r.editor()
	}
	return out, nil
}

// Count is how many editors there are (the login page tells a fresh install how to make one).
func (s *Store) Count(ctx context.Context) (int, error) {
	var n int
	if err := s.db.GetContext(ctx, &n, `SELECT count(*) FROM editors`); err != nil {
		return 0, wrap("count", err)
	}
	return n, nil
}

// SetRole changes the editor's role; it takes effect on their next request.
func (s *Store) SetRole(ctx context.Context, id int64, role Role) (Editor, error) {
	if role < Writer || role > Admin {
		return Editor{}, fmt.Errorf("editors: role: %w", ErrInvalid)
	}
	return s.update(ctx, id, false, `UPDATE editors SET role = $2 WHERE id = $1 RETURNING `+editorColumns, role.String())
}

// SetName changes the editor's display name.
func (s *Store) SetName(ctx context.Context, id int64, name string) (Editor, error) {
	if err := CheckName(name); err != nil {
		return Editor{}, err
	}
	return s.update(ctx, id, false, `UPDATE editors SET name = $2 WHERE id = $1 RETURNING `+editorColumns, name)
}

// Disable locks the editor out: every session ends, and no login or link works until Enable.
func (s *Store) Disable(ctx context.Context, id int64) (Editor, error) {
	return s.update(ctx, id, true, `UPDATE editors SET disabled_at = coalesce(disabled_at, $2), session_epoch = session_epoch + 1
		WHERE id = $1 RETURNING `+editorColumns, s.now())
}

// Enable lets a disabled editor log in again with the password they had.
func (s *Store) Enable(ctx context.Context, id int64) (Editor, error) {
	return s.update(ctx, id, false, `UPDATE editors SET disabled_at = NULL WHERE id = $1 RETURNING `+editorColumns)
}

// Delete removes the editor, their sessions and links; the audit log keeps what they did.
func (s *Store) Delete(ctx context.Context, id int64) (Editor, error) {
	return s.update(ctx, id, true, `DELETE FROM editors WHERE id = $1 RETURNING `+editorColumns)
}

// update runs one statement on editor id that returns the row, keeps an admin, and, with
// endSessions, ends the editor's sessions, all in one transaction.
func (s *Store) update(ctx context.Context, id int64, endSessions bool, query string, args ...any) (Editor, error) {
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return Editor{}, wrap("update", err)
	}
	defer tx.Rollback()
	if err := lockEditors(ctx, tx); err != nil {
		return Editor{}, err
	}
	before, err := s.get(ctx, tx, id)
	if err != nil {
		return Editor{}, err
	}
	var r row
	if err := tx.GetContext(ctx, &r, query, append([]any{id}, args...)...); err != nil {
		return Editor{}, wrap("update", err)
	}
	if err := keepAnAdmin(ctx, tx, before); err != nil {
		return Editor{}, err
	}
	if endSessions {
		if _, err := tx.ExecContext(ctx, `DELETE FROM admin_sessions WHERE editor_id = $1`, id); err != nil {
			return Editor{}, wrap("update", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return Editor{}, wrap("update", err)
	}
	return r.editor(), nil
}

// ChangePassword sets a new password once the current one is given (checked under the login
// throttle of client); every session of the editor ends. It returns the editor as they are now.
func (s *Store) ChangePassword(ctx context.Context, client string, id int64, current, next string) (Editor, error) {
	if err := CheckPassword(next); err != nil {
		return Editor{}, err
	}
	r, err := s.get(ctx, s.db, id)
	if err != nil {
		return Editor{}, err
	}
	if err := s.checkCurrentPassword(ctx, client, r, current); err != nil {
		return Editor{}, err
	}
	return s.update(ctx, id, true, `UPDATE editors SET password_hash = $2, password_changed_at = $3, session_epoch = session_epoch + 1
		WHERE id = $1 AND password_hash = $4 RETURNING `+editorColumns, hashPassword(next), s.now(), *r.PasswordHash)
}

// BeginTOTP makes a fresh TOTP secret for the editor and keeps it as pending until ConfirmTOTP.
func (s *Store) BeginTOTP(ctx context.Context, id int64) (TOTPSetup, error) {
	r, err := s.get(ctx, s.db, id)
	if err != nil {
		return TOTPSetup{}, err
	}
	setup, err := newTOTPSetup(s.issuer, r.Email)
	if err != nil {
		return TOTPSetup{}, err
	}
	if _, err := s.db.ExecContext(ctx, `UPDATE editors SET totp_pending = $2 WHERE id = $1`, id, s.seal.seal(id, setup.Secret)); err != nil {
		return TOTPSetup{}, wrap("totp", err)
	}
	return setup, nil
}

// PendingTOTP returns the pending secret's setup again (the page reloaded), or ErrNotFound.
func (s *Store) PendingTOTP(ctx context.Context, id int64) (TOTPSetup, error) {
	r, err := s.get(ctx, s.db, id)
	if err != nil {
		return TOTPSetup{}, err
	}
	if r.TOTPPending == nil {
		return TOTPSetup{}, ErrNotFound
	}
	secret, err := s.seal.open(id, r.TOTPPending)
	if err != nil {
		return TOTPSetup{}, err
	}
	key, err := otpKey(s.issuer, r.Email, secret)
	if err != nil {
		return TOTPSetup{}, err
	}
	return setupFor(key)
}

// ConfirmTOTP switches TOTP on with the pending secret once code is one of its codes; every
// session of the editor ends.
func (s *Store) ConfirmTOTP(ctx context.Context, id int64, code string) (Editor, error) {
	r, err := s.get(ctx, s.db, id)
	if err != nil {
		return Editor{}, err
	}
	if r.TOTPPending == nil {
		return Editor{}, fmt.Errorf("editors: no TOTP secret waiting: %w", ErrInvalid)
	}
	secret, err := s.seal.open(id, r.TOTPPending)
	if err != nil {
		return Editor{}, err
	}
	step, ok := totpStep(secret, code, s.now())
	if !ok {
		return Editor{}, ErrCredentials
	}
	return s.update(ctx, id, true, `UPDATE editors SET totp_secret = totp_pending, totp_pending = NULL, totp_last_step = $2,
		session_epoch = session_epoch + 1 WHERE id = $1 AND totp_pending = $3 RETURNING `+editorColumns, step, r.TOTPPending)
}

// DisableTOTP switches TOTP off once the password is given (checked under the login throttle of
// client); every session of the editor ends.
func (s *Store) DisableTOTP(ctx context.Context, client string, id int64, password string) (Editor, error) {
	r, err := s.get(ctx, s.db, id)
	if err != nil {
		return Editor{}, err
	}
	if err := s.checkCurrentPassword(ctx, client, r, password); err != nil {
		return Editor{}, err
	}
	return s.update(ctx, id, true, `UPDATE editors SET totp_secret = NULL, totp_pending = NULL, session_epoch = session_epoch + 1
		WHERE id = $1 RETURNING `+editorColumns)
}
