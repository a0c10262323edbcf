package subscribers

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"database/sql/driver"
	"encoding/csv"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"newsletter/internal/textclean"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// ImportOptions tunes Import.
type ImportOptions struct {
	// Languages are the accepted values of the lang column; the first is the language of a new
	// reader whose row has none. Empty means just "en".
	Languages []string
	// SkipInvalid imports the good rows of a file that has bad ones (which are still reported).
	SkipInvalid bool
	// TextVersion is the consent text the file's readers agreed to, recorded with the import;
	// default "import".
	TextVersion string
	// Actor names who ran the import, recorded with it: "cli" (the default) for the command line,
	// an editor's address for an editor.
	Actor string
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
	ImportID   int64      // the imports row recording this import; 0 when nothing was written
	FileSHA256 []byte     // the file's SHA-256, as the imports row keeps it
	Rows       int        // data rows read
	Inserted   int        // new readers
	Updated    int        // readers already present whose data changed
	Unchanged  int        // readers already present, nothing to change
	Suppressed []int      // lines of erased addresses, skipped: they need new consent
	Invalid    []RowError // bad rows; none of the file was imported unless SkipInvalid
}

// importColumns are the columns Import understands; others (created_at of an export) are ignored.
var importColumns = []string{"email", "name", "lang", "status", "confirmed_at", "unsubscribed_at", "newsletters"}

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
	// newsletters are the ids of the newsletters column's slugs; nil for an empty cell or a file
	// without the column.
	newsletters []int64
}

// Import reads CSV with a header row (email required; name, lang, status, confirmed_at,
// unsubscribed_at, newsletters optional) and upserts its readers: each row is validated and streamed by COPY
// into a staging table, then set-based statements write them, all in one transaction. A file with
// any bad row imports nothing (the report lists the rows, the error wraps ErrInvalid) unless
// opts.SkipInvalid.
//
// For a reader already present, given fields replace stored ones and empty ones are kept. Status
// moves only in ways consent allows: pending may become confirmed; anyone may be marked as having
// left; a reader who left (unsubscribed, bounced, complained) is never brought back by an import.
// Erased addresses are skipped and reported. A row without status is confirmed when it has
// confirmed_at, pending otherwise (no email is sent).
//
// The consent evidence of the readers an import adds is the import itself: one imports row (who
// ran it, when, the file's SHA-256, the consent text, the rows), which each of them names
// (import_id). Readers already present keep the evidence they had.
//
// What readers get: without a newsletters column, a reader the import adds gets the digest of
// their language (as always). With one (slugs separated by spaces, as ExportCSV writes them; an
// unknown slug is a bad row), a reader it adds gets exactly the newsletters listed (none for an
// empty cell), and a reader already present whose cell is not empty gets exactly those from now
// on (the others left; one who left the list is not brought back), resting on the import.
func (s *Store) Import(ctx context.Context, r io.Reader, opts ImportOptions) (ImportReport, error) {
	var rep ImportReport
	langs := opts.Languages
	if len(langs) == 0 {
		langs = []string{"en"}
	}
	if opts.TextVersion == "" {
		opts.TextVersion = "import"
	}
	if opts.Actor == "" {
		opts.Actor = "cli"
	}
	// The file's hash is taken as it is read (the CSV reader reads to the end), so it is of the
	// bytes imported.
	file := sha256.New()
	r = io.TeeReader(r, file)
	// One connection of our own: the rows are streamed through its driver (copyRows), inside the
	// transaction begun on it.
	conn, err := s.db.Connx(ctx)
	if err != nil {
		return rep, fmt.Errorf("import: %w", err)
	}
	defer conn.Close()
	tx, err := conn.BeginTxx(ctx, nil)
	if err != nil {
		return rep, fmt.Errorf("import: %w", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, createStaging); err != nil {
		return rep, fmt.Errorf("import: %w", err)
	}
	// Rows go to the database while the rest of the file is still being read, so parsing and
	// loading overlap. Once a bad row shows the file will be refused, rows are only checked.
	slugs, err := newsletterSlugs(ctx, tx)
	if err != nil {
		return rep, fmt.Errorf("import: %w", err)
	}
	staged := 0
	var withNewsletters bool
	err = copyRows(ctx, conn, copyStaging, func(w *stagingWriter) error {
		return s.readImport(r, langs, slugs, &withNewsletters, &rep, func(row stagedRow) error {
			if len(rep.Invalid) > 0 && !opts.SkipInvalid {
				return nil
			}
			staged++
			return w.add(row)
		})
	})
	if err != nil {
		if errors.Is(err, ErrInvalid) {
			return rep, err
		}
		return rep, fmt.Errorf("import: %w", err)
	}
	if len(rep.Invalid) > 0 && !opts.SkipInvalid {
		return rep, fmt.Errorf("import: %d bad rows, nothing imported: %w", len(rep.Invalid), ErrInvalid)
	}
	if staged == 0 {
		return rep, nil
	}
	sum := file.Sum(nil)
	var importID int64
	if err := tx.GetContext(ctx, &importID, `
		INSERT INTO imports (actor, file_sha256, text_version, row_count) VALUES ($1, $2, $3, $4) RETURNING id`,
		textclean.ClipBytes(opts.Actor, 200), sum, textclean.ClipBytes(opts.TextVersion, 64), rep.Rows); err != nil {
		return rep, fmt.Errorf("import: %w", err)
	}
	if err := writeStaged(ctx, tx, langs[0], importID, withNewsletters, &rep); err != nil {
		return rep, fmt.Errorf("import: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return rep, fmt.Errorf("import: %w", err)
	}
	rep.ImportID, rep.FileSHA256 = importID, sum
	rep.Unchanged = staged - len(rep.Suppressed) - rep.Inserted - rep.Updated
	return rep, nil
}

// readImport parses and validates the whole file, collecting bad rows in rep and handing each
// good one to add. slugs are the newsletters by slug; withNewsletters is set when the file has a
// newsletters column.
func (s *Store) readImport(r io.Reader, langs []string, slugs map[string]int64, withNewsletters *bool, rep *ImportReport, add func(stagedRow) error) error {
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
	_, *withNewsletters = col["newsletters"]
	width := len(header)
	field := func(rec []string, name string) string {
		if i, ok := col[name]; ok {
			return strings.TrimSpace(rec[i])
		}
		return ""
	}
	seen := map[string]int{} // lower-cased address -> line
	hash := s.suppressionHasher()
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
		key := strings.ToLower(row.email) // what suppressionHash hashes, too
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
		if *withNewsletters {
			var unknown string
			if row.newsletters, unknown = parseNewsletters(field(rec, "newsletters"), slugs); unknown != "" {
				bad("newsletters", fmt.Sprintf("unknown newsletter %q", textclean.ClipBytes(unknown, 64)))
				continue
			}
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
		row.hash = hash(key)
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

// suppressionHasher returns suppressionHash for many addresses in a row, already lower-cased,
// with one HMAC state: setting up the key for each address costs more than hashing it.
func (s *Store) suppressionHasher() func(lower string) []byte {
	mac := hmac.New(sha256.New, s.secret)
	return func(lower string) []byte {
		mac.Reset()
		io.WriteString(mac, lower)
		return mac.Sum(nil)
	}
}

// createStaging makes the temporary table an import is copied into, dropped at commit. The
// planner finds its size from its pages; it needs no ANALYZE (which costs as much as a tenth of
// the import) for the hash joins below.
const createStaging = `
	CREATE TEMP TABLE import_staging (
		line            int NOT NULL,
		uuid            uuid NOT NULL,
		email           text NOT NULL,
		email_hash      bytea NOT NULL,
		name            text,
		lang            text,
		status          text,
		confirmed_at    timestamptz,
		unsubscribed_at timestamptz,
		newsletters     bigint[]
	) ON COMMIT DROP`

const copyStaging = `COPY import_staging (line, uuid, email, email_hash, name, lang, status, confirmed_at, unsubscribed_at, newsletters) FROM STDIN`

// copyDataStmt is lib/pq's COPY statement, which takes lines of COPY text as they are.
type copyDataStmt interface {
	driver.Stmt
	CopyData(ctx context.Context, lines string) (driver.Result, error)
}

// copyRows runs query (a COPY ... FROM STDIN) on conn, inside the transaction open on it, and lets
// fill write its rows. The rows are written as COPY text by stagingWriter and handed to the driver
// 64 KiB at a time: through database/sql, one Exec a row, the driver and database/sql cost more
// than parsing the row.
func copyRows(ctx context.Context, conn *sqlx.Conn, query string, fill func(*stagingWriter) error) error {
	return conn.Raw(func(dc any) error {
		pc, ok := dc.(driver.ConnPrepareContext)
		if !ok {
			return errors.New("the database driver cannot COPY")
		}
		st, err := pc.PrepareContext(ctx, query)
		if err != nil {
			return err
		}
		stmt, ok := st.(copyDataStmt)
		if !ok {
			st.Close()
			return errors.New("the database driver cannot COPY")
		}
		w := &stagingWriter{ctx: ctx, stmt: stmt, buf: make([]byte, 0, copyChunk+4096)}
		err = fill(w)
		if err == nil {
			err = w.flush()
		}
		// Close ends the COPY and reports what the server made of it; after an error the
		// transaction is rolled back anyway.
		if cerr := stmt.Close(); err == nil {
			err = cerr
		}
		return err
	})
}

const copyChunk = 64 << 10

// stagingWriter formats staged rows as COPY text (tab-separated, \N for NULL).
type stagingWriter struct {
	ctx  context.Context
	stmt copyDataStmt
	buf  []byte
	uuid uuidSource
}

// add writes one row. Its uuid, used only if the address is new, is made here rather than by
// gen_random_uuid(), which costs more per row than the rest of the copy.
func (w *stagingWriter) add(r stagedRow) error {
	id, err := w.uuid.next()
	if err != nil {
		return err
	}
	b := strconv.AppendInt(w.buf, int64(r.line), 10)
	b = append(b, '\t')
	b = appendUUID(b, id)
	b = append(b, '\t')
	b = appendCopyText(b, r.email)
	b = append(b, "\t\\\\x"...) // bytea in hex: \x..., its backslash escaped for COPY
	b = hex.AppendEncode(b, r.hash)
	for _, v := range [...]string{r.name, r.lang, string(r.status)} {
		b = append(b, '\t')
		if v == "" {
			b = append(b, `\N`...)
		} else {
			b = appendCopyText(b, v)
		}
	}
	for _, t := range [...]*time.Time{r.confirmedAt, r.unsubscribedAt} {
		b = append(b, '\t')
		if t == nil {
			b = append(b, `\N`...)
		} else {
			b = t.AppendFormat(b, time.RFC3339Nano)
		}
	}
	b = append(b, '\t')
	if r.newsletters == nil {
		b = append(b, `\N`...)
	} else {
		b = append(b, '{')
		for i, id := range r.newsletters {
			if i > 0 {
				b = append(b, ',')
			}
			b = strconv.AppendInt(b, id, 10)
		}
		b = append(b, '}')
	}
	w.buf = append(b, '\n')
	if len(w.buf) >= copyChunk {
		return w.flush()
	}
	return nil
}

func (w *stagingWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	// CopyData ends what it is given with a newline of its own.
	_, err := w.stmt.CopyData(w.ctx, string(w.buf[:len(w.buf)-1]))
	w.buf = w.buf[:0]
	return err
}

// appendCopyText escapes s for COPY's text format.
func appendCopyText(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			b = append(b, '\\', '\\')
		case '\t':
			b = append(b, '\\', 't')
		case '\n':
			b = append(b, '\\', 'n')
		case '\r':
			b = append(b, '\\', 'r')
		default:
			b = append(b, c)
		}
	}
	return b
}

// writeStaged writes the staged rows to subscribers, the new ones naming the import.
func writeStaged(ctx context.Context, tx *sqlx.Tx, defaultLang string, importID int64, withNewsletters bool, rep *ImportReport) error {
	if err := tx.SelectContext(ctx, &rep.Suppressed, `
		SELECT st.line FROM import_staging st JOIN suppressions p ON p.email_hash = st.email_hash
		ORDER BY st.line`); err != nil {
		return err
	}
	// A reader added by someone else since the statement began makes the insert fail on the
	// address; the statement runs again from the savepoint, and then updates that reader.
	if _, err := tx.ExecContext(ctx, `SAVEPOINT import_write`); err != nil {
		return err
	}
	for attempt := 1; ; attempt++ {
		var counts struct {
			Inserted     int           `db:"inserted"`
			Updated      int           `db:"updated"`
			UpdatedIDs   pq.Int64Array `db:"updated_ids"`
			LeftIDs      pq.Int64Array `db:"left_ids"`
			ConfirmedIDs pq.Int64Array `db:"confirmed_ids"`
		}
		write := importWrite
		if withNewsletters {
			write = importWriteChosen
		}
		err := tx.GetContext(ctx, &counts, write, defaultLang, importID)
		rep.Inserted, rep.Updated = counts.Inserted, counts.Updated
		if err == nil {
			if err := updateSubscriptions(ctx, tx, counts.UpdatedIDs, counts.LeftIDs, counts.ConfirmedIDs, importID); err != nil {
				return err
			}
			if withNewsletters {
				return setChosen(ctx, tx, importID)
			}
			return nil
		}
		var pqErr *pq.Error
		if attempt == 3 || !errors.As(err, &pqErr) || pqErr.Code != "23505" {
			return err
		}
		if _, err := tx.ExecContext(ctx, `ROLLBACK TO SAVEPOINT import_write`); err != nil {
			return err
		}
	}
}

// updateSubscriptions brings the subscriptions of the readers an import updated in step with them:
// a new language moves the digest (followLang), an unsubscription leaves everything, and a pending
// reader the import confirmed gets their language's digest, resting on the import.
func updateSubscriptions(ctx context.Context, tx *sqlx.Tx, updated, left, confirmed []int64, importID int64) error {
	if err := followLang(ctx, tx, updated); err != nil {
		return err
	}
	if err := leaveAll(ctx, tx, left); err != nil {
		return err
	}
	if len(confirmed) == 0 {
		return nil
	}
	// A reader who had the digest already keeps it as it was (and the consent it rests on).
	if _, err := tx.ExecContext(ctx, `
		INSERT INTO subscriptions (subscriber_id, newsletter_id, import_id)
		SELECT s.id, n.id, $2 FROM subscribers s JOIN newsletters n ON n.kind = 'digest' AND n.lang = s.lang
		WHERE s.id = ANY($1::bigint[])
		ON CONFLICT (subscriber_id, newsletter_id) DO NOTHING`, pq.Array(confirmed), importID); err != nil {
		return fmt.Errorf("subscriptions: %w", err)
	}
	return nil
}

// importWrite is one statement, so both parts see the same readers: a plain INSERT of the rows
// whose address is new (ON CONFLICT's speculative insertion costs a third more), each naming the
// import, its consent evidence, and an UPDATE of the readers already present. The UPDATE decides from the row it
// locks (s), never from an earlier read, so a reader who leaves meanwhile stays gone. Given
// fields win, empty ones keep what is stored, and status moves only as consent allows; a reader
// with nothing to change is not written.
const importWrite = `
	WITH ins AS (
		INSERT INTO subscribers (uuid, email, name, lang, status, subscribed_at,
			confirmed_at, unsubscribed_at, bounced_at, complained_at, import_id)
		SELECT uuid, email, COALESCE(name, ''), COALESCE(lang, $1), COALESCE(status, 'pending'),
			LEAST(confirmed_at, now()), confirmed_at,
			CASE WHEN status = 'unsubscribed' THEN COALESCE(unsubscribed_at, now()) END,
			CASE WHEN status = 'bounced' THEN now() END,
			CASE WHEN status = 'complained' THEN now() END,
			$2::bigint
		FROM import_staging st
		WHERE NOT EXISTS (SELECT 1 FROM suppressions p WHERE p.email_hash = st.email_hash)
		  AND NOT EXISTS (SELECT 1 FROM subscribers s WHERE lower(s.email) = lower(st.email))
		RETURNING id, lang, status, unsubscribed_at
	), ins_sub AS (
		-- Each reader it adds gets the digest of their language, resting on the import (left
		-- for one it adds as unsubscribed).
		INSERT INTO subscriptions (subscriber_id, newsletter_id, state, left_at, import_id)
		SELECT ins.id, n.id, CASE WHEN ins.status = 'unsubscribed' THEN 'left' ELSE 'active' END,
			CASE WHEN ins.status = 'unsubscribed' THEN ins.unsubscribed_at END, $2::bigint
		FROM ins JOIN newsletters n ON n.kind = 'digest' AND n.lang = ins.lang
	), upd AS (
		UPDATE subscribers s SET
			name = COALESCE(st.name, s.name),
			lang = COALESCE(st.lang, s.lang),
			status = CASE WHEN s.status IN ('pending', 'confirmed') AND st.status IN ('confirmed', 'unsubscribed', 'bounced', 'complained')
				THEN st.status ELSE s.status END,
			confirmed_at = CASE WHEN s.status = 'pending' AND st.status = 'confirmed' THEN st.confirmed_at ELSE s.confirmed_at END,
			unsubscribed_at = CASE WHEN s.status IN ('pending', 'confirmed') AND st.status = 'unsubscribed'
				THEN COALESCE(st.unsubscribed_at, now()) ELSE s.unsubscribed_at END,
			bounced_at = CASE WHEN s.status IN ('pending', 'confirmed') AND st.status = 'bounced' THEN now() ELSE s.bounced_at END,
			complained_at = CASE WHEN s.status IN ('pending', 'confirmed') AND st.status = 'complained' THEN now() ELSE s.complained_at END,
			updated_at = now()
		FROM import_staging st
		WHERE lower(s.email) = lower(st.email)
		  AND NOT EXISTS (SELECT 1 FROM suppressions p WHERE p.email_hash = st.email_hash)
		  AND (st.name <> s.name OR st.lang <> s.lang
		       OR s.status IN ('pending', 'confirmed') AND st.status IN ('confirmed', 'unsubscribed', 'bounced', 'complained') AND st.status <> s.status)
		RETURNING s.id, s.status
	)
	SELECT (SELECT count(*) FROM ins) AS inserted, (SELECT count(*) FROM upd) AS updated,
		(SELECT coalesce(array_agg(id), '{}') FROM upd) AS updated_ids,
		(SELECT coalesce(array_agg(id), '{}') FROM upd WHERE status = 'unsubscribed') AS left_ids,
		(SELECT coalesce(array_agg(id), '{}') FROM upd WHERE status = 'confirmed') AS confirmed_ids`

// exportHeader is the first line of ExportCSV.
var exportHeader = []string{"email", "name", "lang", "status", "created_at", "confirmed_at", "unsubscribed_at", "newsletters"}

// ExportCSV writes every reader, oldest first, as CSV with a header row; times are RFC 3339 in UTC,
// empty when unset; newsletters are the slugs of the reader's active subscriptions, by slug,
// separated by spaces (what Import reads back). It streams: memory does not grow with the list.
func (s *Store) ExportCSV(ctx context.Context, w io.Writer) error {
	rows, err := s.db.QueryxContext(ctx, `
		SELECT s.email, s.name, s.lang, s.status, s.created_at, s.confirmed_at, s.unsubscribed_at,
			coalesce((SELECT string_agg(n.slug, ' ' ORDER BY n.slug) FROM subscriptions sub
				JOIN newsletters n ON n.id = sub.newsletter_id
				WHERE sub.subscriber_id = s.id AND sub.state = 'active'), '') AS newsletters
		FROM subscribers s ORDER BY s.id`)
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
			email, name, lang, status, nls string
			created                        time.Time
			confirmed, unsubscribed        sql.NullTime
		)
		if err := rows.Scan(&email, &name, &lang, &status, &created, &confirmed, &unsubscribed, &nls); err != nil {
			return fmt.Errorf("export: %w", err)
		}
		rec[0], rec[1], rec[2], rec[3] = email, name, lang, status
		rec[4], rec[5], rec[6] = formatTime(created, true), formatTime(confirmed.Time, confirmed.Valid), formatTime(unsubscribed.Time, unsubscribed.Valid)
		rec[7] = nls
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

func (u *uuidSource) next() ([16]byte, error) {
	var b [16]byte
	if len(u.buf) < 16 {
		u.buf = make([]byte, 16*1024)
		if _, err := rand.Read(u.buf); err != nil {
			return b, err
		}
	}
	copy(b[:], u.buf[:16])
	u.buf = u.buf[16:]
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return b, nil
}

// appendUUID appends b in the usual 8-4-4-4-12 hex form.
func appendUUID(dst []byte, b [16]byte) []byte {
	dst = hex.AppendEncode(dst, b[0:4])
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, b[4:6])
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, b[6:8])
	dst = append(dst, '-')
	dst = hex.AppendEncode(dst, b[8:10])
	dst = append(dst, '-')
	return hex.AppendEncode(dst, b[10:16])
}
