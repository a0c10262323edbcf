package subscribers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"newsletter/internal/dovecottest"
	"newsletter/internal/testdb"
	"newsletter/subscribers/bounce"
)

var evSecret = []byte("events-test-secret-0123456789abc")

const evAddr = "reader@example.org"

func evStore(t *testing.T) (*sqlx.DB, *Store) {
	t.Helper()
	db := testdb.New(t)
	return db, NewStore(db, evSecret)
}

// evSetups leave evAddr in each prior state, reached the way it happens in life.
var evSetups = []struct {
	state string
	setup func(t *testing.T, db *sqlx.DB, s *Store) Subscriber
}{
	{"pending", func(t *testing.T, db *sqlx.DB, s *Store) Subscriber { return evSubscribe(t, db, s) }},
	{"confirmed", func(t *testing.T, db *sqlx.DB, s *Store) Subscriber { return evConfirm(t, db, s) }},
	{"unsubscribed", func(t *testing.T, db *sqlx.DB, s *Store) Subscriber {
		r := evConfirm(t, db, s)
		if _, err := s.Unsubscribe(context.Background(), r.UUID); err != nil {
			t.Fatal(err)
		}
		return r
	}},
	{"bounced", func(t *testing.T, db *sqlx.DB, s *Store) Subscriber {
		r := evConfirm(t, db, s)
		if err := s.RecordRefusal(context.Background(), r.UUID, 0, "550 5.1.1 no such user"); err != nil {
			t.Fatal(err)
		}
		return r
	}},
	{"complained", func(t *testing.T, db *sqlx.DB, s *Store) Subscriber {
		r := evConfirm(t, db, s)
		evRecord(t, s, bounce.Event{Kind: bounce.Complaint, SubscriberUUID: r.UUID, Source: bounce.SourceIMAP, ExternalID: "setup-complaint", At: time.Now()})
		return r
	}},
	{"erased", func(t *testing.T, db *sqlx.DB, s *Store) Subscriber {
		r := evConfirm(t, db, s)
		if err := s.Erase(context.Background(), r.UUID); err != nil {
			t.Fatal(err)
		}
		return r
	}},
}

func evSubscribe(t *testing.T, db *sqlx.DB, s *Store) Subscriber {
	t.Helper()
	if err := s.Subscribe(context.Background(), evAddr, "Reader", "en", Consent{IP: "192.0.2.1", Source: "form", TextVersion: "v1"}); err != nil {
		t.Fatal(err)
	}
	// The confirmation went out long ago, so the throttle allows another.
	db.MustExec(`UPDATE subscribers SET confirmation_sent_at = now() - interval '1 hour'`)
	db.MustExec(`UPDATE outbox SET sent_at = now()`)
	return evLoad(t, db)
}

func evConfirm(t *testing.T, db *sqlx.DB, s *Store) Subscriber {
	t.Helper()
	r := evSubscribe(t, db, s)
	if _, err := s.Confirm(context.Background(), r.UUID, time.Now()); err != nil {
		t.Fatal(err)
	}
	return evLoad(t, db)
}

// evLoad returns evAddr's reader, or the zero Subscriber when there is none.
func evLoad(t *testing.T, db *sqlx.DB) Subscriber {
	t.Helper()
	var s []Subscriber
	if err := db.Select(&s, `SELECT `+subscriberColumns+` FROM subscribers WHERE lower(email) = lower($1)`, evAddr); err != nil {
		t.Fatal(err)
	}
	if len(s) == 0 {
		return Subscriber{}
	}
	return s[0]
}

func evRecord(t *testing.T, s *Store, events ...bounce.Event) {
	t.Helper()
	if err := s.RecordEvents(context.Background(), events); err != nil {
		t.Fatalf("RecordEvents: %v", err)
	}
}

// evSuppression is the reason of evAddr's suppression, "" when there is none.
func evSuppression(t *testing.T, db *sqlx.DB, s *Store) string {
	t.Helper()
	var reasons []string
	if err := db.Select(&reasons, `SELECT reason FROM suppressions WHERE email_hash = $1`, s.suppressionHash(evAddr)); err != nil {
		t.Fatal(err)
	}
	return strings.Join(reasons, ",")
}

// evRows are the reader_events rows, as "kind/effect", oldest first.
func evRows(t *testing.T, db *sqlx.DB, externalPrefix string) []string {
	t.Helper()
	var rows []string
	if err := db.Select(&rows, `SELECT kind || '/' || effect FROM reader_events WHERE external_id LIKE $1 || '%' ORDER BY id`, externalPrefix); err != nil {
		t.Fatal(err)
	}
	return rows
}

// evIssue makes a sent issue and, when sentTo is not 0, a delivery of it to that reader.
func evIssue(t *testing.T, db *sqlx.DB, n int, sentTo int64, status string) int64 {
	t.Helper()
	var id int64
	start := time.Date(2025, 1, 6, 8, 0, 0, 0, time.UTC).AddDate(0, 0, 7*n)
	if err := db.Get(&id, `INSERT INTO issues (newsletter_id, lang, window_start, window_end, status) VALUES ((SELECT id FROM newsletters WHERE slug = 'digest-en'), 'en', $1, $2, 'sent') RETURNING id`,
		start, start.AddDate(0, 0, 7)); err != nil {
		t.Fatal(err)
	}
	if sentTo != 0 {
		db.MustExec(`INSERT INTO deliveries (issue_id, subscriber_id, status, sent_at) VALUES ($1, $2, $3, now())`, id, sentTo, status)
	}
	return id
}

// TestRecordEventsByPriorState: every prior state of a reader against every kind of event.
func TestRecordEventsByPriorState(t *testing.T) {
	type outcome struct {
		status      Status // "" : no reader
		suppression string
		rows        []string // the event's row, "kind/effect"; none when it was dropped
	}
	events := []struct {
		kind bounce.Kind
		want map[string]outcome
	}{
		{bounce.Hard, map[string]outcome{
			"pending":      {StatusBounced, "bounced", []string{"hard/bounced"}},
			"confirmed":    {StatusBounced, "bounced", []string{"hard/bounced"}},
			"unsubscribed": {StatusUnsubscribed, "bounced", []string{"hard/"}},
			"bounced":      {StatusBounced, "bounced", []string{"hard/"}},
			"complained":   {StatusComplained, "complained", []string{"hard/"}},
			"erased":       {"", "erased", nil},
		}},
		// One soft bounce is only counted.
		{bounce.Soft, map[string]outcome{
			"pending":      {StatusPending, "", []string{"soft/"}},
			"confirmed":    {StatusConfirmed, "", []string{"soft/"}},
			"unsubscribed": {StatusUnsubscribed, "", []string{"soft/"}},
			"bounced":      {StatusBounced, "bounced", []string{"soft/"}},
			"complained":   {StatusComplained, "complained", []string{"soft/"}},
			"erased":       {"", "erased", nil},
		}},
		{bounce.Complaint, map[string]outcome{
			"pending":      {StatusComplained, "complained", []string{"complaint/complained"}},
			"confirmed":    {StatusComplained, "complained", []string{"complaint/complained"}},
			"unsubscribed": {StatusComplained, "complained", []string{"complaint/complained"}},
			"bounced":      {StatusBounced, "bounced", []string{"complaint/"}},
			"complained":   {StatusComplained, "complained", []string{"complaint/"}},
			"erased":       {"", "erased", nil},
		}},
	}
	for _, ev := range events {
		for _, st := range evSetups {
			t.Run(string(ev.kind)+"/"+st.state, func(t *testing.T) {
				db, s := evStore(t)
				r := st.setup(t, db, s)
				before := evLoad(t, db)
				issue := evIssue(t, db, 1, r.ID, "sent")
				evRecord(t, s, bounce.Event{Kind: ev.kind, SubscriberUUID: r.UUID, IssueID: issue, Reason: "5.1.1 smtp; 550 no such user",
					At: time.Now(), Source: bounce.SourceIMAP, ExternalID: "test-event"})
				want := ev.want[st.state]
				after := evLoad(t, db)
				if after.Status != want.status {
					t.Errorf("status %q, want %q", after.Status, want.status)
				}
				if got := evSuppression(t, db, s); got != want.suppression {
					t.Errorf("suppression %q, want %q", got, want.suppression)
				}
				if got := evRows(t, db, "test-event"); fmt.Sprint(got) != fmt.Sprint(want.rows) {
					t.Errorf("events %q, want %q", got, want.rows)
				}
				if after.Status == "" {
					return
				}
				// The times say what happened; a first bounce or complaint time is kept.
				bouncedNow := ev.kind == bounce.Hard
				if (after.BouncedAt != nil && (before.BouncedAt == nil || !after.BouncedAt.Equal(*before.BouncedAt))) != (bouncedNow && st.state != "bounced") {
					t.Errorf("bounced_at %v (before %v)", after.BouncedAt, before.BouncedAt)
				}
				complainedNow := ev.kind == bounce.Complaint
				if (after.ComplainedAt != nil && (before.ComplainedAt == nil || !after.ComplainedAt.Equal(*before.ComplainedAt))) != (complainedNow && st.state != "complained") {
					t.Errorf("complained_at %v (before %v)", after.ComplainedAt, before.ComplainedAt)
				}
				var n int
				db.Get(&n, `SELECT count(*) FROM reader_events WHERE issue_id = $1 AND subscriber_id = $2`, issue, r.ID)
				if n != 1 {
					t.Errorf("%d events kept with their issue", n)
				}
			})
		}
	}
}

// A reader who complained or bounced is handled by the consent rules like one who left: a
// stranger's request and an old import change nothing; only the owner's confirmation brings a
// complained reader back (lifting the suppression); a bounced address gets no confirmation at all.
func TestEventsAndConsent(t *testing.T) {
	ctx := context.Background()
	oldFile := "email,name,lang,status,confirmed_at\n" + evAddr + ",Old Name,en,confirmed,2020-01-02T03:04:05Z\n"
	for _, c := range []struct {
		kind         bounce.Kind
		status       Status
		suppression  string
		ownerBack    bool
		confirmEmail bool
	}{
		{bounce.Complaint, StatusComplained, "complained", true, true},
		{bounce.Hard, StatusBounced, "bounced", false, false},
	} {
		t.Run(string(c.kind), func(t *testing.T) {
			db, s := evStore(t)
			r := evConfirm(t, db, s)
			evRecord(t, s, bounce.Event{Kind: c.kind, SubscriberUUID: r.UUID, Source: bounce.SourceMailgun, ExternalID: "e1", At: time.Now()})

			outbox := func() int {
				var n int
				db.Get(&n, `SELECT count(*) FROM outbox WHERE subscriber_id = $1 AND sent_at IS NULL`, r.ID)
				return n
			}
			// A stranger posts the address.
			if err := s.Subscribe(ctx, strings.ToUpper(evAddr), "Stranger", "ru", Consent{IP: "198.51.100.9", Source: "api", TextVersion: "v1"}); err != nil {
				t.Fatal(err)
			}
			if got := evLoad(t, db); got.Status != c.status || got.Name != "Reader" || evSuppression(t, db, s) != c.suppression {
				t.Errorf("after a stranger's request: %s %q, suppression %q", got.Status, got.Name, evSuppression(t, db, s))
			}
			if (outbox() == 1) != c.confirmEmail {
				t.Errorf("confirmation emails queued: %d", outbox())
			}
			// An old file lists the address as confirmed: skipped as suppressed.
			rep, err := s.Import(ctx, strings.NewReader(oldFile), ImportOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Suppressed) != 1 || evLoad(t, db).Status != c.status {
				t.Errorf("import: %+v, status %s", rep, evLoad(t, db).Status)
			}
			// The owner confirms (the link the stranger's request triggered reaches only them).
			_, err = s.Confirm(ctx, r.UUID, time.Now())
			if c.ownerBack {
				if err != nil || evLoad(t, db).Status != StatusConfirmed || evSuppression(t, db, s) != "" {
					t.Errorf("owner's confirmation: %v, status %s, suppression %q", err, evLoad(t, db).Status, evSuppression(t, db, s))
				}
				// A late report about mail from before they came back changes nothing.
				evRecord(t, s, bounce.Event{Kind: c.kind, SubscriberUUID: r.UUID, Source: bounce.SourceMailgun, ExternalID: "late", At: time.Now().Add(-time.Hour)})
				if evLoad(t, db).Status != StatusConfirmed || evSuppression(t, db, s) != "" {
					t.Errorf("a late report undid the confirmation")
				}
				if rows := evRows(t, db, "late"); len(rows) != 1 {
					t.Errorf("the late report was not kept: %q", rows)
				}
			} else if !errors.Is(err, ErrExpired) || evLoad(t, db).Status != c.status {
				t.Errorf("owner's confirmation: %v, status %s", err, evLoad(t, db).Status)
			}
		})
	}
}

// TestSoftBounceEvents: soft bounces turn hard after SoftBounceRun issues in a row that the
// reader was sent, whatever order the reports come in; a delivered issue in between breaks the run.
func TestSoftBounceEvents(t *testing.T) {
	// Each case lists the reader's issues in order: "s" sent and soft-bounced, "." sent without a
	// bounce, "f" refused by the relay at once (not sent), "-" not sent to them; order is the
	// order the soft reports arrive in (indexes into the issues).
	for _, c := range []struct {
		name   string
		issues string
		order  []int
		want   Status
	}{
		{"ThreeInARow", "sss", []int{0, 1, 2}, StatusBounced},
		{"TwoInARow", "ss", []int{0, 1}, StatusConfirmed},
		{"BrokenByADelivery", "ss.s", []int{0, 1, 3}, StatusConfirmed},
		{"AfterTheBreak", "s.sss", []int{0, 2, 3, 4}, StatusBounced},
		{"OutOfOrder", "sss", []int{2, 0, 1}, StatusBounced},
		{"MiddleArrivesLast", "sssss", []int{0, 1, 3, 4, 2}, StatusBounced},
		{"RefusedAtOnceNeitherCountsNorBreaks", "ssfs", []int{0, 1, 3}, StatusBounced},
		{"NotSentToThemNeitherCountsNorBreaks", "s-ss", []int{0, 2, 3}, StatusBounced},
		{"ThreeButNotInARow", "s.s.s", []int{0, 2, 4}, StatusConfirmed},
	} {
		t.Run(c.name, func(t *testing.T) {
			db, s := evStore(t)
			r := evConfirm(t, db, s)
			ids := make([]int64, len(c.issues))
			for i, k := range c.issues {
				switch k {
				case 's', '.':
					ids[i] = evIssue(t, db, i, r.ID, "sent")
				case 'f':
					ids[i] = evIssue(t, db, i, r.ID, "failed")
				case '-':
					ids[i] = evIssue(t, db, i, 0, "")
				}
			}
			for n, i := range c.order {
				evRecord(t, s, bounce.Event{Kind: bounce.Soft, SubscriberUUID: r.UUID, IssueID: ids[i], Reason: "4.2.2 mailbox full",
					At: time.Now(), Source: bounce.SourceSES, ExternalID: fmt.Sprintf("soft-%d", i)})
				// Until the last report, the reader is still confirmed.
				if got := evLoad(t, db).Status; n < len(c.order)-1 && got != StatusConfirmed {
					t.Fatalf("after %d reports: %s", n+1, got)
				}
			}
			got := evLoad(t, db)
			if got.Status != c.want {
				t.Errorf("status %s, want %s", got.Status, c.want)
			}
			wantSupp := ""
			if c.want == StatusBounced {
				wantSupp = "bounced"
				var reason string
				db.Get(&reason, `SELECT bounce_reason FROM subscribers WHERE id = $1`, r.ID)
				if !strings.HasPrefix(reason, "soft bounces in 3 issues in a row; last: 4.2.2") {
					t.Errorf("bounce reason %q", reason)
				}
				if rows := evRows(t, db, "soft-"); rows[len(rows)-1] != "soft/bounced" {
					t.Errorf("events %q: the last should have bounced the reader", rows)
				}
			}
			if s := evSuppression(t, db, s); s != wantSupp {
				t.Errorf("suppression %q, want %q", s, wantSupp)
			}
		})
	}
}

func TestRecordEventsIdentityAndIdempotence(t *testing.T) {
	db, s := evStore(t)
	r := evConfirm(t, db, s)
	ctx := context.Background()

	// Unknown readers, a missing issue, junk: no error, nothing for anyone.
	evRecord(t, s,
		bounce.Event{Kind: bounce.Hard, SubscriberUUID: "0b9d7c1e-4f6a-4c2e-9a51-3e8f2d7b6c10", Source: bounce.SourceIMAP, ExternalID: "u1", At: time.Now()},
		bounce.Event{Kind: bounce.Hard, Email: "nobody@example.org", Source: bounce.SourceSES, ExternalID: "u2", At: time.Now()},
		bounce.Event{Kind: bounce.Hard, SubscriberUUID: "not-a-uuid", Source: bounce.SourceIMAP, ExternalID: "u3", At: time.Now()},
		bounce.Event{Kind: "bogus", SubscriberUUID: r.UUID, Source: bounce.SourceIMAP, ExternalID: "u4", At: time.Now()},
		bounce.Event{Kind: bounce.Hard, SubscriberUUID: r.UUID, Source: "carrier-pigeon", ExternalID: "u5", At: time.Now()},
		bounce.Event{Kind: bounce.Hard, SubscriberUUID: r.UUID, Source: bounce.SourceIMAP, ExternalID: "", At: time.Now()},
	)
	if got := evLoad(t, db).Status; got != StatusConfirmed {
		t.Fatalf("status %s", got)
	}
	if rows := evRows(t, db, ""); len(rows) != 0 {
		t.Fatalf("kept %q", rows)
	}

	// By address (a signed webhook without a token), in another case; an issue that does not
	// exist is kept as unknown.
	e := bounce.Event{Kind: bounce.Soft, Email: strings.ToUpper(evAddr), IssueID: 999999, Reason: "4.2.2 full", Source: bounce.SourceSES, ExternalID: "ses-1", At: time.Now()}
	evRecord(t, s, e)
	var issue *int64
	if err := db.Get(&issue, `SELECT issue_id FROM reader_events WHERE external_id = 'ses-1' AND subscriber_id = $1`, r.ID); err != nil || issue != nil {
		t.Fatalf("issue_id %v, %v", issue, err)
	}
	// The same report again, alone or in a batch: kept once.
	evRecord(t, s, e)
	evRecord(t, s, e, bounce.Event{Kind: bounce.Complaint, SubscriberUUID: r.UUID, Source: bounce.SourceSES, ExternalID: "ses-2", At: time.Now()}, e)
	if rows := evRows(t, db, "ses-"); fmt.Sprint(rows) != "[soft/ complaint/complained]" {
		t.Errorf("events %q", rows)
	}
	// The same id from another source is another report.
	evRecord(t, s, bounce.Event{Kind: bounce.Complaint, SubscriberUUID: r.UUID, Source: bounce.SourceMailgun, ExternalID: "ses-2", At: time.Now()})
	var n int
	db.Get(&n, `SELECT count(*) FROM reader_events WHERE external_id = 'ses-2'`)
	if n != 2 {
		t.Errorf("%d rows for one id from two sources", n)
	}

	// A batch that fails keeps nothing of itself.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.RecordEvents(cctx, []bounce.Event{{Kind: bounce.Hard, SubscriberUUID: r.UUID, Source: bounce.SourceIMAP, ExternalID: "x", At: time.Now()}}); err == nil {
		t.Error("RecordEvents with a cancelled context succeeded")
	}
	if rows := evRows(t, db, "x"); len(rows) != 0 {
		t.Errorf("kept %q", rows)
	}
}

// The whole path: real reports appended to a real Dovecot mailbox, read by the IMAP intake into
// the real store, which applies the policy.
func TestEventsFromIMAP(t *testing.T) {
	db, s := evStore(t)
	alice := evConfirm(t, db, s)
	if err := s.Subscribe(context.Background(), "bob@example.org", "Bob", "en", Consent{Source: "form", TextVersion: "v1"}); err != nil {
		t.Fatal(err)
	}
	var bob Subscriber
	db.Get(&bob, `SELECT `+subscriberColumns+` FROM subscribers WHERE email = 'bob@example.org'`)
	if _, err := s.Confirm(context.Background(), bob.UUID, time.Now()); err != nil {
		t.Fatal(err)
	}
	issue := evIssue(t, db, 1, alice.ID, "sent")
	db.MustExec(`INSERT INTO deliveries (issue_id, subscriber_id, status, sent_at) VALUES ($1, $2, 'sent', now())`, issue, bob.ID)

	const base = "bounces@news.example.org"
	srv := dovecottest.Start(t, dovecottest.Options{})
	srv.Append(t, "INBOX", evFixture(t, "dsn_postfix_hard.eml", map[string]string{
		"RETURN_PATH": bounce.Address(base, evSecret, alice.UUID, issue), "UNSUB_URL": "https://news.example.org/unsubscribe/x"}))
	srv.Append(t, "INBOX", evFixture(t, "arf_abuse.eml", map[string]string{
		"RETURN_PATH": bounce.Address(base, evSecret, bob.UUID, issue), "UNSUB_URL": "https://news.example.org/unsubscribe/x"}))
	// A forged report naming Bob's address, with a token signed under another secret.
	srv.Append(t, "INBOX", evFixture(t, "forged_dsn.eml", map[string]string{
		"FORGED_RETURN_PATH": bounce.Address(base, []byte("guessed secret"), bob.UUID, issue)}))

	cfg, err := bounce.ParseIMAPURL(srv.URL("INBOX"))
	if err != nil {
		t.Fatal(err)
	}
	in := &bounce.IMAPIntake{Config: cfg, Parser: &bounce.Parser{Base: base, Secret: evSecret}, Recorder: s}
	res, err := in.Poll(context.Background())
	if err != nil || res != (bounce.PollResult{Recorded: 2, Unhandled: 1}) {
		t.Fatalf("Poll = %+v, %v", res, err)
	}
	if got := evLoad(t, db).Status; got != StatusBounced {
		t.Errorf("alice: %s, want bounced", got)
	}
	db.Get(&bob, `SELECT `+subscriberColumns+` FROM subscribers WHERE id = $1`, bob.ID)
	if bob.Status != StatusComplained {
		t.Errorf("bob: %s, want complained", bob.Status)
	}
	var figures []string
	db.Select(&figures, `SELECT kind || ':' || count(*) FROM reader_events WHERE issue_id = $1 GROUP BY kind ORDER BY kind`, issue)
	if fmt.Sprint(figures) != "[complaint:1 hard:1]" {
		t.Errorf("issue figures %q", figures)
	}
	if len(srv.Messages(t, "INBOX")) != 0 || len(srv.Messages(t, "Processed")) != 2 || len(srv.Messages(t, "Unhandled")) != 1 {
		t.Errorf("mailbox not emptied as expected")
	}
}

// evFixture reads one of the bounce package's report fixtures with its placeholders filled.
func evFixture(t *testing.T, name string, vars map[string]string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("bounce", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range vars {
		b = bytes.ReplaceAll(b, []byte("${"+k+"}"), []byte(v))
	}
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

// Leaving through one issue's unsubscribe link keeps an 'unsubscribe' event for that issue, once:
// a second click, a reader who had left, a link of no issue and a reader who comes back and
// leaves through another issue's link are each counted as they happened.
func TestUnsubscribeFromIssue(t *testing.T) {
	db, s := evStore(t)
	ctx := context.Background()
	r := evConfirm(t, db, s)
	issue := evIssue(t, db, 1, r.ID, "sent")
	for range 2 {
		got, err := s.UnsubscribeFrom(ctx, r.UUID, issue)
		if err != nil || got.Status != StatusUnsubscribed {
			t.Fatalf("UnsubscribeFrom = %+v, %v", got, err)
		}
	}
	unsubscribes := func() []string {
		t.Helper()
		var rows []string
		if err := db.Select(&rows, `SELECT kind || '/' || source || '/' || effect || '/' || coalesce(issue_id::text, '-')
			FROM reader_events WHERE subscriber_id = $1 ORDER BY id`, r.ID); err != nil {
			t.Fatal(err)
		}
		return rows
	}
	first := fmt.Sprintf("unsubscribe/link/unsubscribed/%d", issue)
	if got := unsubscribes(); fmt.Sprint(got) != fmt.Sprint([]string{first}) {
		t.Fatalf("events %q after two clicks, want one unsubscribe for issue %d", got, issue)
	}
	// Back through their own confirmation, then out through a link of no issue: not an issue's.
	evConfirm(t, db, s)
	if _, err := s.UnsubscribeFrom(ctx, r.UUID, 0); err != nil {
		t.Fatal(err)
	}
	// Back again, then out through the next issue's link.
	evConfirm(t, db, s)
	next := evIssue(t, db, 2, r.ID, "sent")
	if _, err := s.UnsubscribeFrom(ctx, r.UUID, next); err != nil {
		t.Fatal(err)
	}
	if got, want := unsubscribes(), []string{first, fmt.Sprintf("unsubscribe/link/unsubscribed/%d", next)}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events %q, want %q", got, want)
	}
	if _, err := s.UnsubscribeFrom(ctx, "00000000-0000-4000-8000-000000000000", issue); !errors.Is(err, ErrNotFound) {
		t.Errorf("an unknown reader: %v", err)
	}
}
