package feeds

import (
	"context"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"newsletter/digest"
	"newsletter/digest/render"
	"newsletter/templates"

	"golang.org/x/net/html"
)

// realShape is what one fixture item must become, stored and in the rendered digest.
type realShape struct {
	guid, title, link, summary, author, section, image string
	published                                          time.Time // zero: the first-seen time
}

// TestIngestRealShapes ingests the fixtures written from the specs and from what publishers serve
// (testdata/feeds: windows-1251 RSS 2.0 with entities and CDATA in titles, missing, invalid and
// future dates and a repeated GUID; KOI8-R RSS 1.0/RDF; Atom with xml:base and relative links),
// then renders each language's articles as a digest and finds every title, link, date and summary
// in it.
func TestIngestRealShapes(t *testing.T) {
	s := ingestTestStore(t)
	srv := ingestServeFixtures(t)
	feeds := []Config{
		{"ru", srv.URL + "/ru.windows-1251.rss.xml"},
		{"ru", srv.URL + "/ru.koi8-r.rdf.xml"},
		{"en", srv.URL + "/en.atom-xml-base.xml"},
		{"en", srv.URL + "/en.json-feed.json"},
		{"en", srv.URL + "/en.rss.xml"}, // content:encoded, dc:creator, media:content, CDATA
	}
	wantNew := []int{5, 2, 3, 3, 8}
	for i, r := range NewIngester(s, feeds, Options{AllowPrivate: true}, nil, nil).PollAll(context.Background()) {
		if r.Err != nil || r.New != wantNew[i] {
			t.Errorf("%s: %+v, want %d new", feeds[i].URL, r, wantNew[i])
		}
	}
	d := func(v string) time.Time {
		tm, err := time.Parse(time.RFC3339, v)
		if err != nil {
			t.Fatal(err)
		}
		return tm.UTC()
	}
	want := map[string][]realShape{
		"ru": {
			// Numeric and HTML entities in the title, and an HTML entity XML does not know.
			{guid: "region-2026-11-24-tarify", title: "«Водоканал» & мэрия: тарифы вырастут на 9 %",
				link: "https://region.example.ru/news/2026/11/24/tarify.html", published: d("2026-11-24T09:00:00Z"),
				summary: "С 1 января тарифы на воду вырастут на 9 %. Подробнее", author: "Ольга Пример", section: "Экономика"},
			// CDATA title with markup inside.
			{guid: "region-2026-11-23-vybory", title: "Выборы в городскую думу: итоги и «явка»",
				link: "https://region.example.ru/news/2026/11/23/vybory.html", published: d("2026-11-23T21:15:00Z"),
				summary: "Явка составила 31 % — меньше, чем пять лет назад."},
			// No date, an unreadable date, a date in the future: each the first-seen time.
			{guid: "region-most", title: "Новый мост откроют весной", link: "https://region.example.ru/news/most.html",
				summary: "Строительство моста через реку завершат в апреле."},
			{guid: "region-yarmarka", title: "Ярмарка мёда в субботу", link: "https://region.example.ru/news/yarmarka.html",
				summary: "На площади пройдёт ярмарка мёда."},
			{guid: "region-koncert", title: "Анонс: концерт в филармонии", link: "https://region.example.ru/news/koncert.html",
				summary: "Концерт пройдёт в марте."},
			// RSS 1.0 in KOI8-R, Dublin Core dates, creator and subject.
			{guid: "https://old.example.ru/2026/11/24/zima.html", title: "Зима пришла раньше срока",
				link: "https://old.example.ru/2026/11/24/zima.html", published: d("2026-11-24T04:30:00Z"),
				summary: "Снег выпал в ноябре, на две недели раньше обычного.", author: "Пётр Пример", section: "Погода"},
			{guid: "https://old.example.ru/2026/11/22/poezd.html", title: "Электричка & автобус: новое расписание",
				link: "https://old.example.ru/2026/11/22/poezd.html", published: d("2026-11-22T16:05:00Z"),
				summary: "С понедельника электрички ходят чаще."},
		},
		"en": {
			// xml:base on the feed and on the entry, a relative enclosure, an escaped HTML title.
			{guid: "tag:news.example.com,2026:en/rel-1", title: "Analysis: rates & rents",
				link: "https://news.example.com/en/2026/11/24/rates-and-rents", published: d("2026-11-24T06:00:00Z"),
				summary: "Rents rose faster than wages again.", author: "Anna Example",
				image: "https://news.example.com/en/images/rents.jpg"},
			{guid: "tag:news.example.com,2026:en/rel-2", title: "World: a ferry returns",
				link: "https://news.example.com/en/world/ferry-returns", published: d("2026-11-23T18:00:00Z"),
				summary: "The ferry runs again after two years."},
			{guid: "tag:news.example.com,2026:en/rel-3", title: "Root-relative link, plain text",
				link: "https://news.example.com/en/2026/11/22/root-relative", published: d("2026-11-22T08:00:00Z"),
				summary: "A link that starts at the host's root."},
			// JSON Feed 1.1: authors, tags, date_modified only.
			{guid: "https://news.example.com/en/2026/11/23/arctic-shipping", link: "https://news.example.com/en/2026/11/23/arctic-shipping",
				published: d("2026-11-23T07:45:00Z"), author: "Ivan Example", section: "Climate", image: "https://news.example.com/images/2026/11/icebreaker.jpg"},
			{guid: "example-en-20261122-fusion", title: "Q&A: what the latest fusion record does (and doesn't) mean",
				published: d("2026-11-22T13:00:00Z")},
			// RSS 2.0 with content:encoded, dc:creator and media:content.
			{guid: "https://news.example.com/en/2026/11/24/keep-your-terrorists-close",
				title:  "Keep your terrorists close: Why Russia treats some Islamic fundamentalists as friends and others as enemies",
				link:   "https://news.example.com/en/2026/11/24/keep-your-terrorists-close",
				author: "Editorial team", image: "https://news.example.com/images/2026/11/hezbollah-militants.jpg",
				published: d("2026-11-24T09:30:00Z")},
		},
	}
	r := feedsTestRenderer(t)
	for lang, shapes := range want {
		stored := ingestArticlesByGUID(t, s, lang)
		var list []digest.Article
		for _, w := range shapes {
			a, ok := stored[w.guid]
			if !ok {
				t.Errorf("%s: not stored", w.guid)
				continue
			}
			pub := w.published
			if pub.IsZero() {
				pub = a.FirstSeenAt
			}
			for _, f := range []struct{ name, got, want string }{
				{"title", a.Title, w.title}, {"link", a.Link, w.link}, {"summary", a.Summary, w.summary},
				{"author", a.Author, w.author}, {"section", a.Section, w.section}, {"image", a.ImageURL, w.image},
			} {
				if f.want != "" && f.got != f.want {
					t.Errorf("%s: %s = %q, want %q", w.guid, f.name, f.got, f.want)
				}
			}
			if !a.PublishedAt.Equal(pub) {
				t.Errorf("%s: published %v, want %v", w.guid, a.PublishedAt, pub)
			}
			list = append(list, a)
		}
		if len(list) == 0 {
			continue
		}
		// The digest as readers get it: each title, date and summary in the text part, each link in
		// the HTML part, and the lead's image (the only one the template shows).
		out, err := r.Render(digest.IssueContent{Issue: digest.Issue{Lang: lang, WindowEnd: ingestNow}, Lead: &list[0],
			Sections: []digest.Section{{Articles: list[1:]}}, Total: len(list)}, render.Recipient{})
		if err != nil {
			t.Fatal(err)
		}
		text := strings.Join(strings.Fields(out.Text), " ")
		hrefs := renderedURLs(t, out.HTML)
		if u := list[0].ImageURL; u != "" && !hrefs[u] {
			t.Errorf("the HTML part lacks the lead's image %s", u)
		}
		for _, a := range list {
			for _, s := range []string{a.Title, a.Summary, render.FormatDate(lang, a.PublishedAt)} {
				if !strings.Contains(text, strings.Join(strings.Fields(s), " ")) {
					t.Errorf("%s: the text part lacks %q", a.GUID, s)
				}
			}
			if !hrefs[a.Link] {
				t.Errorf("%s: the HTML part lacks %s", a.GUID, a.Link)
			}
		}
	}
}

// renderedURLs returns every href and src of an HTML part.
func renderedURLs(t *testing.T, s string) map[string]bool {
	t.Helper()
	doc, err := html.Parse(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	urls := map[string]bool{}
	for n := range doc.Descendants() {
		for _, a := range n.Attr {
			if a.Key == "href" || a.Key == "src" {
				urls[a.Val] = true
			}
		}
	}
	return urls
}

// TestIngestLinkChangesGUIDStays: a story whose link changes under the same GUID stays one
// article, and the digest links to where it is now.
func TestIngestLinkChangesGUIDStays(t *testing.T) {
	s := ingestTestStore(t)
	fs := &ingestFeedServer{}
	item := func(link string) string {
		return `<item><guid isPermaLink="false">story-7</guid><title>The story</title><link>` + link +
			`</link><description>Text.</description><pubDate>Mon, 23 Nov 2026 10:00:00 +0000</pubDate></item>`
	}
	fs.set(testFeedXML(item("https://news.example.com/en/draft-slug")), `"v1"`)
	srv := httptest.NewServer(fs)
	defer srv.Close()
	feed := Config{"en", srv.URL}
	ing := NewIngester(s, []Config{feed}, Options{AllowPrivate: true}, nil, nil)
	if r := ing.Poll(context.Background(), feed); r.Err != nil || r.New != 1 {
		t.Fatalf("first poll: %+v", r)
	}
	first := ingestArticlesByGUID(t, s, "en")["story-7"]
	fs.set(testFeedXML(item("https://news.example.com/en/2026/11/23/final-slug?utm_source=rss")), `"v2"`)
	if r := ing.Poll(context.Background(), feed); r.Err != nil || r.New != 0 || r.Updated != 1 {
		t.Fatalf("second poll: %+v, want the one article updated", r)
	}
	all := ingestArticlesByGUID(t, s, "en")
	a := all["story-7"]
	if len(all) != 1 || a.ID != first.ID || a.Link != "https://news.example.com/en/2026/11/23/final-slug" || !a.FirstSeenAt.Equal(first.FirstSeenAt) {
		t.Fatalf("after the link changed: %d articles, %+v", len(all), a)
	}
	out, err := feedsTestRenderer(t).Render(digest.IssueContent{Issue: digest.Issue{Lang: "en", WindowEnd: ingestNow}, Lead: &a, Total: 1}, render.Recipient{})
	if err != nil {
		t.Fatal(err)
	}
	if urls := renderedURLs(t, out.HTML); !urls[a.Link] || urls["https://news.example.com/en/draft-slug"] {
		t.Errorf("the digest links %v", urls)
	}
}

// feedsTestRenderer renders the ingested fixtures as a digest would carry them.
func feedsTestRenderer(t testing.TB) *render.Renderer {
	t.Helper()
	fsys := templates.FS("")
	cat, err := templates.LoadCatalog(fsys)
	if err != nil {
		t.Fatal(err)
	}
	r, err := render.NewRenderer(fsys, cat, render.Options{BaseURL: "https://digest.example.com", SiteURL: "https://news.example.com",
		Publication: "The Example Times", From: "The Example Times <digest@example.com>"})
	if err != nil {
		t.Fatal(err)
	}
	return r
}
