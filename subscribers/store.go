package subscribers

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/jmoiron/sqlx"
)

// Consent is the proof of an opt-in: where it came from and which consent text was shown.
type Consent struct {
	IP, UserAgent string
	Source        string // "form", "api", "import"
	TextVersion   string
}

// Store reads and writes readers, consents, suppressions and the confirmation outbox.
type Store struct {
	db     *sqlx.DB
	secret []byte
}

// NewStore returns a Store over db; secret keys the suppression hash of erased addresses.
func NewStore(db *sqlx.DB, secret []byte) *Store {
	return &Store{db: db, secret: append([]byte(nil), secret...)}
}

// Subscribe records an opt-in: reader, consent and a queued confirmation email, in one transaction.
func (s *Store) Subscribe(ctx context.Context, email, name, lang string, c Consent) error {
	return errors.New("todo")
}

// ByUUID returns the reader with that public handle.
func (s *Store) ByUUID(ctx context.Context, uuid string) (Subscriber, error) {
	return Subscriber{}, errors.New("todo")
}

// Confirm completes the opt-in begun at or before issued.
func (s *Store) Confirm(ctx context.Context, uuid string, issued time.Time) (Subscriber, error) {
	return Subscriber{}, errors.New("todo")
}

// Unsubscribe stops all mail to the reader; repeating it is harmless.
func (s *Store) Unsubscribe(ctx context.Context, uuid string) (Subscriber, error) {
	return Subscriber{}, errors.New("todo")
}

// Update changes the reader's name and language.
func (s *Store) Update(ctx context.Context, uuid, name, lang string) (Subscriber, error) {
	return Subscriber{}, errors.New("todo")
}

// DataExport returns everything kept about the reader as a JSON-able value.
func (s *Store) DataExport(ctx context.Context, uuid string) (any, error) {
	return nil, errors.New("todo")
}

// Erase deletes the reader's personal data and keeps a keyed hash of the address as a suppression.
func (s *Store) Erase(ctx context.Context, uuid string) error {
	return errors.New("todo")
}

// MarkBounced records a hard bounce for the reader with that id.
func (s *Store) MarkBounced(ctx context.Context, id int64, reason string) error {
	return errors.New("todo")
}

// ImportOptions tunes Import.
type ImportOptions struct {
	Languages   []string // allowed values of the lang column; the first is the default
	SkipInvalid bool     // import the good rows of a file that has bad ones
	TextVersion string   // consent text version recorded for new readers
}

// RowError is one bad row of an import file.
type RowError struct {
	Line   int    // line number in the file, the header being line 1
	Field  string // column at fault
	Reason string
}

func (e RowError) Error() string { return "" }

// ImportReport says what an import did.
type ImportReport struct {
	Rows       int        // data rows read
	Inserted   int        // new readers
	Updated    int        // readers already present, updated
	Suppressed []int      // line numbers of erased addresses, not imported
	Invalid    []RowError // bad rows (imported none of the file unless SkipInvalid)
}

// Import reads CSV from r and upserts its readers.
func (s *Store) Import(ctx context.Context, r io.Reader, opts ImportOptions) (ImportReport, error) {
	return ImportReport{}, errors.New("todo")
}

// ExportCSV writes every reader as CSV with a header row.
func (s *Store) ExportCSV(ctx context.Context, w io.Writer) error {
	return errors.New("todo")
}
