package feeds

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mmcdole/gofeed"

	"newsletter/digest"
	"newsletter/internal/textclean"
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
		checkFeedArticle(t, a)
	})
}

// checkFeedArticle checks what must hold for anything stored from a feed: valid UTF-8 without NUL,
// no markup in any text, http(s) links only, bounded lengths.
func checkFeedArticle(t *testing.T, a digest.Article) {
	t.Helper()
	for name, s := range map[string]string{"title": a.Title, "summary": a.Summary, "section": a.Section, "alt": a.ImageAlt, "author": a.Author, "guid": a.GUID} {
		if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
			t.Fatalf("%s not clean UTF-8: %q", name, s)
		}
		if name != "guid" && textclean.LooksLikeMarkup(s) {
			t.Fatalf("%s keeps markup: %q", name, s)
		}
	}
	if a.Title == "" || utf8.RuneCountInString(a.Title) > textclean.TitleMaxRunes+1 || utf8.RuneCountInString(a.Summary) > textclean.SummaryMaxRunes+1 {
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
}

// FuzzFeedBody runs bytes through everything a fetch does once the HTTP body has arrived: the body
// cap, the shape check, the parse and the mapping of every item, down to the articles stored. Input
// that starts as gzip is unpacked first, as the transport unpacks a gzip Content-Encoding, which
// keeps the hostile seeds small. Seeds: the fixtures, the f.Add calls, and testdata/fuzz/FuzzFeedBody
// (the hostile bodies gzipped: TestHostileCorpus).
func FuzzFeedBody(f *testing.F) {
	fixtures, _ := filepath.Glob("testdata/feeds/*")
	for _, name := range fixtures {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("<?xml version=\"1.0\" encoding=\"windows-1251\"?><rss version=\"2.0\"><channel><item><title>\xcd\xee\xe2\xee\xf1\xf2\xe8</title><link>/a</link></item></channel></rss>"))
	f.Add([]byte(`<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/"><item rdf:about="https://x.example/1"><title>T</title><link>https://x.example/1</link></item></rdf:RDF>`))
	f.Add([]byte(`<feed xmlns="http://www.w3.org/2005/Atom" xml:base="https://x.example/en/"><entry xml:base="2026/"><id>e</id><title type="html">&lt;b&gt;T&lt;/b&gt;</title><link href="story"/></entry></feed>`))
	f.Add([]byte(`{"version":"https://jsonfeed.org/version/1.1","items":[{"id":1,"url":"/x","title":"T","content_html":"<p>x</p>","date_published":"2026-13-45"}]}`))
	base, _ := url.Parse("https://news.example.com/feed.xml")
	f.Fuzz(func(t *testing.T, wire []byte) {
		var r io.Reader = bytes.NewReader(wire)
		if bytes.HasPrefix(wire, []byte{0x1f, 0x8b}) {
			zr, err := gzip.NewReader(r)
			if err != nil {
				return
			}
			r = zr
		}
		body, err := readFeedBody(r, 10<<20)
		if err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		items, err := parseFeedBody(ctx, body, base, "en", ingestNow)
		if errors.Is(err, errParserPanic) {
			t.Fatal("the parser panicked")
		}
		if err != nil {
			return
		}
		if len(items) > feedMaxItems {
			t.Fatalf("%d items", len(items))
		}
		seen := map[string]bool{}
		for _, it := range items {
			checkFeedArticle(t, it.article)
			if seen[it.article.GUID] {
				t.Fatalf("GUID %q twice", it.article.GUID)
			}
			seen[it.article.GUID] = true
			if it.date != nil && it.date.After(ingestNow.Add(10*time.Minute)) {
				t.Fatalf("date in the future: %v", it.date)
			}
		}
	})
}

// hostileFeeds are bodies made to hurt a feed reader, each under the 10 MiB body cap. want is what
// parseFeedBody must answer: an error holding it, or "" for a feed that parses.
var hostileFeeds = []struct {
	name, want string
	body       func() []byte
}{
	// Baseline: a small ordinary feed, for the process's own size.
	{"ordinary", "", func() []byte { return []byte(testFeedXML(testFeedItemXML("a", "A", "a"))) }},
	// One item holding an element in a foreign namespace nested two million levels deep: 6 MB,
	// 6 KB gzipped. gofeed's extension parser recursed once per level and overflowed the stack.
	{"deep-2m", "nested deeper than 256", func() []byte { return hostileDeepXML(2_000_000) }},
	{"deep-1m", "nested deeper than 256", func() []byte { return hostileDeepXML(1_000_000) }},
	// Nesting within the bound, across many items.
	{"deep-within-bound", "", func() []byte {
		item := `<item><title>t</title><x xmlns="http://example.com/x">` + strings.Repeat("<a>", 250) + strings.Repeat("</a>", 250) + `</x></item>`
		return []byte(testFeedXML(strings.Repeat(item, 300)))
	}},
	// Entities defined in a DTD, each ten of the one before: encoding/xml expands none of them.
	{"billion-laughs", "", hostileLaughs},
	// 1.4 million empty items.
	{"many-items", "more than 2000 items", func() []byte { return []byte(testFeedXML(strings.Repeat("<item/>", 1_400_000))) }},
	// 1.6 million foreign elements side by side in one item.
	{"wide-item", "more than 100000 elements", func() []byte {
		return []byte(testFeedXML(`<item><title>t</title><x xmlns="http://example.com/x">` + strings.Repeat("<a/>", 1_600_000) + `</x></item>`))
	}},
	// One element with 900,000 attributes.
	{"many-attributes", "more than 100000 elements and attributes", func() []byte {
		var b strings.Builder
		for i := range 900_000 {
			fmt.Fprintf(&b, " a%d=''", i)
		}
		return []byte(testFeedXML(`<item><title` + b.String() + `>t</title></item>`))
	}},
	// A 10 MB text node in one item's description.
	{"long-text", "", func() []byte {
		return []byte(testFeedXML(testFeedItemXML("long", "Long", strings.Repeat("word ", 2_000_000))))
	}},
	// 2000 items of 4.5 KB of escaped HTML each: about the most work the bounds let through.
	{"items-at-bound", "", func() []byte {
		var b strings.Builder
		for i := range feedMaxItems {
			b.WriteString(testFeedItemXML(fmt.Sprint("g", i), "T", strings.Repeat("&lt;p&gt;Some &lt;b&gt;text&lt;/b&gt;.&lt;/p&gt; ", 100)))
		}
		return []byte(testFeedXML(b.String()))
	}},
	// JSON Feed: nesting (encoding/json itself stops at 10,000), and three-byte items.
	{"json-deep", "nested deeper than 256", func() []byte {
		return []byte(`{"version":"https://jsonfeed.org/version/1.1","items":[{"x":` + strings.Repeat("[", 5_000_000) + strings.Repeat("]", 5_000_000) + `}]}`)
	}},
	{"json-many-items", "more than 2000 items", func() []byte {
		return []byte(`{"version":"https://jsonfeed.org/version/1.1","items":[` + strings.Repeat(`{},`, 3_000_000) + `{}]}`)
	}},
}

func hostileDeepXML(levels int) []byte {
	return []byte(`<?xml version="1.0"?><rss version="2.0"><channel><title>t</title><item><title>deep</title>` +
		`<x xmlns="http://example.com/x">` + strings.Repeat("<a>", levels))
}

func hostileLaughs() []byte {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0"?><!DOCTYPE rss [<!ENTITY lol "lol">`)
	for i := 1; i <= 9; i++ {
		fmt.Fprintf(&b, `<!ENTITY lol%d "%s">`, i, strings.Repeat(fmt.Sprintf("&lol%d;", i-1), 10))
	}
	b.WriteString(`]>`)
	return []byte(strings.Replace(testFeedXML(testFeedItemXML("laughs", "&lol9;", "&lol9;")), `<?xml version="1.0"?>`, b.String(), 1))
}

// hostileCorpus names the hostile bodies kept gzipped in testdata/fuzz/FuzzFeedBody; the others
// take too long a parse to fuzz from (TestHostileFeeds still runs them).
var hostileCorpus = []string{"deep-2m", "deep-1m", "billion-laughs", "many-items", "wide-item", "json-deep", "json-many-items"}

var writeHostileCorpus = flag.Bool("hostile.write", false, "write the hostile bodies into testdata/fuzz/FuzzFeedBody")

// TestHostileCorpus keeps the gzipped hostile seeds in step with hostileFeeds (write them with
// go test ./digest/feeds/ -run TestHostileCorpus -hostile.write).
func TestHostileCorpus(t *testing.T) {
	for _, name := range hostileCorpus {
		var body []byte
		for _, h := range hostileFeeds {
			if h.name == name {
				body = h.body()
			}
		}
		path := filepath.Join("testdata", "fuzz", "FuzzFeedBody", "hostile-"+name)
		if *writeHostileCorpus {
			var z bytes.Buffer
			zw, _ := gzip.NewWriterLevel(&z, gzip.BestCompression)
			zw.Write(body)
			zw.Close()
			os.MkdirAll(filepath.Dir(path), 0o755)
			if err := os.WriteFile(path, fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", z.Bytes()), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		quoted, ok := strings.CutPrefix(string(b), "go test fuzz v1\n[]byte(")
		quoted, ok2 := strings.CutSuffix(quoted, ")\n")
		var z string
		if ok && ok2 {
			_, err = fmt.Sscanf(quoted, "%q", &z)
		}
		if !ok || !ok2 || err != nil {
			t.Fatalf("%s: not a corpus file", path)
		}
		zr, err := gzip.NewReader(strings.NewReader(z))
		if err != nil {
			t.Fatal(err)
		}
		got, err := io.ReadAll(zr)
		if err != nil || !bytes.Equal(got, body) {
			t.Errorf("%s does not hold the %s body (%v)", path, name, err)
		}
	}
}
