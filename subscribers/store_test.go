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

var formConsent = Consent{IP: "192.0.2.7", UserAgent: "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
	Source: "form", TextVersion: "2024-05"}

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

// consentState is a reader's state before an action, set up the way it happens in life.
type consentState struct {
	name  string
	setup func(t *testing.T, db *sqlx.DB, s *Store) // leaves "owner@example.org" (Owner, en) so
}

// consentOutcome is what the action must leave for the address.
type consentOutcome struct {
	status     Status // "" : no reader row
	name, lang string
	suppressed bool
	emails     int  // confirmation emails queued by the action
	imported   bool // the reader names the import that added them, its consent evidence
	err        error
}

var ownerConsentStates = []consentState{
	{"new", func(*testing.T, *sqlx.DB, *Store) {}},
	{"pending", func(t *testing.T, db *sqlx.DB, s *Store) { ownerSubscribes(t, db, s) }},
	{"confirmed", func(t *testing.T, db *sqlx.DB, s *Store) { ownerConfirms(t, db, s) }},
	{"unsubscribed", func(t *testing.T, db *sqlx.DB, s *Store) {
		r := ownerConfirms(t, db, s)
		if _, err := s.Unsubscribe(context.Background(), r.UUID); err != nil {
			t.Fatal(err)
		}
	}},
	{"complained", func(t *testing.T, db *sqlx.DB, s *Store) {
		r := ownerConfirms(t, db, s)
		db.MustExec(`UPDATE subscribers SET status = 'complained', complained_at = now() WHERE id = $1`, r.ID)
	}},
	{"bounced", func(t *testing.T, db *sqlx.DB, s *Store) {
		r := ownerConfirms(t, db, s)
		if err := s.RecordRefusal(context.Background(), r.UUID, 0, "550 5.1.1 no such user"); err != nil {
			t.Fatal(err)
		}
	}},
	{"erased", func(t *testing.T, db *sqlx.DB, s *Store) {
		r := ownerConfirms(t, db, s)
		if err := s.Erase(context.Background(), r.UUID); err != nil {
			t.Fatal(err)
		}
	}},
}

// ownerSubscribes makes the owner a pending reader whose confirmation went out long enough ago
// that the throttle allows another.
func ownerSubscribes(t *testing.T, db *sqlx.DB, s *Store) Subscriber {
	t.Helper()
	if err := s.Subscribe(context.Background(), "owner@example.org", "Owner", "en", formConsent); err != nil {
		t.Fatal(err)
	}
	db.MustExec(`UPDATE subscribers SET confirmation_sent_at = now() - interval '1 hour'`)
	db.MustExec(`UPDATE outbox SET sent_at = now()`)
	return reader(t, db, "owner@example.org")
}

func ownerConfirms(t *testing.T, db *sqlx.DB, s *Store) Subscriber {
	t.Helper()
	r := ownerSubscribes(t, db, s)
	if _, err := s.Confirm(context.Background(), r.UUID, time.Now()); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestConsentByPriorState: every prior state of an address against every action. A request from
// the form or the API (anyone may post anyone's address) changes no existing reader: not status,
// name, language or suppression; it is recorded and gets a confirmation email where one may go.
// Only the owner's confirmation brings a reader who left back or lifts an erasure's suppression.
// An old file imported again cannot bring back anyone who left or was erased, even after a
// stranger's request.
func TestConsentByPriorState(t *testing.T) {
	ctx := context.Background()
	stranger := func(source string) func(t *testing.T, db *sqlx.DB, s *Store) error {
		return func(t *testing.T, db *sqlx.DB, s *Store) error {
			return s.Subscribe(ctx, "OWNER@example.org", "WIN $500", "ru", Consent{IP: "198.51.100.9", Source: source, TextVersion: "v2"})
		}
	}
	ownerReturns := func(t *testing.T, db *sqlx.DB, s *Store) error {
		if err := s.Subscribe(ctx, "owner@example.org", "Owner Again", "ru", formConsent); err != nil {
			return err
		}
		_, err := s.Confirm(ctx, reader(t, db, "owner@example.org").UUID, time.Now())
		return err
	}
	oldImport := func(t *testing.T, db *sqlx.DB, s *Store) error {
		_, err := s.Import(ctx, strings.NewReader("email,name,lang,status,confirmed_at\nowner@example.org,Old Name,en,confirmed,2020-01-02T03:04:05Z\n"),
			ImportOptions{Languages: []string{"en", "ru"}})
		return err
	}
	strangerThenImport := func(t *testing.T, db *sqlx.DB, s *Store) error {
		if err := stranger("form")(t, db, s); err != nil {
			return err
		}
		return oldImport(t, db, s)
	}
	owner := func(st Status, emails int) consentOutcome {
		return consentOutcome{status: st, name: "Owner", lang: "en", emails: emails}
	}
	actions := []struct {
		name string
		do   func(t *testing.T, db *sqlx.DB, s *Store) error
		want map[string]consentOutcome
	}{
		{"a stranger's form request", stranger("form"), map[string]consentOutcome{
			"new":          {status: StatusPending, name: "WIN $500", lang: "ru", emails: 1},
			"pending":      owner(StatusPending, 1),
			"confirmed":    owner(StatusConfirmed, 1), // the request asks for the Russian digest, which they do not get
			"unsubscribed": owner(StatusUnsubscribed, 1),
			"complained":   owner(StatusComplained, 1),
			"bounced":      {status: StatusBounced, name: "Owner", lang: "en", suppressed: true},
			"erased":       {status: StatusPending, name: "WIN $500", lang: "ru", suppressed: true, emails: 1},
		}},
		{"a stranger's API request", stranger("api"), map[string]consentOutcome{
			"new":          {status: StatusPending, name: "WIN $500", lang: "ru", emails: 1},
			"pending":      owner(StatusPending, 1),
			"confirmed":    owner(StatusConfirmed, 1), // the request asks for the Russian digest, which they do not get
			"unsubscribed": owner(StatusUnsubscribed, 1),
			"complained":   owner(StatusComplained, 1),
			"bounced":      {status: StatusBounced, name: "Owner", lang: "en", suppressed: true},
			"erased":       {status: StatusPending, name: "WIN $500", lang: "ru", suppressed: true, emails: 1},
		}},
		{"the owner asks and confirms", ownerReturns, map[string]consentOutcome{
			"new":          {status: StatusConfirmed, name: "Owner Again", lang: "ru", emails: 1},
			"pending":      owner(StatusConfirmed, 1),
			"confirmed":    owner(StatusConfirmed, 1), // adds the Russian digest, keeping name and language
			"unsubscribed": {status: StatusConfirmed, name: "Owner Again", lang: "ru", emails: 1},
			"complained":   {status: StatusConfirmed, name: "Owner Again", lang: "ru", emails: 1},
			"bounced":      {status: StatusBounced, name: "Owner", lang: "en", suppressed: true, err: ErrExpired},
			"erased":       {status: StatusConfirmed, name: "Owner Again", lang: "ru", emails: 1},
		}},
		{"an old file imported again", oldImport, map[string]consentOutcome{
			"new":          {status: StatusConfirmed, name: "Old Name", lang: "en", imported: true},
			"pending":      {status: StatusConfirmed, name: "Old Name", lang: "en"},
			"confirmed":    {status: StatusConfirmed, name: "Old Name", lang: "en"},
			"unsubscribed": {status: StatusUnsubscribed, name: "Old Name", lang: "en"},
			"complained":   {status: StatusComplained, name: "Old Name", lang: "en"},
			"bounced":      {status: StatusBounced, name: "Owner", lang: "en", suppressed: true},
			"erased":       {suppressed: true},
		}},
		{"a stranger's request, then the old file", strangerThenImport, map[string]consentOutcome{
			"new":          {status: StatusConfirmed, name: "Old Name", lang: "en", emails: 1},
			"pending":      {status: StatusConfirmed, name: "Old Name", lang: "en", emails: 1},
			"confirmed":    {status: StatusConfirmed, name: "Old Name", lang: "en", emails: 1},
			"unsubscribed": {status: StatusUnsubscribed, name: "Old Name", lang: "en", emails: 1},
			"complained":   {status: StatusComplained, name: "Old Name", lang: "en", emails: 1},
			"bounced":      {status: StatusBounced, name: "Owner", lang: "en", suppressed: true},
			"erased":       {status: StatusPending, name: "WIN $500", lang: "ru", suppressed: true, emails: 1},
		}},
	}
	for _, a := range actions {
		for _, st := range ownerConsentStates {
			t.Run(a.name+"/"+st.name, func(t *testing.T) {
				db, s := newStore(t)
				st.setup(t, db, s)
				outboxBefore := countRows(t, db, `SELECT count(*) FROM outbox`)
				want := a.want[st.name]
				if err := a.do(t, db, s); !errors.Is(err, want.err) || (want.err == nil && err != nil) {
					t.Fatalf("err = %v, want %v", err, want.err)
				}
				if got := countRows(t, db, `SELECT count(*) FROM outbox`) - outboxBefore; got != want.emails {
					t.Errorf("%d confirmation emails queued, want %d", got, want.emails)
				}
				hash := s.suppressionHash("owner@example.org")
				if got := countRows(t, db, `SELECT count(*) FROM suppressions WHERE email_hash = $1`, hash) == 1; got != want.suppressed {
					t.Errorf("suppressed = %v, want %v", got, want.suppressed)
				}
				if want.status == "" {
					if n := countRows(t, db, `SELECT count(*) FROM subscribers`); n != 0 {
						t.Errorf("%d readers, want none", n)
					}
					return
				}
				r := reader(t, db, "owner@example.org")
				if r.Status != want.status || r.Name != want.name || r.Lang != want.lang {
					t.Errorf("reader is %s %q %s, want %s %q %s", r.Status, r.Name, r.Lang, want.status, want.name, want.lang)
				}
				// Only a reader an import added names it; an import changes no other reader's evidence.
				if got := countRows(t, db, `SELECT count(*) FROM subscribers s JOIN imports i ON i.id = s.import_id WHERE s.id = $1`, r.ID) == 1; got != want.imported {
					t.Errorf("reader names an import = %v, want %v", got, want.imported)
				}
				// The stranger's request is on record, open: it is no consent.
				if strings.Contains(a.name, "stranger") {
					if n := countRows(t, db, `SELECT count(*) FROM consents WHERE subscriber_id = $1 AND ip = '198.51.100.9' AND confirmed_at IS NULL`, r.ID); n != 1 {
						t.Errorf("%d open requests from the stranger on record, want 1", n)
					}
				}
			})
		}
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
	if c.IP != "192.0.2.7" || c.UserAgent != "Chrome 131" || c.Source != "form" || c.TextVersion != "2024-05" || time.Since(c.CreatedAt) > time.Minute {
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
		{"token from before leaving, replayed after a new request", func(t *testing.T, db *sqlx.DB, s *Store, r Subscriber) (string, time.Time) {
			issued := time.Now()
			if _, err := s.Unsubscribe(ctx, r.UUID); err != nil {
				t.Fatal(err)
			}
			if err := s.Subscribe(ctx, r.Email, "", "en", formConsent); err != nil {
				t.Fatal(err)
			}
			return r.UUID, issued
		}, ErrExpired, StatusUnsubscribed},
		{"the new request's link brings a reader who left back", func(t *testing.T, db *sqlx.DB, s *Store, r Subscriber) (string, time.Time) {
			if _, err := s.Unsubscribe(ctx, r.UUID); err != nil {
				t.Fatal(err)
			}
			if err := s.Subscribe(ctx, r.Email, "", "en", formConsent); err != nil {
				t.Fatal(err)
			}
			return r.UUID, time.Now()
		}, nil, StatusConfirmed},
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
	// A request through the form does not lift the suppression: anyone may post the address.
	if err := s.Subscribe(ctx, "erase.me@example.com", "", "en", formConsent); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, db, `SELECT count(*) FROM suppressions`); n != 1 {
		t.Errorf("a request lifted the suppression")
	}
	// The owner's confirmation, new consent, does.
	if _, err := s.Confirm(ctx, reader(t, db, "erase.me@example.com").UUID, time.Now()); err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, db, `SELECT count(*) FROM suppressions`); n != 0 {
		t.Errorf("suppression kept after a confirmed opt-in")
	}
}

// A refusal during sending is a hard bounce under the events' policy: the reader bounced (one
// who had left keeps their status, with the bounce noted), the address suppressed, the event
// kept with its reason, without the address, and issue; once only, and nothing for a reader
// who is gone.
func TestStoreRecordRefusal(t *testing.T) {
	db, s := newStore(t)
	ctx := context.Background()
	s.Subscribe(ctx, "b@example.com", "", "en", formConsent)
	s.Subscribe(ctx, "gone@example.com", "", "en", formConsent)
	b, gone := reader(t, db, "b@example.com"), reader(t, db, "gone@example.com")
	s.Confirm(ctx, b.UUID, time.Now())
	s.Unsubscribe(ctx, gone.UUID)
	var issue int64
	if err := db.Get(&issue, `INSERT INTO issues (newsletter_id, lang, window_start, window_end, status) VALUES ((SELECT id FROM newsletters WHERE slug = 'digest-en'), 'en', now() - interval '7 days', now(), 'sent') RETURNING id`); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second time changes nothing
		if err := s.RecordRefusal(ctx, b.UUID, issue, "RCPT TO: 550 5.1.1 <b@example.com>: no such user"); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RecordRefusal(ctx, gone.UUID, issue, "RCPT TO: 550"); err != nil {
		t.Fatal(err)
	}
	if r := reader(t, db, "b@example.com"); r.Status != StatusBounced || r.BouncedAt == nil {
		t.Errorf("confirmed reader after a refusal: %+v", r)
	}
	if r := reader(t, db, "gone@example.com"); r.Status != StatusUnsubscribed || r.BouncedAt == nil {
		t.Errorf("unsubscribed reader after a refusal: %+v", r)
	}
	const reason = "RCPT TO: 550 5.1.1 <address>: no such user"
	if d, err := s.DataExport(ctx, b.UUID); err != nil || d.(ReaderData).BounceReason != reason {
		t.Errorf("data export after a refusal: %+v, %v", d, err)
	}
	var events []struct {
		Kind, Source, Reason, Effect string
		IssueID                      int64 `db:"issue_id"`
	}
	if err := db.Select(&events, `SELECT kind, source, reason, effect, issue_id FROM reader_events WHERE subscriber_id = $1`, b.ID); err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0].Kind != "hard" || events[0].Source != "smtp" || events[0].Reason != reason ||
		events[0].Effect != "bounced" || events[0].IssueID != issue {
		t.Errorf("events of the refused reader: %+v", events)
	}
	if n := countRows(t, db, `SELECT count(*) FROM suppressions WHERE reason = 'bounced'`); n != 2 {
		t.Errorf("%d bounced suppressions, want one per refused address", n)
	}
	if err := s.Erase(ctx, b.UUID); err != nil {
		t.Fatal(err)
	}
	if err := s.RecordRefusal(ctx, b.UUID, issue, "550"); err != nil {
		t.Errorf("a refusal of an erased reader: %v", err)
	}
}
