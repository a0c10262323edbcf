package migrations_test

import (
	"context"
	"encoding/json"
	"slices"
	"testing"

	"newsletter/digest"
	"newsletter/digest/send"
	"newsletter/internal/pgdb"
	"newsletter/internal/testdb"
	"newsletter/migrations"
)

// TestNewslettersMigrationKeepsRecipients loads a database in the schema before migration 0020,
// with readers of both languages (and a third) in every status, requests, consents, an import and
// an unsent issue per language, then runs the remaining migrations: each language's digest goes
// to exactly the readers that language's issue went to before, as the ledger selects them, and
// the consent records are untouched.
func TestNewslettersMigrationKeepsRecipients(t *testing.T) {
	ctx := context.Background()
	db, err := pgdb.Open(ctx, testdb.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := migrations.ApplyTo(ctx, db.DB, 19); err != nil {
		t.Fatal(err)
	}
	langs := []string{"en", "ru", "de"}
	for _, q := range []string{
		`INSERT INTO imports (actor, file_sha256, text_version, row_count) VALUES ('cli', sha256('file'), 'import', 40)`,
		// Every status in every language, some added by the import.
		`INSERT INTO subscribers (email, lang, status, confirmed_at, unsubscribed_at, bounced_at, complained_at, import_id)
		 SELECT st || g || '-' || l || '@example.org', l, st,
			CASE WHEN st <> 'pending' THEN now() - interval '30 days' END,
			CASE WHEN st = 'unsubscribed' THEN now() - interval '3 days' END,
			CASE WHEN st = 'bounced' THEN now() - interval '2 days' END,
			CASE WHEN st = 'complained' THEN now() - interval '1 day' END,
			CASE WHEN g % 3 = 0 THEN 1 END
		 FROM unnest(ARRAY['en', 'ru', 'de']) l,
			unnest(ARRAY['pending', 'confirmed', 'unsubscribed', 'bounced', 'complained']) st,
			generate_series(1, 6) g`,
		// Confirmed requests for those who came by the form, open ones for some, and an old-style
		// import consent row.
		`INSERT INTO consents (subscriber_id, created_at, ip, user_agent, source, text_version, confirmed_at, lang)
		 SELECT id, now() - interval '31 days', '192.0.2.0', 'Firefox 128', 'form', 'v1', now() - interval '30 days', lang
		 FROM subscribers WHERE import_id IS NULL AND status <> 'pending' AND id % 2 = 0`,
		`INSERT INTO consents (subscriber_id, source, text_version, confirmed_at)
		 SELECT id, 'import', 'legacy', now() - interval '40 days' FROM subscribers WHERE import_id IS NULL AND status <> 'pending' AND id % 2 = 1`,
		`INSERT INTO consents (subscriber_id, source, text_version, lang)
		 SELECT id, 'api', 'v1', lang FROM subscribers WHERE status IN ('pending', 'unsubscribed') AND id % 4 = 0`,
		`INSERT INTO feeds (url, lang) SELECT 'https://site.example/' || l || '.xml', l FROM unnest(ARRAY['en', 'ru', 'de']) l`,
		`INSERT INTO issues (lang, window_start, window_end, status)
		 SELECT l, now() - interval '7 days', now(), 'approved' FROM unnest(ARRAY['en', 'ru', 'de']) l`,
	} {
		db.MustExec(q)
	}
	before := map[string][]int64{}
	for _, l := range langs {
		var ids []int64
		// What the ledger took before 0020.
		if err := db.Select(&ids, `SELECT id FROM subscribers WHERE lang = $1 AND status = 'confirmed' ORDER BY id`, l); err != nil {
			t.Fatal(err)
		}
		if len(ids) == 0 {
			t.Fatalf("no confirmed %s readers seeded", l)
		}
		before[l] = ids
	}
	consents := func() string {
		var rows []json.RawMessage
		if err := db.Select(&rows, `SELECT to_jsonb(c) FROM consents c ORDER BY id`); err != nil {
			t.Fatal(err)
		}
		b, _ := json.Marshal(rows)
		return string(b)
	}
	consentsBefore := consents()

	if err := migrations.Apply(ctx, db.DB, nil); err != nil {
		t.Fatal(err)
	}

	if after := consents(); after != consentsBefore {
		t.Errorf("consents changed:\nbefore %s\nafter  %s", consentsBefore, after)
	}
	store := digest.NewStore(db, nil)
	for _, l := range langs {
		var nl struct {
			ID   int64  `db:"id"`
			Slug string `db:"slug"`
		}
		if err := db.Get(&nl, `SELECT id, slug FROM newsletters WHERE kind = 'digest' AND lang = $1`, l); err != nil {
			t.Fatalf("digest of %s: %v", l, err)
		}
		if nl.Slug != "digest-"+l {
			t.Errorf("digest of %s: slug %q", l, nl.Slug)
		}
		var issue, feedNL int64
		if err := db.Get(&issue, `SELECT id FROM issues WHERE lang = $1 AND newsletter_id = $2`, l, nl.ID); err != nil {
			t.Fatalf("issue of %s not in its digest: %v", l, err)
		}
		if err := db.Get(&feedNL, `SELECT newsletter_id FROM feeds WHERE lang = $1`, l); err != nil || feedNL != nl.ID {
			t.Errorf("feed of %s: newsletter %d, %v; want %d", l, feedNL, err, nl.ID)
		}
		// The recipients as the ledger selects them now.
		if _, err := send.StartSending(ctx, store, issue); err != nil {
			t.Fatal(err)
		}
		var after []int64
		if err := db.Select(&after, `SELECT subscriber_id FROM deliveries WHERE issue_id = $1 ORDER BY subscriber_id`, issue); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(after, before[l]) {
			t.Errorf("%s digest: recipients %v, before %v", l, after, before[l])
		}
		if n, err := store.ConfirmedReaders(ctx, l); err != nil || n != len(before[l]) {
			t.Errorf("%s: ConfirmedReaders = %d, %v; want %d", l, n, err, len(before[l]))
		}
	}

	// Every subscription is to the reader's language's digest, left only by those who
	// unsubscribed, and rests on a confirmed consent of the reader's own or on their import.
	var bad []string
	if err := db.Select(&bad, `
		SELECT s.email || ': ' || coalesce(sub.state, 'none') FROM subscribers s
		LEFT JOIN subscriptions sub ON sub.subscriber_id = s.id
		LEFT JOIN newsletters n ON n.id = sub.newsletter_id
		LEFT JOIN consents c ON c.id = sub.consent_id
		WHERE sub.subscriber_id IS NULL AND (s.status <> 'pending' OR s.import_id IS NOT NULL)
		   OR sub.subscriber_id IS NOT NULL AND (n.lang IS DISTINCT FROM s.lang
			OR (sub.state = 'left') <> (s.status = 'unsubscribed')
			OR sub.consent_id IS NULL AND sub.import_id IS DISTINCT FROM s.import_id
			OR sub.consent_id IS NOT NULL AND (c.subscriber_id <> s.id OR c.confirmed_at IS NULL))
		ORDER BY 1`); err != nil {
		t.Fatal(err)
	}
	if len(bad) > 0 {
		t.Errorf("subscriptions not as the readers were: %v", bad)
	}
	// A pending reader who never consented has none: their request waits for its confirmation.
	var n int
	db.Get(&n, `SELECT count(*) FROM subscriptions sub JOIN subscribers s ON s.id = sub.subscriber_id
		WHERE s.status = 'pending' AND s.import_id IS NULL`)
	if n != 0 {
		t.Errorf("%d pending readers without consent got a subscription", n)
	}
}
