package send

import (
	"bytes"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"mime/quotedprintable"
	"net/mail"
	"strings"
	"testing"
	"time"

	gomail "github.com/wneessen/go-mail"

	"newsletter/digest"
	"newsletter/digest/render"
	"newsletter/templates"
)

func sendTestRenderer(t testing.TB) *render.Renderer {
	t.Helper()
	fsys := templates.FS("")
	cat, err := templates.LoadCatalog(fsys)
	if err != nil {
		t.Fatal(err)
	}
	r, err := render.NewRenderer(fsys, cat, render.Options{BaseURL: "https://news.example", Publication: "The Test Weekly",
		PostalAddress: "1 Test Street, Testville", From: "Weekly <digest@news.example>"})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// sendTestContent is an issue of n articles with long summaries (about 30 KB of HTML at n=12).
func sendTestContent(lang string, id int64, n int) digest.IssueContent {
	var arts []digest.Article
	base := time.Date(2026, 11, 20, 9, 0, 0, 0, time.UTC)
	for i := range n {
		arts = append(arts, digest.Article{ID: int64(i + 1), Lang: lang, Title: fmt.Sprintf("Story %d: the council votes on the harbour plan — «да»", i+1),
			Link: fmt.Sprintf("https://site.example/news/%d?utm=a&b=c", i+1), Section: []string{"City", "World", ""}[i%3],
			Summary:     strings.Repeat(fmt.Sprintf("Paragraph of story %d, with quotes \"like this\" & ampersands, Кириллица, and a long tail of words. ", i+1), 6),
			PublishedAt: base.Add(-time.Duration(i) * time.Hour), Author: "Reporter"})
	}
	c := digest.Arrange(arts, 12)
	c.Issue = digest.Issue{ID: id, Lang: lang, WindowStart: base.Add(-7 * 24 * time.Hour), WindowEnd: base, Status: digest.StatusSending}
	return c
}

type mimeView struct {
	header mail.Header
	text   string
	html   string
}

// parseMIME reads a message the way a mail client would: headers, then each part decoded.
func parseMIME(t *testing.T, raw []byte) mimeView {
	t.Helper()
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("parse message: %v", err)
	}
	mt, params, err := mime.ParseMediaType(m.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("Content-Type %q: %v", m.Header.Get("Content-Type"), err)
	}
	v := mimeView{header: m.Header}
	mr := multipart.NewReader(m.Body, params["boundary"])
	for i := 0; ; i++ {
		p, err := mr.NextRawPart()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if enc := p.Header.Get("Content-Transfer-Encoding"); enc != "quoted-printable" {
			t.Fatalf("part %d encoding %q", i, enc)
		}
		b, err := io.ReadAll(quotedprintable.NewReader(p))
		if err != nil {
			t.Fatalf("part %d: %v", i, err)
		}
		ct := p.Header.Get("Content-Type")
		switch {
		case i == 0 && strings.HasPrefix(ct, "text/plain; charset=UTF-8"):
			v.text = string(b)
		case i == 1 && strings.HasPrefix(ct, "text/html; charset=UTF-8"):
			v.html = string(b)
		default:
			t.Fatalf("part %d: Content-Type %q", i, ct)
		}
	}
	return v
}

// TestMessageTemplateMatchesFromScratch fills the encoded template for readers and compares each
// result, parsed as a mail client would, with the same reader's message built from scratch by
// go-mail from a render of its own.
func TestMessageTemplateMatchesFromScratch(t *testing.T) {
	r := sendTestRenderer(t)
	c := sendTestContent("ru", 42, 14)
	from := &mail.Address{Name: "Weekly", Address: "digest@news.example"}
	h := messageHeaders{From: from, Date: time.Date(2026, 11, 23, 8, 0, 0, 0, time.UTC), ListID: listID("The Test Weekly", "digest-ru", "news.example")}
	named, err := r.Render(c, render.Recipient{Name: render.MarkName, UnsubscribeURL: render.MarkUnsub, ManageURL: render.MarkManage})
	if err != nil {
		t.Fatal(err)
	}
	unnamed, err := r.Render(c, render.Recipient{UnsubscribeURL: render.MarkUnsub, ManageURL: render.MarkManage})
	if err != nil {
		t.Fatal(err)
	}
	h.Subject = named.Subject
	tNamed, err := buildTemplate(named, h)
	if err != nil {
		t.Fatal(err)
	}
	tUnnamed, err := buildTemplate(unnamed, h)
	if err != nil {
		t.Fatal(err)
	}
	if len(named.HTML) < 20000 {
		t.Fatalf("test issue too small: %d bytes of HTML", len(named.HTML))
	}

	tests := []struct {
		name, reader, email string
		fast                bool
	}{
		{"no name", "", "plain@example.org", true},
		{"ascii", "Anna", "anna@example.org", true},
		{"html specials", `O'Brien & "Sons" <b>x</b>`, "ob@example.org", true},
		{"cyrillic", "Иван Петрович", "ivan@example.org", true},
		{"equals and dots", "=?utf-8?q?x?= ...", "eq@example.org", true},
		{"double space", "Anna  Maria", "am@example.org", false},
		{"long name wraps", strings.Repeat("Длинноеимя ", 9) + "Конец", "long@example.org", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			uuid := "6f1c2a9e-5d3b-4c7a-9e21-0b8f4d2c1a77"
			v := readerValues{Email: tc.email, Name: tc.reader, MessageID: messageID([]byte("k"), 42, uuid, "news.example"),
				Unsub: "https://news.example/unsubscribe/tok-" + strings.Repeat("u", 90), Manage: "https://news.example/manage/tok-" + strings.Repeat("m", 90),
				To: formatTo(tc.reader, tc.email)}
			tmpl := tUnnamed
			if tc.reader != "" {
				tmpl = tNamed
				if got := tmpl.nameFits(tc.reader); got != tc.fast {
					t.Fatalf("nameFits = %v, want %v", got, tc.fast)
				}
				if !tc.fast {
					own, err := r.Render(c, render.Recipient{Name: tc.reader, UnsubscribeURL: render.MarkUnsub, ManageURL: render.MarkManage})
					if err != nil {
						t.Fatal(err)
					}
					if tmpl, err = buildTemplate(own, h); err != nil {
						t.Fatal(err)
					}
				}
			}
			got := tmpl.fill(nil, &v)
			for i, line := range bytes.Split(got, []byte("\r\n")) {
				if len(line) > 998 || (bytes.HasPrefix(got[bytes.Index(got, []byte("\r\n\r\n")):], line) && len(line) > 78) {
					t.Fatalf("line %d is %d bytes", i, len(line))
				}
			}
			if bytes.Contains(got, []byte("XNLSLOT")) || bytes.Contains(got, []byte("slot.invalid")) {
				t.Fatal("a marker is left in the message")
			}

			// From scratch: render for this reader, build with go-mail.
			own, err := r.Render(c, render.Recipient{Name: tc.reader, Email: tc.email, UnsubscribeURL: v.Unsub, ManageURL: v.Manage})
			if err != nil {
				t.Fatal(err)
			}
			m := gomail.NewMsg(gomail.WithCharset(gomail.CharsetUTF8), gomail.WithNoDefaultUserAgent())
			m.FromMailAddress(from)
			if err := m.AddToFormat(tc.reader, tc.email); err != nil {
				t.Fatal(err)
			}
			m.Subject(own.Subject)
			m.SetDateWithValue(h.Date)
			m.SetMessageIDWithValue(v.MessageID)
			m.SetListUnsubscribe(v.Unsub)
			m.SetListUnsubscribePost()
			m.SetGenHeaderPreformatted("List-Id", h.ListID)
			m.SetBulk()
			m.SetBodyString(gomail.TypeTextPlain, own.Text)
			m.AddAlternativeString(gomail.TypeTextHTML, own.HTML)
			var want bytes.Buffer
			if _, err := m.WriteTo(&want); err != nil {
				t.Fatal(err)
			}

			g, w := parseMIME(t, got), parseMIME(t, want.Bytes())
			if g.text != w.text {
				t.Errorf("text part differs:\n got: %q\nwant: %q", sendDiff(g.text, w.text), sendDiff(w.text, g.text))
			}
			if g.html != w.html {
				t.Errorf("html part differs:\n got: %q\nwant: %q", sendDiff(g.html, w.html), sendDiff(w.html, g.html))
			}
			for _, k := range []string{"From", "Subject", "Date", "Message-Id", "List-Unsubscribe", "List-Unsubscribe-Post", "List-Id", "Precedence", "Mime-Version"} {
				if g.header.Get(k) != w.header.Get(k) {
					t.Errorf("%s = %q, want %q", k, g.header.Get(k), w.header.Get(k))
				}
			}
			// go-mail's AddToFormat mangles quotes in names, so To is compared with the address itself.
			gt, err := g.header.AddressList("To")
			if err != nil || len(gt) != 1 || gt[0].Name != tc.reader || gt[0].Address != tc.email {
				t.Errorf("To = %v (%v), want %q <%s>", gt, err, tc.reader, tc.email)
			}
			if tc.reader != "" && !strings.Contains(g.text, tc.reader) && tc.fast {
				t.Errorf("name %q missing from text", tc.reader)
			}
		})
	}
}

func sendDiff(a, b string) string {
	i := 0
	for i < len(a) && i < len(b) && a[i] == b[i] {
		i++
	}
	return a[max(0, i-40):min(len(a), i+60)]
}

func TestAppendQPDecodes(t *testing.T) {
	tests := []struct{ name, in string }{
		{"url", "https://news.example/unsubscribe/" + strings.Repeat("abcDEF-_", 30)},
		{"spaces and equals", " a = b \t c "},
		{"utf8", strings.Repeat("Ёжик в тумане ", 12)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			enc := appendQP(nil, tc.in, false)
			for _, l := range bytes.Split(enc, []byte("\r\n")) {
				if len(l) > 76 {
					t.Fatalf("encoded line of %d bytes", len(l))
				}
			}
			dec, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(enc)))
			if err != nil || string(dec) != tc.in {
				t.Fatalf("decoded %q (%v), want %q", dec, err, tc.in)
			}
		})
	}
}

func TestMessageIDStable(t *testing.T) {
	a := messageID([]byte("secret"), 7, "uuid-1", "news.example")
	if a != messageID([]byte("secret"), 7, "uuid-1", "news.example") {
		t.Fatal("not deterministic")
	}
	if a == messageID([]byte("secret"), 7, "uuid-2", "news.example") || a == messageID([]byte("secret"), 8, "uuid-1", "news.example") {
		t.Fatal("not distinct")
	}
	if !strings.HasPrefix(a, "issue-7.") || !strings.HasSuffix(a, "@news.example") || strings.Contains(a, "uuid") {
		t.Fatalf("Message-ID %q", a)
	}
	if _, err := mail.ParseAddress("<" + a + ">"); err != nil {
		t.Fatalf("Message-ID %q is not an addr-spec: %v", a, err)
	}
}
