package subscribers

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
)

// Consent is the proof of an opt-in: where it came from and which consent text was shown.
type Consent struct {
	IP, UserAgent string
	Source        string // "form", "api", "import"
	TextVersion   string
}

// ConfirmThrottle is the least time between two confirmation emails to one address.
const ConfirmThrottle = 10 * time.Minute

// Store reads and writes readers, consents, suppressions and the confirmation outbox.
type Store struct {
	db     *sqlx.DB
	secret []byte
	batch  *subscribeBatcher
}

// NewStore returns a Store over db; secret keys the suppression hash of erased addresses.
func NewStore(db *sqlx.DB, secret []byte) *Store {
	return &Store{db: db, secret: append([]byte(nil), secret...), batch: &subscribeBatcher{db: db}}
}

const subscriberColumns = `id, uuid, email, name, lang, status, created_at, updated_at, subscribed_at,
	confirmed_at, unsubscribed_at, bounced_at, complained_at`

// suppressionHash is the keyed hash kept for an erased address: without the secret nobody can tell
// which addresses the table holds.
func (s *Store) suppressionHash(normalized string) []byte {
	h := hmac.New(sha256.New, s.secret)
	h.Write([]byte(strings.ToLower(normalized)))
	return h.Sum(nil)
}

// Subscribe records an opt-in in one transaction (shared with concurrent subscriptions, see
// subscribeBatcher; it returns once that has committed): the reader (new: pending; pending: unchanged but
// name and language; unsubscribed or complained: pending again with a new subscribed_at; confirmed
// or bounced: nothing at all), the
// consent, and a queued confirmation email unless one was queued for the address within
// ConfirmThrottle or is still waiting. The outcome looks the same whether or not the address was
// known. Concurrent calls for one address serialise on the row (ON CONFLICT), never fail.
func (s *Store) Subscribe(ctx context.Context, email, name, lang string, c Consent) error {
	email, err := NormalizeEmail(email)
	if err != nil {
		return err
	}
	if name, err = ValidateName(name); err != nil {
		return err
	}
	if !validLang(lang) {
		return &FieldError{"lang", KeyLangInvalid}
	}
	switch c.Source {
	case "form", "api", "import":
	default:
		return fmt.Errorf("subscribe: consent source %q: %w", c.Source, ErrInvalid)
	}
	return s.batch.subscribe(ctx, &subscription{email: email, name: name, lang: lang, consent: c, hash: s.suppressionHash(email)})
}

// Busy reports whether subscriptions are arriving faster than they can be committed one slot at a
// time (lately one had to wait): background work such as the confirmation mailer makes way then.
func (s *Store) Busy() bool { return s.batch.busy() }

func clipBytes(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !isRuneStart(s[n]) {
		n--
	}
	return s[:n]
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }

// ByUUID returns the reader with that public handle.
func (s *Store) ByUUID(ctx context.Context, uuid string) (Subscriber, error) {
	return byUUID(ctx, s.db, uuid)
}

func byUUID(ctx context.Context, q sqlx.QueryerContext, uuid string) (Subscriber, error) {
	var sub Subscriber
	if _, ok := parseUUID(uuid); !ok {
		return sub, ErrNotFound
	}
	err := sqlx.GetContext(ctx, q, &sub, `SELECT `+subscriberColumns+` FROM subscribers WHERE uuid = $1`, uuid)
	if errors.Is(err, sql.ErrNoRows) {
		return sub, ErrNotFound
	}
	if err != nil {
		return sub, fmt.Errorf("subscriber: %w", err)
	}
	return sub, nil
}

// Confirm completes the opt-in that a confirm token issued at issued belongs to. Confirming a
// confirmed reader again is harmless (returns the reader). ErrExpired when the token predates the
// reader's current opt-in (they subscribed again since) or the reader has left.
func (s *Store) Confirm(ctx context.Context, uuid string, issued time.Time) (Subscriber, error) {
	if _, ok := parseUUID(uuid); !ok {
		return Subscriber{}, ErrNotFound
	}
	var sub Subscriber
	err := s.db.GetContext(ctx, &sub, `
		UPDATE subscribers SET status = 'confirmed', confirmed_at = now(), updated_at = now()
		WHERE uuid = $1 AND status = 'pending' AND subscribed_at <= $2
		RETURNING `+subscriberColumns, uuid, issued)
	if err == nil {
		return sub, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return sub, fmt.Errorf("confirm: %w", err)
	}
	if sub, err = s.ByUUID(ctx, uuid); err != nil {
		return sub, err
	}
	if sub.Status == StatusConfirmed {
		return sub, nil
	}
	return sub, fmt.Errorf("confirm: %w", ErrExpired)
}

// Unsubscribe stops all mail to the reader at once; repeating it is harmless and keeps the first
// unsubscribed_at. A bounced or complained reader keeps that status (they get no mail either).
func (s *Store) Unsubscribe(ctx context.Context, uuid string) (Subscriber, error) {
	if _, ok := parseUUID(uuid); !ok {
		return Subscriber{}, ErrNotFound
	}
	var sub Subscriber
	err := s.db.GetContext(ctx, &sub, `
		UPDATE subscribers SET status = 'unsubscribed', unsubscribed_at = now(), updated_at = now()
		WHERE uuid = $1 AND status IN ('pending', 'confirmed')
		RETURNING `+subscriberColumns, uuid)
	if errors.Is(err, sql.ErrNoRows) {
		return s.ByUUID(ctx, uuid)
	}
	if err != nil {
		return sub, fmt.Errorf("unsubscribe: %w", err)
	}
	return sub, nil
}

// Update changes the reader's name and language.
func (s *Store) Update(ctx context.Context, uuid, name, lang string) (Subscriber, error) {
	name, err := ValidateName(name)
	if err != nil {
		return Subscriber{}, err
	}
	if !validLang(lang) {
		return Subscriber{}, &FieldError{"lang", KeyLangInvalid}
	}
	if _, ok := parseUUID(uuid); !ok {
		return Subscriber{}, ErrNotFound
	}
	var sub Subscriber
	err = s.db.GetContext(ctx, &sub, `
		UPDATE subscribers SET name = $2, lang = $3, updated_at = now()
		WHERE uuid = $1
		RETURNING `+subscriberColumns, uuid, name, lang)
	if errors.Is(err, sql.ErrNoRows) {
		return sub, ErrNotFound
	}
	if err != nil {
		return sub, fmt.Errorf("update: %w", err)
	}
	return sub, nil
}

// ReaderData is everything kept about one reader, as DataExport hands it out.
type ReaderData struct {
	Subscriber
	BounceReason       string              `json:"bounce_reason,omitempty"`
	Consents           []ConsentRecord     `json:"consents"`
	ConfirmationEmails []ConfirmationEmail `json:"confirmation_emails"`
}

// ConsentRecord is one stored consent.
type ConsentRecord struct {
	CreatedAt   time.Time `db:"created_at" json:"created_at"`
	IP          string    `db:"ip" json:"ip"`
	UserAgent   string    `db:"user_agent" json:"user_agent"`
	Source      string    `db:"source" json:"source"`
	TextVersion string    `db:"text_version" json:"text_version"`
}

// ConfirmationEmail is one confirmation email queued for the reader.
type ConfirmationEmail struct {
	QueuedAt  time.Time  `db:"created_at" json:"queued_at"`
	SentAt    *time.Time `db:"sent_at" json:"sent_at"`
	SkippedAt *time.Time `db:"skipped_at" json:"skipped_at,omitempty"`
}

// DataExport returns everything kept about the reader (a ReaderData), read in one snapshot.
func (s *Store) DataExport(ctx context.Context, uuid string) (any, error) {
	tx, err := s.db.BeginTxx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("data export: %w", err)
	}
	defer tx.Rollback()
	var d ReaderData
	if d.Subscriber, err = byUUID(ctx, tx, uuid); err != nil {
		return nil, err
	}
	if err := tx.GetContext(ctx, &d.BounceReason, `SELECT bounce_reason FROM subscribers WHERE id = $1`, d.ID); err != nil {
		return nil, fmt.Errorf("data export: %w", err)
	}
	d.Consents = []ConsentRecord{}
	if err := tx.SelectContext(ctx, &d.Consents, `
		SELECT created_at, ip, user_agent, source, text_version FROM consents
		WHERE subscriber_id = $1 ORDER BY id`, d.ID); err != nil {
		return nil, fmt.Errorf("data export: %w", err)
	}
	d.ConfirmationEmails = []ConfirmationEmail{}
	if err := tx.SelectContext(ctx, &d.ConfirmationEmails, `
		SELECT created_at, sent_at, skipped_at FROM outbox
		WHERE subscriber_id = $1 ORDER BY id`, d.ID); err != nil {
		return nil, fmt.Errorf("data export: %w", err)
	}
	return d, nil
}

// Erase deletes the reader (their consents and queued emails go with them) and keeps a keyed hash
// of the address as a suppression, so no import adds it back without new consent.
func (s *Store) Erase(ctx context.Context, uuid string) error {
	if _, ok := parseUUID(uuid); !ok {
		return ErrNotFound
	}
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("erase: %w", err)
	}
	defer tx.Rollback()
	var email string
	err = tx.GetContext(ctx, &email, `DELETE FROM subscribers WHERE uuid = $1 RETURNING email`, uuid)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("erase: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO suppressions (email_hash, reason) VALUES ($1, 'erased')
		ON CONFLICT (email_hash) DO NOTHING`, s.suppressionHash(email)); err != nil {
		return fmt.Errorf("erase: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("erase: %w", err)
	}
	return nil
}

// MarkBounced records a hard bounce for the reader with that id: a pending or confirmed reader
// becomes bounced; one who already left keeps their status, with the bounce noted.
func (s *Store) MarkBounced(ctx context.Context, id int64, reason string) error {
	res, err := s.db.ExecContext(ctx, `
		UPDATE subscribers SET
			status = CASE WHEN status IN ('pending', 'confirmed') THEN 'bounced' ELSE status END,
			bounced_at = now(), bounce_reason = $2, updated_at = now()
		WHERE id = $1`, id, clipBytes(strings.ToValidUTF8(reason, ""), 1000))
	if err != nil {
		return fmt.Errorf("mark bounced: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}
