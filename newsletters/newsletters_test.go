package newsletters_test

import (
	"context"
	"errors"
	"testing"

	"newsletter/internal/testdb"
	"newsletter/newsletters"
)

// TestListReadsRows reads the migration's two digests back whole, jsonb and arrays included, and
// a welcome written as the editor pages write one.
func TestListReadsRows(t *testing.T) {
	ctx := context.Background()
	db := testdb.New(t)
	if err := newsletters.EnsureDigests(ctx, db, []string{"en", "ru", "de"}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, `UPDATE newsletters SET welcome = $1 WHERE slug = 'digest-en'`,
		newsletters.Welcomes{"en": {Subject: "Welcome", Markdown: "Hello **there**"}}); err != nil {
		t.Fatal(err)
	}
	all, err := newsletters.List(ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 3 || all[0].Slug != "digest-de" || all[1].Slug != "digest-en" || all[2].Slug != "digest-ru" {
		t.Fatalf("list: %+v", all)
	}
	en := all[1]
	if en.Lang != "en" || len(en.Langs) != 1 || en.Langs[0] != "en" || en.Name("ru") != "Еженедельный дайджест на английском" ||
		en.Welcome["en"].Markdown != "Hello **there**" || en.Schedule != nil || !en.OnForm {
		t.Fatalf("digest-en: %+v", en)
	}
	if got := all[0].Name("ru"); got != "Weekly digest (de)" {
		t.Fatalf("a name missing in Russian falls back to English: %q", got)
	}
	if n, err := newsletters.BySlug(ctx, db, "digest-ru"); err != nil || n.Lang != "ru" {
		t.Fatalf("by slug: %+v %v", n, err)
	}
	if _, err := newsletters.Get(ctx, db, 999); !errors.Is(err, newsletters.ErrNotFound) {
		t.Fatalf("unknown id: %v", err)
	}
}
