package feeds

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

func TestFeedShape(t *testing.T) {
	nest := func(levels int) string {
		return testFeedXML(`<item><title>t</title><x xmlns="http://example.com/x">` + strings.Repeat("<a>", levels-4) +
			strings.Repeat("</a>", levels-4) + `</x></item>`) // rss, channel, item and x are four levels
	}
	jsonNest := func(levels int) string {
		return `{"version":"https://jsonfeed.org/version/1.1","items":[{"x":` + strings.Repeat("[", levels-3) + strings.Repeat("]", levels-3) + `}]}`
	}
	items := func(n int, tag string) string { return strings.Repeat("<"+tag+"><title>t</title></"+tag+">", n) }
	tests := []struct {
		name, body, want string // want: "" for a body that passes
	}{
		{"DepthAtBound", nest(feedMaxDepth), ""},
		{"DepthOverBound", nest(feedMaxDepth + 1), "nested deeper than 256"},
		{"UnclosedDepth", testFeedXML("") + strings.Repeat("<a>", 300), "nested deeper than 256"},
		// A control byte drops out before the decoder, as in gofeed: it cannot end the check early.
		{"ControlByteBeforeDepth", strings.Replace(nest(300), "<x ", "\x01<x ", 1), "nested deeper than 256"},
		{"ItemsAtBound", testFeedXML(items(feedMaxItems, "item")), ""},
		{"ItemsOverBound", testFeedXML(items(feedMaxItems+1, "item")), "more than 2000 items"},
		{"AtomEntriesOverBound", `<feed xmlns="http://www.w3.org/2005/Atom">` + items(feedMaxItems+1, "entry") + `</feed>`, "more than 2000 items"},
		{"RDFItemsOverBound", `<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#" xmlns="http://purl.org/rss/1.0/">` + items(feedMaxItems+1, "item") + `</rdf:RDF>`, "more than 2000 items"},
		{"ElementsOverBound", testFeedXML(`<item><title>t</title>` + strings.Repeat("<x:a xmlns:x='http://example.com/x'/>", feedMaxNodes/2) + `</item>`), "more than 100000 elements and attributes"},
		{"TrailingJunkAfterRoot", testFeedXML(items(1, "item")) + "<br><b>Warning</b>: headers already sent <", ""},
		{"SyntaxErrorInside", `<rss><channel><item><title>t</title></item><</channel></rss>`, "not a feed: XML syntax error"},
		{"Windows1251", "<?xml version=\"1.0\" encoding=\"windows-1251\"?><rss><channel><item><title>\xcd\xee\xe2\xee\xf1\xf2\xe8</title></item></channel></rss>", ""},
		{"UnknownCharset", `<?xml version="1.0" encoding="x-klingon"?><rss><channel></channel></rss>`, "not a feed"},
		{"NotAFeed", `<!doctype html><html><body>hello</body></html>`, "not a feed"},
		{"JSONDepthAtBound", jsonNest(feedMaxDepth), ""},
		{"JSONDepthOverBound", jsonNest(feedMaxDepth + 1), "nested deeper than 256"},
		{"JSONItemsOverBound", `{"items":[` + strings.Repeat(`{"title":"t"},`, feedMaxItems) + `{}]}`, "more than 2000 items"},
		// encoding/json fills Items from any case of the key.
		{"JSONItemsKeyCase", `{"ItEmS":[` + strings.Repeat(`{},`, feedMaxItems) + `{}]}`, "more than 2000 items"},
		{"JSONNestedItemsKeyNotCounted", `{"x":{"items":[` + strings.Repeat(`1,`, feedMaxItems) + `1]}}`, ""},
		{"JSONValuesOverBound", `{"x":[` + strings.Repeat(`1,`, feedMaxNodes) + `1]}`, "more than 100000 JSON values"},
		{"JSONBroken", `{"items":[{"title":"t"}`, "not a feed"},
		{"JSONTrailing", `{"items":[]} {"items":[]}`, ""}, // gofeed refuses it: the check need not
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkFeedShape(context.Background(), []byte(tt.body))
			if (err == nil) != (tt.want == "") || (err != nil && !strings.Contains(err.Error(), tt.want)) {
				t.Errorf("checkFeedShape = %v, want %q", err, tt.want)
			}
			if tt.want != "" && strings.HasPrefix(tt.want, "not a feed") == errors.Is(err, errFeedShape) {
				t.Errorf("errFeedShape %v", errors.Is(err, errFeedShape))
			}
		})
	}
}

// countdownCtx is a context whose deadline passes after it has been asked n times: the parse must
// look at it as it goes, not only before and after.
type countdownCtx struct {
	context.Context
	n atomic.Int64
}

func (c *countdownCtx) Err() error {
	if c.n.Add(-1) < 0 {
		return context.DeadlineExceeded
	}
	return nil
}

func TestParseFeedDeadline(t *testing.T) {
	var items strings.Builder
	for i := range feedMaxItems {
		items.WriteString(testFeedItemXML(fmt.Sprint("g", i), "T", strings.Repeat("word ", 400)))
	}
	body := []byte(testFeedXML(items.String()))
	// Counted: the asks a whole parse makes, then every point short of that must stop it.
	full := &countdownCtx{Context: context.Background()}
	full.n.Store(1 << 40)
	got, err := parseFeedBody(full, body, nil, "en", ingestNow)
	if err != nil || len(got) != feedMaxItems {
		t.Fatalf("full parse: %d items, %v", len(got), err)
	}
	asks := 1<<40 - full.n.Load()
	if asks < 100 {
		t.Fatalf("the parse looked at its deadline %d times only", asks)
	}
	for _, n := range []int64{0, 1, asks / 4, asks / 2, asks - 1} {
		ctx := &countdownCtx{Context: context.Background()}
		ctx.n.Store(n)
		if _, err := parseFeedBody(ctx, body, nil, "en", ingestNow); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("deadline after %d of %d asks: %v", n, asks, err)
		}
	}
}

// TestIngestHostileFeed: a hostile feed fails on its own with a clear error; the feed beside it
// is stored.
func TestIngestHostileFeed(t *testing.T) {
	s := ingestTestStore(t)
	mux := http.NewServeMux()
	mux.HandleFunc("/deep", func(w http.ResponseWriter, r *http.Request) { w.Write(hostileDeepXML(2_000_000)) })
	mux.HandleFunc("/good", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(testFeedXML(testFeedItemXML("ok-1", "Fine", "fine"))))
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	feeds := []Config{{"en", srv.URL + "/deep"}, {"en", srv.URL + "/good"}}
	res := NewIngester(s, feeds, Options{AllowPrivate: true, Timeout: time.Minute}, nil, nil).PollAll(context.Background())
	if res[0].Err == nil || res[0].Err.Error() != "feed refused: elements nested deeper than 256 levels" {
		t.Errorf("deep feed: %v", res[0].Err)
	}
	if res[1].Err != nil || res[1].New != 1 {
		t.Errorf("good feed: %+v", res[1])
	}
	st, err := List(context.Background(), s)
	if err != nil || len(st) != 2 || st[0].LastError != "feed refused: elements nested deeper than 256 levels" {
		t.Errorf("feed status: %+v, %v", st, err)
	}
}
