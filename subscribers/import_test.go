package subscribers

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"newsletter/internal/testdb"
)

var importLangs = ImportOptions{Languages: []string{"en", "ru"}}

// badFile has one good row between every kind of bad one; line numbers are the file's own
// (line 8's quoted name spans two lines, so the row after it starts on line 10).
const badFile = `email,name,lang,status,confirmed_at
good@example.com,Good,en,confirmed,2024-01-02T03:04:05Z
not-an-address,,en,,
ok2@example.com,,de,,
ok3@example.com,,en,subscribed,
ok4@example.com,,en,confirmed,
ok5@example.com,,en,confirmed,yesterday
GOOD@example.com,Dup,en,,
ok6@example.com,"two
lines",en,,
ok7@example.com,,en
` + "\"a@example.com\r\nBcc: x@example.com\",,en,,\n" + `also-good@example.com,Также,ru,pending,
`

func wantBadRows() []RowError {
	return []RowError{
		{3, "email", "invalid address"},
		{4, "lang", `unknown language "de" (want one of en, ru)`},
		{5, "status", `unknown status "subscribed"`},
		{6, "confirmed_at", "status confirmed needs confirmed_at"},
		{7, "confirmed_at", "bad timestamp (want RFC 3339, e.g. 2024-05-01T12:00:00Z)"},
		{8, "email", "duplicate of line 2"},
		{9, "name", "control character (CR, LF or NUL)"},
		{11, "", "3 fields, the header has 5"},
		{12, "email", "control character (CR, LF or NUL)"},
	}
}

func TestImportBadRowsImportNothing(t *testing.T) {
	db, s := newStore(t)
	rep, err := s.Import(context.Background(), strings.NewReader(badFile), importLangs)
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("err = %v, want ErrInvalid", err)
	}
	if !slices.Equal(rep.Invalid, wantBadRows()) {
		t.Errorf("bad rows:\n got %v\nwant %v", rep.Invalid, wantBadRows())
	}
	if rep.Rows != 11 || rep.Inserted != 0 {
		t.Errorf("report %+v", rep)
	}
	if n := countRows(t, db, `SELECT count(*) FROM subscribers`); n != 0 {
		t.Errorf("%d readers imported from a file with bad rows", n)
	}
	for _, e := range rep.Invalid {
		if strings.Contains(e.Error(), "@") {
			t.Errorf("row error %q shows an address", e.Error())
		}
	}
}

func TestImportSkipInvalid(t *testing.T) {
	db, s := newStore(t)
	opts := importLangs
	opts.SkipInvalid = true
	rep, err := s.Import(context.Background(), strings.NewReader(badFile), opts)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(rep.Invalid, wantBadRows()) || rep.Inserted != 2 {
		t.Errorf("report %+v", rep)
	}
	good := reader(t, db, "good@example.com")
	if good.Status != StatusConfirmed || good.ConfirmedAt == nil || !good.ConfirmedAt.Equal(time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC)) || good.Name != "Good" {
		t.Errorf("good row imported as %+v", good)
	}
	if r := reader(t, db, "also-good@example.com"); r.Status != StatusPending || r.Lang != "ru" || r.Name != "Также" {
		t.Errorf("second good row imported as %+v", r)
	}
	// The import's consent evidence is one imports row, named by the two readers it added.
	if n := countRows(t, db, `SELECT count(*) FROM subscribers WHERE import_id = $1`, rep.ImportID); n != 2 {
		t.Errorf("%d readers name the import, want 2", n)
	}
	sum := sha256.Sum256([]byte(badFile))
	if n := countRows(t, db, `SELECT count(*) FROM imports WHERE id = $1 AND actor = 'cli' AND text_version = 'import'
		AND file_sha256 = $2 AND row_count = 11 AND at > now() - interval '1 minute'`, rep.ImportID, sum[:]); n != 1 {
		t.Errorf("no imports row with the file's hash, its actor, consent text and rows")
	}
	if n := countRows(t, db, `SELECT count(*) FROM consents`); n != 0 {
		t.Errorf("%d consents rows: the import is the evidence, not a copy per reader", n)
	}
	if n := countRows(t, db, `SELECT count(*) FROM outbox`); n != 0 {
		t.Errorf("import queued %d emails", n)
	}
}

func TestImportFileErrors(t *testing.T) {
	tests := []struct{ name, file string }{
		{"empty", ""},
		{"no email column", "name,lang\nAnn,en\n"},
		{"email column twice", "email,Email\na@example.com,b@example.com\n"},
		{"broken quote", "email,name\na@example.com,\"Ann\nb@example.com,Bob\n"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db, s := newStore(t)
			if _, err := s.Import(context.Background(), strings.NewReader(tc.file), ImportOptions{SkipInvalid: true}); !errors.Is(err, ErrInvalid) {
				t.Errorf("err = %v, want ErrInvalid", err)
			}
			if n := countRows(t, db, `SELECT count(*) FROM subscribers`); n != 0 {
				t.Errorf("%d readers imported", n)
			}
		})
	}
}

// TestImportUpdatesPresentReaders: an address already present is updated, never duplicated, and
// its status moves only as consent allows.
func TestImportUpdatesPresentReaders(t *testing.T) {
	confirmedAt := "2025-02-03T04:05:06Z"
	tests := []struct {
		name    string
		before  Status
		row     string // name,lang,status,confirmed_at
		want    Status
		name2   string
		lang    string
		updated int
	}{
		{"pending confirmed by import", StatusPending, ",,confirmed," + confirmedAt, StatusConfirmed, "Orig", "en", 1},
		{"confirmed_at alone confirms", StatusPending, ",,," + confirmedAt, StatusConfirmed, "Orig", "en", 1},
		{"confirmed stays confirmed when the file says pending", StatusConfirmed, "New,ru,pending,", StatusConfirmed, "New", "ru", 1},
		{"confirmed may be marked unsubscribed", StatusConfirmed, ",,unsubscribed,", StatusUnsubscribed, "Orig", "en", 1},
		{"unsubscribed is never brought back", StatusUnsubscribed, ",,confirmed," + confirmedAt, StatusUnsubscribed, "Orig", "en", 0},
		{"complained is never brought back", StatusComplained, "Renamed,,pending,", StatusComplained, "Renamed", "en", 1},
		{"empty fields keep stored ones", StatusPending, ",,,", StatusPending, "Orig", "en", 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db, s := newStore(t)
			ctx := context.Background()
			if err := s.Subscribe(ctx, "Present@Example.com", "Orig", "en", formConsent); err != nil {
				t.Fatal(err)
			}
			setStatus(t, db, "present@example.com", tc.before)
			rep, err := s.Import(ctx, strings.NewReader("email,name,lang,status,confirmed_at\npresent@EXAMPLE.com,"+tc.row+"\n"), importLangs)
			if err != nil {
				t.Fatal(err)
			}
			if rep.Inserted != 0 || rep.Updated != tc.updated || rep.Updated+rep.Unchanged != 1 {
				t.Errorf("report %+v, want %d updated", rep, tc.updated)
			}
			if n := countRows(t, db, `SELECT count(*) FROM subscribers`); n != 1 {
				t.Fatalf("%d readers: the address was duplicated", n)
			}
			r := reader(t, db, "present@example.com")
			if r.Status != tc.want || r.Name != tc.name2 || r.Lang != tc.lang || r.Email != "Present@example.com" {
				t.Errorf("reader after import: %+v", r)
			}
			if r.Status == StatusConfirmed && r.ConfirmedAt == nil || r.Status == StatusUnsubscribed && r.UnsubscribedAt == nil {
				t.Errorf("status %s without its timestamp", r.Status)
			}
			if n := countRows(t, db, `SELECT count(*) FROM subscribers WHERE import_id IS NOT NULL`); n != 0 {
				t.Errorf("import consent recorded for a present reader")
			}
		})
	}
}

// TestImportStagesValuesExactly: what the import writes as COPY text comes back as read from the
// file (backslashes, quotes, Cyrillic, fractional seconds and offsets), with a random v4 uuid.
func TestImportStagesValuesExactly(t *testing.T) {
	db, s := newStore(t)
	file := "email,name,lang,status,confirmed_at,unsubscribed_at\n" +
		`back@example.com,"C:\Users\N, ""Q""",ru,confirmed,2024-05-01T10:00:00.123456+02:00,` + "\n" +
		`left@example.com,Юля \N,,unsubscribed,,2024-06-01` + "\n"
	if _, err := s.Import(context.Background(), strings.NewReader(file), importLangs); err != nil {
		t.Fatal(err)
	}
	back, left := reader(t, db, "back@example.com"), reader(t, db, "left@example.com")
	if back.Name != `C:\Users\N, "Q"` || back.Lang != "ru" || back.Status != StatusConfirmed ||
		back.ConfirmedAt == nil || !back.ConfirmedAt.Equal(time.Date(2024, 5, 1, 8, 0, 0, 123456000, time.UTC)) {
		t.Errorf("first reader: %q %s %s %v", back.Name, back.Lang, back.Status, back.ConfirmedAt)
	}
	if left.Name != `Юля \N` || left.Lang != "en" || left.Status != StatusUnsubscribed ||
		left.UnsubscribedAt == nil || !left.UnsubscribedAt.Equal(time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("second reader: %q %s %s %v", left.Name, left.Lang, left.Status, left.UnsubscribedAt)
	}
	for _, r := range []Subscriber{back, left} {
		if u := r.UUID; len(u) != 36 || u[14] != '4' || !strings.ContainsRune("89ab", rune(u[19])) {
			t.Errorf("uuid %q is not a random (v4) uuid", u)
		}
	}
	if n := countRows(t, db, `SELECT count(DISTINCT uuid) FROM subscribers`); n != 2 {
		t.Errorf("%d distinct uuids, want 2", n)
	}
}

// TestImportAddressAddedMeanwhile: a reader added by someone else while the import writes (here
// a sign-up that commits while the import waits on its address) is updated, not duplicated, and
// the rest of the file still goes in.
func TestImportAddressAddedMeanwhile(t *testing.T) {
	db, s := newStore(t)
	ctx := context.Background()
	other := db.MustBegin()
	defer other.Rollback()
	other.MustExec(`INSERT INTO subscribers (email, name, lang, status) VALUES ('late@example.com', 'Late', 'en', 'pending')`)
	type result struct {
		rep ImportReport
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := s.Import(ctx, strings.NewReader("email,name,status\nnew@example.com,New,\nLATE@example.com,,unsubscribed\n"), importLangs)
		done <- result{rep, err}
	}()
	// Wait until the import waits on the other transaction's row, then let that commit.
	deadline := time.Now().Add(10 * time.Second)
	for countRows(t, db, `SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'`) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the import never waited on the address being added")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := other.Commit(); err != nil {
		t.Fatal(err)
	}
	res := <-done
	if res.err != nil || res.rep.Inserted != 1 || res.rep.Updated != 1 {
		t.Fatalf("import: %+v, %v", res.rep, res.err)
	}
	if n := countRows(t, db, `SELECT count(*) FROM subscribers`); n != 2 {
		t.Errorf("%d readers, want 2", n)
	}
	if r := reader(t, db, "late@example.com"); r.Status != StatusUnsubscribed || r.Name != "Late" {
		t.Errorf("reader added meanwhile: %s %q, want unsubscribed, name kept", r.Status, r.Name)
	}
	if n := countRows(t, db, `SELECT count(*) FROM subscribers WHERE import_id = $1`, res.rep.ImportID); n != 1 || res.rep.ImportID == 0 {
		t.Errorf("%d readers name the import, want 1 (the new one)", n)
	}
	if n := countRows(t, db, `SELECT count(*) FROM subscribers WHERE email = 'late@example.com' AND import_id IS NULL`); n != 1 {
		t.Errorf("the reader added meanwhile names the import")
	}
}

func setStatus(t *testing.T, db *sqlx.DB, email string, st Status) {
	t.Helper()
	col := map[Status]string{StatusConfirmed: "confirmed_at", StatusUnsubscribed: "unsubscribed_at",
		StatusBounced: "bounced_at", StatusComplained: "complained_at"}[st]
	set := "status = $2"
	if col != "" {
		set += ", " + col + " = now() - interval '1 day'"
	}
	db.MustExec(`UPDATE subscribers SET `+set+` WHERE lower(email) = $1`, email, st)
}

func TestImportExportCycle(t *testing.T) {
	ctx := context.Background()
	db, s := newStore(t)
	if err := s.Subscribe(ctx, "form@example.com", "Через форму", "ru", formConsent); err != nil {
		t.Fatal(err)
	}
	file := "\ufeffEmail, Name ,LANG,status,confirmed_at,unsubscribed_at,notes\n" +
		"ann@example.com,\"Lee, Ann\",en,confirmed,2024-05-01T10:00:00+02:00,,vip\n" +
		"BOB@Example.COM,,ru,unsubscribed,2024-01-01,2024-06-01T00:00:00Z,\n" +
		"carol@example.com,Carol,,,,,\n" +
		"form@example.com,,,confirmed,2024-07-01T00:00:00Z,,\n"
	rep, err := s.Import(ctx, strings.NewReader(file), importLangs)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Rows != 4 || rep.Inserted != 3 || rep.Updated != 1 || len(rep.Invalid) != 0 {
		t.Fatalf("report %+v", rep)
	}
	var out bytes.Buffer
	if err := s.ExportCSV(ctx, &out); err != nil {
		t.Fatal(err)
	}
	records, err := csv.NewReader(&out).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(records[0], ","); got != "email,name,lang,status,created_at,confirmed_at,unsubscribed_at,newsletters" {
		t.Fatalf("header %q", got)
	}
	got := map[string][]string{}
	for _, r := range records[1:] {
		if _, err := time.Parse(time.RFC3339, r[4]); err != nil {
			t.Errorf("created_at %q: %v", r[4], err)
		}
		got[r[0]] = []string{r[1], r[2], r[3], r[5], r[6]}
	}
	want := map[string][]string{
		"form@example.com":  {"Через форму", "ru", "confirmed", "2024-07-01T00:00:00Z", ""},
		"ann@example.com":   {"Lee, Ann", "en", "confirmed", "2024-05-01T08:00:00Z", ""},
		"BOB@example.com":   {"", "ru", "unsubscribed", "2024-01-01T00:00:00Z", "2024-06-01T00:00:00Z"},
		"carol@example.com": {"Carol", "en", "pending", "", ""},
	}
	if len(got) != len(want) {
		t.Errorf("exported %d readers, want %d:\n%s", len(got), len(want), out.String())
	}
	for email, w := range want {
		if !slices.Equal(got[email], w) {
			t.Errorf("%s exported as %q, want %q", email, got[email], w)
		}
	}

	// The export imports into another database as the same list.
	var again bytes.Buffer
	s.ExportCSV(ctx, &again)
	_, s2 := newStore(t)
	rep2, err := s2.Import(ctx, strings.NewReader(again.String()), importLangs)
	if err != nil || rep2.Inserted != 4 {
		t.Fatalf("re-import: %+v, %v", rep2, err)
	}
	var third bytes.Buffer
	s2.ExportCSV(ctx, &third)
	if dropColumn(third.String(), 4) != dropColumn(again.String(), 4) {
		t.Errorf("round trip changed the list:\n%s\nvs\n%s", again.String(), third.String())
	}

	// Importing the same file again changes nothing and duplicates nothing.
	rep3, err := s.Import(ctx, strings.NewReader(file), importLangs)
	if err != nil || rep3.Inserted != 0 || rep3.Updated != 0 || rep3.Unchanged != 4 {
		t.Errorf("second import: %+v, %v", rep3, err)
	}
	if n := countRows(t, db, `SELECT count(*) FROM subscribers`); n != 4 {
		t.Errorf("%d readers after a second import", n)
	}
}

// dropColumn removes column i (created_at differs between databases) from CSV text.
func dropColumn(s string, i int) string {
	records, _ := csv.NewReader(strings.NewReader(s)).ReadAll()
	var b strings.Builder
	for _, r := range records {
		b.WriteString(strings.Join(slices.Delete(slices.Clone(r), i, i+1), "|") + "\n")
	}
	return b.String()
}

// BenchmarkImport100k imports 100,000 new readers into an empty database (a fresh one per
// iteration, made outside the timer).
func BenchmarkImport100k(b *testing.B) {
	const n = 100_000
	var file bytes.Buffer
	file.WriteString("email,name,lang,status,confirmed_at\n")
	for i := range n {
		switch i % 3 {
		case 0:
			fmt.Fprintf(&file, "reader%d@example.com,Reader %d,en,confirmed,2024-03-01T12:00:00Z\n", i, i)
		case 1:
			fmt.Fprintf(&file, "Читатель%d@Example.ORG,Читатель %d,ru,,\n", i, i)
		default:
			fmt.Fprintf(&file, "r.%d+tag@mail%d.example.net,,,unsubscribed,\n", i, i%100)
		}
	}
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		db := testdb.New(b)
		s := NewStore(db, dataSecret)
		b.StartTimer()
		rep, err := s.Import(context.Background(), bytes.NewReader(file.Bytes()), importLangs)
		if err != nil || rep.Inserted != n {
			b.Fatalf("import: %+v, %v", rep.Inserted, err)
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
}

// TestImportConsentEvidence: a reader an import added shows the import as their consent, who ran
// it, when and which file (its SHA-256), on the editors' record of them and in their own data
// export, beside requests made later; it is no confirmation in the weekly figures. Erasing the
// reader leaves the import's row, which holds nothing of theirs.
func TestImportConsentEvidence(t *testing.T) {
	ctx := context.Background()
	db, s := newStore(t)
	const file = "email,name,lang,status,confirmed_at\nAnn.Lee@example.org,Ann Lee,en,confirmed,2024-05-01T10:00:00Z\nbob@example.org,,ru,,\n"
	sum := sha256.Sum256([]byte(file))
	hexSum := fmt.Sprintf("%x", sum)
	opts := importLangs
	opts.TextVersion = "print-form-2023"
	rep, err := s.Import(ctx, strings.NewReader(file), opts)
	if err != nil || rep.Inserted != 2 || rep.ImportID == 0 || fmt.Sprintf("%x", rep.FileSHA256) != hexSum {
		t.Fatalf("import: %+v, %v", rep, err)
	}
	ann := reader(t, db, "ann.lee@example.org")
	// A request made later, by anyone: it sits beside the import's consent, changing nothing.
	if err := s.Subscribe(ctx, "ann.lee@example.org", "", "en", formConsent); err != nil {
		t.Fatal(err)
	}

	rec, err := s.Reader(ctx, ann.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if len(rec.Consents) != 2 || rec.Consents[0].Source != "form" {
		t.Fatalf("consent records %+v, want the later request, then the import", rec.Consents)
	}
	imp := rec.Consents[1]
	if imp.Source != "import" || imp.ImportID != rep.ImportID || imp.ImportedBy != "cli" || imp.FileSHA256 != hexSum ||
		imp.TextVersion != "print-form-2023" || imp.ImportRows != 2 || imp.Open || imp.ConfirmedAt == nil ||
		!imp.ConfirmedAt.Equal(imp.CreatedAt) || time.Since(imp.CreatedAt) > time.Minute {
		t.Errorf("the import's consent on the reader's record: %+v", imp)
	}

	v, err := s.DataExport(ctx, ann.UUID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(v)
	var data struct {
		Consents []map[string]any
	}
	if err := json.Unmarshal(b, &data); err != nil {
		t.Fatal(err)
	}
	if len(data.Consents) != 2 || data.Consents[1]["source"] != "form" {
		t.Fatalf("data export's consents: %s", b)
	}
	c := data.Consents[0]
	if c["source"] != "import" || c["imported_by"] != "cli" || c["file_sha256"] != hexSum || c["text_version"] != "print-form-2023" ||
		c["created_at"] == nil || c["confirmed_at"] != c["created_at"] {
		t.Errorf("the import's consent in the reader's export: %v", c)
	}
	if strings.Contains(string(b), "import_id") || strings.Contains(string(b), "rows") {
		t.Errorf("the reader's export shows the import's row or the file's size: %s", b)
	}

	summary, err := s.Summary(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	if w := summary.Weeks[0]; w.Confirmed != 0 {
		t.Errorf("%d confirmations this week, want 0: an import is not a confirmation", w.Confirmed)
	}

	if err := s.Erase(ctx, ann.UUID); err != nil {
		t.Fatal(err)
	}
	var kept []string
	if err := db.Select(&kept, `SELECT i::text FROM imports i`); err != nil {
		t.Fatal(err)
	}
	if len(kept) != 1 {
		t.Fatalf("%d imports rows after the erasure, want the one", len(kept))
	}
	for _, bad := range []string{"ann", "lee", "example.org", ann.UUID} {
		if strings.Contains(strings.ToLower(kept[0]), bad) {
			t.Errorf("the imports row holds %q of the erased reader: %s", bad, kept[0])
		}
	}
	if n := countRows(t, db, `SELECT count(*) FROM subscribers WHERE import_id = $1`, rep.ImportID); n != 1 {
		t.Errorf("%d readers name the import after one was erased, want 1 (Bob)", n)
	}
	// The record is append-only.
	for _, q := range []string{`UPDATE imports SET actor = 'someone'`, `DELETE FROM imports`, `TRUNCATE imports`} {
		if _, err := db.Exec(q); err == nil {
			t.Errorf("%s: allowed, want refused", q)
		}
	}
}
