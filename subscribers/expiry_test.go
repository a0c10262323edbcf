package subscribers

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestExpireUnconfirmed: sign-ups unanswered past the expiry go with their requests; fresh ones,
// confirmed readers and the history of readers who had left stay; requests nobody answered for a
// reader who stays go too.
func TestExpireUnconfirmed(t *testing.T) {
	ctx := context.Background()
	db, s := newStore(t)
	for _, email := range []string{"old@example.com", "new@example.com", "confirmed@example.com", "returning@example.com"} {
		if err := s.Subscribe(ctx, email, "", "en", formConsent); err != nil {
			t.Fatal(err)
		}
	}
	old := `subscribed_at = now() - interval '40 days', confirmation_sent_at = now() - interval '40 days'`
	db.MustExec(`UPDATE subscribers SET ` + old + ` WHERE email = 'old@example.com'`)
	db.MustExec(`UPDATE subscribers SET status = 'confirmed', confirmed_at = now() - interval '90 days', ` + old + ` WHERE email = 'confirmed@example.com'`)
	// Confirmed long ago, left, then asked again 40 days ago without confirming.
	db.MustExec(`UPDATE subscribers SET confirmed_at = now() - interval '90 days', unsubscribed_at = now() - interval '60 days', ` + old + ` WHERE email = 'returning@example.com'`)
	db.MustExec(`UPDATE consents SET created_at = now() - interval '40 days' WHERE subscriber_id = (SELECT id FROM subscribers WHERE email = 'returning@example.com')`)
	db.MustExec(`INSERT INTO consents (subscriber_id, created_at, confirmed_at, source, text_version)
		SELECT id, now() - interval '90 days', now() - interval '90 days', 'form', 'v0' FROM subscribers WHERE email = 'returning@example.com'`)

	n, err := s.ExpireUnconfirmed(ctx, DefaultUnconfirmedExpiry)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("expired %d, want 2 (old and returning)", n)
	}
	status := map[string]string{}
	rows, err := db.Query(`SELECT email, status FROM subscribers`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var e, st string
		rows.Scan(&e, &st)
		status[e] = st
	}
	want := map[string]string{"new@example.com": "pending", "confirmed@example.com": "confirmed", "returning@example.com": "unsubscribed"}
	if len(status) != len(want) {
		t.Errorf("readers left: %v, want %v", status, want)
	}
	for e, st := range want {
		if status[e] != st {
			t.Errorf("%s is %q, want %q", e, status[e], st)
		}
	}
	if c := countRows(t, db, `SELECT count(*) FROM consents c JOIN subscribers s ON s.id = c.subscriber_id WHERE s.email = 'returning@example.com'`); c != 1 {
		t.Errorf("returning reader keeps %d consents, want only the first opt-in", c)
	}
	if c := countRows(t, db, `SELECT count(*) FROM outbox o JOIN subscribers s ON s.id = o.subscriber_id
		WHERE s.email = 'returning@example.com' AND o.sent_at IS NULL AND o.skipped_at IS NULL`); c != 0 {
		t.Errorf("returning reader still has %d confirmation emails queued", c)
	}
	if c := countRows(t, db, `SELECT count(*) FROM consents`); c != 3 {
		t.Errorf("%d consents in all, want 3 (new, confirmed, returning's first)", c)
	}

	// A stranger's old request for a confirmed reader goes; the reader and their consent stay.
	db.MustExec(`INSERT INTO consents (subscriber_id, created_at, source, text_version)
		SELECT id, now() - interval '40 days', 'form', 'v2' FROM subscribers WHERE email = 'confirmed@example.com'`)
	if n, err := s.ExpireUnconfirmed(ctx, DefaultUnconfirmedExpiry); err != nil || n != 1 {
		t.Errorf("expired %d (%v), want the one stale request", n, err)
	}
	if c := countRows(t, db, `SELECT count(*) FROM consents c JOIN subscribers s ON s.id = c.subscriber_id WHERE s.email = 'confirmed@example.com'`); c != 1 {
		t.Errorf("confirmed reader keeps %d consents, want 1", c)
	}

	// The scheduled run counts what it removed.
	db.MustExec(`UPDATE subscribers SET ` + old + ` WHERE email = 'new@example.com'`)
	e, err := NewExpiry(s, DefaultUnconfirmedExpiry, time.Hour, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx2, cancel := context.WithTimeout(ctx, 500*time.Millisecond) // one run at start, then it waits
	defer cancel()
	e.Run(ctx2)
	if got := countRows(t, db, `SELECT count(*) FROM subscribers WHERE email = 'new@example.com'`); got != 0 {
		t.Error("Run did not expire the sign-up")
	}
	if got := testutil.ToFloat64(e.expired); got != 1 {
		t.Errorf("expired counter = %v, want 1", got)
	}
}
