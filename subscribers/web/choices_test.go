package web

import (
	"context"
	"strings"
	"testing"

	"newsletter/subscribers"
)

// TestSubscribeChoosesNewsletters walks the choice of newsletters: the form offers the on_form
// newsletters with the default ones ticked; a form and a JSON request each record what they asked
// for, confirming activates exactly that; bad choices are 400 with nothing stored; today's form
// and JSON, with no choice, still ask for the digest of their language.
func TestSubscribeChoosesNewsletters(t *testing.T) {
	f := newWebFixture(t, HandlerOptions{})
	if _, err := f.db.Exec(`INSERT INTO newsletters (slug, kind, names, descriptions, langs, default_on) VALUES
		('investigations', 'editions', '{"en": "Investigations", "ru": "Расследования"}', '{"en": "Our long reads, when they are out"}', '{en,ru}', false),
		('internal', 'editions', '{"en": "Internal"}', '{}', '{en}', false)`); err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.Exec(`UPDATE newsletters SET on_form = false WHERE slug = 'internal'`); err != nil {
		t.Fatal(err)
	}

	page := f.do("GET", "/?lang=ru", "", "")
	for _, want := range []string{`name="newsletters_offered"`, `value="digest-en">`, `value="digest-ru" checked`,
		`value="investigations">`, "Расследования", "Еженедельный дайджест на русском"} {
		if !strings.Contains(page.body, want) {
			t.Errorf("the form lacks %q", want)
		}
	}
	if strings.Contains(page.body, `value="internal"`) {
		t.Error("the form offers a newsletter not marked for it")
	}

	asked := func(email string) []string {
		t.Helper()
		var slugs []string
		if err := f.db.Select(&slugs, `SELECT n.slug FROM consent_newsletters cn JOIN consents c ON c.id = cn.consent_id
			JOIN subscribers s ON s.id = c.subscriber_id JOIN newsletters n ON n.id = cn.newsletter_id
			WHERE lower(s.email) = $1 ORDER BY n.slug`, email); err != nil {
			t.Fatal(err)
		}
		return slugs
	}
	active := func(email string) []string {
		t.Helper()
		var slugs []string
		if err := f.db.Select(&slugs, `SELECT n.slug FROM subscriptions sub JOIN subscribers s ON s.id = sub.subscriber_id
			JOIN newsletters n ON n.id = sub.newsletter_id JOIN consents c ON c.id = sub.consent_id
			WHERE lower(s.email) = $1 AND sub.state = 'active' ORDER BY n.slug`, email); err != nil {
			t.Fatal(err)
		}
		return slugs
	}
	confirm := func(email string) {
		t.Helper()
		var uuid string
		if err := f.db.Get(&uuid, `SELECT uuid FROM subscribers WHERE lower(email) = $1`, email); err != nil {
			t.Fatal(err)
		}
		s, err := f.store.ByUUID(context.Background(), uuid)
		if err != nil {
			t.Fatal(err)
		}
		if r := f.do("POST", "/confirm/"+f.token(subscribers.PurposeConfirm, s), formType, ""); r.status != 200 {
			t.Fatalf("confirm %s: %d", email, r.status)
		}
	}

	// The form: two ticked.
	r := f.do("POST", "/subscribe", formType, form("email", "ann@example.org", "lang", "en", "newsletters_offered", "1",
		"newsletter", "digest-ru", "newsletter", "investigations"))
	if r.status != 200 {
		t.Fatalf("form with two newsletters: %d\n%s", r.status, r.body)
	}
	if got := strings.Join(asked("ann@example.org"), " "); got != "digest-ru investigations" {
		t.Fatalf("the request asked for %q", got)
	}
	if got := active("ann@example.org"); len(got) != 0 {
		t.Fatalf("active before confirming: %v", got)
	}
	confirm("ann@example.org")
	if got := strings.Join(active("ann@example.org"), " "); got != "digest-ru investigations" {
		t.Fatalf("after confirming, active: %q", got)
	}

	// JSON with a choice.
	r = f.do("POST", "/subscribe", "application/json", `{"email": "bob@example.org", "lang": "ru", "newsletters": ["investigations"]}`)
	if r.status != 200 {
		t.Fatalf("JSON with a choice: %d\n%s", r.status, r.body)
	}
	confirm("bob@example.org")
	if got := strings.Join(active("bob@example.org"), " "); got != "investigations" {
		t.Fatalf("JSON: active %q", got)
	}

	// Today's form and JSON: the digest of the language.
	f.do("POST", "/subscribe", formType, form("email", "cat@example.org", "lang", "ru"))
	f.do("POST", "/subscribe", "application/json", `{"email": "dan@example.org", "lang": "en"}`)
	confirm("cat@example.org")
	confirm("dan@example.org")
	if got := strings.Join(active("cat@example.org"), " "); got != "digest-ru" {
		t.Errorf("old form: active %q", got)
	}
	if got := strings.Join(active("dan@example.org"), " "); got != "digest-en" {
		t.Errorf("old JSON: active %q", got)
	}

	// Bad choices: 400, a clear message, nothing stored.
	before := f.count("consents")
	for _, tc := range []struct{ name, ct, body, want string }{
		{"nothing ticked", formType, form("email", "eve@example.org", "lang", "en", "newsletters_offered", "1"), "at least one newsletter"},
		{"empty JSON list", "application/json", `{"email": "eve@example.org", "newsletters": []}`, "at least one newsletter"},
		{"unknown slug", "application/json", `{"email": "eve@example.org", "newsletters": ["nope"]}`, "newsletters offered"},
		{"not on the form", formType, form("email", "eve@example.org", "newsletters_offered", "1", "newsletter", "internal"), "newsletters offered"},
		{"not a list", "application/json", `{"email": "eve@example.org", "newsletters": "digest-en"}`, "could not be read"},
		{"odd bytes", formType, form("email", "eve@example.org", "newsletters_offered", "1", "newsletter", "digest-en\r\nBcc: x"), "newsletters offered"},
	} {
		r := f.do("POST", "/subscribe", tc.ct, tc.body, "Accept", "application/json")
		if r.status != 400 || !strings.Contains(r.body, tc.want) {
			t.Errorf("%s: %d %s, want 400 with %q", tc.name, r.status, r.body, tc.want)
		}
		clean(t, r)
	}
	if got := f.count("consents"); got != before {
		t.Errorf("bad choices stored %d consents", got-before)
	}
	// The form shown again keeps what was ticked and says what is wrong.
	r = f.do("POST", "/subscribe", formType, form("email", "eve@example.org", "lang", "en", "newsletters_offered", "1"))
	if r.status != 400 || !strings.Contains(r.body, `id="newsletters-error"`) || strings.Contains(r.body, `value="digest-en" checked`) {
		t.Errorf("nothing ticked, HTML: %d\n%s", r.status, r.body)
	}
}
