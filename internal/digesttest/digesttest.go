// Package digesttest holds the fixtures the tests of the digest's sub-packages (render, send, web)
// share: readers and articles seeded into a test database, the issues of the golden files assembled
// from the feed fixtures, and a check that rendered HTML is inert. Only tests import it; digest's
// and feeds' own tests cannot (it imports them).
package digesttest

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"golang.org/x/net/html"

	"newsletter/digest"
	"newsletter/digest/feeds"
)

// GoldenNow is the fixed clock of the golden issues: Wednesday 25 November 2026, 08:00 UTC.
var GoldenNow = time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)

// SeedReaders adds n confirmed readers of lang, reader-1@example.org ... (names "Reader N"),
// subscribed to the digest of lang.
func SeedReaders(t testing.TB, db *sqlx.DB, lang string, n int) {
	t.Helper()
	if _, err := db.Exec(`INSERT INTO subscribers (email, name, lang, status, confirmed_at)
		SELECT 'reader-' || g || '@example.org', 'Reader ' || g, $1, 'confirmed', now() FROM generate_series(1, $2) g`, lang, n); err != nil {
		t.Fatal(err)
	}
	SubscribeAll(t, db)
}

// SubscribeAll gives every reader written straight into the table an active subscription to the
// digest of their language, as a confirmation (or the migration, for readers from before) would.
func SubscribeAll(t testing.TB, db *sqlx.DB) {
	t.Helper()
	if _, err := db.Exec(`INSERT INTO subscriptions (subscriber_id, newsletter_id)
		SELECT s.id, n.id FROM subscribers s JOIN newsletters n ON n.kind = 'digest' AND n.lang = s.lang
		ON CONFLICT DO NOTHING`); err != nil {
		t.Fatal(err)
	}
}

// SeedArticles adds n fresh articles of lang.
func SeedArticles(t testing.TB, db *sqlx.DB, lang string, n int) {
	t.Helper()
	for i := range n {
		if _, err := db.Exec(`INSERT INTO articles (lang, guid, title, link, summary, section, published_at, first_seen_at)
			VALUES ($1, $2, $3, $4, $5, $6, now() - interval '1 hour', now() - interval '1 hour')`,
			lang, fmt.Sprintf("g-%s-%d", lang, i), fmt.Sprintf("Story %d of the week", i+1), fmt.Sprintf("https://site.example/%s/%d", lang, i),
			strings.Repeat("A summary sentence of reasonable length for the digest. ", 5), []string{"City", "World"}[i%2]); err != nil {
			t.Fatal(err)
		}
	}
}

// InsertArticle stores an article as the ingester would, filling what a test leaves out.
func InsertArticle(t testing.TB, db *sqlx.DB, a digest.Article) digest.Article {
	t.Helper()
	if a.Lang == "" {
		a.Lang = "en"
	}
	if a.GUID == "" {
		a.GUID = fmt.Sprintf("guid-%s-%d", a.Title, time.Now().UnixNano())
	}
	if a.Source == "" {
		a.Source = "feed"
	}
	if a.FirstSeenAt.IsZero() {
		a.FirstSeenAt = a.PublishedAt
	}
	a.UpdatedAt = a.FirstSeenAt
	q, args, err := sqlx.Named(`INSERT INTO articles (lang, guid, source, feed_url, title, link, summary,
		author, section, image_url, image_alt, published_at, first_seen_at, updated_at, pinned, hidden, position)
		VALUES (:lang, :guid, :source, :feed_url, :title, :link, :summary, :author, :section, :image_url, :image_alt,
		:published_at, :first_seen_at, :updated_at, :pinned, :hidden, :position) RETURNING id`, a)
	if err == nil {
		err = db.GetContext(context.Background(), &a.ID, db.Rebind(q), args...)
	}
	if err != nil {
		t.Fatalf("insert article %q: %v", a.Title, err)
	}
	return a
}

// GoldenIssues ingests the feed fixtures of dir (served over loopback HTTP) at GoldenNow, pins the
// sample article as an editor would, sets an editor's note on the English issue and assembles both
// languages: the issues of the golden files.
func GoldenIssues(t testing.TB, db *sqlx.DB, dir string) (*digest.Store, map[string]int64) {
	t.Helper()
	ctx := context.Background()
	s := digest.NewStore(db, func() time.Time { return GoldenNow })
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer srv.Close()
	configs := []feeds.Config{
		{Lang: "en", URL: srv.URL + "/en.rss.xml"},
		{Lang: "en", URL: srv.URL + "/en.json-feed.json"},
		{Lang: "ru", URL: srv.URL + "/ru.atom.xml"},
	}
	for _, res := range feeds.NewIngester(s, configs, feeds.Options{BaseURL: "https://digest.example.com", AllowPrivate: true}, nil, nil).PollAll(ctx) {
		if res.Err != nil || res.New == 0 {
			t.Fatalf("ingest %s: %d new, %v", res.URL, res.New, res.Err)
		}
	}
	var sample int64
	if err := db.GetContext(ctx, &sample, `SELECT id FROM articles WHERE link LIKE '%keep-your-terrorists-close'`); err != nil {
		t.Fatalf("the sample article was not ingested: %v", err)
	}
	if _, err := db.ExecContext(ctx, `UPDATE articles SET pinned = true WHERE id = $1`, sample); err != nil {
		t.Fatal(err)
	}
	ids := map[string]int64{}
	for _, lang := range []string{"en", "ru"} {
		iss, err := s.Assemble(ctx, lang, 0)
		if err != nil {
			t.Fatal(err)
		}
		ids[lang] = iss.ID
	}
	if err := s.UpdateIssueText(ctx, ids["en"], "", "Welcome to the first issue of our weekly digest.\n\nTell us what you think: just reply to this email."); err != nil {
		t.Fatal(err)
	}
	return s, ids
}

// CheckInert fails t for anything in an HTML document of the golden issues that could run, submit
// or load from elsewhere: active elements, event handlers, links that are not http(s), images off
// the fixtures' host.
func CheckInert(t testing.TB, doc string) {
	t.Helper()
	z := html.NewTokenizer(strings.NewReader(doc))
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			return
		}
		if tt != html.StartTagToken && tt != html.SelfClosingTagToken {
			continue
		}
		tok := z.Token()
		switch tok.Data {
		case "script", "iframe", "form", "input", "object", "embed", "svg", "button", "frame", "base", "link":
			t.Errorf("element <%s> in the output", tok.Data)
		}
		for _, a := range tok.Attr {
			if strings.HasPrefix(a.Key, "on") {
				t.Errorf("event handler %s=%q on <%s>", a.Key, a.Val, tok.Data)
			}
			if a.Key == "href" && !strings.HasPrefix(a.Val, "https://") && !strings.HasPrefix(a.Val, "http://") {
				t.Errorf("link %q", a.Val)
			}
			if a.Key == "src" && !strings.HasPrefix(a.Val, "https://news.example.com/") {
				t.Errorf("image %q", a.Val)
			}
		}
	}
}
