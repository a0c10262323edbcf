package main

import (
	"crypto/sha256"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"newsletter/internal/pgtest"
)

// editorSession logs in through the login form and returns the session's Cookie header and form token.
func editorSession(t *testing.T, s *service, password string) (cookie, csrf string) {
	t.Helper()
	login := s.Get(t, "/admin/login")
	in := s.PostForm(t, "/admin/login", url.Values{"csrf": {hiddenCSRF(t, login.Body)}, "password": {password}},
		"Cookie", cookieHeader(t, login.Header, "newsletter_admin_login"))
	if in.Status != http.StatusSeeOther {
		t.Fatalf("login: %d\n%s", in.Status, in.Body)
	}
	cookie = cookieHeader(t, in.Header, "newsletter_admin")
	home := s.Get(t, "/admin/", "Cookie", cookie)
	if home.Status != http.StatusOK {
		t.Fatalf("editor overview: %d", home.Status)
	}
	return cookie, hiddenCSRF(t, home.Body)
}

// readerPath is where a successful lookup of email sends the editor: /admin/readers/{uuid}.
var readerPath = regexp.MustCompile(`^/admin/readers/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// TestEditorReaders drives the readers' pages through serve's route table: the figures, lookups
// good and bad, a reader's page, each action with its confirm step and the consent rules, and the
// audit log every lookup and action leaves. No address ever reaches a URL, the log or the audit log.
func TestEditorReaders(t *testing.T) {
	s := startService(t, nil)
	const ann, bob = "ann@gazette.test", "bob@gazette.test"
	// Ann signs up and confirms; Bob signs up and has not confirmed.
	for _, email := range []string{ann, bob} {
		if r := s.PostForm(t, "/subscribe", url.Values{"email": {email}, "lang": {"en"}}); r.Status != http.StatusOK {
			t.Fatalf("subscribe %s: %d", email, r.Status)
		}
	}
	msgs := s.SMTP.WaitFor(t, 2, 30*time.Second)
	for _, m := range msgs {
		if m.To[0] == ann {
			if r := s.PostForm(t, findLink(t, parseMail(t, m).Part(t, "text/plain").Body, "/confirm/"), nil); r.Status != http.StatusOK {
				t.Fatalf("confirm: %d", r.Status)
			}
		}
	}
	cookie, csrf := editorLogin(t, s, "admin@gazette.test", "admin")
	get := func(path string) httpResult { t.Helper(); return s.Get(t, path, "Cookie", cookie) }
	post := func(path string, v url.Values) httpResult {
		t.Helper()
		if v == nil {
			v = url.Values{}
		}
		if !v.Has("csrf") {
			v.Set("csrf", csrf)
		}
		return s.PostForm(t, path, v, "Cookie", cookie)
	}
	lookup := func(email string) string {
		t.Helper()
		r := post("/admin/readers/lookup", url.Values{"email": {email}})
		loc := r.Header.Get("Location")
		if r.Status != http.StatusSeeOther || !readerPath.MatchString(loc) {
			t.Fatalf("lookup: %d to %q, want 303 to the reader's page\n%s", r.Status, loc, r.Body)
		}
		return loc
	}

	t.Run("Overview", func(t *testing.T) {
		if home := get("/admin/"); !strings.Contains(home.Body, `href="/admin/readers"`) {
			t.Error("the overview's navigation does not link the readers' pages")
		}
		p := get("/admin/readers")
		if p.Status != http.StatusOK {
			t.Fatalf("readers: %d", p.Status)
		}
		text := strings.Join(strings.Fields(stripTags(p.Body)), " ")
		for _, want := range []string{"confirmed 1 0 1", "pending 1 0 1", "All 2 0 2", "Suppressed addresses: 0",
			"Confirmations (1)", "Unsubscribes (0)", "Bounces (0)", "Complaints (0)"} {
			if !strings.Contains(text, want) {
				t.Errorf("the readers' page lacks %q:\n%s", want, text)
			}
		}
		if n := strings.Count(p.Body, `<rect class="bar"`); n != 1 {
			t.Errorf("%d bars in the chart, want 1 (this week's confirmation)", n)
		}
		if strings.Contains(p.Body, ann) || strings.Contains(p.Body, bob) {
			t.Error("the readers' page shows an address: the list must not be browsable")
		}
	})

	var annPage string
	t.Run("Lookup", func(t *testing.T) {
		annPage = lookup("  ANN@gazette.test ")
		if strings.Contains(annPage, "@") {
			t.Fatalf("the reader's page is named by the address: %s", annPage)
		}
		for _, c := range []struct {
			name, email string
			status      int
			msg         string
		}{
			{"NotAnAddress", "ann at gazette", http.StatusBadRequest, "That is not an email address"},
			{"Empty", "", http.StatusBadRequest, "That is not an email address"},
			{"Nobody", "carol@gazette.test", http.StatusNotFound, "No reader has that address"},
			{"Part", "ann@gazette", http.StatusBadRequest, "That is not an email address"},
			{"Pattern", "%@gazette.test", http.StatusNotFound, "No reader has that address"},
		} {
			t.Run(c.name, func(t *testing.T) {
				r := post("/admin/readers/lookup", url.Values{"email": {c.email}})
				if r.Status != c.status || !strings.Contains(r.Body, c.msg) {
					t.Errorf("%d, want %d with %q\n%s", r.Status, c.status, c.msg, r.Body)
				}
			})
		}
		if r := post("/admin/readers/lookup", url.Values{"email": {ann}, "csrf": {"forged"}}); r.Status != http.StatusForbidden {
			t.Errorf("a lookup without the form token: %d, want 403", r.Status)
		}
		if r := s.PostForm(t, "/admin/readers/lookup", url.Values{"email": {ann}, "csrf": {csrf}}); r.Status != http.StatusForbidden {
			t.Errorf("a lookup without a session: %d, want 403", r.Status)
		}
		for _, path := range []string{"/admin/readers", annPage, annPage + "/erase"} {
			if r := s.Get(t, path); r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/admin/login" {
				t.Errorf("GET %s without a session: %d to %q, want 303 to the login", path, r.Status, r.Header.Get("Location"))
			}
		}
	})

	t.Run("ReaderPage", func(t *testing.T) {
		p := get(annPage)
		if p.Status != http.StatusOK {
			t.Fatalf("reader page: %d", p.Status)
		}
		text := strings.Join(strings.Fields(stripTags(p.Body)), " ")
		for _, want := range []string{ann, "Status confirmed", "Language en", "consent , confirmed", "No issue has been sent to this reader",
			"No bounce or complaint reports", "The reader has confirmed already"} {
			if !strings.Contains(text, want) {
				t.Errorf("the reader's page lacks %q:\n%s", want, text)
			}
		}
		for path, status := range map[string]int{
			"/admin/readers/00000000-0000-4000-8000-000000000000": http.StatusNotFound,
			"/admin/readers/not-a-uuid":                           http.StatusNotFound,
			"/admin/readers/" + url.PathEscape(ann):               http.StatusNotFound,
			annPage + "/frobnicate":                               http.StatusNotFound,
		} {
			if r := get(path); r.Status != status {
				t.Errorf("GET %s: %d, want %d", path, r.Status, status)
			}
		}
		if r := post(annPage+"/frobnicate", nil); r.Status != http.StatusNotFound {
			t.Errorf("an unknown action: %d, want 404", r.Status)
		}
	})

	t.Run("Language", func(t *testing.T) {
		if r := post(annPage+"/lang", url.Values{"lang": {"de"}}); r.Status != http.StatusBadRequest || !strings.Contains(r.Body, "Choose one of the languages: en, ru") {
			t.Errorf("a language not on offer: %d\n%s", r.Status, r.Body)
		}
		r := post(annPage+"/lang", url.Values{"lang": {"ru"}})
		if r.Status != http.StatusSeeOther || r.Header.Get("Location") != annPage+"?done=lang" {
			t.Fatalf("change language: %d to %q", r.Status, r.Header.Get("Location"))
		}
		var lang string
		s.DB.Get(&lang, `SELECT lang FROM subscribers WHERE email = $1`, ann)
		if lang != "ru" {
			t.Errorf("language %s, want ru", lang)
		}
		p := get(annPage + "?done=lang")
		if !strings.Contains(p.Body, "Language changed.") {
			t.Error("no notice after the change")
		}
		// The language moves no subscription: Ann keeps the English digest she confirmed, and the
		// page shows it with the consent it rests on.
		subs := strings.Join(strings.Fields(stripTags(p.Body)), " ")
		if !strings.Contains(subs, "Weekly digest in English digest-en active") || !strings.Contains(subs, "form") || strings.Contains(subs, "digest-ru") {
			t.Errorf("the reader's newsletters after a change of language:\n%s", subs)
		}
	})

	t.Run("Unsubscribe", func(t *testing.T) {
		confirm := get(annPage + "/unsubscribe")
		if confirm.Status != http.StatusOK || !strings.Contains(confirm.Body, `name="confirm" value="unsubscribe"`) {
			t.Fatalf("the confirm step: %d\n%s", confirm.Status, confirm.Body)
		}
		for _, tick := range []string{"", "erase", "yes"} {
			r := post(annPage+"/unsubscribe", url.Values{"confirm": {tick}})
			if r.Status != http.StatusBadRequest || !strings.Contains(r.Body, "Tick the box to confirm") {
				t.Errorf("unsubscribe with confirm=%q: %d, want 400 and the confirm step again", tick, r.Status)
			}
		}
		var status string
		if s.DB.Get(&status, `SELECT status FROM subscribers WHERE email = $1`, ann); status != "confirmed" {
			t.Fatalf("a wrong confirm step changed the reader: %s", status)
		}
		r := post(annPage+"/unsubscribe", url.Values{"confirm": {"unsubscribe"}})
		if r.Status != http.StatusSeeOther || r.Header.Get("Location") != annPage+"?done=unsubscribed" {
			t.Fatalf("unsubscribe: %d to %q", r.Status, r.Header.Get("Location"))
		}
		if s.DB.Get(&status, `SELECT status FROM subscribers WHERE email = $1`, ann); status != "unsubscribed" {
			t.Errorf("status %s, want unsubscribed", status)
		}
		if r := post(annPage+"/unsubscribe", url.Values{"confirm": {"unsubscribe"}}); r.Status != http.StatusConflict {
			t.Errorf("unsubscribing again: %d, want 409", r.Status)
		}
		if r := get(annPage + "/unsubscribe"); r.Status != http.StatusConflict || !strings.Contains(r.Body, "not on the list") {
			t.Errorf("the confirm step for a reader who left: %d, want 409", r.Status)
		}
		// Ann made no request since she left: an editor cannot give consent for her.
		if r := post(annPage+"/resend", nil); r.Status != http.StatusConflict || !strings.Contains(r.Body, "no open request") {
			t.Errorf("resend without a request: %d\n%s", r.Status, r.Body)
		}
	})

	t.Run("Resend", func(t *testing.T) {
		bobPage := lookup(bob)
		// Bob's first email went a moment ago: the throttle holds another back.
		if r := post(bobPage+"/resend", nil); r.Status != http.StatusConflict || !strings.Contains(r.Body, "less than 10 minutes ago") {
			t.Fatalf("resend within the throttle: %d\n%s", r.Status, r.Body)
		}
		s.DB.MustExec(`UPDATE subscribers SET confirmation_sent_at = now() - interval '1 hour' WHERE email = $1`, bob)
		before := len(s.SMTP.To(bob))
		r := post(bobPage+"/resend", nil)
		if r.Status != http.StatusSeeOther || r.Header.Get("Location") != bobPage+"?done=resent" {
			t.Fatalf("resend: %d to %q\n%s", r.Status, r.Header.Get("Location"), r.Body)
		}
		for deadline := time.Now().Add(30 * time.Second); len(s.SMTP.To(bob)) == before; time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the confirmation email did not go out again")
			}
		}
		again := s.SMTP.To(bob)[before]
		if r := s.PostForm(t, findLink(t, parseMail(t, again).Part(t, "text/plain").Body, "/confirm/"), nil); r.Status != http.StatusOK {
			t.Errorf("confirming through the resent email: %d", r.Status)
		}
	})

	t.Run("Erase", func(t *testing.T) {
		bobPage := lookup(bob)
		if r := get(bobPage + "/erase"); r.Status != http.StatusOK || !strings.Contains(r.Body, `name="confirm" value="erase"`) {
			t.Fatalf("the erase confirm step: %d", r.Status)
		}
		if r := post(bobPage+"/erase", url.Values{"confirm": {"unsubscribe"}}); r.Status != http.StatusBadRequest {
			t.Errorf("erase confirmed as an unsubscribe: %d, want 400", r.Status)
		}
		r := post(bobPage+"/erase", url.Values{"confirm": {"erase"}})
		if r.Status != http.StatusSeeOther || r.Header.Get("Location") != "/admin/readers?done=erased" {
			t.Fatalf("erase: %d to %q", r.Status, r.Header.Get("Location"))
		}
		var n int
		if s.DB.Get(&n, `SELECT count(*) FROM subscribers WHERE email = $1`, bob); n != 0 {
			t.Error("the reader is still there")
		}
		if s.DB.Get(&n, `SELECT count(*) FROM suppressions WHERE reason = 'erased'`); n != 1 {
			t.Errorf("%d erasure suppressions, want 1", n)
		}
		if r := get(bobPage); r.Status != http.StatusNotFound {
			t.Errorf("the erased reader's page: %d, want 404", r.Status)
		}
		if p := get("/admin/readers?done=erased"); !strings.Contains(strings.Join(strings.Fields(stripTags(p.Body)), " "), "Suppressed addresses: 1 (1 erased)") ||
			!strings.Contains(p.Body, "Erased:") {
			t.Error("the readers' page does not count the suppression or say what happened")
		}
	})

	t.Run("AuditLog", func(t *testing.T) {
		var rows []struct {
			Actor   string  `db:"actor"`
			Session []byte  `db:"session_hash"`
			Action  string  `db:"action"`
			Target  *string `db:"target"`
			Detail  string  `db:"detail"`
		}
		if err := s.DB.Select(&rows, `SELECT actor, session_hash, action, target::text AS "target", detail FROM audit_log
			WHERE action LIKE 'reader.%' ORDER BY id`); err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256([]byte(strings.TrimPrefix(cookie, "newsletter_admin=")))
		var got []string
		for _, r := range rows {
			if string(r.Session) != string(sum[:]) || r.Actor != "admin@gazette.test" {
				t.Errorf("entry %s: actor %q, session hash %x; want the login's actor and its session", r.Action, r.Actor, r.Session)
			}
			if strings.Contains(r.Detail, "@") || (r.Target != nil && strings.Contains(*r.Target, "@")) {
				t.Errorf("entry %s holds an address", r.Action)
			}
			e := strings.TrimPrefix(r.Action, "reader.")
			if r.Target != nil {
				e += " reader"
			}
			if r.Detail != "" {
				e += " (" + r.Detail + ")"
			}
			got = append(got, e)
		}
		want := []string{"lookup reader (found)", "lookup (not an address)", "lookup (not an address)", "lookup (no reader)",
			"lookup (not an address)", "lookup (no reader)", "view reader", "language reader (en to ru)", "view reader",
			"view reader (before unsubscribe)", "unsubscribe reader (was confirmed)", "lookup reader (found)", "resend reader",
			"lookup reader (found)", "view reader (before erase)", "erase reader (was confirmed)"}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("audit log:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	})

	t.Run("Log", func(t *testing.T) {
		for _, line := range strings.Split(s.Log(), "\n") {
			if strings.Contains(line, ann) || strings.Contains(line, bob) {
				t.Errorf("log line holds a reader's address: %s", line)
			}
		}
	})
}

var tags = regexp.MustCompile(`<[^>]*>`)

// stripTags is a page's text, roughly: its markup dropped.
func stripTags(s string) string { return tags.ReplaceAllString(s, " ") }

// TestEditorReadersDatabaseAway: with the database stopped, every readers' page answers 503 with
// Retry-After, and shows nothing of the driver's error.
func TestEditorReadersDatabaseAway(t *testing.T) {
	const password = "readers pages password"
	pg := pgtest.Start(t)
	s := startService(t, map[string]string{"NEWSLETTER_DATABASE_URL": pg.URL("newsletter"), "NEWSLETTER_ADMIN_PASSWORD": password})
	if r := s.PostForm(t, "/subscribe", url.Values{"email": {"ann@gazette.test"}, "lang": {"en"}}); r.Status != http.StatusOK {
		t.Fatalf("subscribe: %d", r.Status)
	}
	cookie, csrf := editorSession(t, s, password)
	r := s.PostForm(t, "/admin/readers/lookup", url.Values{"email": {"ann@gazette.test"}, "csrf": {csrf}}, "Cookie", cookie)
	page := r.Header.Get("Location")
	if !readerPath.MatchString(page) {
		t.Fatalf("lookup: %d to %q", r.Status, page)
	}
	pg.Stop()
	t.Cleanup(pg.Start) // serve ends cleanly with its database back
	for _, c := range []struct{ name, method, path, body string }{
		{"Readers", "GET", "/admin/readers", ""},
		{"Lookup", "POST", "/admin/readers/lookup", url.Values{"email": {"ann@gazette.test"}, "csrf": {csrf}}.Encode()},
		{"Reader", "GET", page, ""},
		{"ConfirmStep", "GET", page + "/erase", ""},
		{"Action", "POST", page + "/lang", url.Values{"lang": {"ru"}, "csrf": {csrf}}.Encode()},
	} {
		t.Run(c.name, func(t *testing.T) {
			ct := ""
			if c.method == "POST" {
				ct = "application/x-www-form-urlencoded"
			}
			r := s.Do(t, c.method, c.path, ct, c.body, "Cookie", cookie)
			if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" {
				t.Fatalf("%d (Retry-After %q), want 503 with Retry-After\n%s", r.Status, r.Header.Get("Retry-After"), r.Body)
			}
			if m := internalText.FindString(r.Body); m != "" || strings.Contains(r.Body, "connection refused") {
				t.Errorf("the page shows %q", m)
			}
		})
	}
}
