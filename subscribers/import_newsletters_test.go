package subscribers

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	"github.com/jmoiron/sqlx"
)

// activeByEmail maps every reader's address to the slugs of their active subscriptions, joined
// by spaces.
func activeByEmail(t *testing.T, db *sqlx.DB) map[string]string {
	t.Helper()
	var rows []struct {
		Email string `db:"email"`
		Slugs string `db:"slugs"`
	}
	if err := db.Select(&rows, `SELECT s.email, coalesce((SELECT string_agg(n.slug, ' ' ORDER BY n.slug) FROM subscriptions sub
		JOIN newsletters n ON n.id = sub.newsletter_id WHERE sub.subscriber_id = s.id AND sub.state = 'active'), '') AS slugs
		FROM subscribers s`); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, r := range rows {
		out[r.Email] = r.Slugs
	}
	return out
}

// TestImportNewsletters: today's format still gives each new reader their language's digest; a
// newsletters column gives new readers exactly what it lists (none for an empty cell), and a
// reader already present exactly what a non-empty cell lists (an empty one keeps theirs; one who
// left is not brought back); an unknown slug is a bad row that stops the file (or only itself,
// with SkipInvalid).
func TestImportNewsletters(t *testing.T) {
	ctx := context.Background()
	db, s := newStore(t)
	addInvestigations(t, db)

	old := "email,name,lang,status,confirmed_at\n" +
		"old.en@example.org,En,en,confirmed,2024-05-01\n" +
		"old.ru@example.org,Ru,ru,confirmed,2024-05-01\n" +
		"keep@example.org,Keep,en,confirmed,2024-05-01\n" +
		"gone@example.org,Gone,en,unsubscribed,2024-05-01\n"
	if rep, err := s.Import(ctx, strings.NewReader(old), importLangs); err != nil || rep.Inserted != 4 {
		t.Fatalf("old format: %+v, %v", rep, err)
	}
	want := map[string]string{"old.en@example.org": "digest-en", "old.ru@example.org": "digest-ru", "keep@example.org": "digest-en", "gone@example.org": ""}
	if got := activeByEmail(t, db); !maps.Equal(got, want) {
		t.Fatalf("old format: %q, want %q", got, want)
	}

	chosen := "email,lang,status,confirmed_at,newsletters\n" +
		"new.both@example.org,ru,confirmed,2024-05-01,\"investigations, digest-ru\"\n" +
		"new.none@example.org,en,confirmed,2024-05-01,\n" +
		"old.en@example.org,,,,Investigations\n" +
		"keep@example.org,,,,\n" +
		"gone@example.org,,,,digest-en investigations\n"
	rep, err := s.Import(ctx, strings.NewReader(chosen), importLangs)
	if err != nil || rep.Inserted != 2 || len(rep.Invalid) != 0 {
		t.Fatalf("newsletters column: %+v, %v", rep, err)
	}
	want = map[string]string{"old.en@example.org": "investigations", "old.ru@example.org": "digest-ru", "keep@example.org": "digest-en",
		"gone@example.org": "", "new.both@example.org": "digest-ru investigations", "new.none@example.org": ""}
	if got := activeByEmail(t, db); !maps.Equal(got, want) {
		t.Errorf("newsletters column: %q, want %q", got, want)
	}
	if n := countRows(t, db, `SELECT count(*) FROM subscriptions sub JOIN subscribers s ON s.id = sub.subscriber_id
		WHERE s.email = 'old.en@example.org' AND sub.state = 'active' AND sub.import_id = $1`, rep.ImportID); n != 1 {
		t.Errorf("old.en's investigations rests on %d imports, want this one", n)
	}

	bad := "email,newsletters\nfresh@example.org,digest-en\nwrong@example.org,digest-en no-such-letter\n"
	rep, err = s.Import(ctx, strings.NewReader(bad), importLangs)
	if !errors.Is(err, ErrInvalid) || len(rep.Invalid) != 1 || rep.Invalid[0].Line != 3 || rep.Invalid[0].Field != "newsletters" ||
		!strings.Contains(rep.Invalid[0].Error(), `unknown newsletter "no-such-letter"`) {
		t.Fatalf("unknown slug: %+v, %v", rep, err)
	}
	if n := countRows(t, db, `SELECT count(*) FROM subscribers WHERE email IN ('fresh@example.org', 'wrong@example.org')`); n != 0 {
		t.Errorf("a refused file added %d readers", n)
	}
	opts := importLangs
	opts.SkipInvalid = true
	if rep, err = s.Import(ctx, strings.NewReader(bad), opts); err != nil || rep.Inserted != 1 {
		t.Fatalf("unknown slug, skip invalid: %+v, %v", rep, err)
	}
	if got := activeByEmail(t, db)["fresh@example.org"]; got != "digest-en" {
		t.Errorf("fresh: %q", got)
	}
}

// TestExportImportNewsletters: the export lists each reader's active subscriptions; importing it
// into a fresh database gives every reader the same ones.
func TestExportImportNewsletters(t *testing.T) {
	ctx := context.Background()
	db, s := newStore(t)
	inv := addInvestigations(t, db)
	file := "email,lang,status,confirmed_at,newsletters\n" +
		"a@example.org,en,confirmed,2024-05-01,digest-en investigations\n" +
		"b@example.org,ru,confirmed,2024-05-01,investigations\n" +
		"c@example.org,ru,unsubscribed,2024-05-01,\n" +
		"d@example.org,en,bounced,2024-05-01,digest-ru\n"
	if _, err := s.Import(ctx, strings.NewReader(file), importLangs); err != nil {
		t.Fatal(err)
	}
	// One more through the manage page's toggles.
	r := ownerConfirms(t, db, s)
	if _, _, err := s.Manage(ctx, r.UUID, ManageInput{Name: "Owner", Lang: "en", Choose: true, On: []int64{inv}}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := s.ExportCSV(ctx, &out); err != nil {
		t.Fatal(err)
	}
	records, err := csv.NewReader(bytes.NewReader(out.Bytes())).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(records[0], exportHeader) || records[0][7] != "newsletters" {
		t.Fatalf("header %q", records[0])
	}
	if records[1][0] != "a@example.org" || records[1][7] != "digest-en investigations" {
		t.Errorf("first row %q", records[1])
	}
	before := activeByEmail(t, db)

	db2, s2 := newStore(t)
	addInvestigations(t, db2)
	if rep, err := s2.Import(ctx, bytes.NewReader(out.Bytes()), importLangs); err != nil || rep.Inserted != 5 {
		t.Fatalf("import of the export: %+v, %v", rep, err)
	}
	if after := activeByEmail(t, db2); !maps.Equal(after, before) {
		t.Errorf("round trip: %q, want %q", after, before)
	}
}
