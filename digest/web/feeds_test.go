package web

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"newsletter/digest/feeds"
)

// storyFeed is an RSS 2.0 feed of items.
func storyFeed(items ...string) string {
	return `<?xml version="1.0"?><rss version="2.0"><channel><title>T</title><link>https://news.example.com/</link>` +
		strings.Join(items, "") + `</channel></rss>`
}

// storyItem is an RSS item; published nil leaves the date out.
func storyItem(guid string, published *time.Time) string {
	date := ""
	if published != nil {
		date = "<pubDate>" + published.Format(time.RFC1123Z) + "</pubDate>"
	}
	return `<item><title>Story ` + guid + `</title><link>https://news.example.com/` + guid + `</link><guid isPermaLink="false">` +
		guid + `</guid>` + date + `<description>Summary of ` + guid + `.</description></item>`
}

func TestAdminFeedStatus(t *testing.T) {
	e := newAdminEnv(t)
	published := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	mux := http.NewServeMux()
	srv := httptest.NewServer(mux)
	defer srv.Close()
	feed := func(path, guid string) {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			w.Write([]byte(storyFeed(storyItem(guid, &published))))
		})
	}
	status := func(path string, code int, retryAfter string) {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			if retryAfter != "" {
				w.Header().Set("Retry-After", retryAfter)
			}
			http.Error(w, "server text the editors need not see", code)
		})
	}
	feed("/ok", "ok")
	mux.Handle("/moved", http.RedirectHandler("/new?token=t0ken", http.StatusMovedPermanently))
	feed("/new", "moved")
	status("/gone", http.StatusGone, "")
	status("/broken", http.StatusBadGateway, "")
	status("/once", http.StatusBadGateway, "")
	status("/busy", http.StatusTooManyRequests, "600")
	secret := strings.Replace(srv.URL, "http://", "http://editor:s3cret@", 1)
	ing := feeds.NewIngester(e.store, nil, feeds.Options{AllowPrivate: true}, nil, nil)
	ctx := context.Background()
	for _, p := range []string{"/ok", "/moved", "/gone", "/once", "/busy"} {
		ing.Poll(ctx, feeds.Config{Lang: "en", URL: secret + p})
	}
	for range 3 { // the polls in a row that make a feed failing
		ing.Poll(ctx, feeds.Config{Lang: "ru", URL: secret + "/broken"})
	}
	e.mustLogin()
	body := e.get("/admin/").body
	for _, leak := range []string{"s3cret", "editor:", "t0ken"} {
		if strings.Contains(body, leak) {
			t.Errorf("the overview shows %q", leak)
		}
	}
	row := func(path string) string {
		t.Helper()
		m := regexp.MustCompile(`(?s)<tr[^>]*>\s*<td>` + regexp.QuoteMeta(srv.URL+path) + `(?:<br>|</td>).*?</tr>`).FindString(body)
		if m == "" {
			t.Fatalf("no row for %s in %s", path, body)
		}
		return m
	}
	for path, want := range map[string][]string{
		"/ok":     {`<tr>`, `status sent">ok<`},
		"/moved":  {`<tr>`, `moved permanently to ` + srv.URL + `/new?…`},
		"/gone":   {`<tr class="failing">`, `status gone">gone<`, "Answered 410 Gone on", "no longer fetched"},
		"/broken": {`<tr class="failing">`, `status failing">failing<`, "3 polls in a row failed.", "HTTP 502 Bad Gateway"},
		"/once":   {`<tr>`, "1 poll in a row."},
		"/busy":   {`<tr>`, "Its server asked for no fetch before"},
	} {
		r := row(path)
		for _, w := range want {
			if !strings.Contains(r, w) {
				t.Errorf("%s row lacks %q: %s", path, w, r)
			}
		}
	}
}

func TestWindowEditorPicksBaseline(t *testing.T) {
	e := newAdminEnv(t)
	now := time.Now().UTC()
	fresh, old := now.Add(-time.Hour), now.AddDate(0, 0, -40)
	body := storyFeed(storyItem("fresh", &fresh), storyItem("old", &old), storyItem("undated", nil))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte(body)) }))
	defer srv.Close()
	if r := feeds.NewIngester(e.store, nil, feeds.Options{AllowPrivate: true}, nil, nil).Poll(context.Background(), feeds.Config{Lang: "en", URL: srv.URL}); r.Err != nil || r.New != 3 {
		t.Fatalf("first fetch: %+v", r)
	}
	e.mustLogin()
	if got := e.order("en"); !slices.Equal(got, []string{"Story fresh"}) {
		t.Fatalf("coming issue %q, want only the fresh story", got)
	}
	var oldID int64
	if err := e.db.Get(&oldID, `SELECT id FROM articles WHERE guid = 'old'`); err != nil {
		t.Fatal(err)
	}
	p := e.get("/admin/digest/en")
	for _, want := range []string{"Earlier articles", fmt.Sprintf("/admin/articles/%d/pick", oldID), "Story undated", "feed's back catalogue"} {
		if !strings.Contains(p.body, want) {
			t.Errorf("digest page lacks %q", want)
		}
	}
	if loc := e.action(fmt.Sprintf("/admin/articles/%d/pick", oldID), url.Values{}); loc != "/admin/digest/en?done=picked" {
		t.Errorf("pick redirects to %q", loc)
	}
	if got := e.order("en"); !slices.Equal(got, []string{"Story fresh", "Story old"}) {
		t.Errorf("coming issue after the pick %q, want the fresh and the picked story", got)
	}
	if p := e.get("/admin/digest/en?done=picked"); strings.Contains(p.body, fmt.Sprintf("/admin/articles/%d/pick", oldID)) || !strings.Contains(p.body, "Added to the coming digest.") {
		t.Error("the picked story is still offered, or the page does not say it was added")
	}
}
