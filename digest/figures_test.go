package digest

import (
	"context"
	"testing"

	"newsletter/internal/testdb"
)

// IssueFigures counts each issue's readers by what came of their copy: the ledger's sent rows,
// and each kind of report once per reader however many sources reported it, an issue's figures
// untouched by another issue's events.
func TestIssueFigures(t *testing.T) {
	db := testdb.New(t)
	ctx := context.Background()
	store := NewStore(db, nil)
	var a, b int64
	for _, id := range []*int64{&a, &b} {
		if err := db.Get(id, `INSERT INTO issues (newsletter_id, lang, window_start, window_end, status) VALUES ((SELECT id FROM newsletters WHERE slug = 'digest-en'), 'en', now() - interval '7 days', now(), 'sent') RETURNING id`); err != nil {
			t.Fatal(err)
		}
	}
	// Readers 1-6 got issue a: four accepted, one refused at once, one still queued.
	db.MustExec(`INSERT INTO deliveries (issue_id, subscriber_id, status) VALUES
		($1, 1, 'sent'), ($1, 2, 'sent'), ($1, 3, 'sent'), ($1, 4, 'sent'), ($1, 5, 'failed'), ($1, 6, 'queued'), ($2, 1, 'sent')`, a, b)
	db.MustExec(`INSERT INTO reader_events (kind, subscriber_id, issue_id, source, external_id, occurred_at) VALUES
		('hard', 5, $1, 'smtp', 'x1', now()),
		('hard', 2, $1, 'imap', 'x2', now()), ('hard', 2, $1, 'ses', 'x3', now()),
		('soft', 3, $1, 'imap', 'x4', now()),
		('complaint', 4, $1, 'imap', 'x5', now()), ('complaint', 4, $1, 'mailgun', 'x6', now()),
		('unsubscribe', 1, $1, 'link', 'x7', now()),
		('complaint', 1, $2, 'imap', 'x8', now()),
		('hard', 6, NULL, 'smtp', 'x9', now())`, a, b)
	got, err := store.IssueFigures(ctx, a, b, 999999)
	if err != nil {
		t.Fatal(err)
	}
	want := map[int64]Figures{
		a: {IssueID: a, Delivered: 4, HardBounces: 2, RefusedAtSend: 1, SoftBounces: 1, Complaints: 1, Unsubscribes: 1},
		b: {IssueID: b, Delivered: 1, Complaints: 1},
	}
	if len(got) != len(want) || got[a] != want[a] || got[b] != want[b] {
		t.Errorf("IssueFigures =\n%+v\nwant\n%+v", got, want)
	}
	if none, err := store.IssueFigures(ctx); err != nil || len(none) != 0 {
		t.Errorf("IssueFigures() = %v, %v", none, err)
	}
}
