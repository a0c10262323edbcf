package subscribers

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"newsletter/internal/testdb"
)

// importSeeds are the CSV files FuzzImportCSV starts from (more in testdata/fuzz/FuzzImportCSV);
// TestImportSeedsAgainstDB runs them through the real Import too.
var importSeeds = []string{
	"email,name,lang,status,confirmed_at\nann@example.org,Ann,en,confirmed,2024-01-02T03:04:05Z\n",
	"\ufeffEMAIL , Name\r\nann@example.org,Ann\r\n",
	badFile,
	"email,email\na@example.org,b@example.org\n",
	"name,lang\nAnn,en\n",
	"email\n\"unterminated@example.org\n",
	"email,name\n\"a@example.org\",\"x\"\"y\"\n" + "b@example.org,\"\u202eevil\"\n",
	"email,status,confirmed_at,unsubscribed_at\nc@example.org,unsubscribed,,1899-12-31\nd@example.org,,2999-01-01,\n",
	"email,lang\ne@example.org,RU\nf@example.org,xx\n",
	"email,newsletters\ng@example.org,digest-en DIGEST-RU\nh@example.org,\ni@example.org,nope\n",
	"email,name\na@example.org,\x00\nb@example.org\n,c\n",
	"",
	"email\n" + strings.Repeat("x", 300) + "@example.org\n",
}

// FuzzImportCSV feeds arbitrary bytes to the import's parse-and-validate step: it must never
// panic, a file it cannot read is refused as a whole (ErrInvalid), and of a file it can read every
// data row is either staged, valid in every field, or reported by line; never both, never lost.
// Whether a refused file leaves anything behind is TestImportSeedsAgainstDB's part.
func FuzzImportCSV(f *testing.F) {
	for _, s := range importSeeds {
		f.Add([]byte(s))
	}
	s := NewStore(nil, []byte("fuzz-import-secret-0123456789"))
	langs := []string{"en", "ru"}
	f.Fuzz(func(t *testing.T, data []byte) {
		var rep ImportReport
		var rows []stagedRow
		var withNewsletters bool
		err := s.readImport(bytes.NewReader(data), langs, map[string]int64{"digest-en": 1, "digest-ru": 2}, &withNewsletters, &rep, func(r stagedRow) error { rows = append(rows, r); return nil })
		if err != nil {
			// Rows already staged are rolled back with Import's transaction (TestImportSeedsAgainstDB).
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v is not ErrInvalid", err)
			}
			return
		}
		if len(rows)+len(rep.Invalid) != rep.Rows {
			t.Fatalf("%d rows read, %d staged, %d reported bad", rep.Rows, len(rows), len(rep.Invalid))
		}
		lines := map[int]bool{}
		emails := map[string]bool{}
		for _, r := range rows {
			if r.line < 2 || lines[r.line] {
				t.Fatalf("staged row at line %d (header is line 1, lines unique)", r.line)
			}
			lines[r.line] = true
			if again, err := NormalizeEmail(r.email); err != nil || again != r.email {
				t.Fatalf("staged address %q does not normalise to itself: %q, %v", r.email, again, err)
			}
			if key := strings.ToLower(r.email); emails[key] {
				t.Fatalf("address %q staged twice", r.email)
			} else {
				emails[key] = true
			}
			if again, err := ValidateName(r.name); err != nil || again != r.name {
				t.Fatalf("staged name %q is not valid: %v", r.name, err)
			}
			if r.lang != "" && !slices.Contains(langs, r.lang) {
				t.Fatalf("staged lang %q", r.lang)
			}
			if r.status != "" && !r.status.Valid() || r.status == StatusConfirmed && r.confirmedAt == nil {
				t.Fatalf("staged status %q (confirmed_at %v)", r.status, r.confirmedAt)
			}
			if !bytes.Equal(r.hash, s.suppressionHash(r.email)) {
				t.Fatalf("suppression hash of %q is not the address's", r.email)
			}
		}
		for _, e := range rep.Invalid {
			if e.Line < 2 || lines[e.Line] || e.Reason == "" {
				t.Fatalf("bad row report %+v", e)
			}
			if msg := e.Error(); !utf8.ValidString(msg) || strings.ContainsAny(msg, "\r\n\x00") {
				t.Fatalf("bad row message %q is not one clean line", msg)
			}
		}
	})
}

// TestImportSeedsAgainstDB runs every seed through the real Import: a file with a bad row changes
// nothing in the database, and without bad rows exactly the staged readers are written.
func TestImportSeedsAgainstDB(t *testing.T) {
	db := testdb.New(t)
	s := NewStore(db, []byte("import-fuzz-secret-0123456789"))
	ctx := context.Background()
	count := func() int {
		var n int
		if err := db.Get(&n, `SELECT count(*) FROM subscribers`); err != nil {
			t.Fatal(err)
		}
		return n
	}
	for i, seed := range importSeeds {
		before := count()
		rep, err := s.Import(ctx, strings.NewReader(seed), importLangs)
		after := count()
		switch {
		case err != nil:
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("seed %d: %v", i, err)
			}
			if after != before {
				t.Errorf("seed %d refused (%v) but %d readers were written", i, err, after-before)
			}
		case len(rep.Invalid) > 0:
			t.Errorf("seed %d: %d bad rows reported without an error", i, len(rep.Invalid))
		case after-before != rep.Inserted:
			t.Errorf("seed %d: %d new readers, report says %d", i, after-before, rep.Inserted)
		}
	}
}
