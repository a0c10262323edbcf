package render

import (
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"newsletter/digest"
	"newsletter/internal/digesttest"
	"newsletter/templates"
)

// sampleEditions are an edition in each language that uses every element an editor can write:
// headings of three levels, emphasis, links (one cited twice, a mailto:, a bare address), an
// image, a quote, both kinds of list with a nested one, a rule, a code span and a hard line break.
var sampleEditions = map[string]digest.Edition{
	"en": {
		ID: 17, Lang: "en", Newsletter: "Investigations", Date: digesttest.GoldenNow,
		Subject:   "The money behind the Baltic shipping fleet",
		Preheader: "A year-long investigation with our partners in four countries",
		Markdown: `Dear readers,

for a year our reporters followed **forty-one tankers** through six registries, and today we publish
what they found: a fleet that carries sanctioned oil under *flags of convenience*, owned through
companies in [Dubai](https://news.example.com/en/2026/11/25/fleet#dubai) and
[Hong Kong](https://news.example.com/en/2026/11/25/fleet#hong-kong).

# What we found

![A tanker at anchor off the Gulf of Finland](https://news.example.com/images/2026/11/tanker.jpg)

- 41 tankers, 23 of them older than twenty years
- 6 flag registries:
  1. Gabon
  2. Comoros
  3. Cameroon
- one insurer, registered at ` + "`Suite 4B`" + ` of an office block

## Why it matters

> Every one of these ships is an oil spill waiting to happen.
> Nobody knows who would pay for it.

An old tanker in the Baltic is a danger to every coast on it. Read the
[whole investigation](https://news.example.com/en/2026/11/25/fleet), or the
[summary for busy readers](https://news.example.com/en/2026/11/25/fleet-summary).

### How we did it

We matched ship-tracking data with company records\
and insurance filings; our method is in the [whole investigation](https://news.example.com/en/2026/11/25/fleet).

---

Do you know more? Write to <tips@example.com>, or see https://news.example.com/tips.
`,
	},
	"ru": {
		ID: 18, Lang: "ru", Newsletter: "Расследования", Date: digesttest.GoldenNow,
		Subject: "Кто владеет теневым флотом на Балтике",
		Markdown: `Дорогие читатели!

Год наши журналисты следили за **сорока одним танкером** в шести реестрах. Сегодня мы публикуем
то, что нашли: флот, который возит нефть под санкциями под *удобными флагами* и принадлежит
компаниям в [Дубае](https://news.example.com/ru/2026/11/25/flot#dubai) и
[Гонконге](https://news.example.com/ru/2026/11/25/flot#hong-kong).

## Что мы нашли

![Танкер на якоре в Финском заливе](https://news.example.com/images/2026/11/tanker.jpg)

1. 41 танкер, 23 из них старше двадцати лет;
2. 6 реестров: Габон, Коморы, Камерун;
3. один страховщик — «офис 4Б» в бизнес-центре.

> Каждое из этих судов — разлив нефти, который ждёт своего часа.

Читайте [расследование целиком](https://news.example.com/ru/2026/11/25/flot) и пишите нам:
<tips@example.com>.
`,
	},
}

func TestEditionGolden(t *testing.T) {
	r := newTestRenderer(t)
	for _, lang := range []string{"en", "ru"} {
		t.Run(lang, func(t *testing.T) {
			out, err := r.RenderEdition(sampleEditions[lang], markerRecipient)
			if err != nil {
				t.Fatal(err)
			}
			checkEditionInert(t, out.HTML)
			for ext, got := range map[string]string{"html": out.HTML, "txt": "Subject: " + out.Subject + "\nPreheader: " + out.Preheader + "\n\n" + out.Text} {
				path := filepath.Join("testdata", "golden", "edition."+lang+"."+ext)
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
					t.Errorf("%s differs from the golden file; if the change is intended, run go test ./digest/render/ -run EditionGolden -update\n%s", path, firstDiff(string(want), got))
				}
			}
		})
	}
}

// editionTags and editionAttrs are all an edition's HTML may hold: the frame's and what the
// Markdown renderer writes. Anything else came from the editor's text.
var (
	editionTags = strings.Fields(`html head meta title style body table tbody tr td div a img p h2 h3
		ul ol li blockquote em strong code pre hr br`)
	editionAttrs = strings.Fields(`lang charset name content type role class width height cellpadding
		cellspacing border align valign style href src alt start aria-level`)
)

// checkEditionInert fails when doc holds an element or attribute outside editionTags and
// editionAttrs, a link other than http(s) or mailto:, or an image other than http(s).
func checkEditionInert(t testing.TB, doc string) {
	t.Helper()
	s := shapeOf(t, doc)
	for tag := range s.tags {
		if !slices.Contains(editionTags, tag) {
			t.Fatalf("element <%s> in the output", tag)
		}
	}
	for a := range s.attrs {
		_, name, _ := strings.Cut(a, " ")
		if !slices.Contains(editionAttrs, name) {
			t.Fatalf("attribute %q in the output", a)
		}
	}
	for _, h := range s.hrefs {
		u, err := url.Parse(h)
		if err != nil || u.User != nil {
			t.Fatalf("link or image %q", h)
		}
		switch strings.ToLower(u.Scheme) {
		case "http", "https":
			if u.Host == "" {
				t.Fatalf("link or image %q", h)
			}
		case "mailto":
			if !strings.Contains(doc, `href="`+h+`"`) {
				t.Fatalf("mailto: %q as an image", h)
			}
		default:
			t.Fatalf("link or image %q", h)
		}
	}
}

// TestEditionText: the sample editions' plain text wraps at TextWidth (a word longer than a line
// alone on its line), carries no Markdown syntax, and has every reference in the list at the end.
func TestEditionText(t *testing.T) {
	r := newTestRenderer(t)
	for lang, e := range sampleEditions {
		out, err := r.RenderEdition(e, markerRecipient)
		if err != nil {
			t.Fatal(err)
		}
		for i, line := range strings.Split(out.Text, "\n") {
			if n := utf8.RuneCountInString(line); n > TextWidth && len(strings.Fields(strings.TrimLeft(line, ">*0123456789. "))) > 1 {
				t.Errorf("%s line %d has %d characters: %q", lang, i+1, n, line)
			}
			for _, noise := range []string{"**", "](", "![", "`", "<", "\\", "#", "_"} {
				if strings.Contains(line, noise) && !strings.HasPrefix(line, "[") {
					t.Errorf("%s line %d has Markdown syntax %q: %q", lang, i+1, noise, line)
				}
			}
		}
		refs := regexp.MustCompile(`\[(\d+)\]`).FindAllStringSubmatch(out.Text, -1)
		_, list, _ := strings.Cut(out.Text, "\n"+renderTestCat(t).T(lang, "digest.links")+":\n")
		for _, m := range refs {
			if !strings.Contains("\n"+list, "\n["+m[1]+"] ") {
				t.Errorf("%s: reference [%s] is not in the list of links", lang, m[1])
			}
		}
	}
	// An address cited twice has one number.
	out, err := r.RenderEdition(sampleEditions["en"], markerRecipient)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(out.Text, "whole investigation [4]"); n != 2 {
		t.Errorf("the link cited twice has its number %d times, want 2", n)
	}
}

func renderTestCat(t testing.TB) *templates.Catalog {
	cat, err := templates.LoadCatalog(templates.FS(""))
	if err != nil {
		t.Fatal(err)
	}
	return cat
}

// TestRenderEditionRecipient: the reader's values are the only difference between two readers'
// copies, as for the digest, and the copy for nobody invites to subscribe.
func TestRenderEditionRecipient(t *testing.T) {
	r := newTestRenderer(t)
	e := sampleEditions["en"]
	marked, err := r.RenderEdition(e, markerRecipient)
	if err != nil {
		t.Fatal(err)
	}
	other := Recipient{Name: "Zoë", Email: "zoe@example.org", UnsubscribeURL: "https://digest.example.com/unsubscribe/tok-1", ManageURL: "https://digest.example.com/manage/tok-2"}
	got, err := r.RenderEdition(e, other)
	if err != nil {
		t.Fatal(err)
	}
	subst := strings.NewReplacer(markerRecipient.Name, other.Name, markerRecipient.UnsubscribeURL, other.UnsubscribeURL, markerRecipient.ManageURL, other.ManageURL)
	if subst.Replace(marked.HTML) != got.HTML || subst.Replace(marked.Text) != got.Text {
		t.Error("another reader's copy is not the marked copy with the markers replaced")
	}
	if strings.Contains(marked.HTML+marked.Text, "xnlslotemailx") {
		t.Error("the recipient's address is in the body")
	}
	archive, err := r.RenderEdition(e, Recipient{})
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []string{archive.HTML, archive.Text} {
		if strings.Contains(part, "slot.invalid") || strings.Contains(part, "Unsubscribe") ||
			!strings.Contains(part, "https://digest.example.com/") || !strings.Contains(part, "This is the web edition of “Investigations”") {
			t.Error("archive copy: want no reader links, the subscribe link and the web edition's footer")
		}
	}
	if !strings.Contains(archive.HTML, `href="https://digest.example.com/archive/editions/17"`) {
		t.Error("no view-in-browser link")
	}
	// Without a newsletter's name, the masthead says "Special edition" and the footer names the
	// publication alone; without an ID there is nothing to view in a browser.
	e.Newsletter, e.ID = "", 0
	plain, err := r.RenderEdition(e, markerRecipient)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(plain.Text, "Special edition · 25 November 2026") || !strings.Contains(oneLine(plain.Text), "the newsletters of The Example Times.") ||
		strings.Contains(plain.HTML, "/archive/") {
		t.Errorf("edition without newsletter or ID:\n%s", plain.Text)
	}
}

// TestRenderEditionInvalid: what cannot become an email is digest.ErrInvalid with a clear message.
func TestRenderEditionInvalid(t *testing.T) {
	r := newTestRenderer(t)
	for _, tt := range []struct {
		name, subject, markdown, want string
	}{
		{"Empty", "Subject", "", "no text"},
		{"Blank", "Subject", " \n\n\t\u200b\u202e\n", "no text"},
		{"OnlyRawHTML", "Subject", "<script>alert(1)</script>\n\n<div>\nhidden\n</div>\n", "no text"},
		{"TooLarge", "Subject", strings.Repeat("Forty words of an investigation. ", digest.MaxEditionMarkdown/33+1), "at most 200 KB"},
		{"NoSubject", "", "Text.", "no subject"},
		{"SubjectOnlyBreaks", "\r\n\u200b", "Text.", "no subject"},
		{"SubjectTooLong", strings.Repeat("Long ", 41), "Text.", "subject longer than 200"},
		{"DeepQuotes", "Subject", strings.Repeat(">", 40) + " x", "nested 42 deep, at most 32"},
		{"DeepLists", "Subject", strings.Repeat("- ", 40) + "x", "at most 32"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.RenderEdition(digest.Edition{Lang: "en", Subject: tt.subject, Markdown: tt.markdown, Date: digesttest.GoldenNow}, markerRecipient)
			if !errors.Is(err, digest.ErrInvalid) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got %v, want digest.ErrInvalid saying %q", err, tt.want)
			}
		})
	}
	// At the limit exactly it renders.
	md := strings.Repeat("x", digest.MaxEditionMarkdown)
	if _, err := r.RenderEdition(digest.Edition{Lang: "en", Subject: "S", Markdown: md}, markerRecipient); err != nil {
		t.Errorf("%d bytes: %v", len(md), err)
	}
}

// TestRenderEditionHostile: what an editor's text (pasted from anywhere, or written by a stolen
// account) may hold that must not reach a reader active, and how it reads instead.
func TestRenderEditionHostile(t *testing.T) {
	r := newTestRenderer(t)
	long := strings.Repeat("Donaudampfschifffahrtsgesellschaft", 9)
	plain, err := r.RenderEdition(digest.Edition{ID: 3, Lang: "en", Subject: "Plain", Markdown: "Text."}, markerRecipient)
	if err != nil {
		t.Fatal(err)
	}
	wantMarks := slotMarks(plain)
	for _, tt := range []struct {
		name, markdown string
		text           []string // in the text part
		notHTML        []string // not in the HTML's source (lower case)
		notText        []string // not in the text part (lower case)
	}{
		{"ScriptBlock", "<script>alert(1)</script>\n\nAfter.", []string{"After."}, []string{"script", "alert"}, []string{"script", "alert"}},
		{"StyleBlock", "<style>body{display:none}</style>\n\nAfter.", []string{"After."}, []string{"display:none"}, []string{"display"}},
		{"InlineHTML", `Hello <b onmouseover="x()">bold</b> <img src=x onerror=alert(1)> end.`, []string{"Hello bold end."}, []string{"onmouseover", "onerror", "<b", "<img"}, []string{"onerror"}},
		{"Comment", "Before <!-- a comment --> after.", []string{"Before after."}, []string{"comment"}, []string{"comment"}},
		{"Iframe", `<iframe src="https://evil.example/"></iframe>` + "\n\nText.", []string{"Text."}, []string{"iframe", "evil.example"}, []string{"evil.example"}},
		{"JavascriptLink", "[click](javascript:alert(1)) here", []string{"click here"}, []string{"javascript", "alert"}, []string{"javascript"}},
		{"JavascriptLinkCase", "[click](JaVaScRiPt:alert(1))", []string{"click"}, []string{"javascript"}, []string{"javascript"}},
		{"JavascriptLinkAngle", "[click](<javascript:alert(1)>)", []string{"click"}, []string{"javascript"}, []string{"javascript"}},
		{"JavascriptLinkEntity", "[click](&#106;avascript:alert(1))", []string{"click"}, []string{"avascript"}, []string{"avascript"}},
		{"JavascriptAutolink", "<javascript:alert(1)>", []string{"javascript:alert(1)"}, []string{`href="javascript`}, nil},
		{"VBScriptLink", "[click](vbscript:msgbox(1))", []string{"click"}, []string{"vbscript"}, []string{"vbscript"}},
		{"FileLink", "[click](file:///etc/passwd)", []string{"click"}, []string{"file:", "passwd"}, []string{"passwd"}},
		{"DataLink", "[click](data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==)", []string{"click"}, []string{"data:", "base64"}, []string{"data:"}},
		{"DataImage", "![pixel](data:image/png;base64,iVBORw0KGgo=)", []string{"pixel"}, []string{"data:", "<img"}, []string{"data:"}},
		{"SVGImage", "![logo](data:image/svg+xml,<svg onload=alert(1)>)", nil, []string{`src="data`, "onload", "<svg"}, nil},
		{"ImageAltBreakout", `![a" onerror="alert(1)](https://news.example.com/a.png)`, []string{`Picture: a" onerror="alert(1) [1]`}, []string{`" onerror`}, nil},
		{"ImageTitle", `![a](https://news.example.com/a.png "t\" onerror=\"alert(1)")`, []string{"Picture: a [1]"}, []string{"onerror", "title="}, []string{"onerror"}},
		{"LinkQuoteBreakout", `[x](https://news.example.com/" onclick="alert(1))`, nil, []string{`" onclick`}, nil},
		{"RelativeLink", "[our site](/about) and ![logo](/logo.png)", []string{"our site and logo"}, []string{"/about", "/logo.png"}, []string{"/about", "/logo.png"}},
		{"ProtocolRelative", "[x](//evil.example/a)", []string{"x"}, []string{"evil.example"}, []string{"evil.example"}},
		{"Credentials", "[x](https://user:secret@news.example.com/)", []string{"x"}, []string{"secret"}, []string{"secret"}},
		{"MailtoCc", "[write](mailto:tips@example.com?cc=all@example.com) or [us](mailto:tips@example.com?subject=Tip)", []string{"write or us [1]", "[1] mailto:tips@example.com?subject=Tip"}, []string{"cc=all"}, []string{"cc=all"}},
		{"EncodedTags", "&lt;script&gt;alert(1)&lt;/script&gt; shown as text", []string{"<script>alert(1)</script> shown as text"}, []string{"<script"}, nil},
		{"NestedLists", "- one\n  - two\n    - three\n      1. four", []string{"* one\n  * two\n    * three\n      1. four"}, nil, nil},
		{"LongWord", long + " end", []string{"\n" + long + "\nend"}, nil, nil},
		{"Bidi", "a\u202eevil\u202c\u200b\u2066b and \ufeffc", []string{"aevilb and c"}, []string{"\u202e", "\u200b", "\u2066", "\ufeff"}, []string{"\u202e", "\u200b", "\u2066", "\ufeff"}},
		{"Controls", "a\x00b\x1bc\x7fd\u0085e", []string{"abcde"}, []string{"\x00", "\x1b"}, []string{"\x00", "\x1b"}},
		{"Markers", "Hi XNLSLOTNAMEX, XNL&#83;LOTNAMEX [x](http://slot.invalid/XNLSLOTUNSUBX) ![p](https://evil.example/p.gif?u=http://slot.invalid/XNLSLOTMANAGEX)", []string{"Hi XNL SLOTNAMEX, XNL SLOTNAMEX x p"}, []string{"evil.example"}, []string{"evil.example"}},
		{"HeadingLevels", "# One\n\n###### Six", []string{"ONE\n---", "Six\n---"}, []string{"<h1", "<h6"}, []string{"#"}},
		{"FencedCode", "```js\nalert('x') // <b>\n```", []string{"    alert('x') // <b>"}, []string{"language-", "<b>"}, []string{"```"}},
		{"Tables", "| a | b |\n|---|---|\n| 1 | 2 |", []string{"| a | b |"}, []string{"<thead"}, nil},
	} {
		t.Run(tt.name, func(t *testing.T) {
			out, err := r.RenderEdition(digest.Edition{ID: 3, Lang: "en", Subject: "Hostile", Markdown: tt.markdown, Date: digesttest.GoldenNow}, markerRecipient)
			if err != nil {
				t.Fatal(err)
			}
			checkEditionInert(t, out.HTML)
			_, body, _ := strings.Cut(out.HTML, `class="edition"`)
			body, _, _ = strings.Cut(body, `class="footer`)
			_, text, _ := strings.Cut(out.Text, "Hello XNLSLOTNAMEX,\n\n")
			text, _, _ = strings.Cut(text, "\n\n-----")
			for _, want := range tt.text {
				if !strings.Contains(out.Text, want) {
					t.Errorf("text part lacks %q:\n%s", want, text)
				}
			}
			for _, bad := range tt.notHTML {
				if strings.Contains(strings.ToLower(body), bad) {
					t.Errorf("%q in the HTML: %s", bad, body)
				}
			}
			for _, bad := range tt.notText {
				if strings.Contains(strings.ToLower(text), bad) {
					t.Errorf("%q in the text: %s", bad, text)
				}
			}
			if got := slotMarks(out); got != wantMarks {
				t.Errorf("%d marker values in the output, the reader's own are %d", got, wantMarks)
			}
		})
	}
}

// TestEditionSubjectOneLine: a subject cannot add a header; it is one clean line.
func TestEditionSubjectOneLine(t *testing.T) {
	r := newTestRenderer(t)
	out, err := r.RenderEdition(digest.Edition{Lang: "ru", Subject: "Итоги\r\nBcc: all@example.org\u202e\x00", Preheader: "Строка\nвторая", Markdown: "Текст."}, Recipient{})
	if err != nil {
		t.Fatal(err)
	}
	if out.Subject != "Итоги Bcc: all@example.org" || out.Preheader != "Строка вторая" {
		t.Errorf("subject %q, preheader %q", out.Subject, out.Preheader)
	}
}

// editionOf1500Words is a long edition as an investigation's announcement might be: 15 paragraphs
// of 100 words with two links each, headings, a list and a quote.
func editionOf1500Words() digest.Edition {
	var b strings.Builder
	words := strings.Fields("the tankers sailed under flags of convenience while their owners hid behind companies in three countries and nobody paid for what they carried")
	for p := range 15 {
		if p%4 == 0 {
			fmt.Fprintf(&b, "## Part %d of the investigation\n\n", p/4+1)
		}
		for w := range 100 {
			word := words[(p*100+w)%len(words)]
			switch w {
			case 20:
				fmt.Fprintf(&b, "[%s](https://news.example.com/en/2026/11/25/fleet-%d) ", word, p)
			case 60:
				fmt.Fprintf(&b, "**%s** ", word)
			case 80:
				fmt.Fprintf(&b, "[%s](https://news.example.com/en/2026/11/25/docs-%d) ", word, p)
			default:
				b.WriteString(word + " ")
			}
		}
		b.WriteString("\n\n")
		if p == 7 {
			b.WriteString("> A quote from a harbour master who saw the ships come in.\n\n- one\n- two\n- three\n\n")
		}
	}
	return digest.Edition{ID: 5, Lang: "en", Newsletter: "Investigations", Subject: "The fleet", Markdown: b.String(), Date: digesttest.GoldenNow}
}

// TestRenderEditionSize: a 1,500-word edition stays well under Gmail's 102 KB clipping limit.
func TestRenderEditionSize(t *testing.T) {
	out, err := newTestRenderer(t).RenderEdition(editionOf1500Words(), markerRecipient)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(out.HTML); n >= 100*1024 {
		t.Errorf("HTML of a 1,500-word edition is %d bytes, want under 100 KB", n)
	} else {
		t.Logf("HTML of a 1,500-word edition: %d bytes; text: %d bytes", n, len(out.Text))
	}
}

// BenchmarkRenderEdition renders a 1,500-word edition: Markdown, text, template and CSS inlining.
func BenchmarkRenderEdition(b *testing.B) {
	r := newTestRenderer(b)
	e := editionOf1500Words()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.RenderEdition(e, markerRecipient); err != nil {
			b.Fatal(err)
		}
	}
}
