package textclean

import (
	"os"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestSummarize(t *testing.T) {
	long := strings.Repeat("word ", 100) // 500 runes
	tests := []struct {
		name, in, want string
	}{
		{"PlainText", "Just a sentence.", "Just a sentence."},
		{"EntitiesDecoded", "Tom &amp; Jerry &mdash; &#8220;friends&#8221;&nbsp;forever", "Tom & Jerry — “friends” forever"},
		{"WhitespaceFolded", "  one\n\n\ttwo   three  ", "one two three"},
		{"MarkupStripped", "<p>One <b>bold</b> <a href='x'>link</a>.</p><p>Two.</p>", "One bold link. Two."},
		{"ScriptStyleDropped", "<script>alert(1)</script><style>p{}</style><p>Text</p>", "Text"},
		{"ChromeElementsDropped", "<p>Body</p><nav>Home</nav><aside>Related</aside><form><button>Go</button></form><figure><img src=x><figcaption>Caption</figcaption></figure><iframe src=x>frame</iframe>", "Body"},
		{"ChromeClassDropped", `<div class="share-buttons"><a>Facebook</a></div><p>Body</p><div id="subscribe-box">Join us</div>`, "Body"},
		{"TickerLine", "<ul><li>USD90.19</li><li>EUR97.90</li></ul><p>Body</p>", "Body"},
		{"TickerBullets", "USD90.19 • EUR97.90 • OIL81.73\n812\nBody text.", "Body text."},
		{"SubscribeLine", "<p>Body.</p><p>Subscribe to our weekly digest</p>", "Body."},
		{"ShareLines", "Body.\nShare on Facebook\nShare on X\nПоделиться", "Body."},
		{"ReadMoreSuffix", "<p>It kept rolling. <a href=x>Read more</a></p>", "It kept rolling."},
		{"ReadMoreRussian", "Репортаж из трёх сёл. Читать далее", "Репортаж из трёх сёл."},
		{"NumbersInTextKept", "Inflation was 9.1% in 2026.", "Inflation was 9.1% in 2026."},
		{"DoubleEscapedMarkup", "&lt;p&gt;Escaped &lt;b&gt;twice&lt;/b&gt;&lt;/p&gt;", "Escaped twice"},
		{"EscapedScript", "The end &lt;script&gt;alert(7)&lt;/script&gt; of it.", "The end of it."},
		{"LessThanKept", "a < b and 3 <= 4", "a < b and 3 <= 4"},
		{"ControlCharsDropped", "nul\x00 and\u200b zero\x07width", "nul and zerowidth"},
		{"CutAtWord", long, strings.TrimSpace(long[:300]) + "…"},
		{"CutLongWord", strings.Repeat("x", 400), strings.Repeat("x", 300) + "…"},
		{"CutTrimsPunctuation", strings.Repeat("ab ", 98) + "abcd, def", strings.Repeat("ab ", 98) + "abcd…"},
		{"Empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Summarize(tt.in); got != tt.want {
				t.Errorf("Summarize(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
		})
	}
}

func TestSummarizeCyrillicCutsRunes(t *testing.T) {
	in := strings.Repeat("Привет мир ", 60)
	got := Summarize(in)
	if !utf8.ValidString(got) || !strings.HasSuffix(got, "…") {
		t.Fatalf("got %q", got)
	}
	if n := utf8.RuneCountInString(got); n > SummaryMaxRunes+1 || n < SummaryMaxRunes*3/4 {
		t.Errorf("got %d runes, want about %d", n, SummaryMaxRunes)
	}
	if strings.HasSuffix(got, " …") || strings.Contains(got, "Прив…") {
		t.Errorf("not cut at a word boundary: %q", got)
	}
}

// The sample page as a reader's browser shows it: ticker, headline, lead, body, subscribe block,
// browser warning.
func TestSummarizeSamplePage(t *testing.T) {
	page, err := os.ReadFile("testdata/sample-article.txt")
	if err != nil {
		t.Fatal(err)
	}
	got := Summarize(string(page))
	for _, chrome := range []string{"USD", "EUR97.90", "OIL", "812", "Subscribe", "браузер", "Google Chrome"} {
		if strings.Contains(got, chrome) {
			t.Errorf("summary leaks chrome %q: %q", chrome, got)
		}
	}
	if !strings.HasPrefix(got, "Keep your terrorists close: Why Russia treats some Islamic fundamentalists as friends and others as enemies Kremlin propagandist Margarita Simonyan") {
		t.Errorf("summary does not start with the headline and lead: %q", got)
	}
	if n := utf8.RuneCountInString(got); n > SummaryMaxRunes+1 || n < 250 || !strings.HasSuffix(got, "…") {
		t.Errorf("summary is %d runes (%q), want a cut near %d with …", n, got, SummaryMaxRunes)
	}
}

func TestPlainTitle(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"Entities", "Prices &amp; wages: <em>why</em> the &#8220;ruble&#8221; fell &mdash; again", "Prices & wages: why the “ruble” fell — again"},
		{"Hostile", `<script>alert('title')</script>Hostile <b onmouseover="alert(1)">headline</b> <img src=x onerror="alert(2)">`, "Hostile headline"},
		{"Lines", "<h1>One</h1>\n<p>Two</p>", "One Two"},
		{"KeepsChromeWords", "Read more", "Read more"},
		{"Cap", strings.Repeat("long ", 80), strings.TrimSpace(strings.Repeat("long ", 50)) + "…"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := PlainTitle(tt.in, TitleMaxRunes); got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func BenchmarkSummarizeSamplePage(b *testing.B) {
	page, err := os.ReadFile("testdata/sample-article.txt")
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(page)))
	for b.Loop() {
		Summarize(string(page))
	}
}

func TestLooksLikeMarkup(t *testing.T) {
	for s, want := range map[string]bool{
		"plain": false, "x < y": false, "x <3": false, "x<": false, "</": false, "a </": false,
		"<b>": true, "</b": true, "</ x": true, "<!-- c": true, "<?xml": true, "a <img": true,
	} {
		if got := LooksLikeMarkup(s); got != want {
			t.Errorf("LooksLikeMarkup(%q) = %v, want %v", s, got, want)
		}
	}
}

// TestPlainTitleNoTagSurvives: characters dropped while cleaning never join the rest into a tag.
func TestPlainTitleNoTagSurvives(t *testing.T) {
	for _, in := range []string{"<<<<\x02A>A>A>A", "<\u200bb>bold</\u200bb>", "&lt;\x01script&gt;x", "&amp;amp;amp;amp;lt;b&amp;amp;amp;amp;gt;deep"} {
		if got := PlainTitle(in, 200); LooksLikeMarkup(got) {
			t.Errorf("PlainTitle(%q) = %q: still markup", in, got)
		}
	}
}
