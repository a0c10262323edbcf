package subscribers

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"newsletter/internal/textclean"

	"github.com/jmoiron/sqlx"
)

// Consent is the proof of an opt-in: where it came from and which consent text was shown. The
// user agent is stored reduced to the browser's family and major version (ReduceUserAgent).
type Consent struct {
	IP, UserAgent string
	Source        string // "form", "api", "import", "manage"
	TextVersion   string
	// Newsletters are the ids of the newsletters a subscribe request asks for (consent_newsletters);
	// none: the digest of the request's language, as the form and JSON asked before readers chose.
	Newsletters []int64
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

// Subscribe records a subscription request in one transaction (shared with concurrent
// subscriptions, see subscribeBatcher; it returns once that has committed). A new address becomes
// a pending reader; a known reader is not changed at all (status, name, language, suppression):
// the request waits for its owner's confirmation (Confirm). A confirmation email is queued where
// the consent rules allow one (subscribeBatcher.write). The outcome looks the same whether or not
// the address was known. Concurrent calls for one address serialise on the row (ON CONFLICT),
// never fail.
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
	return s.batch.subscribe(ctx, &subscription{email: email, name: name, lang: lang, consent: c})
}

// DB is the reader list's database, for the newsletters it offers (package newsletters).
func (s *Store) DB() *sqlx.DB { return s.db }

// Busy reports whether subscriptions are arriving faster than they can be committed one slot at a
// time (lately one had to wait): background work such as the confirmation mailer makes way then.
func (s *Store) Busy() bool { return s.batch.busy() }

// clipBytes is textclean.ClipBytes under the name events.go knows it by.
func clipBytes(s string, n int) string { return textclean.ClipBytes(s, n) }

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

// requestsSince is the moment after which a reader's unconfirmed request (one of the form or the
// API) is open, that is, a confirm link may still answer it: after they last left (so a link from
// before an unsubscription, bounce or complaint never brings them back) and after they confirmed
// (so a confirmed reader's new request, asking for more newsletters, is open, and the requests
// they made before confirming are not). It reads the subscribers row as s.
const requestsSince = `coalesce(greatest(s.unsubscribed_at, s.bounced_at, s.complained_at, s.confirmed_at), '-infinity')`

// openRequest finds the request a confirm link issued at issued answers: the reader's latest open
// request (requestsSince) made before the link. The reader must be pending, have left by
// unsubscribing or complaining, or be confirmed and asking for more.
const openRequest = `
	SELECT c.id, c.name, c.lang, s.id AS subscriber_id, s.email
	FROM consents c JOIN subscribers s ON s.id = c.subscriber_id
	WHERE s.uuid = $1 AND s.status IN ('pending', 'unsubscribed', 'complained', 'confirmed')
	  AND c.confirmed_at IS NULL AND c.source <> 'import' AND c.created_at <= $2
	  AND c.created_at > ` + requestsSince + `
	ORDER BY c.created_at DESC, c.id DESC
	LIMIT 1`

type request struct {
	ID           int64          `db:"id"`
	Name         sql.NullString `db:"name"`
	Lang         sql.NullString `db:"lang"`
	SubscriberID int64          `db:"subscriber_id"`
	Email        string         `db:"email"`
}

// CanConfirm reports whether a confirm link issued at issued would confirm the reader now (see
// Confirm): the page shows its button only then.
func (s *Store) CanConfirm(ctx context.Context, uuid string, issued time.Time) (bool, error) {
	if _, ok := parseUUID(uuid); !ok {
		return false, ErrNotFound
	}
	var r request
	err := s.db.GetContext(ctx, &r, openRequest, uuid, issued)
	if errors.Is(err, sql.ErrNoRows) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("confirm: %w", err)
	}
	return true, nil
}

// Confirm is the confirmed opt-in, the only way a reader joins the list, comes back to it or adds
// newsletters from the form: the request the link answers (openRequest) becomes consent and starts
// the newsletters it asked for, the reader is confirmed (one who had left comes back with the
// name, when it gave one, and the language it asked for; a pending one keeps what they signed up
// with, or set since on their manage page; a confirmed one keeps their name, language and
// subscribed_at), and a suppression of the address (an earlier erasure) is lifted. confirmed_at
// is the last confirmation, which closes every request made before it. A link whose request is
// answered already, for a confirmed reader, is harmless (returns the reader).
// ErrExpired when no open request answers the link: the reader left since, or never asked.
func (s *Store) Confirm(ctx context.Context, uuid string, issued time.Time) (Subscriber, error) {
	if _, ok := parseUUID(uuid); !ok {
		return Subscriber{}, ErrNotFound
	}
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return Subscriber{}, fmt.Errorf("confirm: %w", err)
	}
	defer tx.Rollback()
	var r request
	err = tx.GetContext(ctx, &r, openRequest+` FOR UPDATE OF s`, uuid, issued)
	if errors.Is(err, sql.ErrNoRows) {
		sub, err := byUUID(ctx, tx, uuid)
		if err != nil {
			return sub, err
		}
		if sub.Status == StatusConfirmed {
			return sub, nil
		}
		return sub, fmt.Errorf("confirm: %w", ErrExpired)
	}
	if err != nil {
		return Subscriber{}, fmt.Errorf("confirm: %w", err)
	}
	var sub Subscriber
	if err := tx.GetContext(ctx, &sub, `
		UPDATE subscribers SET status = 'confirmed', confirmed_at = now(), updated_at = now(),
			name = CASE WHEN status IN ('pending', 'confirmed') THEN name ELSE coalesce(nullif($2, ''), name) END,
			lang = CASE WHEN status IN ('pending', 'confirmed') THEN lang ELSE coalesce($3, lang) END,
			subscribed_at = CASE WHEN status IN ('pending', 'confirmed') THEN subscribed_at ELSE now() END
		WHERE id = $1
		RETURNING `+subscriberColumns, r.SubscriberID, r.Name, r.Lang); err != nil {
		return sub, fmt.Errorf("confirm: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `UPDATE consents SET confirmed_at = now() WHERE id = $1`, r.ID); err != nil {
		return sub, fmt.Errorf("confirm: %w", err)
	}
	// The newsletters the request asked for (today's form and JSON without a choice: the digest of
	// its language).
	if err := activateRequested(ctx, tx, sub.ID, sub.Lang, r.ID); err != nil {
		return sub, fmt.Errorf("confirm: %w", err)
	}
	if err := queueWelcomes(ctx, tx, sub.ID, r.ID); err != nil {
		return sub, fmt.Errorf("confirm: %w", err)
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM suppressions WHERE email_hash = $1`, s.suppressionHash(r.Email)); err != nil {
		return sub, fmt.Errorf("confirm: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return sub, fmt.Errorf("confirm: %w", err)
	}
	return sub, nil
}

// Unsubscribe stops all mail to the reader at once, and they leave each newsletter; repeating it
// is harmless and keeps the first unsubscribed_at. A bounced or complained reader keeps that
// status (they get no mail either).
func (s *Store) Unsubscribe(ctx context.Context, uuid string) (Subscriber, error) {
	if _, ok := parseUUID(uuid); !ok {
		return Subscriber{}, ErrNotFound
	}
	var sub Subscriber
	err := s.db.GetContext(ctx, &sub, `
		WITH gone AS (
			UPDATE subscribers SET status = 'unsubscribed', unsubscribed_at = now(), updated_at = now()
			WHERE uuid = $1 AND status IN ('pending', 'confirmed')
			RETURNING `+subscriberColumns+`
		), `+leaveGone+`
		SELECT `+subscriberColumns+` FROM gone`, uuid)
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
	return s.setLang(ctx, "update", `
		UPDATE subscribers SET name = $2, lang = $3, updated_at = now()
		WHERE uuid = $1
		RETURNING `+subscriberColumns, uuid, name, lang)
}

// leaveGone, a CTE after one named gone that returns the readers who just unsubscribed, marks
// their subscriptions left in the same statement.
const leaveGone = `left_all AS (
			UPDATE subscriptions sub SET state = 'left', left_at = now()
			FROM gone WHERE sub.subscriber_id = gone.id AND sub.state = 'active'
		)`

// setLang runs query, an UPDATE of one reader returning subscriberColumns that may change their
// language. Subscriptions stay as they are: since readers choose their newsletters (the manage
// page's toggles), a language is what pages and emails are written in, not what the reader gets.
func (s *Store) setLang(ctx context.Context, what, query string, args ...any) (Subscriber, error) {
	var sub Subscriber
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return sub, fmt.Errorf("%s: %w", what, err)
	}
	defer tx.Rollback()
	err = tx.GetContext(ctx, &sub, query, args...)
	if errors.Is(err, sql.ErrNoRows) {
		return sub, ErrNotFound
	}
	if err != nil {
		return sub, fmt.Errorf("%s: %w", what, err)
	}
	if err := tx.Commit(); err != nil {
		return sub, fmt.Errorf("%s: %w", what, err)
	}
	return sub, nil
}

// ReaderData is everything kept about one reader, as DataExport hands it out.
type ReaderData struct {
	Subscriber
	BounceReason       string              `json:"bounce_reason,omitempty"`
	Consents           []ConsentRecord     `json:"consents"`
	ConfirmationEmails []ConfirmationEmail `json:"confirmation_emails"`
	Subscriptions      []DataSubscription  `json:"subscriptions"`
}

// ConsentRecord is one stored request to subscribe, consent once confirmed; or the import that
// added the reader (source "import", ImportID set), its consent evidence.
type ConsentRecord struct {
	CreatedAt   time.Time  `db:"created_at" json:"created_at"`
	ConfirmedAt *time.Time `db:"confirmed_at" json:"confirmed_at"` // nil: a request nobody confirmed
	IP          string     `db:"ip" json:"ip"`
	UserAgent   string     `db:"user_agent" json:"user_agent"`
	Source      string     `db:"source" json:"source"`
	TextVersion string     `db:"text_version" json:"text_version"`
	// The import's own record, for a reader an import added: its row, who ran it and the SHA-256
	// of the file (hex). Consents rows of source "import" from before it have none of these.
	ImportID   int64  `db:"import_id" json:"-"`
	ImportedBy string `db:"imported_by" json:"imported_by,omitempty"`
	FileSHA256 string `db:"file_sha256" json:"file_sha256,omitempty"`
}

// importConsentSQL reads the import that added the reader, as a consent record: consent given
// when the import ran, as the publisher's own records had it.
const importConsentSQL = `
	SELECT i.at AS created_at, i.at AS confirmed_at, '' AS ip, '' AS user_agent, 'import' AS source, i.text_version,
		i.id AS import_id, i.actor AS imported_by, encode(i.file_sha256, 'hex') AS file_sha256,
		i.row_count AS import_rows, false AS open
	FROM subscribers s JOIN imports i ON i.id = s.import_id WHERE s.id = $1`

// importConsent returns the reader's import consent, if an import added them.
func importConsent(ctx context.Context, q sqlx.QueryerContext, subscriberID int64) (*ConsentEntry, error) {
	var e ConsentEntry
	err := sqlx.GetContext(ctx, q, &e, importConsentSQL, subscriberID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &e, nil
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
		SELECT created_at, confirmed_at, ip, user_agent, source, text_version FROM consents
		WHERE subscriber_id = $1 ORDER BY id`, d.ID); err != nil {
		return nil, fmt.Errorf("data export: %w", err)
	}
	imp, err := importConsent(ctx, tx, d.ID)
	if err != nil {
		return nil, fmt.Errorf("data export: %w", err)
	}
	if imp != nil {
		// In time order, as the rows are: before the first request made after the import.
		i := slices.IndexFunc(d.Consents, func(c ConsentRecord) bool { return c.CreatedAt.After(imp.CreatedAt) })
		if i < 0 {
			i = len(d.Consents)
		}
		d.Consents = slices.Insert(d.Consents, i, imp.ConsentRecord)
	}
	if d.Subscriptions, err = dataSubscriptions(ctx, tx, d.ID); err != nil {
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

// Erase deletes the reader (their consents and queued emails go with them; the imports row of an
// import that added them stays, as it holds nothing of theirs), takes their address
// out of the servers' texts kept after them (scrubTraces), and keeps a keyed hash of the address as
// a suppression, so no import adds it back without new consent.
func (s *Store) Erase(ctx context.Context, uuid string) error {
	if _, ok := parseUUID(uuid); !ok {
		return ErrNotFound
	}
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("erase: %w", err)
	}
	defer tx.Rollback()
	var gone struct {
		ID    int64  `db:"id"`
		Email string `db:"email"`
	}
	err = tx.GetContext(ctx, &gone, `DELETE FROM subscribers WHERE uuid = $1 RETURNING id, email`, uuid)
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	if err != nil {
		return fmt.Errorf("erase: %w", err)
	}
	email := gone.Email
	if err := scrubTraces(ctx, tx, gone.ID, email); err != nil {
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
