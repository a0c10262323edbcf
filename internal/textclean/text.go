// Package textclean holds the text and URL cleaning that feeds, editors' articles, rendering and
// sending share: feed HTML made plain text, links made canonical and safe, hosts a browser can
// reach, and strings clipped to fit a column.
package textclean

import (
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/html"
)

// Summaries and titles are plain text made with the golang.org/x/net/html tokenizer rather than a
// sanitiser: we want no markup at all, plus the block structure (to drop chrome line by line),
// which a policy such as bluemonday's StrictPolicy flattens away.

// SummaryMaxRunes is where a summary is cut, at the last word boundary before it.
const SummaryMaxRunes = 300

// TitleMaxRunes caps a headline; real ones stay far below, a runaway feed does not.
const TitleMaxRunes = 250

// Site chrome that must not leak into a summary. It is data, not code: add a phrase here when a
// publication's furniture shows up in its summaries. Phrases are compared lower-cased, with
// bullets and punctuation trimmed from both ends.
var (
	// chromeElements are dropped with everything inside them.
	chromeElements = map[string]bool{
		"script": true, "style": true, "iframe": true, "figcaption": true, "nav": true, "aside": true,
		"form": true, "button": true, "noscript": true, "svg": true, "math": true, "template": true,
		"object": true, "embed": true, "select": true, "textarea": true, "head": true, "title": true,
		"audio": true, "video": true, "canvas": true, "dialog": true, "menu": true, "footer": true,
	}
	// chromeClassWords drop an element whose class or id contains one of them.
	chromeClassWords = []string{"ticker", "share", "social", "subscribe", "newsletter", "promo", "advert", "related", "paywall"}
	// chromeLines drop a line that is exactly one of them.
	chromeLines = []string{
		"share", "share this", "share this article", "share on facebook", "share on twitter", "share on x",
		"share on telegram", "share on whatsapp", "share on vk", "share on linkedin", "tweet", "email",
		"read more", "read also", "continue reading", "comments", "advertisement",
		"google chrome firefox safari",
		"поделиться", "поделиться в telegram", "поделиться в facebook", "поделиться в vk", "поделиться в x",
		"читать далее", "читать также", "читайте также", "реклама", "комментарии",
	}
	// chromePrefixes drop a line that starts with one of them.
	chromePrefixes = []string{
		"subscribe to our", "sign up for our", "get our newsletter", "share on ",
		"подпишитесь на", "подписывайтесь на", "поделиться в ",
		"к сожалению, браузер, которым вы пользуйтесь, устарел",
	}
	// chromeSuffixes are cut from the end of a line ("… and so it goes. Read more").
	chromeSuffixes = []string{"read more", "continue reading", "читать далее", "читать полностью"}
)

// Elements that end a line of text.
var blockElements = map[string]bool{
	"p": true, "div": true, "br": true, "li": true, "ul": true, "ol": true, "h1": true, "h2": true,
	"h3": true, "h4": true, "h5": true, "h6": true, "tr": true, "td": true, "th": true, "table": true,
	"blockquote": true, "section": true, "article": true, "header": true, "figure": true, "pre": true,
	"hr": true, "dd": true, "dt": true, "dl": true, "main": true, "address": true, "details": true,
	"summary": true, "caption": true,
}

// Elements with no end tag; they never open a dropped region.
var voidElements = map[string]bool{
	"area": true, "base": true, "br": true, "col": true, "embed": true, "hr": true, "img": true,
	"input": true, "link": true, "meta": true, "param": true, "source": true, "track": true, "wbr": true,
}

// Summarize turns a description or content (HTML or plain text) into a plain-text summary: markup
// stripped, entities decoded, whitespace folded, site chrome removed, cut at a word boundary near
// 300 characters with "…".
func Summarize(htmlOrText string) string {
	var kept []string
	for _, line := range PlainLines(htmlOrText) {
		if line = dropChrome(line); line != "" {
			kept = append(kept, line)
		}
	}
	return CutAtWord(strings.Join(kept, " "), SummaryMaxRunes)
}

// PlainTitle makes a one-line plain-text headline (or author, or section) of feed text.
func PlainTitle(s string, maxRunes int) string {
	return CutAtWord(strings.Join(PlainLines(s), " "), maxRunes)
}

// PlainLines returns the text of s, one folded line per block. Markup that decodes to more markup
// (feeds that escape their HTML twice) goes through again, so no tag survives as text.
func PlainLines(s string) []string {
	lines := htmlLines(s)
	for pass := 0; pass < 3 && LooksLikeMarkup(strings.Join(lines, "\n")); pass++ {
		lines = htmlLines(strings.Join(lines, "\n"))
	}
	if LooksLikeMarkup(strings.Join(lines, "\n")) {
		// Still markup after three decodings: input built to outlast them. Its '<' go, so
		// nothing stored can read as a tag.
		for i, l := range lines {
			lines[i] = strings.ReplaceAll(l, "<", "")
		}
	}
	return lines
}

// htmlLines tokenizes s once: text is decoded, chrome elements dropped, block ends and newlines
// become line breaks, and each line's whitespace is folded.
func htmlLines(s string) []string {
	// Invisible characters go before tokenizing, not after: dropped later, "<\x02a>" would turn
	// into a tag the tokenizer never saw.
	s = strings.Map(func(r rune) rune {
		if invisible(r) && !unicode.IsSpace(r) {
			return -1
		}
		return r
	}, strings.ToValidUTF8(s, ""))
	z := html.NewTokenizer(strings.NewReader(s))
	var b strings.Builder
	skipTag, skipDepth := "", 0 // inside a dropped element: its name and nesting depth
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			break
		}
		switch tt {
		case html.TextToken:
			if skipDepth == 0 {
				b.Write(z.Text())
			}
		case html.StartTagToken, html.SelfClosingTagToken:
			name, hasAttr := z.TagName()
			tag := string(name)
			if skipDepth > 0 {
				if tag == skipTag && tt == html.StartTagToken {
					skipDepth++
				}
				continue
			}
			if tt == html.StartTagToken && !voidElements[tag] && (chromeElements[tag] || (hasAttr && chromeAttrs(z))) {
				skipTag, skipDepth = tag, 1
				continue
			}
			if blockElements[tag] {
				b.WriteByte('\n')
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			tag := string(name)
			if skipDepth > 0 {
				if tag == skipTag {
					skipDepth--
				}
				continue
			}
			if blockElements[tag] {
				b.WriteByte('\n')
			}
		}
	}
	var lines []string
	for _, line := range strings.Split(b.String(), "\n") {
		if line = FoldSpace(line); line != "" {
			lines = append(lines, line)
		}
	}
	return lines
}

// chromeAttrs reports whether the current tag's class or id names site chrome.
func chromeAttrs(z *html.Tokenizer) bool {
	for {
		key, val, more := z.TagAttr()
		if k := string(key); k == "class" || k == "id" {
			v := strings.ToLower(string(val))
			for _, w := range chromeClassWords {
				if strings.Contains(v, w) {
					return true
				}
			}
		}
		if !more {
			return false
		}
	}
}

// LooksLikeMarkup reports whether s still holds something the tokenizer would read as a tag,
// comment or declaration. A "</" that ends s is text: nothing follows to make it a tag (the
// tokenizer itself hands it back as text, so it would otherwise look like markup forever).
func LooksLikeMarkup(s string) bool {
	for i := strings.IndexByte(s, '<'); i >= 0 && i+1 < len(s); {
		c := s[i+1]
		if (c == '/' && i+2 < len(s)) || c == '!' || c == '?' || (c|0x20 >= 'a' && c|0x20 <= 'z') {
			return true
		}
		j := strings.IndexByte(s[i+1:], '<')
		if j < 0 {
			break
		}
		i += 1 + j
	}
	return false
}

// FoldSpace collapses runs of white space into one space, drops control and invisible format
// characters (NUL breaks PostgreSQL text; zero-width ones break matching) and trims the ends.
func FoldSpace(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	space := false
	for _, r := range s {
		switch {
		case unicode.IsSpace(r):
			space = true
			continue
		case invisible(r):
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
		}
		space = false
		b.WriteRune(r)
	}
	return b.String()
}

// invisible reports whether r is a control or invisible format character (or a decoding error):
// NUL breaks PostgreSQL text, zero-width ones break matching, and none belongs in a summary.
func invisible(r rune) bool {
	return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) || r == utf8.RuneError
}

// dropChrome returns line without site chrome: "" for a chrome line, the line minus a trailing
// "Read more", or the line itself.
func dropChrome(line string) string {
	key := chromeKey(line)
	if key == "" || isTickerLine(line) {
		return ""
	}
	for _, c := range chromeLines {
		if key == c {
			return ""
		}
	}
	for _, p := range chromePrefixes {
		if strings.HasPrefix(key, p) {
			return ""
		}
	}
	lower := strings.ToLower(line)
	if len(lower) != len(line) {
		return line // a rune changed its width when lower-cased: byte offsets would not carry over
	}
	for _, sfx := range chromeSuffixes {
		trimmed := strings.TrimRightFunc(lower, chromeTrim)
		if strings.HasSuffix(trimmed, sfx) {
			line = strings.TrimRightFunc(line[:len(trimmed)-len(sfx)], unicode.IsSpace)
			lower = strings.ToLower(line)
		}
	}
	return line
}

// chromeKey is line lower-cased with bullets, arrows and punctuation trimmed from both ends.
func chromeKey(line string) string {
	return strings.ToLower(strings.TrimFunc(line, chromeTrim))
}

func chromeTrim(r rune) bool {
	return unicode.IsSpace(r) || unicode.IsPunct(r) || unicode.IsSymbol(r) || r == '•'
}

// isTickerLine reports a line made only of quotes and counters: "USD90.19 • EUR97.90 • OIL81.73",
// "812". Every word must hold a digit and nothing but capitals, digits and number signs.
func isTickerLine(line string) bool {
	words := strings.FieldsFunc(line, func(r rune) bool {
		return unicode.IsSpace(r) || r == '•' || r == '·' || r == '|' || r == '/'
	})
	if len(words) == 0 {
		return false
	}
	for _, w := range words {
		digit := false
		for _, r := range w {
			switch {
			case r >= '0' && r <= '9':
				digit = true
			case r >= 'A' && r <= 'Z', strings.ContainsRune(".,%+-−$€₽£▲▼", r):
			default:
				return false
			}
		}
		if !digit {
			return false
		}
	}
	return true
}

// CutAtWord returns s if it has at most max runes, else s cut at the last space before max (or at
// max inside one very long word), trailing punctuation trimmed, with "…" appended.
func CutAtWord(s string, max int) string {
	if utf8.RuneCountInString(s) <= max {
		return s
	}
	runes := []rune(s)
	cut := max
	for i := max; i > max*3/4; i-- {
		if runes[i] == ' ' {
			cut = i
			break
		}
	}
	out := strings.TrimRightFunc(string(runes[:cut]), func(r rune) bool {
		return unicode.IsSpace(r) || strings.ContainsRune(",;:-–—(«“\"'", r)
	})
	return out + "…"
}
