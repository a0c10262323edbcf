package feeds

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"newsletter/digest"

	"github.com/mmcdole/gofeed"
	"golang.org/x/net/html/charset"
)

// Bounds on a feed's shape, checked on its tokens before the parser sees it. gofeed builds a tree
// by recursion (one Go stack frame per level of an unknown element: two million levels overflow
// the stack, a crash no recover catches) and keeps every item and element it meets; these keep
// one parse to a few hundred levels and a bounded number of nodes. Real feeds stay far below:
// items nest three levels deep, XHTML content a few dozen more.
const (
	feedMaxDepth    = 256     // levels of nested elements, JSON objects and arrays
	feedMaxNodes    = 100_000 // elements and attributes, or JSON values
	feedMaxItems    = 2_000   // <item>, <entry>, JSON Feed items
	feedCheckTokens = 1024    // the deadline is looked at every so many tokens
)

// errFeedShape marks a feed refused for its shape, before parsing.
var errFeedShape = errors.New("feed refused")

// parsedItem is one item of a fetched feed as it will be stored; date is nil when the item has
// none (see feedItemArticle).
type parsedItem struct {
	article digest.Article
	date    *time.Time
}

// parseFeedBody is everything between a fetched body and the articles to store: the shape check,
// the parse and the mapping of each item, all within ctx (the fetch's deadline). base resolves
// relative links. Items without anything to show are left out, and of two with one GUID the
// first is kept (feeds list the newest first).
func parseFeedBody(ctx context.Context, body []byte, base *url.URL, lang string, now time.Time) ([]parsedItem, error) {
	if err := checkFeedShape(ctx, body); err != nil {
		return nil, err
	}
	feed, err := parseFeedTree(ctx, body)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, fmt.Errorf("not a feed: %v", err)
	}
	var items []parsedItem
	seen := map[string]bool{}
	for _, item := range feed.Items {
		if err := ctx.Err(); err != nil {
			return nil, err // the summaries parse HTML: a feed of many long items costs time
		}
		if item == nil {
			continue
		}
		a, date, ok := feedItemArticle(item, base, lang, now)
		if !ok || seen[a.GUID] {
			continue
		}
		seen[a.GUID] = true
		items = append(items, parsedItem{article: a, date: date})
	}
	return items, nil
}

// errParserPanic is what a panic inside the feed parser becomes: that feed fails, nothing else.
var errParserPanic = errors.New("the parser failed on this feed")

// parseFeedTree runs gofeed over body, reading through ctx so that a parse past the deadline stops
// at its next read instead of running on.
func parseFeedTree(ctx context.Context, body []byte) (feed *gofeed.Feed, err error) {
	defer func() {
		if recover() != nil {
			feed, err = nil, errParserPanic
		}
	}()
	parser := gofeed.NewParser()
	// No guessing a lead image from <img> in the HTML: that is where tracking pixels live.
	parser.RSSTranslator = &gofeed.DefaultRSSTranslator{DisableContentImageScan: true}
	return parser.Parse(ctxReader{ctx, bytes.NewReader(body)})
}

// ctxReader fails every read once ctx is done.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	// Small reads keep the parser near a deadline check.
	return c.r.Read(p[:min(len(p), 64<<10)])
}

// checkFeedShape refuses a body deeper, larger or with more items than the bounds above, reading
// it as gofeed will: the same type detection, and for XML the same tokenizer settings.
func checkFeedShape(ctx context.Context, body []byte) error {
	switch gofeed.DetectFeedType(bytes.NewReader(body[:min(len(body), 4096)])) {
	case gofeed.FeedTypeRSS, gofeed.FeedTypeAtom:
		return checkXMLShape(ctx, body)
	case gofeed.FeedTypeJSON:
		return checkJSONShape(ctx, body)
	}
	return errors.New("not a feed: neither RSS, Atom nor JSON Feed")
}

func shapeError(format string, args ...any) error {
	return fmt.Errorf("%w: %s", errFeedShape, fmt.Sprintf(format, args...))
}

// checkXMLShape walks the XML tokens with the decoder settings gofeed uses (lenient, with charset
// conversion, control bytes dropped), so the depth it counts is the depth gofeed would reach.
// Decoder.Token keeps its own element stack, closes mismatched tags as gofeed's decoder will, and
// expands no entity a document defines (so no "billion laughs"). A syntax error inside the root is
// refused here (gofeed would stop at the same token); once the root has closed it ends the check,
// as gofeed reads no further than the root (servers append warnings to feeds).
func checkXMLShape(ctx context.Context, body []byte) error {
	d := xml.NewDecoder(controlByteFilter{bytes.NewReader(body)})
	d.Strict = false
	d.CharsetReader = charset.NewReaderLabel
	depth, nodes, items, rootClosed := 0, 0, 0, false
	for n := 0; ; n++ {
		if n%feedCheckTokens == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		tok, err := d.Token()
		if err == io.EOF || (err != nil && rootClosed) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("not a feed: %v", err)
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			nodes += 1 + len(t.Attr)
			if name := strings.ToLower(t.Name.Local); name == "item" || name == "entry" {
				items++
			}
			switch {
			case depth > feedMaxDepth:
				return shapeError("elements nested deeper than %d levels", feedMaxDepth)
			case nodes > feedMaxNodes:
				return shapeError("more than %d elements and attributes", feedMaxNodes)
			case items > feedMaxItems:
				return shapeError("more than %d items", feedMaxItems)
			}
		case xml.EndElement:
			depth--
			rootClosed = rootClosed || depth == 0
		}
	}
}

// controlByteFilter drops the C0 control bytes XML forbids (all but tab, LF and CR), as gofeed does
// before its decoder: without it this check would stop at a byte gofeed never sees.
type controlByteFilter struct{ r io.Reader }

func (c controlByteFilter) Read(p []byte) (int, error) {
	for {
		n, err := c.r.Read(p)
		w := 0
		for _, b := range p[:n] {
			if b >= 0x20 || b == '\t' || b == '\n' || b == '\r' {
				p[w] = b
				w++
			}
		}
		if w > 0 || err != nil {
			return w, err
		}
	}
}

// checkJSONShape walks the JSON tokens (json.Decoder.Token does not recurse) and bounds depth,
// values and the items of the top-level "items" array. encoding/json would refuse 10,000 levels
// itself, and gofeed decodes into fixed structs, but a body of three-byte items would still make
// millions of them.
func checkJSONShape(ctx context.Context, body []byte) error {
	type frame struct {
		object, wantKey, items bool
		key                    string
	}
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var stack []frame
	nodes, items := 0, 0
	// done notes a complete value: in an object, a key comes next.
	done := func() {
		if n := len(stack); n > 0 && stack[n-1].object {
			stack[n-1].wantKey = true
		}
	}
	for n := 0; ; n++ {
		if n%feedCheckTokens == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
		}
		tok, err := d.Token()
		if err != nil {
			return fmt.Errorf("not a feed: %v", err)
		}
		if delim, ok := tok.(json.Delim); ok && (delim == '}' || delim == ']') {
			stack = stack[:len(stack)-1]
			if len(stack) == 0 {
				return nil // gofeed decodes this one value and refuses anything after it
			}
			done()
			continue
		}
		if n := len(stack); n > 0 && stack[n-1].wantKey {
			stack[n-1].key, _ = tok.(string)
			stack[n-1].wantKey = false
			continue
		}
		nodes++
		if n := len(stack); n > 0 && stack[n-1].items {
			items++
		}
		switch {
		case nodes > feedMaxNodes:
			return shapeError("more than %d JSON values", feedMaxNodes)
		case items > feedMaxItems:
			return shapeError("more than %d items", feedMaxItems)
		}
		switch tok {
		case json.Delim('{'), json.Delim('['):
			// encoding/json matches keys without regard to case: "ITEMS" fills Items too.
			inItems := tok == json.Delim('[') && len(stack) == 1 && stack[0].object && strings.EqualFold(stack[0].key, "items")
			stack = append(stack, frame{object: tok == json.Delim('{'), wantKey: tok == json.Delim('{'), items: inItems})
			if len(stack) > feedMaxDepth {
				return shapeError("JSON nested deeper than %d levels", feedMaxDepth)
			}
		default:
			if len(stack) == 0 {
				return errors.New("not a feed: a JSON feed is an object")
			}
			done()
		}
	}
}
