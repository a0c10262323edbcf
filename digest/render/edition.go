package render

import (
	"bufio"
	"bytes"
	"fmt"
	stdhtml "html"
	htmltemplate "html/template"
	"net/mail"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/vanng822/go-premailer/premailer"
	"github.com/yuin/goldmark"
	"github.com/yuin/goldmark/ast"
	"github.com/yuin/goldmark/extension"
	"github.com/yuin/goldmark/renderer"
	"github.com/yuin/goldmark/renderer/html"
	"github.com/yuin/goldmark/text"
	"github.com/yuin/goldmark/util"

	"newsletter/digest"
)

// editionMarkdown is CommonMark with one extension, Linkify: editors paste bare addresses and
// expect them to work as they do in every mail client. Tables, strikethrough, footnotes and
// typographic quotes stay off: a table does not fit a phone's width or the plain text, struck text
// reads as kept text in the plain part, and quotes are the editor's own («» in Russian). Raw HTML
// is off as goldmark has it by default, and emailNodes below writes nothing for it at all.
var editionMarkdown = goldmark.New(
	goldmark.WithExtensions(extension.NewLinkify(extension.WithLinkifyAllowedProtocols([]string{"http:", "https:"}))),
	goldmark.WithRendererOptions(renderer.WithNodeRenderers(util.Prioritized(emailNodes{}, 100))),
)

// EditionPath is where the public archive serves edition id; its URL is the edition's "view in
// browser" link.
func EditionPath(id int64) string { return "/archive/editions/" + strconv.FormatInt(id, 10) }

// editionView is what email/edition.html and edition.txt receive.
type editionView struct {
	frameView
	Body htmltemplate.HTML // the Markdown's HTML, made here: escaped, links and images checked
	Text string            // the Markdown's plain text, wrapped, its links numbered in Links
}

// RenderEdition renders an edition for one reader, or for nobody with the zero Recipient, with
// the digest's header and footer. As with Render, the recipient's strings appear verbatim and
// nothing else of the reader does. An edition without subject or text, or with more Markdown than
// digest.MaxEditionMarkdown, is digest.ErrInvalid.
func (r *Renderer) RenderEdition(e digest.Edition, rcpt Recipient) (Rendered, error) {
	if len(e.Markdown) > digest.MaxEditionMarkdown {
		return Rendered{}, fmt.Errorf("edition: the text is %d KB, at most %d KB: %w", (len(e.Markdown)+1023)/1024, digest.MaxEditionMarkdown/1024, digest.ErrInvalid)
	}
	subject := cleanLine(e.Subject)
	switch n := utf8.RuneCountInString(subject); {
	case n == 0:
		return Rendered{}, fmt.Errorf("edition: no subject: %w", digest.ErrInvalid)
	case n > digest.MaxEditionSubject:
		return Rendered{}, fmt.Errorf("edition: subject longer than %d characters: %w", digest.MaxEditionSubject, digest.ErrInvalid)
	}
	src := []byte(cleanMarkdown(e.Markdown))
	doc := editionMarkdown.Parser().Parse(text.NewReader(src))
	if d := depth(doc); d > maxEditionDepth {
		return Rendered{}, fmt.Errorf("edition: quotes, lists or emphasis nested %d deep, at most %d: %w", d, maxEditionDepth, digest.ErrInvalid)
	}
	tw := &textWriter{src: src, cat: r.cat, lang: e.Lang, refs: map[string]int{}}
	body := tw.blocks(doc, "", "", false)
	if strings.TrimSpace(body) == "" {
		return Rendered{}, fmt.Errorf("edition: no text (raw HTML is dropped): %w", digest.ErrInvalid)
	}
	var hb bytes.Buffer
	if err := editionMarkdown.Renderer().Render(&hb, src, doc); err != nil {
		return Rendered{}, fmt.Errorf("edition: render markdown: %w", err)
	}

	v := editionView{frameView: r.frame(e.Lang, rcpt), Text: body}
	// A marker value in the text would carry the reader's name or links wherever the editor put
	// it (slotMark): goldmark writes text decoded, so breaking it in the output catches entities.
	v.Body = htmltemplate.HTML(breakSlotMarks(hb.String()))
	v.Subject = subject
	// The editor's preheader shows on the top line too, as the digest's does; one taken from the
	// text would repeat its first lines there.
	if v.Preheader = truncateRunes(cleanLine(e.Preheader), previewRunes); v.Preheader != "" {
		v.Teaser = v.Preheader
	} else {
		v.Preheader = truncateRunes(oneLine(tw.first), previewRunes)
	}
	v.Date = FormatDate(e.Lang, e.Date)
	newsletter := cleanLine(e.Newsletter)
	v.Kicker = newsletter
	if v.Kicker == "" {
		v.Kicker = r.cat.T(e.Lang, "edition.kicker")
	}
	switch {
	case v.Archive && newsletter != "":
		v.Why = r.cat.T(e.Lang, "edition.why_archive", newsletter, r.opts.Publication)
	case v.Archive:
		v.Why = r.cat.T(e.Lang, "edition.why_archive_any", r.opts.Publication)
	case newsletter != "":
		v.Why = r.cat.T(e.Lang, "edition.why", newsletter, r.opts.Publication)
	default:
		v.Why = r.cat.T(e.Lang, "edition.why_any", r.opts.Publication)
	}
	if e.ID != 0 {
		v.ViewURL = r.opts.BaseURL + EditionPath(e.ID)
	}
	v.Links = tw.links
	v.frameRefs()

	hb.Reset()
	if err := r.editionHTML.Execute(&hb, v); err != nil {
		return Rendered{}, fmt.Errorf("render edition html: %w", err)
	}
	pm, err := premailer.NewPremailerFromBytes(hb.Bytes(), premailer.NewOptions(premailer.WithKeepBangImportant(true)))
	if err != nil {
		return Rendered{}, fmt.Errorf("render edition html: inline css: %w", err)
	}
	out, err := pm.Transform()
	if err != nil {
		return Rendered{}, fmt.Errorf("render edition html: inline css: %w", err)
	}
	hb.Reset()
	if err := r.editionText.Execute(&hb, v); err != nil {
		return Rendered{}, fmt.Errorf("render edition text: %w", err)
	}
	return Rendered{Subject: v.Subject, Preheader: v.Preheader, HTML: out, Text: tidyText(hb.String())}, nil
}

// maxEditionDepth bounds how deep an edition's Markdown nests (a quote in a list in a quote...):
// far past what an editor writes, and far below the 512 open elements the HTML parser of the CSS
// inliner takes.
const maxEditionDepth = 32

// depth is how many levels n's tree has below it.
func depth(n ast.Node) int {
	deepest, d := 0, 0
	_ = ast.Walk(n, func(_ ast.Node, entering bool) (ast.WalkStatus, error) {
		if entering {
			d++
			deepest = max(deepest, d)
		} else {
			d--
		}
		return ast.WalkContinue, nil
	})
	return deepest - 1
}

// invisible reports a control character other than a line break or tab, an invisible format
// character (bidi controls, zero-width ones) or a decoding error: what the ingester drops from a
// feed's titles, dropped here from an editor's text the same way.
func invisible(r rune) bool {
	return r == utf8.RuneError || unicode.Is(unicode.Cf, r) || unicode.IsControl(r) && r != '\n' && r != '\t'
}

// cleanMarkdown is the editor's Markdown with line ends as "\n" and invisible characters dropped,
// before it is parsed, so none can split a tag or a link the parser would then not see.
func cleanMarkdown(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	return strings.Map(func(r rune) rune {
		if invisible(r) {
			return -1
		}
		return r
	}, s)
}

// cleanLine is s on one line (oneLine) without invisible characters: a subject, a preheader.
func cleanLine(s string) string { return oneLine(cleanMarkdown(s)) }

// editionLink returns u when an edition may link to it: an absolute http(s) URL (safeURL), or a
// mailto: of one address with at most a subject and a body. Anything else is "" and the link's
// text stays without it.
func editionLink(u string) string {
	if s := safeURL(u); s != "" {
		return s
	}
	u = strings.TrimSpace(u)
	if len(u) < 7 || !strings.EqualFold(u[:7], "mailto:") {
		return ""
	}
	if strings.ContainsFunc(u, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) {
		return ""
	}
	if found, _ := hasSlotMark(u); found {
		return ""
	}
	addr, query, _ := strings.Cut(u[7:], "?")
	a, err := mail.ParseAddress(addr)
	if err != nil || a.Name != "" || a.Address != addr {
		return ""
	}
	q, err := url.ParseQuery(query)
	if err != nil {
		return ""
	}
	for k := range q {
		if k != "subject" && k != "body" {
			return ""
		}
	}
	return u
}

// emailNodes overrides how goldmark writes the nodes that could carry anything active or out of
// place in an email. Raw HTML writes nothing (not even goldmark's comment); a link or image only
// with an address editionLink or safeURL allows (else its text alone); headings are of two levels
// (h1 would outrank the masthead). Each top-level block is a row of the email's body table, as the
// digest's blocks are, and nested ones are divs: spacing is padding on cells, as mail clients
// keep it, where <p>, <hN>, <blockquote> and <hr> would bring margins each client sets its own way.
type emailNodes struct{}

func (emailNodes) RegisterFuncs(reg renderer.NodeRendererFuncRegisterer) {
	skip := func(util.BufWriter, []byte, ast.Node, bool) (ast.WalkStatus, error) {
		return ast.WalkSkipChildren, nil
	}
	reg.Register(ast.KindRawHTML, skip)
	reg.Register(ast.KindHTMLBlock, skip)
	reg.Register(ast.KindParagraph, renderParagraph)
	reg.Register(ast.KindHeading, renderHeading)
	reg.Register(ast.KindBlockquote, renderBlockquote)
	reg.Register(ast.KindList, renderList)
	reg.Register(ast.KindThematicBreak, renderRule)
	reg.Register(ast.KindCodeBlock, renderCodeBlock)
	reg.Register(ast.KindFencedCodeBlock, renderCodeBlock)
	reg.Register(ast.KindLink, renderLink)
	reg.Register(ast.KindAutoLink, renderAutoLink)
	reg.Register(ast.KindImage, renderImage)
}

// openBlock starts a block: a row of the body table at the top level, a div inside another block.
func openBlock(w util.BufWriter, n ast.Node, class, attrs string) {
	if n.Parent() != nil && n.Parent().Kind() == ast.KindDocument {
		_, _ = w.WriteString(`<tr><td class="` + class + `"` + attrs + `>`)
	} else {
		_, _ = w.WriteString(`<div class="` + class + `"` + attrs + `>`)
	}
}

func closeBlock(w util.BufWriter, n ast.Node) {
	if n.Parent() != nil && n.Parent().Kind() == ast.KindDocument {
		_, _ = w.WriteString("</td></tr>\n")
	} else {
		_, _ = w.WriteString("</div>\n")
	}
}

func renderParagraph(w util.BufWriter, _ []byte, n ast.Node, entering bool) (ast.WalkStatus, error) {
	if entering {
		openBlock(w, n, "ed-p", "")
	} else {
		closeBlock(w, n)
	}
	return ast.WalkContinue, nil
}

// headingLevel is the level of a Markdown heading in the email: # and ## are 2, the rest 3.
func headingLevel(n *ast.Heading) int { return min(max(n.Level, 2), 3) }

// renderHeading writes a heading by role, as the digest's: an <hN> would bring its margins.
func renderHeading(w util.BufWriter, _ []byte, n ast.Node, entering bool) (ast.WalkStatus, error) {
	level := strconv.Itoa(headingLevel(n.(*ast.Heading)))
	if entering {
		openBlock(w, n, "ed-h"+level, ` role="heading" aria-level="`+level+`"`)
	} else {
		closeBlock(w, n)
	}
	return ast.WalkContinue, nil
}

func renderBlockquote(w util.BufWriter, _ []byte, n ast.Node, entering bool) (ast.WalkStatus, error) {
	if entering {
		openBlock(w, n, "ed-block", "")
		_, _ = w.WriteString(`<div class="ed-quote">` + "\n")
	} else {
		_, _ = w.WriteString("</div>")
		closeBlock(w, n)
	}
	return ast.WalkContinue, nil
}

func renderList(w util.BufWriter, _ []byte, node ast.Node, entering bool) (ast.WalkStatus, error) {
	n := node.(*ast.List)
	tag := "ul"
	if n.IsOrdered() {
		tag = "ol"
	}
	if entering {
		openBlock(w, n, "ed-block", "")
		_, _ = w.WriteString("<" + tag + ` class="ed-list"`)
		if n.IsOrdered() && n.Start != 1 {
			_, _ = w.WriteString(` start="` + strconv.Itoa(n.Start) + `"`)
		}
		_, _ = w.WriteString(">\n")
	} else {
		_, _ = w.WriteString("</" + tag + ">")
		closeBlock(w, n)
	}
	return ast.WalkContinue, nil
}

// renderRule draws a thematic break as a cell's bottom border: an <hr> looks different in each
// client.
func renderRule(w util.BufWriter, _ []byte, n ast.Node, entering bool) (ast.WalkStatus, error) {
	if entering {
		openBlock(w, n, "ed-rule", "")
		_, _ = w.WriteString("&nbsp;")
		closeBlock(w, n)
	}
	return ast.WalkSkipChildren, nil
}

func renderCodeBlock(w util.BufWriter, source []byte, n ast.Node, entering bool) (ast.WalkStatus, error) {
	if !entering {
		return ast.WalkSkipChildren, nil
	}
	openBlock(w, n, "ed-block", "")
	_, _ = w.WriteString(`<pre class="ed-code">`)
	lines := n.Lines()
	for i := range lines.Len() {
		seg := lines.At(i)
		html.DefaultWriter.RawWrite(w, seg.Value(source))
	}
	_, _ = w.WriteString("</pre>")
	closeBlock(w, n)
	return ast.WalkSkipChildren, nil
}

func writeHref(w util.BufWriter, u string) {
	_, _ = w.WriteString(`<a href="`)
	_, _ = w.Write(util.EscapeHTML(util.URLEscape([]byte(u), false)))
	_, _ = w.WriteString(`">`)
}

func renderLink(w util.BufWriter, _ []byte, n ast.Node, entering bool) (ast.WalkStatus, error) {
	if editionLink(string(n.(*ast.Link).Destination)) == "" {
		return ast.WalkContinue, nil // the text without the link
	}
	if entering {
		writeHref(w, string(n.(*ast.Link).Destination))
	} else {
		_, _ = w.WriteString("</a>")
	}
	return ast.WalkContinue, nil
}

// autoLinkURL is where an autolink points: its address, as mailto: for an email address.
func autoLinkURL(n *ast.AutoLink, source []byte) string {
	u := string(n.URL(source))
	if n.AutoLinkType == ast.AutoLinkEmail && !strings.HasPrefix(strings.ToLower(u), "mailto:") {
		u = "mailto:" + u
	}
	return u
}

func renderAutoLink(w util.BufWriter, source []byte, node ast.Node, entering bool) (ast.WalkStatus, error) {
	if !entering {
		return ast.WalkContinue, nil
	}
	n := node.(*ast.AutoLink)
	u := editionLink(autoLinkURL(n, source))
	if u != "" {
		writeHref(w, u)
	}
	_, _ = w.Write(util.EscapeHTML(n.Label(source)))
	if u != "" {
		_, _ = w.WriteString("</a>")
	}
	return ast.WalkContinue, nil
}

// renderImage writes an http(s) image with its alt text as plain text; any other image becomes
// its alt text.
func renderImage(w util.BufWriter, source []byte, node ast.Node, entering bool) (ast.WalkStatus, error) {
	if !entering {
		return ast.WalkContinue, nil
	}
	n := node.(*ast.Image)
	alt := oneLine(inlineText(n, source))
	src := safeURL(string(n.Destination))
	if src == "" {
		_, _ = w.WriteString(stdhtml.EscapeString(alt))
		return ast.WalkSkipChildren, nil
	}
	_, _ = w.WriteString(`<img class="ed-img" src="`)
	_, _ = w.Write(util.EscapeHTML(util.URLEscape([]byte(src), false)))
	_, _ = w.WriteString(`" alt="`)
	_, _ = w.WriteString(stdhtml.EscapeString(alt))
	_, _ = w.WriteString(`">`)
	return ast.WalkSkipChildren, nil
}

// decoded is Markdown text as its HTML shows it: backslash escapes and entities resolved by the
// same writer goldmark's HTML renderer uses, then unescaped.
func decoded(b []byte) string {
	if bytes.IndexByte(b, '\\') < 0 && bytes.IndexByte(b, '&') < 0 {
		return string(b) // nothing to resolve: most text
	}
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	html.DefaultWriter.Write(w, b)
	_ = w.Flush()
	return stdhtml.UnescapeString(buf.String())
}

// inlineText is the plain text of n's inline content: no markup, no links' addresses, images as
// their alt text, hard line breaks as "\n".
func inlineText(n ast.Node, source []byte) string {
	var b strings.Builder
	for c := n.FirstChild(); c != nil; c = c.NextSibling() {
		writeInline(&b, c, source)
	}
	return b.String()
}

// writeInline writes the plain text of one inline node (inlineText).
func writeInline(b *strings.Builder, n ast.Node, source []byte) {
	switch n := n.(type) {
	case *ast.Text:
		b.WriteString(decoded(n.Value(source)))
		if n.HardLineBreak() {
			b.WriteByte('\n')
		} else if n.SoftLineBreak() {
			b.WriteByte(' ')
		}
	case *ast.String:
		if n.IsCode() || n.IsRaw() {
			b.Write(n.Value)
		} else {
			b.WriteString(decoded(n.Value))
		}
	case *ast.CodeSpan:
		// Its text as written, entities and all, as goldmark writes a code span.
		for t := n.FirstChild(); t != nil; t = t.NextSibling() {
			if t, ok := t.(*ast.Text); ok {
				b.WriteString(strings.ReplaceAll(string(t.Value(source)), "\n", " "))
			}
		}
	case *ast.AutoLink:
		b.Write(n.Label(source))
	case *ast.RawHTML:
	default:
		for c := n.FirstChild(); c != nil; c = c.NextSibling() {
			writeInline(b, c, source)
		}
	}
}
