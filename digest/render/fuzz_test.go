package render

import (
	"errors"
	"net/url"
	"strings"
	"testing"
	"unicode"

	"newsletter/digest"
	"newsletter/internal/digesttest"

	"golang.org/x/net/html"
)

// renderShape is what a rendered digest is made of: element names, element+attribute pairs, the
// inlined style values and the stylesheet text. A benign issue that uses every part of the
// template defines the allowed shape; nothing a feed sends may add to it.
type renderShape struct {
	tags   map[string]int // element -> how many times it occurs
	attrs  map[string]bool
	styles map[string]bool
	css    []string
	hrefs  []string // href and src values
}

func shapeOf(t testing.TB, doc string) renderShape {
	t.Helper()
	root, err := html.Parse(strings.NewReader(doc))
	if err != nil {
		t.Fatalf("output does not parse: %v", err)
	}
	s := renderShape{tags: map[string]int{}, attrs: map[string]bool{}, styles: map[string]bool{}}
	var walk func(n *html.Node)
	walk = func(n *html.Node) {
		if n.Type == html.ElementNode {
			s.tags[n.Data]++
			for _, a := range n.Attr {
				s.attrs[n.Data+" "+a.Key] = true
				switch a.Key {
				case "style":
					s.styles[a.Val] = true
				case "href", "src", "action", "formaction", "background", "poster":
					s.hrefs = append(s.hrefs, a.Val)
				}
			}
			if n.Data == "style" && n.FirstChild != nil {
				s.css = append(s.css, n.FirstChild.Data)
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c)
		}
	}
	walk(root)
	return s
}

// fullIssue is an issue that uses every part of the digest template, its articles' fields given.
func fullIssue(title, summary, link, section, image, alt, author, note, subject string) digest.IssueContent {
	lead := digest.Article{ID: 1, Lang: "en", Title: title, Summary: summary, Link: link, Section: section,
		ImageURL: image, ImageAlt: alt, Author: author, PublishedAt: ts("2026-11-20T07:00:00Z"), Pinned: true}
	other := lead
	other.ID, other.Pinned = 2, false
	return digest.IssueContent{
		Issue:    digest.Issue{ID: 42, Lang: "en", WindowEnd: ts("2026-11-23T08:00:00Z"), Subject: subject, Note: note},
		Lead:     &lead,
		Sections: []digest.Section{{Name: section, Articles: []digest.Article{other}}, {Name: "", Articles: []digest.Article{other}}},
		More:     3,
		MoreURL:  link,
		Total:    6,
	}
}

// slotMarks counts the marker values (any case) in everything a sender puts in a message.
func slotMarks(r Rendered) int {
	return strings.Count(strings.ToLower(r.Subject+"\n"+r.Preheader+"\n"+r.HTML+"\n"+r.Text), "xnlslot")
}

// noteParagraphs counts the paragraphs the renderer makes of an editor's note.
func noteParagraphs(note string) int {
	n := 0
	for _, p := range strings.Split(strings.TrimSpace(note), "\n\n") {
		if oneLine(p) != "" {
			n++
		}
	}
	return n
}

// FuzzRenderArticle renders an issue whose articles, section, note and subject come from the
// fuzzer through the real Renderer and checks the HTML with a
// real parser: it has exactly the template's elements, attributes, inline styles and stylesheet
// (so no script, event handler or markup from a feed survives, escaped or not), every link and
// image is an absolute http(s) URL, subject and preheader are single clean lines, and no marker
// value the sender substitutes per reader comes from content.
// Seeds: the f.Add calls and testdata/fuzz/FuzzRenderArticle.
func FuzzRenderArticle(f *testing.F) {
	f.Add("Plain headline", "A summary.", "https://news.example.com/a", "World", "https://news.example.com/a.jpg", "Alt", "Ann", "A note.", "")
	f.Add(hostileArticle.Title, hostileArticle.Summary, hostileArticle.Link, hostileArticle.Section, hostileArticle.ImageURL, hostileArticle.ImageAlt, hostileArticle.Author, `<script>alert("note")</script>`, "<b>subject</b>\r\nBcc: x@example.org")
	f.Add(`</title><script>x()</script>`, `</style><style>*{display:none}</style>`, `https://x.example/"><script>y()</script>`, `</h2><h1>big</h1>`, `https://x.example/i.png" onerror="z()`, `" onload="w()`, "<!--", "--><img src=x>", "<![CDATA[")
	f.Add("Кириллица «ёлки» &amp; &lt;b&gt;", "\u202eevil\u202c \x00 \xff", "HTTPS://EXAMPLE.COM/%3Cscript%3E", "", "//evil.example.net/x.png", "", "", "para one\n\npara two", "")
	f.Add("t", "s", "javascript:alert(1)", "s", "data:image/svg+xml,<svg onload=alert(1)>", "a", "a", "", "")
	f.Add("t", "s", "https://user:pass@x.example/", "s", "https://x.example/\nfoo", "a", "a", "", "")
	f.Add("{{.}}", "{{template \"x\"}}", "https://x.example/{{.}}", "XNLSLOTNAMEX", "http://slot.invalid/XNLSLOTUNSUBX", "", "", "", "")

	r := newTestRenderer(f)
	base := fullIssue("Headline", "Summary text.", "https://news.example.com/a", "World", "https://news.example.com/a.jpg", "Alt", "Ann", "A note.", "Subject")
	out, err := r.Render(base, markerRecipient)
	if err != nil {
		f.Fatal(err)
	}
	want := shapeOf(f, out.HTML)
	wantMarks := slotMarks(out)

	// Only the reader's copy: the archive copy differs in the footer alone, which no feed reaches,
	// and one render per input doubles the fuzzer's pace (premailer dominates the cost).
	f.Fuzz(func(t *testing.T, title, summary, link, section, image, alt, author, note, subject string) {
		c := fullIssue(title, summary, link, section, image, alt, author, note, subject)
		out, err := r.Render(c, markerRecipient)
		if err != nil {
			t.Fatalf("render: %v", err)
		}
		for name, v := range map[string]string{"subject": out.Subject, "preheader": out.Preheader} {
			if strings.ContainsFunc(v, unicode.IsControl) {
				t.Fatalf("%s %q holds a control character", name, v)
			}
		}
		got := shapeOf(t, out.HTML)
		for tag, n := range got.tags {
			limit := want.tags[tag]
			if tag == "div" {
				limit += max(0, noteParagraphs(note)-noteParagraphs(base.Issue.Note)) // one div per paragraph
			}
			if n > limit {
				t.Fatalf("<%s> %d times, the template has %d", tag, n, want.tags[tag])
			}
		}
		for a := range got.attrs {
			if !want.attrs[a] {
				t.Fatalf("attribute %q is not the template's", a)
			}
		}
		for st := range got.styles {
			if !want.styles[st] {
				t.Fatalf("inline style %q is not the template's", st)
			}
		}
		if strings.Join(got.css, "") != strings.Join(want.css, "") {
			t.Fatal("the stylesheet changed")
		}
		for _, h := range got.hrefs {
			u, err := url.Parse(h)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil {
				t.Fatalf("link or image %q", h)
			}
		}
		// The sender substitutes each reader's name and links for the marker values in the
		// encoded message; a marker in content would carry them elsewhere (into a feed's image URL).
		if got := slotMarks(out); got != wantMarks {
			t.Fatalf("%d marker values in the output, the reader's own are %d", got, wantMarks)
		}
		if !strings.Contains(out.HTML, markerRecipient.UnsubscribeURL) {
			t.Fatal("the reader's unsubscribe link is missing")
		}
	})
}

// TestRenderKeepsMarkersOutOfContent: a feed that writes the sender's marker values into an image
// URL on its own host, a link or a title must not receive the reader's manage link or name.
func TestRenderKeepsMarkersOutOfContent(t *testing.T) {
	r := newTestRenderer(t)
	plain, err := r.Render(fullIssue("Headline", "Summary.", "https://news.example.com/a", "World", "https://news.example.com/a.jpg", "Alt", "Ann", "", ""), markerRecipient)
	if err != nil {
		t.Fatal(err)
	}
	hostile, err := r.Render(fullIssue("Hello XNLSLOTNAMEX", "See http://slot.invalid/XNLSLOTMANAGEX",
		"https://evil.example/r?to=http://slot.invalid/XNLSLOTUNSUBX", "xnlSlotNameX",
		"https://evil.example/p.gif?u=http://slot.invalid/XNLSLOTMANAGEX", "XNLSLOTNAMEX", "XNLSLOTNAMEX", "XNLSLOTNAMEX", ""), markerRecipient)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := slotMarks(hostile), slotMarks(plain); got != want {
		t.Errorf("%d marker values in the output, the reader's own are %d", got, want)
	}
	if strings.Contains(hostile.HTML, "evil.example") {
		t.Error("a link carrying a marker value was kept")
	}
	if !strings.Contains(hostile.HTML, "Hello XNL SLOTNAMEX") {
		t.Error("the title's text should stay readable, the marker broken up")
	}
}

// FuzzRenderEdition renders an edition whose Markdown, subject, preheader and newsletter name come
// from the fuzzer and checks the HTML with a real parser: only the frame's and the Markdown
// renderer's elements and attributes (no raw HTML, no event handler), links http(s) or mailto:,
// images http(s), the stylesheet unchanged, subject and preheader single clean lines, the text
// part without invisible characters, and no marker value but the reader's own. Anything but a
// rendered email or digest.ErrInvalid fails.
func FuzzRenderEdition(f *testing.F) {
	for _, lang := range []string{"en", "ru"} {
		e := sampleEditions[lang]
		f.Add(e.Markdown, e.Subject, e.Preheader, e.Newsletter)
	}
	f.Add("<script>alert(1)</script>\n\n[x](javascript:alert(1)) <img src=x onerror=alert(2)> ![a](data:image/png;base64,AAAA)", "S\r\nBcc: x@example.org", "", "<b>n</b>")
	f.Add("[x](<javascript:alert(1)>) [y](&#106;avascript:1) <vbscript:x> [z](mailto:a@b.example?cc=c@d.example)", "s", "p", "")
	f.Add("![a\" onerror=\"x()](https://x.example/a.png \"t\\\" onload=\\\"y\") [q](https://x.example/\" onclick=\"z)", "s", "", "")
	f.Add("XNLSLOTNAMEX XNL&#83;LOT [x](http://slot.invalid/XNLSLOTUNSUBX) ![p](https://e.example/?u=http://slot.invalid/XNLSLOTMANAGEX)", "XNLSLOTNAMEX", "xnlslot", "XnlSlot")
	f.Add("- a\n  - b\n    > c\n    > 1. d\n\n```\n<b>x</b>\n```\n\n    code\n\n***\n\n# h1\n###### h6\n\nline\\\nbreak", "s", "", "")
	f.Add("a\u202eb\u200bc\u2066d\x00e\x7f\ufefff \xff\xfe", "\u202e\x00s", "\u200b", "\u2066")
	f.Add("<!-- x --><style>*{}</style><div onclick=x>y</div>\n\n<https://a.example> www.b.example c@d.example ftp://e.example", "s", "", "")
	f.Add(strings.Repeat(">", 600)+" deep\n\n"+strings.Repeat("- ", 300)+"x", "s", "", "")
	f.Add(strings.Repeat("Donaudampfschifffahrtsgesellschaft", 5)+" [x](https://example.com/"+strings.Repeat("a", 200)+")", "s", "", "")

	r := newTestRenderer(f)
	base, err := r.RenderEdition(sampleEditions["en"], markerRecipient)
	if err != nil {
		f.Fatal(err)
	}
	wantCSS := strings.Join(shapeOf(f, base.HTML).css, "")
	wantMarks := slotMarks(base)
	f.Fuzz(func(t *testing.T, markdown, subject, preheader, newsletter string) {
		e := digest.Edition{ID: 9, Lang: "en", Newsletter: newsletter, Subject: subject, Preheader: preheader, Markdown: markdown, Date: digesttest.GoldenNow}
		out, err := r.RenderEdition(e, markerRecipient)
		if errors.Is(err, digest.ErrInvalid) {
			return
		}
		if err != nil {
			t.Fatalf("render: %v", err)
		}
		for name, v := range map[string]string{"subject": out.Subject, "preheader": out.Preheader} {
			if strings.ContainsFunc(v, invisible) || strings.ContainsAny(v, "\n\t") {
				t.Fatalf("%s %q is not one clean line", name, v)
			}
		}
		if strings.ContainsFunc(out.Text, invisible) {
			t.Fatalf("invisible character in the text part %q", out.Text)
		}
		checkEditionInert(t, out.HTML)
		if got := strings.Join(shapeOf(t, out.HTML).css, ""); got != wantCSS {
			t.Fatal("the stylesheet changed")
		}
		if got := slotMarks(out); got != wantMarks {
			t.Fatalf("%d marker values in the output, the reader's own are %d", got, wantMarks)
		}
		if !strings.Contains(out.HTML, markerRecipient.UnsubscribeURL) || !strings.Contains(out.Text, markerRecipient.UnsubscribeURL) {
			t.Fatal("the reader's unsubscribe link is missing")
		}
	})
}
