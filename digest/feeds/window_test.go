package feeds

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"newsletter/digest"
	"newsletter/internal/testdb"
)

// windowWeekly is the default digest schedule: Mondays at 08:00 UTC.
const windowWeekly = "CRON_TZ=UTC 0 8 * * MON"

func windowTime(t testing.TB, s string) time.Time {
	t.Helper()
	d, err := time.Parse(time.RFC3339, s)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// windowFeeds serves the feed fixtures of testdata/feeds, each with the items a test has added
// since, newest first, as a publisher's feed grows.
type windowFeeds struct {
	mu    sync.Mutex
	extra map[string][]string // fixture name -> added <item> elements
}

func (f *windowFeeds) add(name string, items ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.extra == nil {
		f.extra = map[string][]string{}
	}
	f.extra[name] = append(slices.Clone(items), f.extra[name]...)
}

func (f *windowFeeds) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	name := path.Base(r.URL.Path)
	body, err := os.ReadFile(filepath.Join("testdata", "feeds", name))
	if err != nil {
		http.NotFound(w, r)
		return
	}
	f.mu.Lock()
	extra := strings.Join(f.extra[name], "")
	f.mu.Unlock()
	feed := strings.Replace(string(body), "<item>", extra+"<item>", 1)
	w.Header().Set("Content-Type", "application/rss+xml")
	w.Write([]byte(feed))
}

// windowItem is an RSS item; published nil leaves the date out.
func windowItem(guid string, published *time.Time) string {
	date := ""
	if published != nil {
		date = "<pubDate>" + published.Format(time.RFC1123Z) + "</pubDate>"
	}
	return `<item><title>Story ` + guid + `</title><link>https://news.example.com/` + guid + `</link><guid isPermaLink="false">` +
		guid + `</guid>` + date + `<description>Summary of ` + guid + `.</description></item>`
}

// windowStarter sends an issue to nobody (the tests have no readers): it is sent at once, and
// the next issue's window starts where it ended.
type windowStarter struct{ store *digest.Store }

func (w windowStarter) Start(ctx context.Context, id int64) (int, error) {
	now := w.store.Now().UTC()
	res, err := w.store.DB().ExecContext(ctx, `UPDATE issues SET status = 'sent', started_at = $2, finished_at = $2
		WHERE id = $1 AND status IN ('draft', 'approved')`, id, now)
	if err != nil {
		return 0, err
	}
	if n, _ := res.RowsAffected(); n != 1 {
		return 0, fmt.Errorf("issue %d not started", id)
	}
	return 0, nil
}

func windowGUIDs(t testing.TB, db *sqlx.DB, query string, args ...any) []string {
	t.Helper()
	var guids []string
	if err := db.Select(&guids, query, args...); err != nil {
		t.Fatal(err)
	}
	slices.Sort(guids)
	return guids
}

func windowArticle(t testing.TB, db *sqlx.DB, guid string) digest.Article {
	t.Helper()
	var a digest.Article
	if err := db.Get(&a, `SELECT * FROM articles WHERE guid = $1`, guid); err != nil {
		t.Fatalf("article %s: %v", guid, err)
	}
	return a
}

// TestWindowRuleFeeds runs the weekly schedule for five issues over a feed of 30 items spread over
// three months (testdata/feeds/window-a.rss.xml) and a second feed added after three issues
// (window-b.rss.xml). Only the last period's stories go out first, then only new ones and late
// arrivals published within one period before the window; no back catalogue goes out unless an
// editor picks it.
func TestWindowRuleFeeds(t *testing.T) {
	ctx := context.Background()
	db := testdb.New(t)
	clock := &testClock{}
	s := digest.NewStore(db, clock.now)
	feeds := &windowFeeds{}
	srv := httptest.NewServer(feeds)
	defer srv.Close()
	feedA := Config{Lang: "en", URL: srv.URL + "/window-a.rss.xml"}
	feedB := Config{Lang: "en", URL: srv.URL + "/window-b.rss.xml"}
	configured := []Config{feedA}
	poll := func(ctx context.Context) {
		for _, r := range NewIngester(s, configured, Options{AllowPrivate: true}, nil, nil).PollAll(ctx) {
			if r.Err != nil {
				t.Errorf("poll %s: %v", r.URL, r.Err)
			}
		}
	}
	if err := s.SetSchedule(windowWeekly); err != nil {
		t.Fatal(err)
	}
	sched, err := digest.NewScheduler(s, windowStarter{s}, poll, digest.ScheduleOptions{Spec: windowWeekly, Languages: []string{"en"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := func(when string) time.Time { return windowTime(t, when) }
	pollAt := func(when string) {
		t.Helper()
		clock.t = at(when)
		poll(ctx)
	}
	// issue runs the schedule at when (it polls first) and checks what the issue holds.
	issue := func(when string, want ...string) digest.Issue {
		t.Helper()
		clock.t = at(when)
		sched.RunAt(ctx, clock.t)
		var iss digest.Issue
		if err := db.Get(&iss, `SELECT * FROM issues WHERE lang = 'en' ORDER BY id DESC LIMIT 1`); err != nil {
			t.Fatalf("issue of %s: %v", when, err)
		}
		if iss.Status != digest.StatusSent || !iss.WindowEnd.Equal(clock.t) {
			t.Fatalf("issue of %s: status %s, window end %v", when, iss.Status, iss.WindowEnd)
		}
		slices.Sort(want)
		got := windowGUIDs(t, db, `SELECT a.guid FROM articles a JOIN issue_articles ia ON ia.article_id = a.id WHERE ia.issue_id = $1`, iss.ID)
		if !slices.Equal(got, want) {
			t.Errorf("issue of %s holds %q, want %q", when, got, want)
		}
		return iss
	}
	date := func(when string) *time.Time { d := at(when); return &d }

	// Thu 26 Nov: the service's first run reads feed A; its 30 items are the baseline.
	pollAt("2026-11-26T10:00:00Z")
	if got := windowGUIDs(t, db, `SELECT guid FROM articles WHERE baseline`); len(got) != 30 {
		t.Fatalf("%d baseline articles after the first fetch, want 30", len(got))
	}
	// Sat 28 Nov: a new story, and a late arrival published before the first window.
	feeds.add("window-a.rss.xml", windowItem("a-new-1", date("2026-11-28T11:00:00Z")), windowItem("a-late-0", date("2026-11-21T10:00:00Z")))
	pollAt("2026-11-28T12:00:00Z")

	// Issue 1, Mon 30 Nov: only what was published in the week before it (stories 01 and 02 of the
	// baseline, and the new one); the late arrival was published before that week.
	first := issue("2026-11-30T08:00:00Z", "window-a-01", "window-a-02", "a-new-1")
	if want := at("2026-11-23T08:00:00Z"); !first.WindowStart.Equal(want) {
		t.Errorf("first window starts %v, want %v (one weekly period before the issue)", first.WindowStart, want)
	}

	// Wed 2 Dec: a new story; late arrivals published within the period before the window
	// (25 Nov) and before it (20 Nov); a date in the future; no date at all.
	feeds.add("window-a.rss.xml",
		windowItem("a-new-2", date("2026-12-02T09:00:00Z")),
		windowItem("a-late-1", date("2026-11-25T12:00:00Z")),
		windowItem("a-late-2", date("2026-11-20T12:00:00Z")),
		windowItem("a-future-1", date("2027-01-10T10:00:00Z")),
		windowItem("a-undated-1", nil))
	pollAt("2026-12-02T10:00:00Z")
	for _, guid := range []string{"a-future-1", "a-undated-1"} {
		if a := windowArticle(t, db, guid); !a.PublishedAt.Equal(at("2026-12-02T10:00:00Z")) || !a.Undated || a.Baseline {
			t.Errorf("%s: published %v, undated %v, baseline %v; want the first-seen time, undated, news", guid, a.PublishedAt, a.Undated, a.Baseline)
		}
	}
	second := issue("2026-12-07T08:00:00Z", "a-new-2", "a-late-1", "a-future-1", "a-undated-1")
	if !second.WindowStart.Equal(first.WindowEnd) {
		t.Errorf("second window starts %v, want %v", second.WindowStart, first.WindowEnd)
	}

	// Wed 9 Dec: a new story; an editor picks a baseline story and the late arrival that was
	// too old.
	feeds.add("window-a.rss.xml", windowItem("a-new-3", date("2026-12-09T09:00:00Z")))
	pollAt("2026-12-09T10:00:00Z")
	for _, guid := range []string{"window-a-05", "a-late-2"} {
		if err := s.PickArticle(ctx, windowArticle(t, db, guid).ID); err != nil {
			t.Fatal(err)
		}
	}
	issue("2026-12-14T08:00:00Z", "a-new-3", "window-a-05", "a-late-2")

	// Tue 15 Dec: feed B is added. Its back catalogue holds a story from inside this window, one
	// from the day before the last issue, older ones, one without a date and one in the future.
	configured = []Config{feedA, feedB}
	feeds.add("window-a.rss.xml", windowItem("a-new-4", date("2026-12-15T09:30:00Z")))
	pollAt("2026-12-15T10:00:00Z")
	if got := windowGUIDs(t, db, `SELECT guid FROM articles WHERE baseline AND feed_url = $1`, feedB.URL); len(got) != 8 {
		t.Fatalf("feed B's baseline: %q, want its 8 items", got)
	}
	if a := windowArticle(t, db, "window-b-06"); !a.PublishedAt.Equal(at("2026-12-15T10:00:00Z")) || !a.Undated {
		t.Errorf("future-dated baseline item: published %v, undated %v; want the first-seen time, undated", a.PublishedAt, a.Undated)
	}
	// Thu 17 Dec: feed B's first new story, a late arrival of its own and an undated one.
	feeds.add("window-b.rss.xml",
		windowItem("b-new-1", date("2026-12-17T08:00:00Z")),
		windowItem("b-late-1", date("2026-12-13T07:00:00Z")),
		windowItem("b-undated-1", nil))
	pollAt("2026-12-17T10:00:00Z")
	issue("2026-12-21T08:00:00Z", "a-new-4", "b-new-1", "b-late-1", "b-undated-1")

	// An editor picks one story of feed B's back catalogue; it goes out, and nothing else of it.
	if err := s.PickArticle(ctx, windowArticle(t, db, "window-b-04").ID); err != nil {
		t.Fatal(err)
	}
	issue("2026-12-28T08:00:00Z", "window-b-04")

	sent := windowGUIDs(t, db, `SELECT a.guid FROM articles a JOIN issue_articles ia ON ia.article_id = a.id WHERE a.baseline`)
	if want := []string{"window-a-01", "window-a-02", "window-a-05", "window-b-04"}; !slices.Equal(sent, want) {
		t.Errorf("baseline articles that went out: %q, want %q (the first week's and the editor's picks)", sent, want)
	}
	if never := windowGUIDs(t, db, `SELECT guid FROM articles a WHERE NOT EXISTS (SELECT 1 FROM issue_articles ia WHERE ia.article_id = a.id) AND NOT a.baseline`); !slices.Equal(never, []string{"a-late-0"}) {
		t.Errorf("news that never went out: %q, want only the late arrival from before the first window", never)
	}
}

// TestWindowFirstIssueFollowsSchedule: the first issue reaches back one period of the configured
// schedule (a day for a daily one), and its draft's window moves with each refresh.
func TestWindowFirstIssueFollowsSchedule(t *testing.T) {
	ctx := context.Background()
	db := testdb.New(t)
	clock := &testClock{t: windowTime(t, "2026-12-02T08:00:00Z")}
	s := digest.NewStore(db, clock.now)
	if err := s.SetSchedule("CRON_TZ=UTC 0 8 * * *"); err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		guid   string
		hours  int
		undate bool
		base   bool
	}{
		{"today", 2, false, true}, {"yesterday-early", 23, false, true}, {"two-days", 30, false, true},
		{"undated-baseline", 0, true, true}, {"undated-news", 0, true, false},
	} {
		pub := clock.t.Add(-time.Duration(a.hours) * time.Hour)
		if _, err := db.Exec(`INSERT INTO articles (lang, guid, title, published_at, first_seen_at, baseline, undated)
			VALUES ('en', $1, $1, $2, $3, $4, $5)`, a.guid, pub, clock.t.Add(-time.Hour), a.base, a.undate); err != nil {
			t.Fatal(err)
		}
	}
	iss, err := s.Assemble(ctx, "en", 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := windowGUIDs(t, db, `SELECT a.guid FROM articles a JOIN issue_articles ia ON ia.article_id = a.id WHERE ia.issue_id = $1`, iss.ID),
		[]string{"today", "undated-news", "yesterday-early"}; !slices.Equal(got, want) {
		t.Errorf("first daily issue holds %q, want %q", got, want)
	}
	if want := clock.t.Add(-24 * time.Hour); !iss.WindowStart.Equal(want) {
		t.Errorf("window starts %v, want %v", iss.WindowStart, want)
	}

	// Refreshed three hours later, the draft's window starts three hours later too.
	clock.t = clock.t.Add(3 * time.Hour)
	iss, err = s.Assemble(ctx, "en", 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := windowGUIDs(t, db, `SELECT a.guid FROM articles a JOIN issue_articles ia ON ia.article_id = a.id WHERE ia.issue_id = $1`, iss.ID),
		[]string{"today", "undated-news"}; !slices.Equal(got, want) {
		t.Errorf("refreshed first issue holds %q, want %q", got, want)
	}
}

// TestWindowEditorPicksBaseline: the editor's digest page lists a feed's back catalogue apart from
// the coming issue, and "Add to the digest" puts one of its stories into the issue.
