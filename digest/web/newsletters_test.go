package web

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"newsletter/digest"
	"newsletter/editors"
	"newsletter/newsletters"
)

// newslettersEnv is the editor pages with the newsletters' routes added (as routes.go lists
// them), the newsroom in Moscow and the default schedule Mondays 08:00 UTC.
func newslettersEnv(t *testing.T) *adminEnv {
	t.Helper()
	e := newAdminEnv(t)
	moscow, err := time.LoadLocation("Europe/Moscow")
	if err != nil {
		t.Fatal(err)
	}
	e.admin.opts.Timezone, e.admin.opts.DigestSchedule = moscow, "CRON_TZ=UTC 0 8 * * MON"
	mux := adminTestMux(e.admin)
	w, p := editors.Writer, editors.Publisher
	for _, r := range []struct {
		pattern string
		role    editors.Role
		h       http.HandlerFunc
	}{
		{"GET /admin/newsletters", w, e.admin.Newsletters},
		{"POST /admin/newsletters", p, e.admin.CreateNewsletter},
		{"GET /admin/newsletters/{id}", w, e.admin.NewsletterPage},
		{"POST /admin/newsletters/{id}", p, e.admin.EditNewsletter},
		{"POST /admin/newsletters/{id}/welcome/{lang}", p, e.admin.SaveWelcome},
		{"GET /admin/newsletters/{id}/welcome/{lang}/preview.html", w, e.admin.WelcomePreview},
		{"GET /admin/newsletters/{id}/schedule", w, e.admin.SchedulePage},
		{"POST /admin/newsletters/{id}/schedule", p, e.admin.SaveSchedule},
		{"POST /admin/newsletters/{id}/schedule/{action}", p, e.admin.ScheduleAction},
	} {
		mux.Handle(r.pattern, e.admin.Require(r.role, r.h))
	}
	e.srv.Config.Handler = mux // before any request of the test
	return e
}

func digestID(t *testing.T, e *adminEnv, lang string) int64 {
	t.Helper()
	n, err := newsletters.BySlug(t.Context(), e.db, "digest-"+lang)
	if err != nil {
		t.Fatal(err)
	}
	return n.ID
}

func TestSchedulePage(t *testing.T) {
	e := newslettersEnv(t)
	csrf := e.mustLogin()
	id := digestID(t, e, "en")
	path := "/admin/newsletters/" + strconv.FormatInt(id, 10) + "/schedule"

	p := e.get(path)
	if p.status != http.StatusOK || !strings.Contains(p.body, "default schedule") || !strings.Contains(p.body, "Europe/Moscow") {
		t.Fatalf("schedule page: %d\n%s", p.status, p.body)
	}
	// Mondays 08:00 UTC read in Moscow: 11:00 MSK, five of them.
	if n := strings.Count(p.body, "11:00 MSK"); n != 5 {
		t.Fatalf("%d next runs at 11:00 MSK, want 5:\n%s", n, p.body)
	}

	// A bad expression: 400, the error inline, nothing saved.
	p = e.post(path, url.Values{"csrf": {csrf}, "schedule": {"every monday"}, "max_articles": {"5"}})
	if p.status != http.StatusBadRequest || !strings.Contains(p.body, "not a schedule") || !strings.Contains(p.body, `value="every monday"`) {
		t.Fatalf("bad expression: %d\n%s", p.status, p.body)
	}
	for _, bad := range []url.Values{{"max_articles": {"0"}}, {"max_articles": {"101"}}, {"require_approval": {"maybe"}},
		{"schedule": {"0 8 * * MON\r\nBcc: x@evil.example"}}, {"schedule": {strings.Repeat("1", 201)}}} {
		bad.Set("csrf", csrf)
		if p := e.post(path, bad); p.status != http.StatusBadRequest {
			t.Errorf("%v: %d, want 400", bad, p.status)
		}
	}
	if n, _ := newsletters.Get(t.Context(), e.db, id); n.Schedule != nil || n.MaxArticles != nil || n.RequireApproval != nil {
		t.Fatalf("a refused form saved something: %+v", n)
	}

	// A good one, without a zone: read in Moscow.
	if loc := e.action(path, url.Values{"schedule": {"30 9 * * TUE"}, "max_articles": {"5"}, "require_approval": {"yes"}}); loc != path+"?done=schedule" {
		t.Fatalf("saved to %q", loc)
	}
	n, _ := newsletters.Get(t.Context(), e.db, id)
	if n.Schedule == nil || *n.Schedule != "30 9 * * TUE" || n.MaxArticles == nil || *n.MaxArticles != 5 || n.RequireApproval == nil || !*n.RequireApproval {
		t.Fatalf("saved %+v", n)
	}
	p = e.get(path)
	if c := strings.Count(p.body, "Tue "); c < 5 || strings.Count(p.body, "09:30 MSK") != 5 {
		t.Fatalf("next runs after the change:\n%s", p.body)
	}

	// Skip the next run, as the page names it; then undo.
	at := regexpFind(t, p.body, `name="at" value="([^"]+)"`)
	if loc := e.action(path+"/skip", url.Values{"at": {at}}); loc != path+"?done=skip" {
		t.Fatalf("skip went to %q", loc)
	}
	n, _ = newsletters.Get(t.Context(), e.db, id)
	if n.SkipRunAt == nil || n.SkipRunAt.UTC().Format(time.RFC3339) != at {
		t.Fatalf("skip_run_at %v, want %s", n.SkipRunAt, at)
	}
	if p := e.get(path); !strings.Contains(p.body, "will be skipped") || !strings.Contains(p.body, "Undo the skip") {
		t.Fatalf("the page does not show the skip:\n%s", p.body)
	}
	// A skip naming another time than the next run (a stale page) is refused.
	if p := e.post(path+"/skip", url.Values{"csrf": {csrf}, "at": {"2020-01-01T00:00:00Z"}}); p.status != http.StatusConflict {
		t.Fatalf("stale skip: %d", p.status)
	}
	e.action(path+"/unskip", nil)
	if n, _ = newsletters.Get(t.Context(), e.db, id); n.SkipRunAt != nil {
		t.Fatalf("skip still set: %v", n.SkipRunAt)
	}

	// The last runs, newest first, with their issue.
	var issueID int64
	if err := e.db.Get(&issueID, `INSERT INTO issues (newsletter_id, lang, window_start, window_end, status) VALUES ($1, 'en', now() - interval '7 days', now(), 'sent') RETURNING id`, id); err != nil {
		t.Fatal(err)
	}
	if _, err := e.db.Exec(`INSERT INTO schedule_runs (lang, scheduled_at, newsletter_id, finished_at, outcome, issue_id) VALUES
		('en', '2026-01-05 08:00Z', $1, now(), 'sending to 3 readers', $2), ('en', '2026-01-12 08:00Z', $1, now(), 'skipped by an editor', NULL)`, id, issueID); err != nil {
		t.Fatal(err)
	}
	p = e.get(path)
	first, second := strings.Index(p.body, "2026-01-12 11:00 MSK"), strings.Index(p.body, "2026-01-05 11:00 MSK")
	if first < 0 || second < 0 || first > second || !strings.Contains(p.body, `href="/admin/issues/`+strconv.FormatInt(issueID, 10)+`"`) {
		t.Fatalf("last runs not newest first with the issue link:\n%s", p.body)
	}

	audit := strings.Join(e.audit(), "\n")
	for _, want := range []string{"newsletter.schedule newsletter " + strconv.FormatInt(id, 10), "newsletter.skip", "newsletter.unskip"} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit log lacks %q:\n%s", want, audit)
		}
	}
}

func regexpFind(t *testing.T, s, pattern string) string {
	t.Helper()
	i := strings.Index(pattern, "(")
	prefix := pattern[:i]
	j := strings.Index(s, prefix)
	if j < 0 {
		t.Fatalf("no %q in:\n%s", prefix, s)
	}
	rest := s[j+len(prefix):]
	return rest[:strings.IndexByte(rest, '"')]
}

func TestNewslettersPages(t *testing.T) {
	e := newslettersEnv(t)
	csrf := e.mustLogin()
	if p := e.get("/admin/newsletters"); p.status != http.StatusOK || !strings.Contains(p.body, "digest-en") || !strings.Contains(p.body, "never deleted") {
		t.Fatalf("list: %d\n%s", p.status, p.body)
	}
	create := func(v url.Values) page {
		v.Set("csrf", csrf)
		return e.post("/admin/newsletters", v)
	}
	good := url.Values{"slug": {"weekly-briefing"}, "langs": {"en", "ru"}, "name_en": {"Weekly briefing"}, "name_ru": {"Еженедельный обзор"},
		"description_en": {"What matters, on Fridays"}, "on_form": {"1"}}
	for name, bad := range map[string]url.Values{
		"bad slug":        {"slug": {"Weekly_Briefing"}, "langs": {"en"}, "name_en": {"X"}},
		"slug hyphens":    {"slug": {"a--b"}, "langs": {"en"}, "name_en": {"X"}},
		"no language":     {"slug": {"x"}, "name_en": {"X"}},
		"other language":  {"slug": {"x"}, "langs": {"de"}, "name_en": {"X"}},
		"missing name":    {"slug": {"x"}, "langs": {"en", "ru"}, "name_en": {"X"}},
		"name with break": {"slug": {"x"}, "langs": {"en"}, "name_en": {"X\r\nBcc: a@b.example"}},
		"bidi override":   {"slug": {"x"}, "langs": {"en"}, "name_en": {"abc\u202edef"}},
		"long name":       {"slug": {"x"}, "langs": {"en"}, "name_en": {strings.Repeat("я", 101)}},
	} {
		if p := create(bad); p.status != http.StatusBadRequest || !strings.Contains(p.body, `id="create-error"`) || !strings.Contains(p.body, `id="create"`) {
			t.Errorf("%s: %d, want 400 with the form\n%s", name, p.status, p.body)
		}
	}
	p := create(good)
	if p.status != http.StatusSeeOther {
		t.Fatalf("create: %d\n%s", p.status, p.body)
	}
	n, err := newsletters.BySlug(t.Context(), e.db, "weekly-briefing")
	if err != nil || n.Kind != newsletters.KindEditions || n.Names["ru"] != "Еженедельный обзор" || !n.OnForm || n.DefaultOn || len(n.Langs) != 2 {
		t.Fatalf("created %+v, %v", n, err)
	}
	if p := create(good); p.status != http.StatusConflict || !strings.Contains(p.body, "Another newsletter has that slug") {
		t.Fatalf("duplicate slug: %d\n%s", p.status, p.body)
	}
	base := "/admin/newsletters/" + strconv.FormatInt(n.ID, 10)
	if p := e.get(base); p.status != http.StatusOK || !strings.Contains(p.body, "Weekly briefing") || !strings.Contains(p.body, "never deleted") {
		t.Fatalf("newsletter page: %d\n%s", p.status, p.body)
	}
	if p := e.get(base + "/schedule"); p.status != http.StatusNotFound {
		t.Fatalf("an editions newsletter's schedule: %d, want 404", p.status)
	}

	// Edit: a refused edit keeps what was stored.
	if p := e.post(base, url.Values{"csrf": {csrf}, "name_en": {""}, "name_ru": {"Обзор"}}); p.status != http.StatusBadRequest {
		t.Fatalf("edit without an English name: %d", p.status)
	}
	e.action(base, url.Values{"name_en": {"The briefing"}, "name_ru": {"Обзор"}, "default_on": {"1"}})
	n, _ = newsletters.Get(t.Context(), e.db, n.ID)
	if n.Names["en"] != "The briefing" || n.OnForm || !n.DefaultOn || n.Descriptions["en"] != "" {
		t.Fatalf("edited %+v", n)
	}

	// Welcome: limits, then a good one and its preview.
	wpath := base + "/welcome/en"
	for name, bad := range map[string]url.Values{
		"subject break":  {"subject": {"Hi\r\nBcc: a@b.example"}, "markdown": {"Hello"}},
		"long subject":   {"subject": {strings.Repeat("s", 201)}, "markdown": {"Hello"}},
		"no subject":     {"markdown": {"Hello"}},
		"no text":        {"subject": {"Hi"}},
		"only html":      {"subject": {"Hi"}, "markdown": {"<script>alert(1)</script>"}},
		"long markdown":  {"subject": {"Hi"}, "markdown": {strings.Repeat("a", digest.MaxEditionMarkdown+1)}},
		"other language": {"subject": {"Hi"}, "markdown": {"x"}},
	} {
		path := wpath
		if name == "other language" {
			path = base + "/welcome/de"
		}
		bad.Set("csrf", csrf)
		want := http.StatusBadRequest
		if name == "other language" {
			want = http.StatusNotFound
		}
		if p := e.post(path, bad); p.status != want {
			t.Errorf("%s: %d, want %d\n%s", name, p.status, want, p.body)
		}
	}
	if n, _ = newsletters.Get(t.Context(), e.db, n.ID); len(n.Welcome) != 0 {
		t.Fatalf("a refused welcome was stored: %+v", n.Welcome)
	}
	if p := e.get(wpath + "/preview.html"); p.status != http.StatusNotFound {
		t.Fatalf("preview of no welcome: %d", p.status)
	}
	e.action(wpath, url.Values{"subject": {"Welcome aboard"}, "markdown": {"Thanks for **joining**.\r\n\r\n[Our site](https://site.example/)"}})
	n, _ = newsletters.Get(t.Context(), e.db, n.ID)
	if w := n.Welcome["en"]; w.Subject != "Welcome aboard" || w.Markdown != "Thanks for **joining**.\n\n[Our site](https://site.example/)" {
		t.Fatalf("welcome %+v", n.Welcome)
	}
	p = e.get(wpath + "/preview.html")
	if p.status != http.StatusOK || !strings.Contains(p.body, "<strong>joining</strong>") || !strings.Contains(p.header.Get("Content-Security-Policy"), "sandbox") {
		t.Fatalf("preview: %d %v\n%s", p.status, p.header, p.body)
	}
	// Both fields empty: no welcome in that language.
	e.action(wpath, url.Values{"subject": {""}, "markdown": {""}})
	if n, _ = newsletters.Get(t.Context(), e.db, n.ID); len(n.Welcome) != 0 {
		t.Fatalf("welcome after emptying: %+v", n.Welcome)
	}

	audit := strings.Join(e.audit(), "\n")
	for _, want := range []string{"newsletter.create", "newsletter.edit", "newsletter.welcome"} {
		if !strings.Contains(audit, want) {
			t.Errorf("audit log lacks %q:\n%s", want, audit)
		}
	}

	// A writer sees the pages and changes nothing.
	e.addEditor("writer@news.example", editors.Writer)
	e.c.Jar.SetCookies(mustURL(e.srv.URL+"/admin/"), []*http.Cookie{{Name: sessionCookie, Value: "", MaxAge: -1, Path: "/admin"}})
	wcsrf := e.mustLoginAs("writer@news.example")
	if p := e.get("/admin/newsletters/" + strconv.FormatInt(digestID(t, e, "en"), 10) + "/schedule"); p.status != http.StatusOK || strings.Contains(p.body, "Save schedule") {
		t.Fatalf("writer's schedule page: %d", p.status)
	}
	for _, path := range []string{"/admin/newsletters", base, wpath, "/admin/newsletters/" + strconv.FormatInt(digestID(t, e, "en"), 10) + "/schedule"} {
		if p := e.post(path, url.Values{"csrf": {wcsrf}, "slug": {"w"}, "langs": {"en"}, "name_en": {"W"}, "schedule": {"@daily"}}); p.status != http.StatusForbidden {
			t.Errorf("writer POST %s: %d, want 403", path, p.status)
		}
	}
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}
