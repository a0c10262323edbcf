package subscribers

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
)

// addInvestigations adds an editions newsletter, as an editor would, and returns its id.
func addInvestigations(t *testing.T, db *sqlx.DB) int64 {
	t.Helper()
	var id int64
	if err := db.Get(&id, `INSERT INTO newsletters (slug, kind, names, langs) VALUES ('investigations', 'editions', '{"en":"Investigations"}', '{en,ru}') RETURNING id`); err != nil {
		t.Fatal(err)
	}
	return id
}

func newsletterID(t *testing.T, db *sqlx.DB, slug string) int64 {
	t.Helper()
	var id int64
	if err := db.Get(&id, `SELECT id FROM newsletters WHERE slug = $1`, slug); err != nil {
		t.Fatal(err)
	}
	return id
}

// TestManageToggles: the manage page's toggles turn newsletters on (one consent of source
// 'manage', confirmed, naming each newsletter it turned on, the subscriptions resting on it) and
// off; the language moves nothing; leaving the last one unsubscribes with an event; turning one on
// brings an unsubscribed reader back; a bounced one is refused and nothing is saved; an id the
// page did not offer is a field error.
func TestManageToggles(t *testing.T) {
	ctx := context.Background()
	db, s := newStore(t)
	inv := addInvestigations(t, db)
	en, ru := newsletterID(t, db, "digest-en"), newsletterID(t, db, "digest-ru")
	r := ownerConfirms(t, db, s)

	cs, err := s.Choices(ctx, r.UUID)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range cs {
		got = append(got, fmt.Sprintf("%s %v", c.Slug, c.Active))
	}
	if want := []string{"digest-en true", "digest-ru false", "investigations false"}; !slices.Equal(got, want) {
		t.Fatalf("choices %q, want %q", got, want)
	}

	c := Consent{IP: "192.0.2.0", UserAgent: formConsent.UserAgent, TextVersion: ManageTextVersion}
	sub, res, err := s.Manage(ctx, r.UUID, ManageInput{Name: "Owner", Lang: "ru", Choose: true, On: []int64{ru, inv}, Consent: c})
	if err != nil || sub.Lang != "ru" || !slices.Equal(res.TurnedOn, []int64{ru, inv}) || !slices.Equal(res.TurnedOff, []int64{en}) || res.Unsubscribed {
		t.Fatalf("Manage = %+v, %+v, %v", sub, res, err)
	}
	wantSubscriptions(t, db, r.ID, "toggled", "digest-en left consent", "digest-ru active consent", "investigations active consent")
	var consent struct {
		ID          int64  `db:"id"`
		Source      string `db:"source"`
		IP          string `db:"ip"`
		UserAgent   string `db:"user_agent"`
		TextVersion string `db:"text_version"`
		Confirmed   bool   `db:"confirmed"`
		Newsletters string `db:"newsletters"`
	}
	if err := db.Get(&consent, `SELECT c.id, c.source, c.ip, c.user_agent, c.text_version, c.confirmed_at IS NOT NULL AS confirmed,
			(SELECT string_agg(n.slug, ' ' ORDER BY n.slug) FROM consent_newsletters cn JOIN newsletters n ON n.id = cn.newsletter_id WHERE cn.consent_id = c.id) AS newsletters
		FROM consents c WHERE c.subscriber_id = $1 ORDER BY c.id DESC LIMIT 1`, r.ID); err != nil {
		t.Fatal(err)
	}
	if consent.Source != "manage" || consent.IP != "192.0.2.0" || consent.UserAgent != "Chrome 131" || consent.TextVersion != ManageTextVersion ||
		!consent.Confirmed || consent.Newsletters != "digest-ru investigations" {
		t.Errorf("manage consent %+v", consent)
	}
	if n := countRows(t, db, `SELECT count(*) FROM subscriptions WHERE subscriber_id = $1 AND state = 'active' AND consent_id = $2`, r.ID, consent.ID); n != 2 {
		t.Errorf("%d subscriptions rest on the manage consent, want 2", n)
	}
	// The reader's own data export lists them, with what each rests on.
	v, err := s.DataExport(ctx, r.UUID)
	if err != nil {
		t.Fatal(err)
	}
	var subs []string
	for _, d := range v.(ReaderData).Subscriptions {
		subs = append(subs, d.Newsletter+" "+d.State+" "+d.RestsOn)
	}
	if want := []string{"digest-en left form", "digest-ru active manage", "investigations active manage"}; !slices.Equal(subs, want) {
		t.Errorf("data export subscriptions %q, want %q", subs, want)
	}
	// A save from a page without toggles changes the language only.
	if _, _, err := s.Manage(ctx, r.UUID, ManageInput{Name: "Owner", Lang: "en"}); err != nil {
		t.Fatal(err)
	}
	wantSubscriptions(t, db, r.ID, "language", "digest-en left consent", "digest-ru active consent", "investigations active consent")

	if _, _, err := s.Manage(ctx, r.UUID, ManageInput{Name: "Owner", Lang: "en", Choose: true, On: []int64{ru, 999999}}); !errors.Is(err, ErrInvalid) {
		t.Errorf("an id not offered: %v", err)
	}
	wantSubscriptions(t, db, r.ID, "not offered", "digest-en left consent", "digest-ru active consent", "investigations active consent")

	// Untick everything: unsubscribed, with an event.
	sub, res, err = s.Manage(ctx, r.UUID, ManageInput{Name: "Owner", Lang: "en", Choose: true})
	if err != nil || sub.Status != StatusUnsubscribed || !res.Unsubscribed || sub.UnsubscribedAt == nil {
		t.Fatalf("untick all = %+v, %+v, %v", sub, res, err)
	}
	if n := countRows(t, db, `SELECT count(*) FROM reader_events WHERE subscriber_id = $1 AND kind = 'unsubscribe' AND source = 'manage' AND effect = 'unsubscribed'`, r.ID); n != 1 {
		t.Errorf("%d manage unsubscribe events, want 1", n)
	}
	// Tick one again: back, confirmed.
	sub, res, err = s.Manage(ctx, r.UUID, ManageInput{Name: "Owner", Lang: "en", Choose: true, On: []int64{inv}, Consent: c})
	if err != nil || sub.Status != StatusConfirmed || !res.Returned {
		t.Fatalf("back = %+v, %+v, %v", sub, res, err)
	}
	wantSubscriptions(t, db, r.ID, "back", "digest-en left consent", "digest-ru left consent", "investigations active consent")

	// A bounced reader cannot turn one on; nothing of the save is kept.
	db.MustExec(`UPDATE subscribers SET status = 'bounced', bounced_at = now() WHERE id = $1`, r.ID)
	if _, _, err := s.Manage(ctx, r.UUID, ManageInput{Name: "Bounced", Lang: "en", Choose: true, On: []int64{inv, en}, Consent: c}); !errors.Is(err, ErrNoReturn) {
		t.Fatalf("bounced reader turning one on: %v", err)
	}
	wantSubscriptions(t, db, r.ID, "bounced", "digest-en left consent", "digest-ru left consent", "investigations active consent")
	if got := reader(t, db, "owner@example.org"); got.Name != "Owner" || got.Status != StatusBounced {
		t.Errorf("bounced reader after a refused save: %+v", got)
	}
}

// TestLeaveIssue: an issue's link leaves that issue's newsletter only (event effect 'left'), a
// second click nothing; the last one unsubscribes (effect 'unsubscribed'); a link of no issue
// leaves everything.
func TestLeaveIssue(t *testing.T) {
	ctx := context.Background()
	db, s := newStore(t)
	inv := addInvestigations(t, db)
	r := ownerConfirms(t, db, s)
	db.MustExec(`INSERT INTO subscriptions (subscriber_id, newsletter_id) VALUES ($1, $2)`, r.ID, inv)
	var edition, digest int64
	if err := db.Get(&edition, `INSERT INTO issues (newsletter_id, lang, markdown, status) VALUES ($1, 'en', '# One', 'sent') RETURNING id`, inv); err != nil {
		t.Fatal(err)
	}
	digest = evIssue(t, db, 1, r.ID, "sent")

	for range 2 {
		sub, d, err := s.LeaveIssue(ctx, r.UUID, edition)
		if err != nil || sub.Status != StatusConfirmed || d.Newsletter.Slug != "investigations" || d.Remaining != 1 {
			t.Fatalf("LeaveIssue(edition) = %+v, %+v, %v", sub, d, err)
		}
	}
	wantSubscriptions(t, db, r.ID, "left the edition", "digest-en active consent", "investigations left none")
	sub, d, err := s.LeaveIssue(ctx, r.UUID, digest)
	if err != nil || sub.Status != StatusUnsubscribed || !d.Left || d.Remaining != 0 {
		t.Fatalf("LeaveIssue(digest) = %+v, %+v, %v", sub, d, err)
	}
	var events []string
	db.Select(&events, `SELECT kind || '/' || source || '/' || effect || '/' || (issue_id = $2) FROM reader_events WHERE subscriber_id = $1 ORDER BY id`, r.ID, edition)
	if want := []string{"unsubscribe/link/left/true", "unsubscribe/link/unsubscribed/false"}; !slices.Equal(events, want) {
		t.Errorf("events %q, want %q", events, want)
	}

	// Back, then a link of no issue: everything.
	db.MustExec(`UPDATE subscribers SET status = 'confirmed' WHERE id = $1`, r.ID)
	db.MustExec(`UPDATE subscriptions SET state = 'active', left_at = NULL WHERE subscriber_id = $1`, r.ID)
	if sub, _, err := s.LeaveIssue(ctx, r.UUID, 0); err != nil || sub.Status != StatusUnsubscribed {
		t.Fatalf("LeaveIssue(0) = %+v, %v", sub, err)
	}
	wantSubscriptions(t, db, r.ID, "no issue", "digest-en left consent", "investigations left none")
	if _, _, err := s.LeaveIssue(ctx, "00000000-0000-4000-8000-000000000000", edition); !errors.Is(err, ErrNotFound) {
		t.Errorf("an unknown reader: %v", err)
	}
}

// TestLeaveNewsletter: a welcome's link leaves its newsletter only, once, with an event of no
// issue; the last one unsubscribes; a newsletter that is gone leaves everything.
func TestLeaveNewsletter(t *testing.T) {
	ctx := context.Background()
	db, s := newStore(t)
	inv := addInvestigations(t, db)
	r := ownerConfirms(t, db, s)
	db.MustExec(`INSERT INTO subscriptions (subscriber_id, newsletter_id) VALUES ($1, $2)`, r.ID, inv)

	for i := range 2 {
		sub, d, err := s.LeaveNewsletter(ctx, r.UUID, inv)
		if err != nil || sub.Status != StatusConfirmed || d.Newsletter.ID != inv || d.Left != (i == 0) || d.Remaining != 1 {
			t.Fatalf("click %d: LeaveNewsletter = %+v, %+v, %v", i+1, sub, d, err)
		}
	}
	wantSubscriptions(t, db, r.ID, "left through the welcome", "digest-en active consent", "investigations left none")
	if sub, d, err := s.LeaveNewsletter(ctx, r.UUID, newsletterID(t, db, "digest-en")); err != nil || sub.Status != StatusUnsubscribed || !d.Left || d.Remaining != 0 {
		t.Fatalf("the last one: %+v, %+v, %v", sub, d, err)
	}
	var events []string
	db.Select(&events, `SELECT effect || '/' || coalesce(issue_id::text, '-') FROM reader_events WHERE subscriber_id = $1 AND kind = 'unsubscribe' ORDER BY id`, r.ID)
	if want := []string{"left/-", "unsubscribed/-"}; !slices.Equal(events, want) {
		t.Errorf("events %q, want %q", events, want)
	}

	db.MustExec(`UPDATE subscribers SET status = 'confirmed' WHERE id = $1`, r.ID)
	db.MustExec(`UPDATE subscriptions SET state = 'active', left_at = NULL WHERE subscriber_id = $1`, r.ID)
	if sub, d, err := s.LeaveNewsletter(ctx, r.UUID, 1<<40); err != nil || sub.Status != StatusUnsubscribed || d.Newsletter.ID != 0 {
		t.Fatalf("a newsletter that is gone: %+v, %+v, %v", sub, d, err)
	}
	wantSubscriptions(t, db, r.ID, "gone newsletter", "digest-en left consent", "investigations left none")
	if _, _, err := s.LeaveNewsletter(ctx, "00000000-0000-4000-8000-000000000000", inv); !errors.Is(err, ErrNotFound) {
		t.Errorf("an unknown reader: %v", err)
	}
}

// TestConfirmedReaderAsksForMore: a confirmed reader's new request is no consent until its link is
// clicked, as anyone's. It gets a confirmation only when it asks for something they do not get yet
// (throttled as any other); its link starts exactly that, resting on the new request, and changes
// nothing else of theirs but confirmed_at (the last confirmation, which closes the requests made
// before it); a link from before the request does nothing.
func TestConfirmedReaderAsksForMore(t *testing.T) {
	ctx := context.Background()
	db, s := newStore(t)
	inv := addInvestigations(t, db)
	r := ownerConfirms(t, db, s)
	before := reader(t, db, "owner@example.org")
	outbox := func() int {
		return countRows(t, db, `SELECT count(*) FROM outbox WHERE kind = 'confirm' AND sent_at IS NULL`)
	}
	db.MustExec(`UPDATE subscribers SET confirmation_sent_at = now() - interval '1 hour'`)

	linkBefore := time.Now() // the last link they were sent, before any request below
	// What they get already: recorded, no email.
	c := formConsent
	c.Newsletters = []int64{newsletterID(t, db, "digest-en")}
	if err := s.Subscribe(ctx, "owner@example.org", "Someone", "ru", c); err != nil {
		t.Fatal(err)
	}
	if n := outbox(); n != 0 {
		t.Fatalf("%d confirmations for a newsletter they get", n)
	}

	// Something new: one confirmation, then the throttle.
	c.Newsletters = []int64{inv}
	for range 2 {
		if err := s.Subscribe(ctx, "OWNER@example.org", "Someone", "ru", c); err != nil {
			t.Fatal(err)
		}
	}
	if n := outbox(); n != 1 {
		t.Fatalf("%d confirmations queued, want 1", n)
	}
	wantSubscriptions(t, db, r.ID, "asked", "digest-en active consent")
	if sub, err := s.Confirm(ctx, r.UUID, linkBefore); err != nil || sub.Status != StatusConfirmed {
		t.Fatalf("a link from before the request: %+v, %v", sub, err)
	}
	wantSubscriptions(t, db, r.ID, "old link", "digest-en active consent")

	if ok, err := s.CanConfirm(ctx, r.UUID, time.Now()); !ok || err != nil {
		t.Fatalf("CanConfirm = %v, %v", ok, err)
	}
	for range 2 {
		if _, err := s.Confirm(ctx, r.UUID, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	wantSubscriptions(t, db, r.ID, "confirmed", "digest-en active consent", "investigations active consent")
	var consents []int64
	db.Select(&consents, `SELECT consent_id FROM subscriptions WHERE subscriber_id = $1 ORDER BY newsletter_id`, r.ID)
	if len(consents) != 2 || consents[0] == consents[1] {
		t.Errorf("each subscription rests on its own request: %v", consents)
	}
	after := reader(t, db, "owner@example.org")
	if after.Name != before.Name || after.Lang != before.Lang || !after.ConfirmedAt.After(*before.ConfirmedAt) || !after.SubscribedAt.Equal(before.SubscribedAt) {
		t.Errorf("the reader changed: %+v, was %+v", after, before)
	}
	if ok, _ := s.CanConfirm(ctx, r.UUID, time.Now()); ok {
		t.Error("the answered request is still open")
	}
}
