package subscribers

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"newsletter/subscribers/bounce"
)

// TestResendConfirmationByPriorState: an editor's "send the confirmation again" follows the
// consent rules of a subscription: only for an open request of the reader's own, to a reader who
// is pending or left by unsubscribing or complaining, never while one is unsent and at most one
// per ConfirmThrottle. It makes no request and changes nothing else about the reader; the email
// it queues confirms the open request.
func TestResendConfirmationByPriorState(t *testing.T) {
	ctx := context.Background()
	asksAgain := func(t *testing.T, db *sqlx.DB, s *Store) {
		if err := s.Subscribe(ctx, "owner@example.org", "Owner Again", "ru", formConsent); err != nil {
			t.Fatal(err)
		}
		db.MustExec(`UPDATE subscribers SET confirmation_sent_at = now() - interval '1 hour'`)
		db.MustExec(`UPDATE outbox SET sent_at = now() WHERE sent_at IS NULL AND skipped_at IS NULL`)
	}
	states := []struct {
		name  string
		setup func(t *testing.T, db *sqlx.DB, s *Store)
		want  ResendBlock
	}{
		{"pending", func(t *testing.T, db *sqlx.DB, s *Store) { ownerSubscribes(t, db, s) }, ResendAllowed},
		{"pending, its email unsent", func(t *testing.T, db *sqlx.DB, s *Store) {
			if err := s.Subscribe(ctx, "owner@example.org", "Owner", "en", formConsent); err != nil {
				t.Fatal(err)
			}
		}, ResendQueued},
		{"pending, mailed 2 minutes ago", func(t *testing.T, db *sqlx.DB, s *Store) {
			ownerSubscribes(t, db, s)
			db.MustExec(`UPDATE subscribers SET confirmation_sent_at = now() - interval '2 minutes'`)
		}, ResendThrottled},
		{"pending by import", func(t *testing.T, db *sqlx.DB, s *Store) {
			if _, err := s.Import(ctx, strings.NewReader("email,name,lang,status\nowner@example.org,Owner,en,pending\n"), ImportOptions{Languages: []string{"en"}}); err != nil {
				t.Fatal(err)
			}
		}, ResendNoRequest},
		{"confirmed", func(t *testing.T, db *sqlx.DB, s *Store) { ownerConfirms(t, db, s) }, ResendConfirmed},
		{"confirmed, then asked for another digest", func(t *testing.T, db *sqlx.DB, s *Store) {
			ownerConfirms(t, db, s)
			asksAgain(t, db, s) // the Russian digest, which they do not get
		}, ResendAllowed},
		{"unsubscribed", ownerConsentStates[3].setup, ResendNoRequest},
		{"unsubscribed, then asked again", func(t *testing.T, db *sqlx.DB, s *Store) {
			ownerConsentStates[3].setup(t, db, s)
			asksAgain(t, db, s)
		}, ResendAllowed},
		{"complained", ownerConsentStates[4].setup, ResendNoRequest},
		{"complained, then asked again", func(t *testing.T, db *sqlx.DB, s *Store) {
			ownerConsentStates[4].setup(t, db, s)
			asksAgain(t, db, s)
		}, ResendAllowed},
		{"bounced", ownerConsentStates[5].setup, ResendBounced},
		{"bounced, then asked again", func(t *testing.T, db *sqlx.DB, s *Store) {
			ownerConsentStates[5].setup(t, db, s)
			asksAgain(t, db, s)
		}, ResendBounced},
	}
	for _, st := range states {
		t.Run(st.name, func(t *testing.T) {
			db, s := newStore(t)
			st.setup(t, db, s)
			before := reader(t, db, "owner@example.org")
			consents := countRows(t, db, `SELECT count(*) FROM consents`)
			outbox := countRows(t, db, `SELECT count(*) FROM outbox`)
			rec, err := s.Reader(ctx, before.UUID)
			if err != nil {
				t.Fatal(err)
			}
			if rec.Resend != st.want {
				t.Errorf("the reader's page says %q, want %q", rec.Resend, st.want)
			}
			err = s.ResendConfirmation(ctx, before.UUID)
			var refused *ResendRefused
			switch {
			case st.want == ResendAllowed && err != nil:
				t.Fatalf("resend: %v, want it queued", err)
			case st.want != ResendAllowed && (!errors.As(err, &refused) || !errors.Is(err, ErrNoResend) || refused.Block != st.want):
				t.Fatalf("resend: %v, want a refusal for %q", err, st.want)
			}
			if st.want == ResendThrottled {
				var sentAt time.Time
				db.Get(&sentAt, `SELECT confirmation_sent_at FROM subscribers`)
				if !refused.After.Equal(sentAt.Add(ConfirmThrottle)) || !rec.ResendAfter.Equal(refused.After) {
					t.Errorf("a throttled resend may go at %v (page: %v), want %v", refused.After, rec.ResendAfter, sentAt.Add(ConfirmThrottle))
				}
			}
			after := reader(t, db, "owner@example.org")
			if after.Status != before.Status || after.Name != before.Name || after.Lang != before.Lang {
				t.Errorf("the reader went from %s %q %s to %s %q %s", before.Status, before.Name, before.Lang, after.Status, after.Name, after.Lang)
			}
			if n := countRows(t, db, `SELECT count(*) FROM consents`); n != consents {
				t.Errorf("%d consent rows, was %d: a resend makes no request", n, consents)
			}
			queued := countRows(t, db, `SELECT count(*) FROM outbox`) - outbox
			if want := map[bool]int{true: 1, false: 0}[st.want == ResendAllowed]; queued != want {
				t.Fatalf("%d confirmation emails queued, want %d", queued, want)
			}
			if st.want != ResendAllowed {
				return
			}
			// Another at once is refused: one is unsent now.
			if err := s.ResendConfirmation(ctx, before.UUID); !errors.As(err, &refused) || refused.Block != ResendQueued {
				t.Errorf("a second resend: %v, want refused as queued", err)
			}
			// The email's link answers the reader's own open request.
			if got, err := s.Confirm(ctx, before.UUID, time.Now()); err != nil || got.Status != StatusConfirmed {
				t.Errorf("confirming through the resent email: %v, %s", err, got.Status)
			}
		})
	}
	t.Run("Unknown", func(t *testing.T) {
		_, s := newStore(t)
		for _, id := range []string{"00000000-0000-4000-8000-000000000000", "not-a-uuid", ""} {
			if err := s.ResendConfirmation(ctx, id); !errors.Is(err, ErrNotFound) {
				t.Errorf("resend to %q: %v, want ErrNotFound", id, err)
			}
		}
	})
}

// TestSummary: readers by status and language, the suppressions by reason, and the weeks'
// changes bucketed by the Monday (UTC) that starts each week, empty weeks included.
func TestSummary(t *testing.T) {
	ctx := context.Background()
	db, s := newStore(t)
	// Times relative to the start of this week (UTC), as the summary buckets them.
	const week = `(date_trunc('week', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')`
	add := func(email, lang, status string) int64 {
		var id int64
		if err := db.Get(&id, `INSERT INTO subscribers (email, lang, status, confirmed_at) VALUES ($1, $2, $3, CASE WHEN $3 = 'confirmed' THEN now() END) RETURNING id`,
			email, lang, status); err != nil {
			t.Fatal(err)
		}
		return id
	}
	consent := func(id int64, source, confirmedAt string) {
		db.MustExec(`INSERT INTO consents (subscriber_id, source, text_version, confirmed_at) VALUES ($1, $2, 'v1', `+confirmedAt+`)`, id, source)
	}
	a := add("a@example.org", "en", "confirmed")
	consent(a, "form", week+` + interval '1 hour'`) // this week
	b := add("b@example.org", "en", "confirmed")
	consent(b, "api", week+` - interval '6 days'`) // last week
	c := add("c@example.org", "ru", "confirmed")
	consent(c, "import", week+` + interval '1 hour'`) // an import: not a confirmation
	consent(c, "form", `NULL`)                        // an open request: not one either
	d := add("d@example.org", "ru", "unsubscribed")
	db.MustExec(`UPDATE subscribers SET unsubscribed_at = `+week+` - interval '13 days' WHERE id = $1`, d) // two weeks ago
	e := add("e@example.org", "en", "bounced")
	db.MustExec(`UPDATE subscribers SET bounced_at = `+week+` + interval '2 hours', unsubscribed_at = `+week+` - interval '100 days' WHERE id = $1`, e)
	f := add("f@example.org", "de", "complained")
	db.MustExec(`UPDATE subscribers SET complained_at = `+week+` - interval '1 second', unsubscribed_at = `+week+` - interval '2 days' WHERE id = $1`, f)
	add("g@example.org", "en", "pending")
	old := add("old@example.org", "en", "confirmed")
	consent(old, "form", week+` - interval '12 weeks'`) // before the first of 12 weeks
	gone := add("gone@example.org", "en", "confirmed")
	consent(gone, "form", week)
	if err := s.Erase(ctx, reader(t, db, "gone@example.org").UUID); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordEvents(ctx, []bounce.Event{{Kind: bounce.Complaint, SubscriberUUID: reader(t, db, "b@example.org").UUID,
		Source: bounce.SourceIMAP, ExternalID: "summary-1", At: time.Now()}}); err != nil {
		t.Fatal(err)
	}

	sum, err := s.Summary(ctx, 12)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]int{}
	for _, c := range sum.Counts {
		got[string(c.Status)+"/"+c.Lang] = c.N
	}
	want := map[string]int{"confirmed/en": 2, "complained/en": 1, "confirmed/ru": 1, "unsubscribed/ru": 1, "bounced/en": 1, "complained/de": 1, "pending/en": 1}
	if len(got) != len(want) {
		t.Errorf("counts %v, want %v", got, want)
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("%s: %d readers, want %d", k, got[k], n)
		}
	}
	supp := map[string]int{}
	for _, x := range sum.Suppressions {
		supp[x.Reason] = x.N
	}
	if supp["erased"] != 1 || supp["complained"] != 1 || len(supp) != 2 {
		t.Errorf("suppressions %v, want 1 erased and 1 complained", supp)
	}

	if len(sum.Weeks) != 12 {
		t.Fatalf("%d weeks, want 12", len(sum.Weeks))
	}
	for i, w := range sum.Weeks {
		if w.Start.UTC().Weekday() != time.Monday || w.Start.UTC().Hour() != 0 || w.Start.UTC().Minute() != 0 {
			t.Errorf("week %d starts %v, want a Monday at 00:00 UTC", i, w.Start.UTC())
		}
		if i > 0 && !w.Start.Equal(sum.Weeks[i-1].Start.AddDate(0, 0, 7)) {
			t.Errorf("week %d starts %v, a week after %v expected", i, w.Start.UTC(), sum.Weeks[i-1].Start.UTC())
		}
	}
	figures := func(w WeekFigures) [4]int { return [4]int{w.Confirmed, w.Unsubscribed, w.Bounced, w.Complained} }
	wantWeeks := map[int][4]int{
		11: {1, 0, 1, 1}, // this week: a confirmed (form), e bounced, b complained
		10: {1, 1, 0, 1}, // last week: b confirmed (api), f unsubscribed, then complained a second before Monday
		9:  {0, 1, 0, 0}, // d unsubscribed on the Tuesday before
	}
	for i, w := range sum.Weeks {
		if got, want := figures(w), wantWeeks[i]; got != want {
			t.Errorf("week of %s: %v (confirmed, unsubscribed, bounced, complained), want %v", w.Start.UTC().Format("2 Jan"), got, want)
		}
	}
}

// TestFindByEmail: a reader is found by their whole address only, compared as the list stores it.
func TestFindByEmail(t *testing.T) {
	ctx := context.Background()
	db, s := newStore(t)
	owner := ownerSubscribes(t, db, s)
	if err := s.Subscribe(ctx, "Jörg@Bücher.example", "", "en", formConsent); err != nil {
		t.Fatal(err)
	}
	jorg := reader(t, db, "Jörg@bücher.example")
	for _, c := range []struct {
		name, email string
		err         error
		want        string
	}{
		{"International", "Jörg@BÜCHER.example", nil, jorg.UUID},
		{"Exact", "owner@example.org", nil, owner.UUID},
		{"OtherCase", "Owner@EXAMPLE.org", nil, owner.UUID},
		{"Spaces", "  owner@example.org ", nil, owner.UUID},
		{"Nobody", "other@example.org", ErrNotFound, ""},
		{"Prefix", "owner@example.o", ErrNotFound, ""},
		{"Pattern", "%@example.org", ErrNotFound, ""},
		{"NotAnAddress", "owner", ErrInvalid, ""},
		{"Domain", "@example.org", ErrInvalid, ""},
		{"Empty", "", ErrInvalid, ""},
		{"HeaderInjection", "owner@example.org\r\nBcc: x@example.org", ErrInvalid, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := s.FindByEmail(ctx, c.email)
			if !errors.Is(err, c.err) || (c.err == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, c.err)
			}
			if c.err == nil && got.UUID != c.want {
				t.Errorf("found %s, want %s", got.UUID, c.want)
			}
			var fe *FieldError
			if c.err == ErrInvalid && (!errors.As(err, &fe) || fe.Field != "email") {
				t.Errorf("err = %v, want a FieldError on email", err)
			}
		})
	}
}

// TestReaderRecord: the reader's page holds their consent records (consent, open and lapsed
// requests), their deliveries and the reports about them, newest first.
func TestReaderRecord(t *testing.T) {
	ctx := context.Background()
	db, s := newStore(t)
	r := ownerConfirms(t, db, s) // a request, confirmed
	if _, err := s.Unsubscribe(ctx, r.UUID); err != nil {
		t.Fatal(err)
	}
	db.MustExec(`UPDATE consents SET created_at = now() - interval '1 day', confirmed_at = now() - interval '1 day'`)
	db.MustExec(`UPDATE subscribers SET unsubscribed_at = now() - interval '1 hour'`)
	// A request from before they left, which lapsed, and an open one since.
	db.MustExec(`INSERT INTO consents (subscriber_id, source, text_version, created_at) VALUES ($1, 'form', 'v1', now() - interval '2 hours')`, r.ID)
	if err := s.Subscribe(ctx, "owner@example.org", "New Name", "ru", formConsent); err != nil {
		t.Fatal(err)
	}
	sent := evIssue(t, db, 1, r.ID, "sent")
	failed := evIssue(t, db, 2, r.ID, "failed")
	db.MustExec(`UPDATE deliveries SET attempts = 5, last_error = '452 4.2.2 mailbox full' WHERE issue_id = $1`, failed)
	if err := s.RecordEvents(ctx, []bounce.Event{{Kind: bounce.Soft, SubscriberUUID: r.UUID, IssueID: sent, Source: bounce.SourceSES,
		ExternalID: "rec-1", Reason: "4.2.2 mailbox full", At: time.Now().Add(-time.Minute)}}); err != nil {
		t.Fatal(err)
	}

	rec, err := s.Reader(ctx, r.UUID)
	if err != nil {
		t.Fatal(err)
	}
	if rec.Email != "owner@example.org" || rec.Status != StatusUnsubscribed || rec.Lang != "en" {
		t.Errorf("reader %s %s %s", rec.Email, rec.Status, rec.Lang)
	}
	if len(rec.Consents) != 3 {
		t.Fatalf("%d consent records, want 3", len(rec.Consents))
	}
	open, lapsed, consent := rec.Consents[0], rec.Consents[1], rec.Consents[2]
	if !open.Open || open.ConfirmedAt != nil || open.Name.String != "New Name" || open.Lang.String != "ru" || open.IP == "" {
		t.Errorf("newest record %+v, want the open request for New Name, ru", open)
	}
	if lapsed.Open || lapsed.ConfirmedAt != nil {
		t.Errorf("the request from before they left: %+v, want lapsed", lapsed)
	}
	if consent.Open || consent.ConfirmedAt == nil || consent.Source != "form" {
		t.Errorf("oldest record %+v, want the confirmed consent", consent)
	}
	if len(rec.Deliveries) != 2 || rec.Deliveries[0].IssueID != failed || rec.Deliveries[0].Attempts != 5 ||
		rec.Deliveries[0].LastError != "452 4.2.2 mailbox full" || rec.Deliveries[1].IssueID != sent || rec.Deliveries[1].SentAt == nil {
		t.Errorf("deliveries %+v", rec.Deliveries)
	}
	if len(rec.Events) != 1 || rec.Events[0].Kind != "soft" || rec.Events[0].Source != "ses" || rec.Events[0].IssueID.Int64 != sent ||
		rec.Events[0].Reason != "4.2.2 mailbox full" {
		t.Errorf("events %+v", rec.Events)
	}
	if rec.Resend != ResendQueued {
		t.Errorf("resend %q, want queued (the new request's email is unsent)", rec.Resend)
	}
	for _, id := range []string{"00000000-0000-4000-8000-000000000000", "owner@example.org", ""} {
		if _, err := s.Reader(ctx, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Reader(%q): %v, want ErrNotFound", id, err)
		}
	}
}

// TestSetLang: an editor's language change sets the language only.
func TestSetLang(t *testing.T) {
	ctx := context.Background()
	db, s := newStore(t)
	r := ownerConfirms(t, db, s)
	got, err := s.SetLang(ctx, r.UUID, "ru")
	if err != nil || got.Lang != "ru" || got.Name != "Owner" || got.Status != StatusConfirmed {
		t.Fatalf("SetLang: %+v, %v", got, err)
	}
	if _, err := s.SetLang(ctx, r.UUID, "r'u"); !errors.Is(err, ErrInvalid) {
		t.Errorf("a bad language: %v, want ErrInvalid", err)
	}
	if _, err := s.SetLang(ctx, "00000000-0000-4000-8000-000000000000", "en"); !errors.Is(err, ErrNotFound) {
		t.Errorf("nobody: %v, want ErrNotFound", err)
	}
	if l := reader(t, db, "owner@example.org").Lang; l != "ru" {
		t.Errorf("stored language %s", l)
	}
}

// TestAuditTrail: a reader's trail lists the entries about them, the latest first, and a target
// that is no uuid finds nothing.
func TestAuditTrail(t *testing.T) {
	ctx := context.Background()
	db, s := newStore(t)
	r := ownerSubscribes(t, db, s)
	for _, e := range [][3]any{{"lookup", r.UUID, "found"}, {"language", r.UUID, "en to ru"}, {"lookup", nil, "no reader"}} {
		if _, err := db.Exec(`INSERT INTO audit_log (actor, action, target, detail) VALUES ('editor', $1, $2, $3)`, e[0], e[1], e[2]); err != nil {
			t.Fatal(err)
		}
	}
	if trail, err := s.AuditTrail(ctx, "owner@example.org", 5); !errors.Is(err, ErrNotFound) || len(trail) != 0 {
		t.Errorf("a trail by address: %+v, %v", trail, err)
	}
	trail, err := s.AuditTrail(ctx, r.UUID, 1)
	if err != nil || len(trail) != 1 || trail[0].Action != "language" || trail[0].Detail != "en to ru" {
		t.Errorf("the latest entry about the reader: %+v, %v", trail, err)
	}
	// An erasure leaves its record: the log names the uuid, never the address.
	if err := s.Erase(ctx, r.UUID); err != nil {
		t.Fatal(err)
	}
	if trail, err := s.AuditTrail(ctx, r.UUID, 10); err != nil || len(trail) != 2 {
		t.Errorf("after the erasure: %d entries, %v; want 2", len(trail), err)
	}
	if n := countRows(t, db, `SELECT count(*) FROM audit_log WHERE detail LIKE '%@%' OR actor LIKE '%@%'`); n != 0 {
		t.Errorf("%d entries hold an address", n)
	}
}
