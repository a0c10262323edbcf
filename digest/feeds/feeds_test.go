package feeds

import (
	"bytes"
	"compress/gzip"
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mmcdole/gofeed"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"newsletter/digest"
	"newsletter/internal/testdb"
	"newsletter/internal/textclean"
)

// ingestNow is the fixed clock of the ingest tests: the day after the fixtures' newest item.
var ingestNow = time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)

func ingestTestStore(t *testing.T) *digest.Store {
	t.Helper()
	return digest.NewStore(testdb.New(t), func() time.Time { return ingestNow })
}

// ingestServeFixtures serves testdata/feeds/NAME at /NAME.
func ingestServeFixtures(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.StripPrefix("/", http.FileServer(http.Dir("testdata/feeds"))))
	t.Cleanup(srv.Close)
	return srv
}

// ingestArticlesByGUID returns every stored article of lang keyed by guid.
func ingestArticlesByGUID(t *testing.T, s *digest.Store, lang string) map[string]digest.Article {
	t.Helper()
	var list []digest.Article
	if err := s.DB().Select(&list, `SELECT * FROM articles WHERE lang = $1`, lang); err != nil {
		t.Fatal(err)
	}
	m := map[string]digest.Article{}
	for _, a := range list {
		m[a.GUID] = a
	}
	return m
}

func TestIngestFixtures(t *testing.T) {
	s := ingestTestStore(t)
	srv := ingestServeFixtures(t)
	feeds := []Config{
		{"en", srv.URL + "/en.rss.xml"},
		{"ru", srv.URL + "/ru.atom.xml"},
		{"en", srv.URL + "/en.json-feed.json"},
	}
	ing := NewIngester(s, feeds, Options{AllowPrivate: true}, nil, nil)
	results := ing.PollAll(context.Background())
	wantNew := []int{8, 6, 3} // 9 RSS items and 7 Atom entries, one duplicate GUID each
	for i, r := range results {
		if r.Err != nil || r.New != wantNew[i] || r.Updated != 0 || r.URL != feeds[i].URL || r.Lang != feeds[i].Lang {
			t.Errorf("feed %s: %+v, want new=%d and no error", feeds[i].URL, r, wantNew[i])
		}
	}

	en, ru := ingestArticlesByGUID(t, s, "en"), ingestArticlesByGUID(t, s, "ru")
	date := func(s string) time.Time {
		d, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	checks := []struct {
		name    string
		a       digest.Article
		want    digest.Article // only the non-zero fields are compared
		summary string         // a substring the summary must hold
	}{
		{"SampleArticle", en["https://news.example.com/en/2026/11/24/keep-your-terrorists-close"], digest.Article{
			Title:       "Keep your terrorists close: Why Russia treats some Islamic fundamentalists as friends and others as enemies",
			Link:        "https://news.example.com/en/2026/11/24/keep-your-terrorists-close",
			Author:      "Editorial team",
			Section:     "Analysis",
			ImageURL:    "https://news.example.com/images/2026/11/hezbollah-militants.jpg",
			ImageAlt:    "Hezbollah militants exercising",
			PublishedAt: date("2026-11-24T09:30:00Z"),
			Source:      "feed",
			FeedURL:     feeds[0].URL,
		}, "Kremlin propagandist Margarita Simonyan"},
		{"LongTitleEnclosure", en["example-en-20261123-long-view"], digest.Article{
			Title:    "The long view: how a small regional newsroom kept publishing through three winters of blackouts, court cases, paper shortages and one stubborn printer",
			Section:  "Media",
			ImageURL: "https://news.example.com/images/2026/11/printing-press.jpg",
			ImageAlt: "The long view: how a small regional newsroom kept publishing through three winters of blackouts, court cases, paper shortages and one stubborn printer",
		}, "a 1987 press nobody else could fix — kept rolling."},
		{"MarkupInTitle", en["example-en-20261122-prices"], digest.Article{
			Title: "Prices & wages: why the “ruble” fell — again", Section: "Economy",
		}, "Economists expect no relief before spring."},
		{"EscapedMarkupInTitle", en["example-en-20261122-key-rate"], digest.Article{
			Title: "Breaking: Central bank raises key rate to 21% & signals more",
		}, ""},
		{"MissingDate", en["example-en-village-library"], digest.Article{PublishedAt: ingestNow, FirstSeenAt: ingestNow}, ""},
		{"DuplicateGUIDFirstWins", en["example-en-sanctions-tracker"], digest.Article{
			Title: "Sanctions tracker: what changed this week", PublishedAt: date("2026-11-21T18:00:00Z"),
		}, "Three new packages"},
		{"NoGUIDCanonicalLink", en["https://news.example.com/en/2026/11/19/banned-theatre/"], digest.Article{
			Link: "https://news.example.com/en/2026/11/19/banned-theatre/", Section: "Culture",
		}, ""},
		{"Hostile", en["example-en-hostile"], digest.Article{
			Title: "Hostile headline", Section: "World", Author: "Mallory",
		}, "A perfectly ordinary paragraph with an image that fails."},
		{"RussianAtom", ru["tag:news.example.com,2026:ru/2026-11-24/kreml-i-taliban"], digest.Article{
			Title:       "Кремль и «Талибан»: почему Москва выбирает одних радикалов в союзники, а других — во враги",
			Section:     "Политика",
			Author:      "Редакция",
			ImageURL:    "https://news.example.com/images/2026/11/taliban-kabul.jpg",
			PublishedAt: date("2026-11-24T08:00:00Z"),
		}, "Российская пропаганда называет"},
		{"RussianMarkupTitleUpdatedOnly", ru["tag:news.example.com,2026:ru/2026-11-22/kurs-rublya"], digest.Article{
			Title: "Срочно: курс рубля & нефть — что происходит на рынке", Section: "Экономика",
			PublishedAt: date("2026-11-22T13:40:00Z"),
		}, "Доллар стоит 90,19 ₽"},
		{"RussianNoDate", ru["tag:news.example.com,2026:ru/vystavka-knig"], digest.Article{PublishedAt: ingestNow}, ""},
		{"RussianXHTMLContent", ru["tag:news.example.com,2026:ru/2026-11-20/sevmorput"], digest.Article{
			Title: "Северный морской путь: лёд отступает, суда идут", Author: "Иван Пример",
		}, "Навигация по Северному морскому пути в этом году продлилась на три недели дольше обычного. Учёные"},
		{"JSONFeed", en["https://news.example.com/en/2026/11/23/arctic-shipping"], digest.Article{
			Section: "Climate", Author: "Ivan Example", ImageURL: "https://news.example.com/images/2026/11/icebreaker.jpg",
			FeedURL: feeds[2].URL,
		}, "three weeks past the usual close of the season."},
		{"JSONFeedModifiedOnly", en["example-en-20261122-fusion"], digest.Article{
			Title: "Q&A: what the latest fusion record does (and doesn't) mean", PublishedAt: date("2026-11-22T13:00:00Z"),
			ImageURL: "https://news.example.com/images/2026/11/tokamak.jpg",
		}, "limitless energy"},
		{"JSONFeedTextContent", en["example-en-20261120-birds"], digest.Article{Section: "", Lang: "en"}, "The birds appear to fly further inland."},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			a, w := c.a, c.want
			if a.ID == 0 {
				t.Fatal("article not stored")
			}
			for _, f := range []struct{ name, got, want string }{
				{"title", a.Title, w.Title}, {"link", a.Link, w.Link}, {"author", a.Author, w.Author},
				{"section", a.Section, w.Section}, {"image", a.ImageURL, w.ImageURL}, {"alt", a.ImageAlt, w.ImageAlt},
				{"source", a.Source, w.Source}, {"feed", a.FeedURL, w.FeedURL}, {"lang", a.Lang, w.Lang},
			} {
				if f.want != "" && f.got != f.want {
					t.Errorf("%s = %q, want %q", f.name, f.got, f.want)
				}
			}
			if !w.PublishedAt.IsZero() && !a.PublishedAt.Equal(w.PublishedAt) {
				t.Errorf("published = %v, want %v", a.PublishedAt, w.PublishedAt)
			}
			if !w.FirstSeenAt.IsZero() && !a.FirstSeenAt.Equal(w.FirstSeenAt) {
				t.Errorf("first seen = %v, want %v", a.FirstSeenAt, w.FirstSeenAt)
			}
			if !strings.Contains(a.Summary, c.summary) {
				t.Errorf("summary %q does not hold %q", a.Summary, c.summary)
			}
		})
	}

	// Nothing from any feed keeps markup, chrome or a script link.
	for _, m := range []map[string]digest.Article{en, ru} {
		for guid, a := range m {
			for _, f := range []string{a.Title, a.Summary, a.Author, a.Section, a.ImageAlt} {
				if textclean.LooksLikeMarkup(f) || strings.Contains(f, "alert") || strings.Contains(f, "onerror") {
					t.Errorf("%s: markup survives: %q", guid, f)
				}
				for _, chrome := range []string{"USD90.19", "Subscribe", "Share on", "Read more", "Поделиться", "Подпишитесь", "Читать далее", "браузер"} {
					if strings.Contains(f, chrome) {
						t.Errorf("%s: chrome %q survives: %q", guid, chrome, f)
					}
				}
			}
			for _, u := range []string{a.Link, a.ImageURL} {
				if u != "" && !strings.HasPrefix(u, "https://news.example.com/") {
					t.Errorf("%s: unexpected URL %q", guid, u)
				}
			}
		}
	}
	if h := en["example-en-hostile"]; h.Link != "" || h.ImageURL != "" || h.ImageAlt != "" {
		t.Errorf("hostile item keeps link %q / image %q / alt %q", h.Link, h.ImageURL, h.ImageAlt)
	}
	if b := en["example-en-20261120-birds"]; b.ImageURL != "" {
		t.Errorf("javascript: image kept: %q", b.ImageURL)
	}

	// Polling again changes nothing: no 304 from a file server without validators here, so this is
	// the "nothing changed" path of the upsert.
	for i, r := range ing.PollAll(context.Background()) {
		if r.Err != nil || r.New != 0 || r.Updated != 0 {
			t.Errorf("second poll of %s: %+v, want nothing new or updated", feeds[i].URL, r)
		}
	}
	statuses, err := List(context.Background(), s)
	if err != nil || len(statuses) != 3 {
		t.Fatalf("Feeds() = %v, %v", statuses, err)
	}
	for _, st := range statuses {
		if st.LastError != "" || st.LastOKAt == nil || st.LastFetchedAt == nil {
			t.Errorf("feed status %+v, want fetched and OK", st)
		}
	}
}

// ingestFeedServer serves a feed body that the test may change, with an ETag and Last-Modified, and
// answers 304 when the client sends them back. It records the requests' headers.
type ingestFeedServer struct {
	mu      sync.Mutex
	body    string
	etag    string
	headers []http.Header
}

func (f *ingestFeedServer) set(body, etag string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.body, f.etag = body, etag
}

func (f *ingestFeedServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.headers = append(f.headers, r.Header.Clone())
	w.Header().Set("ETag", f.etag)
	w.Header().Set("Last-Modified", "Tue, 24 Nov 2026 10:00:00 GMT")
	if r.Header.Get("If-None-Match") == f.etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/rss+xml")
	w.Write([]byte(f.body))
}

func (f *ingestFeedServer) lastHeader() http.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.headers[len(f.headers)-1]
}

func testFeedXML(items ...string) string {
	return `<?xml version="1.0"?><rss version="2.0"><channel><title>T</title><link>https://news.example.com/</link>` +
		strings.Join(items, "") + `</channel></rss>`
}

func testFeedItemXML(guid, title, desc string) string {
	return `<item><guid>` + guid + `</guid><title>` + title + `</title><link>https://news.example.com/` + guid +
		`</link><description>` + desc + `</description><pubDate>Mon, 23 Nov 2026 10:00:00 +0000</pubDate></item>`
}

func TestIngestConditionalGet(t *testing.T) {
	s := ingestTestStore(t)
	fs := &ingestFeedServer{}
	fs.set(testFeedXML(testFeedItemXML("a", "A", "first"), testFeedItemXML("b", "B", "second")), `"v1"`)
	srv := httptest.NewServer(fs)
	defer srv.Close()
	reg := prometheus.NewRegistry()
	ing := NewIngester(s, []Config{{"en", srv.URL}}, Options{BaseURL: "https://letters.example.org", AllowPrivate: true}, nil, reg)

	r := ing.Poll(context.Background(), Config{"en", srv.URL})
	if r.Err != nil || r.New != 2 || r.NotModified {
		t.Fatalf("first poll: %+v", r)
	}
	h := fs.lastHeader()
	if got := h.Get("User-Agent"); got != "newsletter/1.0 (+https://letters.example.org)" {
		t.Errorf("User-Agent = %q", got)
	}
	if h.Get("If-None-Match") != "" || h.Get("If-Modified-Since") != "" {
		t.Errorf("first fetch sent validators: %v", h)
	}
	st, _ := List(context.Background(), s)
	if len(st) != 1 || st[0].ETag != `"v1"` || st[0].LastModified != "Tue, 24 Nov 2026 10:00:00 GMT" {
		t.Fatalf("stored validators: %+v", st)
	}

	before := ingestArticlesByGUID(t, s, "en")
	r = ing.Poll(context.Background(), Config{"en", srv.URL})
	if r.Err != nil || !r.NotModified || r.New != 0 || r.Updated != 0 {
		t.Fatalf("second poll: %+v, want not modified", r)
	}
	h = fs.lastHeader()
	if h.Get("If-None-Match") != `"v1"` || h.Get("If-Modified-Since") != "Tue, 24 Nov 2026 10:00:00 GMT" {
		t.Errorf("second fetch validators: If-None-Match %q, If-Modified-Since %q", h.Get("If-None-Match"), h.Get("If-Modified-Since"))
	}
	after := ingestArticlesByGUID(t, s, "en")
	if len(after) != len(before) || after["a"].UpdatedAt != before["a"].UpdatedAt {
		t.Errorf("a 304 changed the articles: %v -> %v", before, after)
	}

	if got := testutil.ToFloat64(ing.fetches.WithLabelValues("ok")); got != 1 {
		t.Errorf("fetch ok = %v, want 1", got)
	}
	if got := testutil.ToFloat64(ing.fetches.WithLabelValues("not_modified")); got != 1 {
		t.Errorf("fetch not_modified = %v, want 1", got)
	}
	if got := testutil.ToFloat64(ing.ingested.WithLabelValues("new")); got != 2 {
		t.Errorf("ingested new = %v, want 2", got)
	}
}

func TestIngestUpdates(t *testing.T) {
	ctx := context.Background()
	s := ingestTestStore(t)
	fs := &ingestFeedServer{}
	fs.set(testFeedXML(testFeedItemXML("a", "A", "first"), testFeedItemXML("b", "B", "second"), testFeedItemXML("c", "C", "third")), `"v1"`)
	srv := httptest.NewServer(fs)
	defer srv.Close()
	feed := Config{"en", srv.URL}
	ing := NewIngester(s, []Config{feed}, Options{AllowPrivate: true}, nil, nil)
	if r := ing.Poll(ctx, feed); r.Err != nil || r.New != 3 {
		t.Fatalf("first poll: %+v", r)
	}
	stored := ingestArticlesByGUID(t, s, "en")
	a, b, c := stored["a"], stored["b"], stored["c"]
	// The editor's choices on a, and an edit that takes b over.
	pos := 2
	if err := s.SetPinned(ctx, a.ID, true); err != nil {
		t.Fatal(err)
	}
	if err := s.SetPosition(ctx, a.ID, &pos); err != nil {
		t.Fatal(err)
	}
	if err := s.SetHidden(ctx, c.ID, true); err != nil {
		t.Fatal(err)
	}
	b.Title = "B as the editor wrote it"
	if err := s.UpdateArticle(ctx, b); err != nil {
		t.Fatal(err)
	}

	fs.set(testFeedXML(testFeedItemXML("a", "A changed", "first, corrected"), testFeedItemXML("b", "B changed", "second"),
		testFeedItemXML("c", "C changed", "third"), testFeedItemXML("d", "D", "fourth")), `"v2"`)
	r := ing.Poll(ctx, feed)
	if r.Err != nil || r.New != 1 || r.Updated != 2 {
		t.Fatalf("second poll: %+v, want new=1 updated=2 (b belongs to the editor now)", r)
	}
	after := ingestArticlesByGUID(t, s, "en")
	if got := after["a"]; got.Title != "A changed" || got.Summary != "first, corrected" || !got.Pinned || got.Position == nil || *got.Position != 2 || !got.FirstSeenAt.Equal(a.FirstSeenAt) {
		t.Errorf("a after update: %+v", got)
	}
	if got := after["b"]; got.Title != "B as the editor wrote it" || got.Source != "editor" {
		t.Errorf("b after update: %+v, want the editor's title kept", got)
	}
	if got := after["c"]; got.Title != "C changed" || !got.Hidden {
		t.Errorf("c after update: %+v, want changed and still hidden", got)
	}

	fs.set(testFeedXML(testFeedItemXML("a", "A changed", "first, corrected"), testFeedItemXML("c", "C changed", "third"), testFeedItemXML("d", "D", "fourth")), `"v3"`)
	if r := ing.Poll(ctx, feed); r.Err != nil || r.New != 0 || r.Updated != 0 || r.NotModified {
		t.Errorf("third poll (same items, new ETag): %+v, want nothing counted", r)
	}
}

func TestIngestFailures(t *testing.T) {
	ctx := context.Background()
	s := ingestTestStore(t)
	big, err := os.ReadFile("testdata/feeds/en.rss.xml")
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/500", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "boom", http.StatusInternalServerError) })
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select { // held until the client gives up
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
	})
	mux.HandleFunc("/garbage", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		w.Write([]byte("<rss><channel><item><title>unclosed & broken <<<"))
	})
	mux.HandleFunc("/html", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("<!doctype html><html><body>Not a feed</body></html>"))
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) { w.Write(big) })
	mux.HandleFunc("/good", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(testFeedXML(testFeedItemXML("ok-1", "Fine", "fine"))))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()

	feeds := []Config{
		{"en", srv.URL + "/500"}, {"en", srv.URL + "/slow"}, {"en", srv.URL + "/garbage"},
		{"en", srv.URL + "/html"}, {"en", srv.URL + "/big"}, {"en", srv.URL + "/good"},
		{"ru", "http://127.0.0.1:1/refused"},
	}
	ing := NewIngester(s, feeds, Options{Timeout: 300 * time.Millisecond, MaxBodyBytes: int64(len(big)) - 1, AllowPrivate: true}, nil, nil)
	results := ing.PollAll(ctx)
	wantErr := []string{"HTTP 500", "timed out after 300ms", "not a feed", "not a feed", "feed larger than", "", "fetch:"}
	for i, r := range results {
		t.Run(strings.TrimPrefix(feeds[i].URL, srv.URL+"/"), func(t *testing.T) {
			if wantErr[i] == "" {
				if r.Err != nil || r.New != 1 {
					t.Errorf("good feed: %+v", r)
				}
				return
			}
			if r.Err == nil || !strings.Contains(r.Err.Error(), wantErr[i]) {
				t.Errorf("err = %v, want %q", r.Err, wantErr[i])
			}
		})
	}
	statuses, err := List(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	byURL := map[string]Status{}
	for _, st := range statuses {
		byURL[st.URL] = st
	}
	for i, f := range feeds {
		st := byURL[f.URL]
		if st.LastFetchedAt == nil || (wantErr[i] != "") != (st.LastError != "") || (wantErr[i] == "") != (st.LastOKAt != nil) {
			t.Errorf("status of %s: %+v", f.URL, st)
		}
		if strings.Contains(st.LastError, "http://") || strings.Contains(st.LastError, "/refused") {
			t.Errorf("error names the URL: %q", st.LastError)
		}
	}
}

func TestIngestGzip(t *testing.T) {
	s := ingestTestStore(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			http.Error(w, "gzip only", http.StatusNotAcceptable)
			return
		}
		var buf bytes.Buffer
		zw := gzip.NewWriter(&buf)
		zw.Write([]byte(testFeedXML(testFeedItemXML("z", "Zipped", "zipped"))))
		zw.Close()
		w.Header().Set("Content-Encoding", "gzip")
		w.Write(buf.Bytes())
	}))
	defer srv.Close()
	ing := NewIngester(s, nil, Options{AllowPrivate: true}, nil, nil)
	if r := ing.Poll(context.Background(), Config{"en", srv.URL}); r.Err != nil || r.New != 1 {
		t.Fatalf("gzip feed: %+v", r)
	}
}

func TestFeedItemIdentity(t *testing.T) {
	pub := time.Date(2026, 11, 20, 10, 0, 0, 0, time.UTC)
	future := ingestNow.Add(48 * time.Hour)
	tests := []struct {
		name     string
		item     gofeed.Item
		wantGUID string
		wantPub  time.Time
	}{
		{"GUID", gofeed.Item{GUID: " g-1 ", Title: "T", Link: "https://a.example/x"}, "g-1", ingestNow},
		{"CanonicalLink", gofeed.Item{Title: "T", Link: "HTTPS://A.Example:443/x?utm_source=rss&id=7#top"}, "https://a.example/x?id=7", ingestNow},
		{"RelativeLink", gofeed.Item{Title: "T", Link: "/en/story"}, "https://news.example.com/en/story", ingestNow},
		{"HashOfTitleAndDate", gofeed.Item{Title: "T", PublishedParsed: &pub}, hashGUID("T\n2026-11-20T10:00:00Z"), pub},
		{"UpdatedFallback", gofeed.Item{GUID: "u", Title: "T", UpdatedParsed: &pub}, "u", pub},
		{"FutureDateIgnored", gofeed.Item{GUID: "f", Title: "T", PublishedParsed: &future}, "f", ingestNow},
		{"HugeGUIDHashed", gofeed.Item{GUID: strings.Repeat("g", 600), Title: "T"}, hashGUID(strings.Repeat("g", 600)), ingestNow},
	}
	base, _ := url.Parse("https://news.example.com/feed.xml")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, _, ok := feedItemArticle(&tt.item, base, "en", ingestNow)
			if !ok || a.GUID != tt.wantGUID || !a.PublishedAt.Equal(tt.wantPub) {
				t.Errorf("got guid %q published %v ok %v, want %q %v", a.GUID, a.PublishedAt, ok, tt.wantGUID, tt.wantPub)
			}
		})
	}
	if _, _, ok := feedItemArticle(&gofeed.Item{Link: "https://a.example/"}, base, "en", ingestNow); ok {
		t.Error("an item with neither title nor text was kept")
	}
}

// BenchmarkParseFeed measures what a fetch does with the English RSS fixture once it has the body:
// the shape check, the parse and the mapping of its items to articles, without the database.
func BenchmarkParseFeed(b *testing.B) {
	body, err := os.ReadFile("testdata/feeds/en.rss.xml")
	if err != nil {
		b.Fatal(err)
	}
	base, _ := url.Parse("https://news.example.com/en/feed.xml")
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		if _, err := parseFeedBody(context.Background(), body, base, "en", ingestNow); err != nil {
			b.Fatal(err)
		}
	}
}
