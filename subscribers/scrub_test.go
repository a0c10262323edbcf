package subscribers

import (
	"context"
	"strings"
	"testing"

	"newsletter/internal/textclean"
)

// TestEraseScrubsServerTexts: after an erasure no stored server text holds the reader's address,
// in any spelling: their deliveries' last SMTP error, their events' reasons, an issue's pause
// reason. Another reader's texts stay as they were.
func TestEraseScrubsServerTexts(t *testing.T) {
	ctx := context.Background()
	db, s := newStore(t)
	const email = "Ann.Lee@bücher.example"
	for _, e := range []string{email, "bob@example.org"} {
		if err := s.Subscribe(ctx, e, "", "en", formConsent); err != nil {
			t.Fatal(err)
		}
	}
	ann, bob := reader(t, db, email), reader(t, db, "bob@example.org")
	var issue int64
	if err := db.Get(&issue, `INSERT INTO issues (newsletter_id, lang, window_start, window_end, status, pause_reason)
		VALUES ((SELECT id FROM newsletters WHERE slug = 'digest-en'), 'en', now() - interval '7 days', now(), 'paused', 'relay refused 3 in a row, last 550 <ann.lee@xn--bcher-kva.example>') RETURNING id`); err != nil {
		t.Fatal(err)
	}
	const annError = "550 5.1.1 <ANN.LEE@BÜCHER.EXAMPLE>: Recipient address rejected: User unknown in virtual mailbox table (mailbox ann.lee)"
	const bobError = "450 4.2.2 <bob@example.org>: mailbox full; ann.lee is not the issue"
	db.MustExec(`INSERT INTO deliveries (issue_id, subscriber_id, status, last_error) VALUES ($1, $2, 'failed', $3), ($1, $4, 'queued', $5)`,
		issue, ann.ID, annError, bob.ID, bobError)
	// As the sender records a refusal: the event's reason comes through bounce.Reason, which
	// takes out whole addresses but not the local part alone.
	if err := s.RecordRefusal(ctx, ann.UUID, issue, "550 5.1.1 no mailbox here by that name: Ann.Lee"); err != nil {
		t.Fatal(err)
	}
	if err := s.Erase(ctx, ann.UUID); err != nil {
		t.Fatal(err)
	}
	var texts []string
	if err := db.Select(&texts, `
		SELECT last_error FROM deliveries WHERE subscriber_id = $1
		UNION ALL SELECT reason FROM reader_events WHERE subscriber_id = $1
		UNION ALL SELECT pause_reason FROM issues WHERE id = $2`, ann.ID, issue); err != nil {
		t.Fatal(err)
	}
	if len(texts) != 3 {
		t.Fatalf("%d texts kept after the erasure, want 3 (delivery, event, pause reason): %q", len(texts), texts)
	}
	for _, txt := range texts {
		low := strings.ToLower(txt)
		for _, bad := range []string{"ann.lee", "bücher", "xn--bcher-kva"} {
			if strings.Contains(low, bad) {
				t.Errorf("%q still holds %q", txt, bad)
			}
		}
		if !strings.Contains(txt, textclean.AddressMark) {
			t.Errorf("%q: nothing was replaced, want %s where the address was", txt, textclean.AddressMark)
		}
	}
	var kept string
	db.Get(&kept, `SELECT last_error FROM deliveries WHERE subscriber_id = $1`, bob.ID)
	if kept != bobError {
		t.Errorf("another reader's error changed: %q", kept)
	}
}
