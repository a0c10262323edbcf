package send

import (
	"context"
	"errors"
	"mime"
	"strings"
	"testing"
	"time"

	"newsletter/digest"
	"newsletter/subscribers"
)

// TestSendEditions sends an edition of a newsletter written in English and Russian, once per
// language, through the ledger and engine: each subscribed reader gets exactly the version of
// their language (a German reader the first language's, English), readers who do not take the
// newsletter or left it get nothing, and the headers carry the newsletter's List-Id and the
// issue's Message-ID and one-click unsubscribe.
func TestSendEditions(t *testing.T) {
	f := newSendFixture(t, 0)
	ctx := context.Background()
	var nl int64
	if err := f.db.Get(&nl, `INSERT INTO newsletters (slug, kind, names, langs) VALUES
		('investigations', 'editions', '{"en": "Investigations", "ru": "Расследования"}', '{en,ru}') RETURNING id`); err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.Exec(`INSERT INTO subscribers (email, name, lang, status, confirmed_at) VALUES
		('en@example.org', 'Ann', 'en', 'confirmed', now()), ('ru@example.org', 'Борис', 'ru', 'confirmed', now()),
		('de@example.org', '', 'de', 'confirmed', now()), ('digest-only@example.org', '', 'en', 'confirmed', now()),
		('left@example.org', '', 'en', 'confirmed', now()), ('gone@example.org', '', 'ru', 'unsubscribed', now())`); err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.Exec(`INSERT INTO subscriptions (subscriber_id, newsletter_id, state, left_at)
		SELECT s.id, $1, CASE WHEN s.email = 'left@example.org' THEN 'left' ELSE 'active' END,
			CASE WHEN s.email = 'left@example.org' THEN now() END
		FROM subscribers s WHERE s.email <> 'digest-only@example.org'`, nl); err != nil {
		t.Fatal(err)
	}

	// Bad text is refused and stores nothing.
	for _, bad := range []digest.EditionText{
		{Subject: "", Markdown: "text"},
		{Subject: "Line\r\nBcc: x", Markdown: "text"},
		{Subject: "ok", Markdown: strings.Repeat("x", digest.MaxEditionMarkdown+1)},
		{Subject: "ok", Markdown: "bad \xff byte"},
	} {
		if _, err := f.store.CreateEdition(ctx, nl, "en", bad); !errors.Is(err, digest.ErrInvalid) {
			t.Errorf("edition %.40q: %v, want ErrInvalid", bad.Subject, err)
		}
	}
	if _, err := f.store.CreateEdition(ctx, nl, "de", digest.EditionText{Subject: "x", Markdown: "y"}); !errors.Is(err, digest.ErrInvalid) {
		t.Errorf("a language the newsletter lacks: %v", err)
	}
	var digestID int64
	if err := f.db.Get(&digestID, `SELECT id FROM newsletters WHERE slug = 'digest-en'`); err != nil {
		t.Fatal(err)
	}
	if _, err := f.store.CreateEdition(ctx, digestID, "en", digest.EditionText{Subject: "x", Markdown: "y"}); !errors.Is(err, digest.ErrInvalid) {
		t.Errorf("an edition of a digest: %v", err)
	}

	en, err := f.store.CreateEdition(ctx, nl, "en", digest.EditionText{Subject: "The harbour files", Markdown: "# The harbour files\n\nWhat we found, **in full**."})
	if err != nil {
		t.Fatal(err)
	}
	ru, err := f.store.CreateEdition(ctx, nl, "ru", digest.EditionText{Subject: "Портовые документы", Markdown: "Что мы нашли."})
	if err != nil {
		t.Fatal(err)
	}
	s := f.sender(t, nil)
	for _, e := range []digest.Issue{en, ru} {
		if err := s.SendIssue(ctx, e.ID, nil); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]string{"en@example.org": "The harbour files", "ru@example.org": "Портовые документы", "de@example.org": "The harbour files"}
	if n := f.srv.Count(); n != len(want) {
		t.Errorf("%d messages, want %d", n, len(want))
	}
	signer := subscribers.NewSigner([]byte("test-secret-0123456789"))
	for email, subject := range want {
		msgs := f.srv.To(email)
		if len(msgs) != 1 {
			t.Fatalf("%s received %d messages", email, len(msgs))
		}
		v := parseMIME(t, msgs[0].Data)
		var uuid string
		if err := f.db.Get(&uuid, `SELECT uuid::text FROM subscribers WHERE email = $1`, email); err != nil {
			t.Fatal(err)
		}
		id := en.ID
		if email == "ru@example.org" {
			id = ru.ID
		}
		dec, _ := new(mime.WordDecoder).DecodeHeader(v.header.Get("Subject"))
		for k, w := range map[string]string{
			"Subject":          subject,
			"List-Id":          `"The Test Weekly" <investigations.news.example>`,
			"Message-Id":       "<" + messageID([]byte("test-secret-0123456789"), id, uuid, "news.example") + ">",
			"List-Unsubscribe": "<" + signer.IssueUnsubscribeURL("https://news.example", uuid, id) + ">",
		} {
			got := v.header.Get(k)
			if k == "Subject" {
				got = dec
			}
			if got != w {
				t.Errorf("%s: %s = %q, want %q", email, k, got, w)
			}
		}
		if !strings.Contains(v.html, "<strong>in full</strong>") && email != "ru@example.org" {
			t.Errorf("%s: the HTML part lacks the edition's text", email)
		}
	}
	for _, id := range []int64{en.ID, ru.ID} {
		iss, err := f.store.IssueByID(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if iss.Status != digest.StatusSent || iss.ArchiveHTML == "" || iss.ArchiveText == "" {
			t.Errorf("edition %d: %s, archive %d bytes", id, iss.Status, len(iss.ArchiveHTML))
		}
	}
	if err := f.store.UpdateEdition(ctx, en.ID, digest.EditionText{Subject: "again", Markdown: "x"}); !errors.Is(err, digest.ErrConflict) {
		t.Errorf("editing a sent edition: %v", err)
	}
}

// TestDueEditions starts an approved edition at its time and keeps one whose time passed long
// ago (the service was down) for an editor, with the reason.
func TestDueEditions(t *testing.T) {
	f := newSendFixture(t, 0)
	ctx := context.Background()
	var nl int64
	if err := f.db.Get(&nl, `INSERT INTO newsletters (slug, kind, names, langs) VALUES ('notes', 'editions', '{"en": "Notes"}', '{en}') RETURNING id`); err != nil {
		t.Fatal(err)
	}
	soon, _ := f.store.CreateEdition(ctx, nl, "en", digest.EditionText{Subject: "Soon", Markdown: "x"})
	late, _ := f.store.CreateEdition(ctx, nl, "en", digest.EditionText{Subject: "Late", Markdown: "x"})
	if err := f.store.ScheduleEdition(ctx, soon.ID, time.Now().Add(time.Hour)); !errors.Is(err, digest.ErrConflict) {
		t.Errorf("scheduling a draft: %v, want ErrConflict", err)
	}
	for _, id := range []int64{soon.ID, late.ID} {
		if err := f.store.Approve(ctx, id); err != nil {
			t.Fatal(err)
		}
		if err := f.store.ScheduleEdition(ctx, id, time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.store.ScheduleEdition(ctx, soon.ID, time.Now().Add(-time.Minute)); !errors.Is(err, digest.ErrInvalid) {
		t.Errorf("a past time: %v", err)
	}
	// Their times come: one a minute ago, one a day ago.
	if _, err := f.db.Exec(`UPDATE issues SET send_at = CASE WHEN id = $1 THEN now() - interval '1 minute' ELSE now() - interval '1 day' END
		WHERE id IN ($1, $2)`, soon.ID, late.ID); err != nil {
		t.Fatal(err)
	}
	due, err := f.store.DueEditions(ctx, 6*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if len(due) != 1 || due[0] != soon.ID {
		t.Fatalf("due %v, want [%d]", due, soon.ID)
	}
	l, err := f.store.IssueByID(ctx, late.ID)
	if err != nil {
		t.Fatal(err)
	}
	if l.Status != digest.StatusApproved || l.SendAt != nil || !strings.Contains(l.PauseReason, "an editor must send it") {
		t.Errorf("the late edition: %s, send_at %v, reason %q", l.Status, l.SendAt, l.PauseReason)
	}
	// Two schedulers at once start it once.
	s1, s2 := f.sender(t, nil), f.sender(t, nil)
	done := make(chan int, 2)
	for _, s := range []*Sender{s1, s2} {
		go func() { done <- s.StartDueEditions(ctx, 6*time.Hour) }()
	}
	started := <-done + <-done
	if started != 1 {
		t.Errorf("started %d times, want 1", started)
	}
	if iss, _ := f.store.IssueByID(ctx, soon.ID); iss.Status != digest.StatusSending {
		t.Errorf("the due edition is %s", iss.Status)
	}
}
