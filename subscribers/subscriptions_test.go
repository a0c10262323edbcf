package subscribers

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
)

// subscriptionsOf lists the reader's subscriptions as "digest-en active consent" lines, consent
// naming what it rests on ("consent" a confirmed request of theirs, "import N", or "none").
func subscriptionsOf(t *testing.T, db *sqlx.DB, id int64) []string {
	t.Helper()
	var out []string
	if err := db.Select(&out, `
		SELECT n.slug || ' ' || sub.state || ' ' || CASE
			WHEN c.id IS NOT NULL AND c.subscriber_id = sub.subscriber_id AND c.confirmed_at IS NOT NULL THEN 'consent'
			WHEN sub.import_id IS NOT NULL THEN 'import ' || sub.import_id ELSE 'none' END
		FROM subscriptions sub JOIN newsletters n ON n.id = sub.newsletter_id
		LEFT JOIN consents c ON c.id = sub.consent_id
		WHERE sub.subscriber_id = $1 ORDER BY n.slug`, id); err != nil {
		t.Fatal(err)
	}
	return out
}

func wantSubscriptions(t *testing.T, db *sqlx.DB, id int64, step string, want ...string) {
	t.Helper()
	if got := subscriptionsOf(t, db, id); !slices.Equal(got, want) {
		t.Errorf("%s: subscriptions %q, want %q", step, got, want)
	}
}

// TestSubscriptionsFollowTheReader: every path that changes a reader keeps their subscription to
// their language's digest as what they receive: none while a request waits, active on
// confirmation with that consent, kept as it is through a change of language (readers choose
// their newsletters on the manage page now), left on unsubscribing (by either link), back on a new
// confirmation, gone with an erasure.
func TestSubscriptionsFollowTheReader(t *testing.T) {
	ctx := context.Background()
	db, s := newStore(t)
	r := ownerSubscribes(t, db, s)
	wantSubscriptions(t, db, r.ID, "request")
	if _, err := s.Confirm(ctx, r.UUID, time.Now()); err != nil {
		t.Fatal(err)
	}
	wantSubscriptions(t, db, r.ID, "confirmed", "digest-en active consent")

	if _, err := s.Update(ctx, r.UUID, "Owner", "ru"); err != nil {
		t.Fatal(err)
	}
	wantSubscriptions(t, db, r.ID, "manage page: ru", "digest-en active consent")
	if _, err := s.Update(ctx, r.UUID, "Owner K.", "ru"); err != nil {
		t.Fatal(err)
	}
	wantSubscriptions(t, db, r.ID, "manage page: name only", "digest-en active consent")
	if _, err := s.SetLang(ctx, r.UUID, "en"); err != nil {
		t.Fatal(err)
	}
	wantSubscriptions(t, db, r.ID, "editor: en", "digest-en active consent")

	if _, err := s.UnsubscribeFrom(ctx, r.UUID, 0); err != nil {
		t.Fatal(err)
	}
	wantSubscriptions(t, db, r.ID, "unsubscribed", "digest-en left consent")
	// A language change while away moves nothing: they get nothing either way.
	if _, err := s.SetLang(ctx, r.UUID, "ru"); err != nil {
		t.Fatal(err)
	}
	wantSubscriptions(t, db, r.ID, "away: ru", "digest-en left consent")

	// Back through a new request in English, confirmed.
	if err := s.Subscribe(ctx, "owner@example.org", "", "en", formConsent); err != nil {
		t.Fatal(err)
	}
	wantSubscriptions(t, db, r.ID, "request while away", "digest-en left consent")
	if _, err := s.Confirm(ctx, r.UUID, time.Now().Add(time.Second)); err != nil {
		t.Fatal(err)
	}
	wantSubscriptions(t, db, r.ID, "back", "digest-en active consent")
	var consentID, latest int64
	db.Get(&consentID, `SELECT consent_id FROM subscriptions sub JOIN newsletters n ON n.id = sub.newsletter_id
		WHERE sub.subscriber_id = $1 AND n.slug = 'digest-en'`, r.ID)
	db.Get(&latest, `SELECT max(id) FROM consents WHERE subscriber_id = $1 AND confirmed_at IS NOT NULL`, r.ID)
	if consentID != latest {
		t.Errorf("the digest rests on consent %d, want the latest confirmed %d", consentID, latest)
	}

	// The issue-bound one-click link leaves too.
	var issue int64
	if err := db.Get(&issue, `INSERT INTO issues (newsletter_id, lang, window_start, window_end, status)
		VALUES ((SELECT id FROM newsletters WHERE slug = 'digest-en'), 'en', now() - interval '7 days', now(), 'sent') RETURNING id`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UnsubscribeFrom(ctx, r.UUID, issue); err != nil {
		t.Fatal(err)
	}
	wantSubscriptions(t, db, r.ID, "one-click", "digest-en left consent")

	if err := s.Erase(ctx, r.UUID); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, db, `SELECT count(*) FROM subscriptions WHERE subscriber_id = $1`, r.ID); n != 0 {
		t.Errorf("erased reader keeps %d subscriptions", n)
	}
}

// TestSubscriptionsOnImport: a reader an import adds gets their language's digest resting on the
// import (left when added as unsubscribed); a pending reader it confirms gets it too; a changed
// language moves it; an unsubscription leaves it; a reader it does not change keeps theirs.
func TestSubscriptionsOnImport(t *testing.T) {
	ctx := context.Background()
	db, s := newStore(t)
	kept := ownerConfirms(t, db, s)
	if err := s.Subscribe(ctx, "waiting@example.org", "", "en", formConsent); err != nil {
		t.Fatal(err)
	}
	if err := s.Subscribe(ctx, "mover@example.org", "", "en", formConsent); err != nil {
		t.Fatal(err)
	}
	mover := reader(t, db, "mover@example.org")
	if _, err := s.Confirm(ctx, mover.UUID, time.Now()); err != nil {
		t.Fatal(err)
	}
	file := "email,name,lang,status,confirmed_at\n" +
		"new@example.org,New,ru,confirmed,2024-01-02T03:04:05Z\n" +
		"gone@example.org,,en,unsubscribed,\n" +
		"pending@example.org,,en,,\n" +
		"waiting@example.org,,,confirmed,2024-01-02T03:04:05Z\n" +
		"mover@example.org,,ru,,\n" +
		"owner@example.org,Owner,en,confirmed,2020-01-02T03:04:05Z\n"
	rep, err := s.Import(ctx, strings.NewReader(file), ImportOptions{Languages: []string{"en", "ru"}})
	if err != nil {
		t.Fatal(err)
	}
	imp := fmt.Sprintf("import %d", rep.ImportID)
	wantSubscriptions(t, db, reader(t, db, "new@example.org").ID, "new", "digest-ru active "+imp)
	wantSubscriptions(t, db, reader(t, db, "gone@example.org").ID, "new, unsubscribed", "digest-en left "+imp)
	wantSubscriptions(t, db, reader(t, db, "pending@example.org").ID, "new, pending", "digest-en active "+imp)
	wantSubscriptions(t, db, reader(t, db, "waiting@example.org").ID, "confirmed by the import", "digest-en active "+imp)
	wantSubscriptions(t, db, mover.ID, "moved by the import", "digest-en left consent", "digest-ru active consent")
	wantSubscriptions(t, db, kept.ID, "unchanged", "digest-en active consent")

	if _, err := s.Import(ctx, strings.NewReader("email,status\nmover@example.org,unsubscribed\n"), ImportOptions{Languages: []string{"en", "ru"}}); err != nil {
		t.Fatal(err)
	}
	wantSubscriptions(t, db, mover.ID, "unsubscribed by an import", "digest-en left consent", "digest-ru left consent")

	// Subscriptions have no foreign key (its check cost the import a sixth of its time): a
	// statement deleting many readers, as the expiry's does, takes all of theirs with them.
	if n := countRows(t, db, `SELECT count(*) FROM subscriptions`); n < 6 {
		t.Fatalf("%d subscriptions before the deletion", n)
	}
	if _, err := db.Exec(`DELETE FROM subscribers WHERE id <> $1`, kept.ID); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, db, `SELECT count(*) FROM subscriptions s WHERE NOT EXISTS (SELECT 1 FROM subscribers r WHERE r.id = s.subscriber_id)`); n != 0 {
		t.Errorf("%d subscriptions outlive their readers", n)
	}
	wantSubscriptions(t, db, kept.ID, "another reader's deletion", "digest-en active consent")
}
