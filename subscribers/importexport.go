package subscribers

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"newsletter/internal/textclean"

	"github.com/jmoiron/sqlx"
)

// ImportOptions tunes Import.
type ImportOptions struct {
	// Languages are the accepted values of the lang column; the first is the language of a new
	// reader whose row has none. Empty means just "en".
	Languages []string
	// SkipInvalid imports the good rows of a file that has bad ones (which are still reported).
	SkipInvalid bool
	// TextVersion is recorded in the consent row of each new reader; default "import".
	TextVersion string
}

// RowError is one bad row of an import file. It names the line and column, never the address.
type RowError struct {
	Line   int    // line in the file where the row starts; the header is line 1
	Field  string // column at fault
	Reason string
}

func (e RowError) Error() string {
	if e.Field == "" {
		return fmt.Sprintf("line %d: %s", e.Line, e.Reason)
	}
	return fmt.Sprintf("line %d: %s: %s", e.Line, e.Field, e.Reason)
}

// ImportReport says what an import did.
type ImportReport struct {
	Rows       int        // data rows read
	Inserted   int        // new readers
	Updated    int        // readers already present whose data changed
	Unchanged  int        // readers already present, nothing to change
	Suppressed []int      // lines of erased addresses, skipped: they need new consent
	Invalid    []RowError // bad rows; none of the file was imported unless SkipInvalid
}

// importColumns are the columns Import understands; others (created_at of an export) are ignored.
var importColumns = []string{"email", "name", "lang", "status", "confirmed_at", "unsubscribed_at"}

// stagedRow is one valid row on its way to the staging table. Empty strings and nil times mean
// "not given": a present reader keeps that field.
type stagedRow struct {
	line           int
	email          string
	hash           []byte
	name, lang     string
	status         Status
	confirmedAt    *time.Time
	unsubscribedAt *time.Time
}

// Import reads CSV with a header row (email required; name, lang, status, confirmed_at,
// unsubscribed_at optional) and upserts its readers: each row is validated and streamed by COPY
// into a staging table, then one set-based INSERT ... ON CONFLICT writes them, all in one
// transaction. A file with any bad row imports nothing (the report lists the rows, the error wraps
// ErrInvalid) unless opts.SkipInvalid.
//
// For a reader already present, given fields replace stored ones and empty ones are kept. Status
// moves only in ways consent allows: pending may become confirmed; anyone may be marked as having
// left; a reader who left (unsubscribed, bounced, complained) is never brought back by an import.
// Erased addresses are skipped and reported. New readers get a consent row with source "import".
// A row without status is confirmed when it has confirmed_at, pending otherwise (no email is sent).
func (s *Store) Import(ctx context.Context, r io.Reader, opts ImportOptions) (ImportReport, error) {
	var rep ImportReport
	langs := opts.Languages
	if len(langs) == 0 {
		langs = []string{"en"}
	}
	if opts.TextVersion == "" {
		opts.TextVersion = "import"
	}
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return rep, fmt.Errorf("import: %w", err)
	}
	defer tx.Rollback()
	stage, err := newStaging(ctx, tx)
	if err != nil {
		return rep, fmt.Errorf("import: %w", err)
	}
	defer stage.close()
	// Rows go to the database while the rest of the file is still being read, so parsing and
	// loading overlap. Once a bad row shows the file will be refused, rows are only checked.
	staged := 0
	err = s.readImport(r, langs, &rep, func(row stagedRow) error {
		if len(rep.Invalid) > 0 && !opts.SkipInvalid {
			return nil
		}
		staged++
		return stage.add(ctx, row)
	})
	if err != nil {
		return rep, err
	}
	if len(rep.Invalid) > 0 && !opts.SkipInvalid {
		return rep, fmt.Errorf("import: %d bad rows, nothing imported: %w", len(rep.Invalid), ErrInvalid)
	}
	if staged == 0 {
		return rep, nil
	}
	if err := stage.finish(ctx); err != nil {
		return rep, fmt.Errorf("import: %w", err)
	}
	if err := upsertStaged(ctx, tx, langs[0], opts.TextVersion, &rep); err != nil {
		return rep, fmt.Errorf("import: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return rep, fmt.Errorf("import: %w", err)
	}
	rep.Unchanged = staged - len(rep.Suppressed) - rep.Inserted - rep.Updated
	return rep, nil
}

// readImport parses and validates the whole file, collecting bad rows in rep and handing each
// good one to add.
func (s *Store) readImport(r io.Reader, langs []string, rep *ImportReport, add func(stagedRow) error) error {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1 // a short or long row is a bad row, not the end of the file
	cr.ReuseRecord = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("import: empty file, want a header row: %w", ErrInvalid)
	}
	if err != nil {
		return fmt.Errorf("import: %v: %w", err, ErrInvalid)
	}
	col := map[string]int{}
	for i, h := range header {
		h = strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		if _, dup := col[h]; dup && slices.Contains(importColumns, h) {
			return fmt.Errorf("import: header: column %q twice: %w", h, ErrInvalid)
		}
		col[h] = i
	}
	if _, ok := col["email"]; !ok {
		return fmt.Errorf("import: header: no email column: %w", ErrInvalid)
	}
	width := len(header)
	field := func(rec []string, name string) string {
		if i, ok := col[name]; ok {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	seen := map[string]int{} // lower-cased address -> line
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			// A broken quote leaves the rest of the file unreadable: stop here, whatever SkipInvalid says.
			return fmt.Errorf("import: %v: %w", err, ErrInvalid)
		}
		line, _ := cr.FieldPos(0)
		rep.Rows++
		bad := func(field, reason string) { rep.Invalid = append(rep.Invalid, RowError{line, field, reason}) }
		if len(rec) != width {
			bad("", fmt.Sprintf("%d fields, the header has %d", len(rec), width))
			continue
		}
		row := stagedRow{line: line}
		if row.email, err = NormalizeEmail(rec[col["email"]]); err != nil {
			bad("email", fieldReason(err))
			continue
		}
		key := strings.ToLower(row.email)
		if first, dup := seen[key]; dup {
			bad("email", fmt.Sprintf("duplicate of line %d", first))
			continue
		}
		seen[key] = line
		if row.name, err = ValidateName(rowValue(rec, col, "name")); err != nil {
			bad("name", fieldReason(err))
			continue
		}
		if row.lang = strings.ToLower(field(rec, "lang")); row.lang != "" && !slices.Contains(langs, row.lang) {
			bad("lang", fmt.Sprintf("unknown language %q (want one of %s)", textclean.ClipBytes(row.lang, 20), strings.Join(langs, ", ")))
			continue
		}
		if row.confirmedAt, err = parseImportTime(field(rec, "confirmed_at")); err != nil {
			bad("confirmed_at", err.Error())
			continue
		}
		if row.unsubscribedAt, err = parseImportTime(field(rec, "unsubscribed_at")); err != nil {
			bad("unsubscribed_at", err.Error())
			continue
		}
		row.status = Status(strings.ToLower(field(rec, "status")))
		switch {
		case row.status == "" && row.confirmedAt != nil:
			row.status = StatusConfirmed
		case row.status == "":
		case !row.status.Valid():
			bad("status", fmt.Sprintf("unknown status %q", textclean.ClipBytes(string(row.status), 20)))
			continue
		case row.status == StatusConfirmed && row.confirmedAt == nil:
			bad("confirmed_at", "status confirmed needs confirmed_at")
			continue
		}
		row.hash = s.suppressionHash(row.email)
		if err := add(row); err != nil {
			return fmt.Errorf("import: %w", err)
		}
	}
	return nil
}

// rowValue is a raw column value (ValidateName trims it itself).
func rowValue(rec []string, col map[string]int, name string) string {
	if i, ok := col[name]; ok {
		return rec[i]
	}
	return ""
}

func fieldReason(err error) string {
	var fe *FieldError
	if !errors.As(err, &fe) {
		return "invalid"
	}
	switch fe.Key {
	case KeyControl:
		return "control character (CR, LF or NUL)"
	case KeyEmailRequired:
		return "empty"
	case KeyEmailTooLong:
		return fmt.Sprintf("longer than %d characters", MaxEmailLen)
	case KeyNameTooLong:
		return fmt.Sprintf("longer than %d characters", MaxNameLen)
	case KeyNameInvalid:
		return "invalid characters"
	}
	return "invalid address"
}

// parseImportTime reads RFC 3339 (what export writes) or a bare date (midnight UTC).
func parseImportTime(s string) (*time.Time, error) {
	if s == "" {
		return nil, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02 15:04:05Z07:00", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			if t.Year() < 1900 || t.After(time.Now().Add(24*time.Hour)) {
				return nil, errors.New("timestamp out of range")
			}
			return &t, nil
		}
	}
	return nil, errors.New("bad timestamp (want RFC 3339, e.g. 2024-05-01T12:00:00Z)")
}

// staging is the temporary table an import is copied into, dropped at commit.
type staging struct {
	tx   *sqlx.Tx
	stmt *sql.Stmt
	uuid uuidSource
}

func newStaging(ctx context.Context, tx *sqlx.Tx) (*staging, error) {
	if _, err := tx.ExecContext(ctx, `
		CREATE TEMP TABLE import_staging (
			line            int NOT NULL,
			uuid            uuid NOT NULL,
			email           text NOT NULL,
			email_hash      bytea NOT NULL,
			name            text,
			lang            text,
			status          text,
			confirmed_at    timestamptz,
			unsubscribed_at timestamptz
		) ON COMMIT DROP`); err != nil {
		return nil, err
	}
	stmt, err := tx.PrepareContext(ctx, `COPY import_staging (line, uuid, email, email_hash, name, lang, status, confirmed_at, unsubscribed_at) FROM STDIN`)
	if err != nil {
		return nil, err
	}
	return &staging{tx: tx, stmt: stmt}, nil
}

// add copies one row. Its uuid, used only if the address is new, is made here rather than by
// gen_random_uuid(), which costs more per row than the rest of the copy.
func (st *staging) add(ctx context.Context, r stagedRow) error {
	id, err := st.uuid.next()
	if err != nil {
		return err
	}
	_, err = st.stmt.ExecContext(ctx, r.line, id, r.email, r.hash, nullString(r.name), nullString(r.lang),
		nullString(string(r.status)), nullTime(r.confirmedAt), nullTime(r.unsubscribedAt))
	return err
}

// finish ends the COPY and gives the planner statistics (temporary tables are never analysed
// automatically, and without them it guesses badly).
func (st *staging) finish(ctx context.Context) error {
	if _, err := st.stmt.ExecContext(ctx); err != nil {
		return err
	}
	if err := st.stmt.Close(); err != nil {
		return err
	}
	st.stmt = nil
	_, err := st.tx.ExecContext(ctx, `ANALYZE import_staging`)
	return err
}

func (st *staging) close() {
	if st.stmt != nil {
		st.stmt.Close()
	}
}

// upsertStaged writes the staged rows to subscribers and consents.
func upsertStaged(ctx context.Context, tx *sqlx.Tx, defaultLang, textVersion string, rep *ImportReport) error {
	if err := tx.SelectContext(ctx, &rep.Suppressed, `
		SELECT st.line FROM import_staging st JOIN suppressions p ON p.email_hash = st.email_hash
		ORDER BY st.line`); err != nil {
		return err
	}
	// One statement: the staging rows joined with the readers already present decide every field
	// (given values win, empty ones keep what is stored, status moves only as consent allows),
	// then one upsert writes them. xmax = 0 tells a fresh insert from an update.
	var counts struct {
		Inserted int `db:"inserted"`
		Updated  int `db:"updated"`
	}
	err := tx.GetContext(ctx, &counts, `
		WITH src AS (
			SELECT st.uuid, st.email, st.name AS fname, st.lang AS flang, st.status AS fstatus,
			       st.confirmed_at AS fconfirmed, st.unsubscribed_at AS funsubscribed,
			       s.status AS cur, s.name AS cname, s.lang AS clang, s.subscribed_at AS csubscribed,
			       s.confirmed_at AS cconfirmed, s.unsubscribed_at AS cunsubscribed,
			       s.bounced_at AS cbounced, s.complained_at AS ccomplained
			FROM import_staging st
			LEFT JOIN subscribers s ON lower(s.email) = lower(st.email)
			WHERE NOT EXISTS (SELECT 1 FROM suppressions p WHERE p.email_hash = st.email_hash)
		), target AS (
			SELECT src.*, CASE
				WHEN cur IS NULL THEN COALESCE(fstatus, 'pending')
				WHEN cur IN ('unsubscribed', 'bounced', 'complained') THEN cur
				WHEN fstatus IN ('unsubscribed', 'bounced', 'complained', 'confirmed') THEN fstatus
				ELSE cur
			END AS nstatus
			FROM src
		), up AS (
			INSERT INTO subscribers AS s (uuid, email, name, lang, status, subscribed_at,
				confirmed_at, unsubscribed_at, bounced_at, complained_at)
			SELECT uuid, email,
				COALESCE(fname, cname, ''),
				COALESCE(flang, clang, $1),
				nstatus,
				COALESCE(csubscribed, LEAST(fconfirmed, now())),
				CASE WHEN cur IS NULL THEN fconfirmed
				     WHEN nstatus = 'confirmed' AND cur <> 'confirmed' THEN fconfirmed
				     ELSE cconfirmed END,
				CASE WHEN nstatus = 'unsubscribed' AND cur IS DISTINCT FROM 'unsubscribed' THEN COALESCE(funsubscribed, now())
				     ELSE cunsubscribed END,
				CASE WHEN nstatus = 'bounced' AND cur IS DISTINCT FROM 'bounced' THEN now() ELSE cbounced END,
				CASE WHEN nstatus = 'complained' AND cur IS DISTINCT FROM 'complained' THEN now() ELSE ccomplained END
			FROM target
			ON CONFLICT (lower(email)) DO UPDATE SET
				name = EXCLUDED.name, lang = EXCLUDED.lang, status = EXCLUDED.status,
				confirmed_at = EXCLUDED.confirmed_at, unsubscribed_at = EXCLUDED.unsubscribed_at,
				bounced_at = EXCLUDED.bounced_at, complained_at = EXCLUDED.complained_at,
				updated_at = now()
			WHERE (s.name, s.lang, s.status, s.confirmed_at, s.unsubscribed_at, s.bounced_at, s.complained_at)
				IS DISTINCT FROM (EXCLUDED.name, EXCLUDED.lang, EXCLUDED.status, EXCLUDED.confirmed_at,
				                  EXCLUDED.unsubscribed_at, EXCLUDED.bounced_at, EXCLUDED.complained_at)
			RETURNING s.id, (s.xmax = 0) AS inserted
		), consent AS (
			-- The publisher's own record of consent: it stands as given, no request waiting.
			INSERT INTO consents (subscriber_id, source, text_version, confirmed_at)
			SELECT id, 'import', $2, now() FROM up WHERE inserted
		)
		SELECT count(*) FILTER (WHERE inserted) AS inserted, count(*) FILTER (WHERE NOT inserted) AS updated
		FROM up`, defaultLang, textVersion)
	if err != nil {
		return err
	}
	rep.Inserted, rep.Updated = counts.Inserted, counts.Updated
	return nil
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullTime(t *time.Time) any {
	if t == nil {
		return nil
	}
	return *t
}

// exportHeader is the first line of ExportCSV.
var exportHeader = []string{"email", "name", "lang", "status", "created_at", "confirmed_at", "unsubscribed_at"}

// ExportCSV writes every reader, oldest first, as CSV with a header row; times are RFC 3339 in UTC,
// empty when unset. It streams: memory does not grow with the list.
func (s *Store) ExportCSV(ctx context.Context, w io.Writer) error {
	rows, err := s.db.QueryxContext(ctx, `
		SELECT email, name, lang, status, created_at, confirmed_at, unsubscribed_at
		FROM subscribers ORDER BY id`)
	if err != nil {
		return fmt.Errorf("export: %w", err)
	}
	defer rows.Close()
	cw := csv.NewWriter(w)
	if err := cw.Write(exportHeader); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	rec := make([]string, len(exportHeader))
	for rows.Next() {
		var (
			email, name, lang, status string
			created                   time.Time
			confirmed, unsubscribed   sql.NullTime
		)
		if err := rows.Scan(&email, &name, &lang, &status, &created, &confirmed, &unsubscribed); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		rec[0], rec[1], rec[2], rec[3] = email, name, lang, status
		rec[4], rec[5], rec[6] = formatTime(created, true), formatTime(confirmed.Time, confirmed.Valid), formatTime(unsubscribed.Time, unsubscribed.Valid)
		if err := cw.Write(rec); err != nil {
			return fmt.Errorf("export: %w", err)
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

func formatTime(t time.Time, valid bool) string {
	if !valid {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// uuidSource makes random (version 4) UUIDs from crypto/rand, reading the randomness in blocks.
type uuidSource struct {
	buf []byte
}

func (u *uuidSource) next() (string, error) {
	if len(u.buf) < 16 {
		u.buf = make([]byte, 16*1024)
		if _, err := rand.Read(u.buf); err != nil {
			return "", err
		}
	}
	var b [16]byte
	copy(b[:], u.buf[:16])
	u.buf = u.buf[16:]
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return formatUUID(b[:]), nil
}
