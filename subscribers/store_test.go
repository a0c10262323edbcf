package subscribers

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"newsletter/internal/testdb"
)

var dataSecret = []byte("data-test-secret-0123456789abcdef")

var formConsent = Consent{IP: "192.0.2.7", UserAgent: "TestAgent/1.0", Source: "form", TextVersion: "2024-05"}

func newStore(t *testing.T) (*sqlx.DB, *Store) {
	t.Helper()
	db := testdb.New(t)
	return db, NewStore(db, dataSecret)
}

// reader loads the reader with that address (any case).
func reader(t *testing.T, db *sqlx.DB, email string) Subscriber {
	t.Helper()
	var s Subscriber
	if err := db.Get(&s, `SELECT `+subscriberColumns+` FROM subscribers WHERE lower(email) = lower($1)`, email); err != nil {
		t.Fatalf("reader %s: %v", email, err)
	}
	return s
}

func countRows(t *testing.T, db *sqlx.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.Get(&n, query, args...); err != nil {
		t.Fatal(err)
	}
	return n
}

// counts is what Subscribe left behind for one reader.
type counts struct{ consents, outbox int }

func countsFor(t *testing.T, db *sqlx.DB, id int64) counts {
	return counts{
		consents: countRows(t, db, `SELECT count(*) FROM consents WHERE subscriber_id = $1`, id),
		outbox:   countRows(t, db, `SELECT count(*) FROM outbox WHERE subscriber_id = $1`, id),
	}
}

func TestStoreSubscribeByStatus(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name  string
		setup func(t *testing.T, db *sqlx.DB, s *Store) // the reader's state before the second subscribe
		// after the second subscribe
		status         Status
		newSubscribed  bool // subscribed_at moved
		consents       int
		outbox         int
		nameAfterwards string
	}{
		{"pending stays pending, throttled", func(*testing.T, *sqlx.DB, *Store) {}, StatusPending, false, 2, 1, "Second"},
		{"pending after the throttle gets a second email", func(t *testing.T, db *sqlx.DB, _ *Store) {
			db.MustExec(`UPDATE subscribers SET confirmation_sent_at = now() - interval '11 minutes'`)
			db.MustExec(`UPDATE outbox SET sent_at = now()`)
		}, StatusPending, false, 2, 2, "Second"},
		{"confirmed: nothing at all", func(t *testing.T, db *sqlx.DB, _ *Store) {
			db.MustExec(`UPDATE subscribers SET status = 'confirmed', confirmed_at = now(), confirmation_sent_at = now() - interval '1 day'`)
			db.MustExec(`UPDATE outbox SET sent_at = now()`)
		}, StatusConfirmed, false, 1, 1, "First"},
		{"unsubscribed opts in again", func(t *testing.T, db *sqlx.DB, _ *Store) {
			db.MustExec(`UPDATE subscribers SET status = 'unsubscribed', unsubscribed_at = now(), confirmation_sent_at = now() - interval '1 day'`)
			db.MustExec(`UPDATE outbox SET sent_at = now()`)
		}, StatusPending, true, 2, 2, "Second"},
		{"bounced: nothing at all, no email to an address that refuses mail", func(t *testing.T, db *sqlx.DB, _ *Store) {
			db.MustExec(`UPDATE subscribers SET status = 'bounced', bounced_at = now(), confirmation_sent_at = now() - interval '1 day'`)
			db.MustExec(`UPDATE outbox SET sent_at = now()`)
		}, StatusBounced, false, 1, 1, "First"},
		{"complained opts in again, within the throttle no email yet", func(t *testing.T, db *sqlx.DB, _ *Store) {
			db.MustExec(`UPDATE subscribers SET status = 'complained', complained_at = now()`)
			db.MustExec(`UPDATE outbox SET sent_at = now()`)
		}, StatusPending, true, 2, 1, "Second"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db, s := newStore(t)
			if err := s.Subscribe(ctx, "Someone@Example.org", "First", "en", formConsent); err != nil {
				t.Fatal(err)
			}
			first := reader(t, db, "someone@example.org")
			if first.Status != StatusPending || first.Email != "Someone@example.org" || first.Lang != "en" {
				t.Fatalf("new reader = %+v", first)
			}
			if c := countsFor(t, db, first.ID); c != (counts{1, 1}) {
				t.Fatalf("new reader: %+v, want one consent and one queued email", c)
			}
			// Make time visible between the two calls.
			db.MustExec(`UPDATE subscribers SET subscribed_at = subscribed_at - interval '1 hour'`)
			first = reader(t, db, "someone@example.org")
			tc.setup(t, db, s)
			before := reader(t, db, "someone@example.org")

			if err := s.Subscribe(ctx, "SOMEONE@example.ORG", "Second", "ru", formConsent); err != nil {
				t.Fatal(err)
			}
			after := reader(t, db, "someone@example.org")
			if after.ID != first.ID || countRows(t, db, `SELECT count(*) FROM subscribers`) != 1 {
				t.Fatal("the address was duplicated")
			}
			if after.Status != tc.status {
				t.Errorf("status = %s, want %s", after.Status, tc.status)
			}
			if moved := !after.SubscribedAt.Equal(before.SubscribedAt); moved != tc.newSubscribed {
				t.Errorf("subscribed_at moved = %v, want %v", moved, tc.newSubscribed)
			}
			if c := countsFor(t, db, after.ID); c != (counts{tc.consents, tc.outbox}) {
				t.Errorf("consents, outbox = %+v, want %d, %d", c, tc.consents, tc.outbox)
			}
			if after.Name != tc.nameAfterwards {
				t.Errorf("name = %q, want %q", after.Name, tc.nameAfterwards)
			}
			if tc.status == StatusConfirmed && !after.UpdatedAt.Equal(before.UpdatedAt) {
				t.Error("a confirmed reader was touched")
			}
		})
	}
}

func TestStoreSubscribeRecordsConsentAndQueuesOnce(t *testing.T) {
	db, s := newStore(t)
	ctx := context.Background()
	for range 5 {
		if err := s.Subscribe(ctx, "a@example.com", "", "en", formConsent); err != nil {
			t.Fatal(err)
		}
	}
	r := reader(t, db, "a@example.com")
	if got := countRows(t, db, `SELECT count(*) FROM outbox WHERE subscriber_id = $1 AND kind = 'confirm'`, r.ID); got != 1 {
		t.Errorf("%d confirmation emails queued by 5 subscribes within 10 minutes, want 1", got)
	}
	var c ConsentRecord
	if err := db.Get(&c, `SELECT created_at, ip, user_agent, source, text_version FROM consents WHERE subscriber_id = $1 LIMIT 1`, r.ID); err != nil {
		t.Fatal(err)
	}
	if c.IP != "192.0.2.7" || c.UserAgent != "TestAgent/1.0" || c.Source != "form" || c.TextVersion != "2024-05" || time.Since(c.CreatedAt) > time.Minute {
		t.Errorf("consent = %+v", c)
	}
	// Past the throttle, but the first email is still unsent (SMTP down): it will carry a fresh
	// link when it goes, so no second one is queued.
	db.MustExec(`UPDATE subscribers SET confirmation_sent_at = now() - interval '11 minutes'`)
	if err := s.Subscribe(ctx, "a@example.com", "", "en", formConsent); err != nil {
		t.Fatal(err)
	}
	if got := countRows(t, db, `SELECT count(*) FROM outbox`); got != 1 {
		t.Errorf("%d emails queued while one is unsent, want 1", got)
	}
}

func TestStoreSubscribeConcurrentSameAddress(t *testing.T) {
	db, s := newStore(t)
	ctx := context.Background()
	const n = 16
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			email := "Race@Example.com"
			if i%2 == 1 {
				email = "race@EXAMPLE.com"
			}
			errs <- s.Subscribe(ctx, email, "", "en", formConsent)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Errorf("concurrent subscribe failed: %v", err)
		}
	}
	if got := countRows(t, db, `SELECT count(*) FROM subscribers`); got != 1 {
		t.Errorf("%d readers, want 1", got)
	}
	if got := countRows(t, db, `SELECT count(*) FROM outbox`); got != 1 {
		t.Errorf("%d emails queued, want 1", got)
	}
	if got := countRows(t, db, `SELECT count(*) FROM consents`); got != n {
		t.Errorf("%d consents, want %d", got, n)
	}
}

func TestStoreSubscribeBadInputStoresNothing(t *testing.T) {
	tests := []struct {
		name, email, rname, lang string
		c                        Consent
		field                    string
	}{
		{"empty email", "  ", "", "en", formConsent, "email"},
		{"no at", "nobody.example.com", "", "en", formConsent, "email"},
		{"header injection", "a@example.com\r\nBcc: x@example.com", "", "en", formConsent, "email"},
		{"too long", strings.Repeat("a", 60) + "@" + strings.Repeat("b", 200) + ".com", "", "en", formConsent, "email"},
		{"long name", "a@example.com", strings.Repeat("я", 101), "en", formConsent, "name"},
		{"name with newline", "a@example.com", "Eve\nBcc", "en", formConsent, "name"},
		{"bad lang", "a@example.com", "", "EN'; --", formConsent, "lang"},
		{"empty lang", "a@example.com", "", "", formConsent, "lang"},
		{"unknown source", "a@example.com", "", "en", Consent{Source: "scraped"}, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db, s := newStore(t)
			err := s.Subscribe(context.Background(), tc.email, tc.rname, tc.lang, tc.c)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("err = %v, want ErrInvalid", err)
			}
			var fe *FieldError
			if tc.field != "" && (!errors.As(err, &fe) || fe.Field != tc.field) {
				t.Errorf("err = %v, want a FieldError on %s", err, tc.field)
			}
			if n := countRows(t, db, `SELECT (SELECT count(*) FROM subscribers) + (SELECT count(*) FROM consents) + (SELECT count(*) FROM outbox)`); n != 0 {
				t.Errorf("%d rows stored", n)
			}
		})
	}
}

func TestStoreConfirm(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		act    func(t *testing.T, db *sqlx.DB, s *Store, r Subscriber) (uuid string, issued time.Time)
		want   error
		status Status
	}{
		{"fresh token", func(t *testing.T, db *sqlx.DB, s *Store, r Subscriber) (string, time.Time) {
			return r.UUID, time.Now()
		}, nil, StatusConfirmed},
		{"twice", func(t *testing.T, db *sqlx.DB, s *Store, r Subscriber) (string, time.Time) {
			if _, err := s.Confirm(ctx, r.UUID, time.Now()); err != nil {
				t.Fatal(err)
			}
			return r.UUID, time.Now()
		}, nil, StatusConfirmed},
		{"token from before a new opt-in", func(t *testing.T, db *sqlx.DB, s *Store, r Subscriber) (string, time.Time) {
			issued := time.Now()
			if _, err := s.Unsubscribe(ctx, r.UUID); err != nil {
				t.Fatal(err)
			}
			if err := s.Subscribe(ctx, r.Email, "", "en", formConsent); err != nil {
				t.Fatal(err)
			}
			return r.UUID, issued
		}, ErrExpired, StatusPending},
		{"unsubscribed reader's old link", func(t *testing.T, db *sqlx.DB, s *Store, r Subscriber) (string, time.Time) {
			issued := time.Now()
			if _, err := s.Unsubscribe(ctx, r.UUID); err != nil {
				t.Fatal(err)
			}
			return r.UUID, issued
		}, ErrExpired, StatusUnsubscribed},
		{"erased reader", func(t *testing.T, db *sqlx.DB, s *Store, r Subscriber) (string, time.Time) {
			if err := s.Erase(ctx, r.UUID); err != nil {
				t.Fatal(err)
			}
			return r.UUID, time.Now()
		}, ErrNotFound, ""},
		{"not a uuid", func(*testing.T, *sqlx.DB, *Store, Subscriber) (string, time.Time) {
			return "'; DROP TABLE subscribers; --", time.Now()
		}, ErrNotFound, StatusPending},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			db, s := newStore(t)
			if err := s.Subscribe(ctx, "c@example.com", "", "en", formConsent); err != nil {
				t.Fatal(err)
			}
			r := reader(t, db, "c@example.com")
			uuid, issued := tc.act(t, db, s, r)
			got, err := s.Confirm(ctx, uuid, issued)
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("Confirm err = %v, want %v", err, tc.want)
			}
			if tc.want == nil && (got.Status != StatusConfirmed || got.ConfirmedAt == nil) {
				t.Errorf("returned %+v", got)
			}
			if tc.status != "" {
				if after := reader(t, db, "c@example.com"); after.Status != tc.status {
					t.Errorf("status = %s, want %s", after.Status, tc.status)
				}
			}
		})
	}
}

func TestStoreConfirmTwiceKeepsFirstTime(t *testing.T) {
	db, s := newStore(t)
	ctx := context.Background()
	s.Subscribe(ctx, "d@example.com", "", "en", formConsent)
	r := reader(t, db, "d@example.com")
	first, err := s.Confirm(ctx, r.UUID, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	second, err := s.Confirm(ctx, r.UUID, time.Now())
	if err != nil || !second.ConfirmedAt.Equal(*first.ConfirmedAt) {
		t.Errorf("second confirm: %v, confirmed_at %v then %v", err, first.ConfirmedAt, second.ConfirmedAt)
	}
}

func TestStoreUnsubscribeIdempotent(t *testing.T) {
	db, s := newStore(t)
	ctx := context.Background()
	s.Subscribe(ctx, "u@example.com", "", "en", formConsent)
	r := reader(t, db, "u@example.com")
	s.Confirm(ctx, r.UUID, time.Now())
	first, err := s.Unsubscribe(ctx, r.UUID)
	if err != nil || first.Status != StatusUnsubscribed || first.UnsubscribedAt == nil {
		t.Fatalf("unsubscribe: %+v, %v", first, err)
	}
	second, err := s.Unsubscribe(ctx, r.UUID)
	if err != nil || second.Status != StatusUnsubscribed || !second.UnsubscribedAt.Equal(*first.UnsubscribedAt) {
		t.Errorf("second unsubscribe: %+v, %v", second, err)
	}
	if _, err := s.Unsubscribe(ctx, "00000000-0000-4000-8000-000000000000"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown reader: %v, want ErrNotFound", err)
	}
}

func TestStoreUpdate(t *testing.T) {
	db, s := newStore(t)
	ctx := context.Background()
	s.Subscribe(ctx, "m@example.com", "Old", "en", formConsent)
	r := reader(t, db, "m@example.com")
	tests := []struct {
		name, rname, lang string
		want              error
	}{
		{"name and language", "  Мария ", "ru", nil},
		{"name cleared", "", "en", nil},
		{"name too long", strings.Repeat("x", 101), "en", ErrInvalid},
		{"bad language", "X", "english!", ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := s.Update(ctx, r.UUID, tc.rname, tc.lang)
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("err = %v, want %v", err, tc.want)
			}
			if tc.want == nil && (got.Name != strings.TrimSpace(tc.rname) || got.Lang != tc.lang) {
				t.Errorf("got %+v", got)
			}
		})
	}
	if _, err := s.Update(ctx, "00000000-0000-4000-8000-000000000000", "", "en"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown reader: %v", err)
	}
}

func TestStoreDataExport(t *testing.T) {
	db, s := newStore(t)
	ctx := context.Background()
	s.Subscribe(ctx, "x@example.com", "Xavier", "en", formConsent)
	s.Subscribe(ctx, "x@example.com", "Xavier", "en", Consent{Source: "api", TextVersion: "2024-06"})
	r := reader(t, db, "x@example.com")
	v, err := s.DataExport(ctx, r.UUID)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		Email, Name, Lang, Status string
		Consents                  []map[string]any
		ConfirmationEmails        []map[string]any `json:"confirmation_emails"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.Email != "x@example.com" || got.Name != "Xavier" || got.Status != "pending" || len(got.Consents) != 2 ||
		got.Consents[0]["ip"] != "192.0.2.7" || got.Consents[1]["source"] != "api" || len(got.ConfirmationEmails) != 1 {
		t.Errorf("export = %s", b)
	}
	if strings.Contains(string(b), r.UUID) || strings.Contains(string(b), `"id"`) {
		t.Errorf("export carries internal ids: %s", b)
	}
	if _, err := s.DataExport(ctx, "00000000-0000-4000-8000-000000000000"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown reader: %v", err)
	}
}

func TestStoreEraseKeepsOnlyASuppression(t *testing.T) {
	db, s := newStore(t)
	ctx := context.Background()
	s.Subscribe(ctx, "Erase.Me@Example.com", "Eve", "en", formConsent)
	r := reader(t, db, "erase.me@example.com")
	if err := s.Erase(ctx, r.UUID); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"subscribers", "consents", "outbox"} {
		if n := countRows(t, db, `SELECT count(*) FROM `+table); n != 0 {
			t.Errorf("%d rows left in %s", n, table)
		}
	}
	mac := hmac.New(sha256.New, dataSecret)
	mac.Write([]byte("erase.me@example.com"))
	if n := countRows(t, db, `SELECT count(*) FROM suppressions WHERE email_hash = $1`, mac.Sum(nil)); n != 1 {
		t.Errorf("no suppression keyed by HMAC-SHA256 of the lower-cased address")
	}
	if n := countRows(t, db, `SELECT count(*) FROM suppressions WHERE position('erase' in encode(email_hash, 'escape')) > 0`); n != 0 {
		t.Error("suppression holds the address in clear")
	}
	if err := s.Erase(ctx, r.UUID); !errors.Is(err, ErrNotFound) {
		t.Errorf("second erase: %v, want ErrNotFound", err)
	}

	// An import cannot bring the address back, in any case.
	rep, err := s.Import(ctx, strings.NewReader("email,name\nERASE.ME@example.com,Eve\nother@example.com,\n"), ImportOptions{Languages: []string{"en"}})
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(rep.Suppressed) != "[2]" || rep.Inserted != 1 || countRows(t, db, `SELECT count(*) FROM subscribers WHERE lower(email) = 'erase.me@example.com'`) != 0 {
		t.Errorf("import of an erased address: %+v", rep)
	}
	// New consent through the form lifts the suppression.
	if err := s.Subscribe(ctx, "erase.me@example.com", "", "en", formConsent); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, db, `SELECT count(*) FROM suppressions`); n != 0 {
		t.Errorf("suppression kept after a new opt-in")
	}
}

func TestStoreMarkBounced(t *testing.T) {
	db, s := newStore(t)
	ctx := context.Background()
	s.Subscribe(ctx, "b@example.com", "", "en", formConsent)
	s.Subscribe(ctx, "gone@example.com", "", "en", formConsent)
	b, gone := reader(t, db, "b@example.com"), reader(t, db, "gone@example.com")
	s.Confirm(ctx, b.UUID, time.Now())
	s.Unsubscribe(ctx, gone.UUID)
	if err := s.MarkBounced(ctx, b.ID, "550 5.1.1 no such user"); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkBounced(ctx, gone.ID, "550"); err != nil {
		t.Fatal(err)
	}
	if r := reader(t, db, "b@example.com"); r.Status != StatusBounced || r.BouncedAt == nil {
		t.Errorf("confirmed reader after bounce: %+v", r)
	}
	if r := reader(t, db, "gone@example.com"); r.Status != StatusUnsubscribed || r.BouncedAt == nil {
		t.Errorf("unsubscribed reader after bounce: %+v", r)
	}
	if d, err := s.DataExport(ctx, b.UUID); err != nil || d.(ReaderData).BounceReason != "550 5.1.1 no such user" {
		t.Errorf("data export after bounce: %+v, %v", d, err)
	}
	if err := s.MarkBounced(ctx, 999999, "x"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}
}
