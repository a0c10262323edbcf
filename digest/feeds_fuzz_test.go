package digest

import (
	"net/url"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/mmcdole/gofeed"
)

// FuzzFeedItem feeds arbitrary item fields through the mapping to an article and checks what must
// hold for anything stored: valid UTF-8 without NUL, no markup in any text, http(s) links only,
// bounded lengths. Seeds: the f.Add calls and testdata/fuzz/FuzzFeedItem.
func FuzzFeedItem(f *testing.F) {
	f.Add("Title &amp; more", "<p>Body</p>", "", "https://news.example.com/a", "https://news.example.com/a.jpg", "Section", "g1")
	f.Add(`<script>alert(1)</script><img src=x onerror=alert(2)>`, `<iframe src="javascript:alert(3)"></iframe><p onclick=x>t</p>`, "", "javascript:alert(4)", "data:image/gif;base64,R0lG", "<i>World</i>", "")
	f.Add("&lt;b&gt;double&lt;/b&gt;", "&amp;lt;script&amp;gt;x&amp;lt;/script&amp;gt;", "", "//evil.example.net/x", "", "", "")
	f.Add("Кириллица «ёлки»", "USD90.19 • EUR97.90\nSubscribe to our weekly digest\nТекст.", "<p>content</p>", "/relative", "https://x.example/1.png", "Мир", "tag:x,2026:1")
	f.Add("\x00nul\u200b", "\xff\xfe broken utf8", "", "http://user:pass@x.example/", "", "", strings.Repeat("g", 700))
	base, _ := url.Parse("https://news.example.com/feed.xml")
	f.Fuzz(func(t *testing.T, title, desc, content, link, image, category, guid string) {
		item := &gofeed.Item{
			Title: title, Description: desc, Content: content, Link: link, GUID: guid,
			Categories: []string{category}, Image: &gofeed.Image{URL: image},
			Enclosures: []*gofeed.Enclosure{{URL: image, Type: "image/jpeg"}},
		}
		a, _, ok := feedItemArticle(item, base, "en", ingestNow)
		if !ok {
			if a.Title != "" {
				t.Fatalf("dropped an item with title %q", a.Title)
			}
			return
		}
		for name, s := range map[string]string{"title": a.Title, "summary": a.Summary, "section": a.Section, "alt": a.ImageAlt, "author": a.Author, "guid": a.GUID} {
			if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
				t.Fatalf("%s not clean UTF-8: %q", name, s)
			}
			if name != "guid" && looksLikeMarkup(s) {
				t.Fatalf("%s keeps markup: %q", name, s)
			}
		}
		if a.Title == "" || utf8.RuneCountInString(a.Title) > titleMaxRunes+1 || utf8.RuneCountInString(a.Summary) > summaryMaxRunes+1 {
			t.Fatalf("lengths: title %d, summary %d", utf8.RuneCountInString(a.Title), utf8.RuneCountInString(a.Summary))
		}
		if a.GUID == "" || len(a.GUID) > 500 {
			t.Fatalf("guid %q", a.GUID)
		}
		for _, u := range []string{a.Link, a.ImageURL} {
			if u == "" {
				continue
			}
			p, err := url.Parse(u)
			if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" || p.User != nil {
				t.Fatalf("unsafe URL %q", u)
			}
		}
	})
}
