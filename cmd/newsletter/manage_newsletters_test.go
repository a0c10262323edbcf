package main

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"newsletter/subscribers"
)

// addInvestigations adds the editions newsletter the tests of choosing use, offered on the form.
func addInvestigations(t *testing.T, s *service) int64 {
	t.Helper()
	var id int64
	if err := s.DB.Get(&id, `INSERT INTO newsletters (slug, kind, names, langs) VALUES ('investigations','editions','{"en":"Investigations"}', '{en,ru}') RETURNING id`); err != nil {
		t.Fatal(err)
	}
	return id
}

// activeSlugs lists the newsletters the reader has an active subscription to.
func activeSlugs(t *testing.T, s *service, uuid string) []string {
	t.Helper()
	var out []string
	if err := s.DB.Select(&out, `SELECT n.slug FROM subscriptions sub JOIN newsletters n ON n.id = sub.newsletter_id
		JOIN subscribers r ON r.id = sub.subscriber_id WHERE r.uuid = $1 AND sub.state = 'active' ORDER BY n.slug`, uuid); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestUnsubscribeLeavesIssueNewsletter sends a real digest over SMTP to four readers who get the
// digest and, but for Cara, the investigations newsletter too. Ann leaves through the body link's
// page, Bob through the List-Unsubscribe one-click POST: each leaves the digest only and keeps
// investigations; clicking again changes nothing. Cara leaves her only newsletter and is
// unsubscribed. Dan's link of no issue (an older email's) leaves everything. A forged token changes
// nothing. Every departure through the issue's link is an event of that issue.
func TestUnsubscribeLeavesIssueNewsletter(t *testing.T) {
	s := startService(t, map[string]string{"NEWSLETTER_DEMO": "true"})
	inv := addInvestigations(t, s)
	const ann, bob, cara, dan = "ann@example.net", "bob@example.net", "cara@example.net", "dan@example.net"
	readers := seedBounceReaders(t, s, ann, bob, cara, dan)
	for _, e := range []string{ann, bob, dan} {
		s.DB.MustExec(`INSERT INTO subscriptions (subscriber_id, newsletter_id) SELECT id, $2 FROM subscribers WHERE email = $1`, e, inv)
	}
	issue := sendDigestNow(t, s)
	is := strconv.FormatInt(issue, 10)

	// Ann: the body link's page names the digest and offers "leave everything" and the manage page.
	body := parseMail(t, digestTo(t, s, ann)).Part(t, "text/plain").Body
	link := findLink(t, body, "/unsubscribe/")
	page := s.Do(t, "GET", link, "", "")
	if page.Status != http.StatusOK || !strings.Contains(page.Body, "Unsubscribe from Weekly digest in English?") ||
		!strings.Contains(page.Body, `name="scope" value="all"`) || !strings.Contains(page.Body, `href="/manage/`) {
		t.Fatalf("unsubscribe page %d:\n%s", page.Status, page.Body)
	}
	for range 2 {
		r := s.Do(t, "POST", link, "application/x-www-form-urlencoded", "")
		if r.Status != http.StatusOK || !strings.Contains(r.Body, "You left Weekly digest in English") || !strings.Contains(r.Body, "You still get your other newsletters") {
			t.Fatalf("leave through the page %d:\n%s", r.Status, r.Body)
		}
	}
	// Bob: one-click, as a mail client does it.
	lu := strings.Trim(parseMail(t, digestTo(t, s, bob)).Get("List-Unsubscribe"), "<>")
	lu, _, _ = strings.Cut(lu, ">")
	if r := s.Do(t, "POST", lu, "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click"); r.Status != http.StatusOK {
		t.Fatalf("one-click: %d", r.Status)
	}
	// Cara: her only newsletter.
	lu = strings.Trim(parseMail(t, digestTo(t, s, cara)).Get("List-Unsubscribe"), "<>")
	lu, _, _ = strings.Cut(lu, ">")
	if r := s.Do(t, "POST", lu, "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click"); r.Status != http.StatusOK || !strings.Contains(r.Body, "It was the last newsletter you got") {
		t.Fatalf("cara's one-click: %d\n%s", r.Status, r.Body)
	}
	// Dan: an older email's link, of no issue.
	signer := subscribers.NewSigner([]byte(e2eSecret))
	if r := s.Do(t, "POST", signer.UnsubscribeURL(s.URL, readers[dan].uuid), "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click"); r.Status != http.StatusOK {
		t.Fatalf("old link: %d", r.Status)
	}
	// A forged token: 404, nothing changes.
	forged := signer.IssueUnsubscribeURL(s.URL, readers[bob].uuid, issue)
	forged = forged[:len(forged)-2] + "xx"
	if r := s.Do(t, "POST", forged, "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click"); r.Status != http.StatusNotFound {
		t.Errorf("forged token: %d, want 404", r.Status)
	}

	for _, c := range []struct {
		email, status string
		active        []string
		events        []string
	}{
		{ann, "confirmed", []string{"investigations"}, []string{"unsubscribe/link/left/" + is}},
		{bob, "confirmed", []string{"investigations"}, []string{"unsubscribe/link/left/" + is}},
		{cara, "unsubscribed", nil, []string{"unsubscribe/link/unsubscribed/" + is}},
		{dan, "unsubscribed", nil, nil},
	} {
		status, events := readerState(t, s, readers[c.email].uuid)
		if status != c.status || !slices.Equal(events, c.events) {
			t.Errorf("%s: %s with events %q, want %s with %q", c.email, status, events, c.status, c.events)
		}
		if got := activeSlugs(t, s, readers[c.email].uuid); !slices.Equal(got, c.active) {
			t.Errorf("%s: active %q, want %q", c.email, got, c.active)
		}
	}

	// Ann's "leave everything" on the same page: unsubscribed, investigations left too.
	if r := s.Do(t, "POST", link, "application/x-www-form-urlencoded", "scope=all"); r.Status != http.StatusOK {
		t.Fatalf("leave everything: %d", r.Status)
	}
	if status, _ := readerState(t, s, readers[ann].uuid); status != "unsubscribed" || len(activeSlugs(t, s, readers[ann].uuid)) != 0 {
		t.Errorf("ann after leave everything: %s, %q", status, activeSlugs(t, s, readers[ann].uuid))
	}
}

// TestBrowserManageNewsletters drives the manage page in Chromium: three newsletters offered, the
// reader's digest ticked; they tick investigations and untick the digest and save, and get
// exactly that, resting on a new consent of source 'manage'; then "leave everything".
func TestBrowserManageNewsletters(t *testing.T) {
	s := startService(t, nil)
	addInvestigations(t, s)
	readers := seedBounceReaders(t, s, "manage.reader@example.org")
	uuid := readers["manage.reader@example.org"].uuid
	ctx := newBrowser(t)
	ids := map[string]string{}
	for _, slug := range []string{"digest-en", "digest-ru", "investigations"} {
		var id string
		if err := s.DB.Get(&id, `SELECT id::text FROM newsletters WHERE slug = $1`, slug); err != nil {
			t.Fatal(err)
		}
		ids[slug] = "#newsletter-" + id
	}
	manage := subscribers.NewSigner([]byte(e2eSecret)).ManageURL(s.URL, uuid)
	do(t, ctx, "manage page", chromedp.EmulateViewport(1280, 900), chromedp.Navigate(manage), chromedp.WaitVisible(chromedp.CSS(ids["investigations"])))
	labels := eval(t, ctx, "toggles", chromedp.Evaluate[[]string](`[...document.querySelectorAll('input[name=newsletter]')].map(i => i.labels[0].textContent.trim() + (i.checked ? ' on' : ' off'))`))
	if want := []string{"Weekly digest in English on", "Weekly digest in Russian off", "Investigations off"}; !slices.Equal(labels, want) {
		t.Fatalf("toggles %q, want %q", labels, want)
	}
	if problems := eval(t, ctx, "check manage page", chromedp.Evaluate[[]string](pageChecks)); len(problems) > 0 {
		t.Errorf("manage page: %s", strings.Join(problems, "; "))
	}
	do(t, ctx, "toggle", chromedp.Click(chromedp.CSS(ids["investigations"])), chromedp.Click(chromedp.CSS(ids["digest-en"])))
	if st := press(t, ctx, "form.card button[name=newsletters_shown]"); st != 200 {
		t.Fatalf("save answered %d", st)
	}
	screenshot(t, ctx, "manage-newsletters-desktop")
	if got := activeSlugs(t, s, uuid); !slices.Equal(got, []string{"investigations"}) {
		t.Errorf("after saving: active %q, want investigations", got)
	}
	checked := eval(t, ctx, "saved toggles", chromedp.Evaluate[[]bool](`[...document.querySelectorAll('input[name=newsletter]')].map(i => i.checked)`))
	if !slices.Equal(checked, []bool{false, false, true}) {
		t.Errorf("page after saving shows %v", checked)
	}
	var consent struct {
		Source, TextVersion, UserAgent, Newsletters string
		Confirmed, Rests                            bool
	}
	if err := s.DB.QueryRow(`SELECT c.source, c.text_version, c.user_agent, c.confirmed_at IS NOT NULL,
			(SELECT string_agg(n.slug, ' ') FROM consent_newsletters cn JOIN newsletters n ON n.id = cn.newsletter_id WHERE cn.consent_id = c.id),
			EXISTS (SELECT 1 FROM subscriptions sub JOIN newsletters n ON n.id = sub.newsletter_id WHERE n.slug = 'investigations' AND sub.consent_id = c.id)
		FROM consents c JOIN subscribers r ON r.id = c.subscriber_id WHERE r.uuid = $1 ORDER BY c.id DESC LIMIT 1`, uuid).
		Scan(&consent.Source, &consent.TextVersion, &consent.UserAgent, &consent.Confirmed, &consent.Newsletters, &consent.Rests); err != nil {
		t.Fatal(err)
	}
	if consent.Source != "manage" || consent.TextVersion != subscribers.ManageTextVersion || consent.UserAgent == "" ||
		!consent.Confirmed || consent.Newsletters != "investigations" || !consent.Rests {
		t.Errorf("consent %+v", consent)
	}
	if st := readerStatus(t, s, "manage.reader@example.org"); st != "confirmed" {
		t.Errorf("status %s, want confirmed", st)
	}

	if st := press(t, ctx, "button[name=leave]"); st != 200 {
		t.Fatalf("leave everything answered %d", st)
	}
	if st := readerStatus(t, s, "manage.reader@example.org"); st != "unsubscribed" {
		t.Errorf("after leave everything: %s", st)
	}
	if got := activeSlugs(t, s, uuid); len(got) != 0 {
		t.Errorf("after leave everything: active %q", got)
	}
	if n := eval(t, ctx, "notice", chromedp.Text(chromedp.ID("manage-notice"))); !strings.Contains(n, "You left every newsletter") {
		t.Errorf("notice %q", n)
	}
	// Ticking one brings them back.
	do(t, ctx, "tick again", chromedp.Click(chromedp.CSS(ids["digest-ru"])))
	if st := press(t, ctx, "form.card button[name=newsletters_shown]"); st != 200 {
		t.Fatalf("save answered %d", st)
	}
	if st := readerStatus(t, s, "manage.reader@example.org"); st != "confirmed" || !slices.Equal(activeSlugs(t, s, uuid), []string{"digest-ru"}) {
		t.Errorf("back: %s, %q", st, activeSlugs(t, s, uuid))
	}
}

// TestManageNewslettersRefusals: what the manage page's save refuses, each with a 400 and its
// message and nothing changed: a bounced reader turning a newsletter on, a newsletter id that is
// not a number, one the page does not offer. A save without the toggles (an older page, a
// script setting the name) keeps the subscriptions; Cara's issue link page offers no "leave
// everything" when the issue's newsletter is all she gets.
func TestManageNewslettersRefusals(t *testing.T) {
	s := startService(t, nil)
	inv := addInvestigations(t, s)
	readers := seedBounceReaders(t, s, "ann@example.net", "bounced@example.net")
	ann, bounced := readers["ann@example.net"].uuid, readers["bounced@example.net"].uuid
	signer := subscribers.NewSigner([]byte(e2eSecret))
	s.DB.MustExec(`UPDATE subscribers SET status = 'bounced', bounced_at = now() WHERE uuid = $1`, bounced)
	var retired int64
	if err := s.DB.Get(&retired, `INSERT INTO newsletters (slug, kind, names, langs, on_form) VALUES ('retired', 'editions', '{"en":"Retired"}', '{en}', false) RETURNING id`); err != nil {
		t.Fatal(err)
	}
	invID := strconv.FormatInt(inv, 10)

	for _, c := range []struct {
		name, uuid, body, want string
	}{
		{"bounced turns one on", bounced, "name=&lang=en&newsletters_shown=1&newsletter=" + invID, "bounced or was reported as spam"},
		{"not a number", ann, "name=&lang=en&newsletters_shown=1&newsletter=x1", "That newsletter is not offered"},
		{"not offered", ann, "name=&lang=en&newsletters_shown=1&newsletter=" + strconv.FormatInt(retired, 10), "That newsletter is not offered"},
	} {
		r := s.Do(t, "POST", signer.ManageURL(s.URL, c.uuid), "application/x-www-form-urlencoded", c.body)
		if r.Status != http.StatusBadRequest || !strings.Contains(r.Body, c.want) {
			t.Errorf("%s: %d\n%s", c.name, r.Status, r.Body)
		}
	}
	if got := activeSlugs(t, s, bounced); !slices.Equal(got, []string{"digest-en"}) {
		t.Errorf("bounced reader's subscriptions %q", got)
	}
	if st := readerStatus(t, s, "bounced@example.net"); st != "bounced" {
		t.Errorf("bounced reader is %s", st)
	}
	// The page lists what the form offers, not a retired newsletter the reader never had.
	page := s.Do(t, "GET", signer.ManageURL(s.URL, ann), "", "")
	if page.Status != http.StatusOK || !strings.Contains(page.Body, "Investigations") || strings.Contains(page.Body, "Retired") {
		t.Errorf("manage page %d:\n%s", page.Status, page.Body)
	}
	// An older page's save: the name only.
	if r := s.Do(t, "POST", signer.ManageURL(s.URL, ann), "application/x-www-form-urlencoded", "name=Ann&lang=ru"); r.Status != http.StatusOK {
		t.Fatalf("save without toggles: %d", r.Status)
	}
	if got := activeSlugs(t, s, ann); !slices.Equal(got, []string{"digest-en"}) {
		t.Errorf("after a save without toggles: %q, want the digest kept", got)
	}

	// An issue's link when its newsletter is all the reader gets: no "leave everything" (the page
	// in Russian, the language Ann just chose).
	var issue int64
	if err := s.DB.Get(&issue, `INSERT INTO issues (newsletter_id, lang, window_start, window_end, status)
		VALUES ((SELECT id FROM newsletters WHERE slug = 'digest-en'), 'en', now() - interval '7 days', now(), 'sent') RETURNING id`); err != nil {
		t.Fatal(err)
	}
	p := s.Do(t, "GET", signer.IssueUnsubscribeURL(s.URL, ann, issue), "", "")
	if p.Status != http.StatusOK || !strings.Contains(p.Body, "Отписаться от рассылки «Еженедельный дайджест на английском»?") || strings.Contains(p.Body, `value="all"`) {
		t.Errorf("unsubscribe page of the only newsletter %d:\n%s", p.Status, p.Body)
	}
}
