package render

import (
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/yuin/goldmark/ast"

	"newsletter/templates"
)

// textWriter writes an edition's Markdown as the plain text part, the way the digest's text reads:
// paragraphs wrapped at TextWidth, headings in capitals or underlined like the digest's sections,
// "* " and "1. " list items, "> " quotes, and each link as "text [n]" with its address in the
// numbered list at the end. No Markdown syntax is left in it.
type textWriter struct {
	src   []byte
	cat   *templates.Catalog
	lang  string
	links []string       // the references, [1] first
	refs  map[string]int // a link's reference number, so an address cited twice has one
	first string         // the first paragraphs' plain text, the preheader when the editor set none
}

// previewRunes is how much of an edition's text the preheader takes when the editor set none.
const previewRunes = 140

func (w *textWriter) ref(u string) int {
	if n, ok := w.refs[u]; ok {
		return n
	}
	w.links = append(w.links, u)
	w.refs[u] = len(w.links)
	return len(w.links)
}

// blocks writes parent's block children: the first line of the first one starts with first, every
// other line with rest. Blocks are parted by a blank line (just the prefix's marks, as ">"), list
// items of a tight list by none.
func (w *textWriter) blocks(parent ast.Node, first, rest string, tight bool) string {
	sep := "\n" + strings.TrimRight(rest, " ") + "\n"
	if tight {
		sep = "\n"
	}
	var out []string
	for c := parent.FirstChild(); c != nil; c = c.NextSibling() {
		f := rest
		if len(out) == 0 {
			f = first
		}
		if s := w.block(c, f, rest); s != "" {
			out = append(out, s)
		}
	}
	return strings.Join(out, sep)
}

func (w *textWriter) block(n ast.Node, first, rest string) string {
	switch n := n.(type) {
	case *ast.Paragraph, *ast.TextBlock:
		if utf8.RuneCountInString(w.first) < previewRunes {
			w.first = strings.TrimSpace(w.first + " " + oneLine(inlineText(n, w.src)))
		}
		return w.wrapLines(first, rest, w.inline(n, false))
	case *ast.Heading:
		t := oneLine(w.inline(n, false))
		if t == "" {
			return ""
		}
		if headingLevel(n) == 2 {
			t = strings.ToUpper(t)
		}
		return wrapText(first, rest, t) + "\n" + rest + rule(t)
	case *ast.ThematicBreak:
		return first + "* * *"
	case *ast.Blockquote:
		return w.blocks(n, first+"> ", rest+"> ", false)
	case *ast.List:
		var out []string
		num := n.Start
		for item := n.FirstChild(); item != nil; item = item.NextSibling() {
			mark := "* "
			if n.IsOrdered() {
				mark = strconv.Itoa(num) + ". "
				num++
			}
			f := rest
			if len(out) == 0 {
				f = first
			}
			indent := rest + strings.Repeat(" ", len(mark))
			s := w.blocks(item, f+mark, indent, n.IsTight)
			if s == "" {
				s = strings.TrimRight(f+mark, " ")
			}
			out = append(out, s)
		}
		if n.IsTight {
			return strings.Join(out, "\n")
		}
		return strings.Join(out, "\n"+strings.TrimRight(rest, " ")+"\n")
	case *ast.CodeBlock, *ast.FencedCodeBlock:
		// As written, indented, never wrapped: code and tables of figures keep their columns.
		var lines []string
		segs := n.Lines()
		for i := range segs.Len() {
			seg := segs.At(i)
			line := strings.TrimRight(string(seg.Value(w.src)), "\n")
			p := rest
			if i == 0 {
				p = first
			}
			lines = append(lines, p+"    "+breakSlotMarks(line))
		}
		return strings.Join(lines, "\n")
	case *ast.HTMLBlock:
		return ""
	default:
		return w.blocks(n, first, rest, false)
	}
}

// wrapLines wraps inline text to TextWidth, each hard line break starting a new line.
func (w *textWriter) wrapLines(first, rest, t string) string {
	var lines []string
	for _, part := range strings.Split(t, "\n") {
		if part = oneLine(part); part == "" {
			continue
		}
		p := rest
		if len(lines) == 0 {
			p = first
		}
		lines = append(lines, wrapText(p, rest, part))
	}
	return strings.Join(lines, "\n")
}

// inline is n's inline content as text: a link as its text and " [n]", an image as its alt text
// and " [n]" (inside a link, the link's number only), an autolink as its address.
func (w *textWriter) inline(n ast.Node, inLink bool) string {
	var b strings.Builder
	for c := n.FirstChild(); c != nil; c = c.NextSibling() {
		switch c := c.(type) {
		case *ast.Link:
			label := w.inline(c, true)
			u := editionLink(string(c.Destination))
			if u == "" {
				b.WriteString(label)
				continue
			}
			if strings.TrimSpace(label) == "" {
				b.WriteString(u) // nothing to click on in the HTML either; the address says where
				continue
			}
			if inLink {
				b.WriteString(label)
				continue
			}
			b.WriteString(withRef(label, w.ref(u)))
		case *ast.Image:
			alt := oneLine(inlineText(c, w.src))
			if safeURL(string(c.Destination)) == "" {
				b.WriteString(alt)
				continue
			}
			label := w.cat.T(w.lang, "edition.image_untitled")
			if alt != "" {
				label = w.cat.T(w.lang, "edition.image", alt)
			}
			if !inLink {
				label = withRef(label, w.ref(safeURL(string(c.Destination))))
			}
			b.WriteString(label)
		case *ast.Text, *ast.String, *ast.CodeSpan, *ast.AutoLink, *ast.RawHTML:
			// An autolink's address is its text, and stays readable without a number.
			writeInline(&b, c, w.src)
		default:
			b.WriteString(w.inline(c, inLink))
		}
	}
	return breakSlotMarks(b.String())
}
