package send

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"mime/quotedprintable"
	netmail "net/mail"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/wneessen/go-mail"

	"newsletter/digest"
	"newsletter/digest/render"
	"newsletter/internal/textclean"
	"newsletter/newsletters"
)

// markMsgID is the Message-ID's slot. The issue is rendered with render's slot marks in the
// reader's places and MIME-encoded once, and each reader's values are filled into the encoded
// bytes; the Message-ID is the builder's own slot, written only by go-mail, never by content.
const markMsgID = "xnlslotmsgid@slot.invalid"

// slot is what goes between two static segments of an encoded message.
type slot uint8

const (
	slotEnd         slot = iota // no slot: the last segment
	slotTo                      // header: the reader's formatted address
	slotMessageID               // header: the Message-ID between its angle brackets
	slotUnsubHeader             // header: the unsubscribe URL
	slotTextName                // quoted-printable text part
	slotTextUnsub
	slotTextManage
	slotHTMLName // quoted-printable HTML part, HTML-escaped
	slotHTMLUnsub
	slotHTMLManage
)

// segment is static encoded bytes followed by a slot.
type segment struct {
	static []byte
	slot   slot
}

// msgTemplate is one issue's message, encoded once, split at the reader's slots.
type msgTemplate struct {
	segs []segment
	size int // static bytes, to size the per-reader buffer
	// nameLines are the rune lengths, without the name, of the text-part lines that carry the
	// name; nameFast is false when a name on them could change how the renderer wraps the text.
	nameLines []int
	nameFast  bool
}

// messageHeaders are the headers every reader's copy of an issue shares.
type messageHeaders struct {
	From    *netmail.Address
	Subject string
	ListID  string // the whole List-Id value, e.g. `"The Weekly Digest" <digest-en.example.org>`
	Date    time.Time
}

// readerValues are what differs per reader.
type readerValues struct {
	Email, Name   string
	MessageID     string // without angle brackets
	Unsub, Manage string
	To            string // formatted address for the To header
}

// errTemplate reports a rendered issue the sender cannot turn into a template.
var errTemplate = errors.New("message template")

// buildTemplate builds the issue's message with go-mail, marker values in the reader's places, and
// splits the encoded bytes at the markers. The text and HTML parts are quoted-printable: their
// content is decoded, split at the markers, and each static piece re-encoded on its own and ended
// with a soft line break, so a reader's value never lands inside an encoded line and no line
// grows past 76 characters.
func buildTemplate(r render.Rendered, h messageHeaders) (*msgTemplate, error) {
	// No User-Agent or X-Mailer: go-mail's default names itself, its version and its URL, a
	// fingerprint of our stack that tells an attacker which advisories to try.
	m := mail.NewMsg(mail.WithCharset(mail.CharsetUTF8), mail.WithEncoding(mail.EncodingQP), mail.WithNoDefaultUserAgent())
	m.FromMailAddress(h.From)
	if err := m.To(render.MarkRcpt); err != nil {
		return nil, fmt.Errorf("%w: %v", errTemplate, err)
	}
	m.Subject(h.Subject)
	m.SetDateWithValue(h.Date)
	m.SetMessageIDWithValue(markMsgID)
	m.SetListUnsubscribe(render.MarkUnsub)
	m.SetListUnsubscribePost()
	m.SetGenHeaderPreformatted("List-Id", h.ListID)
	m.SetBulk()
	m.SetBodyString(mail.TypeTextPlain, r.Text)
	m.AddAlternativeString(mail.TypeTextHTML, r.HTML)
	var raw bytes.Buffer
	if _, err := m.WriteTo(&raw); err != nil {
		return nil, fmt.Errorf("%w: %v", errTemplate, err)
	}
	return splitTemplate(raw.Bytes())
}

// splitTemplate turns go-mail's encoded message into segments.
func splitTemplate(raw []byte) (*msgTemplate, error) {
	hdrEnd := bytes.Index(raw, []byte("\r\n\r\n"))
	if hdrEnd < 0 {
		return nil, fmt.Errorf("%w: no end of headers", errTemplate)
	}
	header, body := raw[:hdrEnd+4], raw[hdrEnd+4:]
	t := &msgTemplate{}
	var cur []byte
	emit := func(s slot) {
		t.segs = append(t.segs, segment{static: cur, slot: s})
		t.size += len(cur)
		cur = nil
	}

	// Headers: the markers sit whole in them (go-mail folds only at spaces).
	headerSlots := []struct {
		mark string
		slot slot
	}{{"<" + render.MarkRcpt + ">", slotTo}, {markMsgID, slotMessageID}, {render.MarkUnsub, slotUnsubHeader}}
	rest := header
	for {
		at, which := -1, -1
		for i, hs := range headerSlots {
			if j := bytes.Index(rest, []byte(hs.mark)); j >= 0 && (at < 0 || j < at) {
				at, which = j, i
			}
		}
		if at < 0 {
			break
		}
		cur = append(cur, rest[:at]...)
		emit(headerSlots[which].slot)
		rest = rest[at+len(headerSlots[which].mark):]
	}
	cur = append(cur, rest...)

	boundary := boundaryOf(header)
	if boundary == "" {
		return nil, fmt.Errorf("%w: not multipart", errTemplate)
	}
	delim := []byte("--" + boundary)
	parts := bytes.Split(body, delim)
	// parts[0] is the preamble (empty), the last one "--\r\n" after the closing delimiter.
	cur = append(cur, parts[0]...)
	for i, p := range parts[1:] {
		cur = append(cur, delim...)
		if i == len(parts)-2 {
			cur = append(cur, p...)
			break
		}
		ph := bytes.Index(p, []byte("\r\n\r\n"))
		if ph < 0 || !bytes.HasSuffix(p, []byte("\r\n")) {
			return nil, fmt.Errorf("%w: bad part", errTemplate)
		}
		partHeader, content := p[:ph+4], p[ph+4:len(p)-2]
		cur = append(cur, partHeader...)
		lower := strings.ToLower(string(partHeader))
		if !strings.Contains(lower, "content-transfer-encoding: quoted-printable") {
			return nil, fmt.Errorf("%w: part not quoted-printable", errTemplate)
		}
		decoded, err := io.ReadAll(quotedprintable.NewReader(bytes.NewReader(content)))
		if err != nil {
			return nil, fmt.Errorf("%w: %v", errTemplate, err)
		}
		isHTML := strings.Contains(lower, "text/html")
		if !isHTML {
			t.nameLines, t.nameFast = nameLines(string(decoded))
		}
		if err := t.splitPart(&cur, emit, decoded, isHTML); err != nil {
			return nil, err
		}
		cur = append(cur, "\r\n"...)
	}
	emit(slotEnd)
	return t, nil
}

// splitPart encodes one decoded part piece by piece, emitting a slot at each marker.
func (t *msgTemplate) splitPart(cur *[]byte, emit func(slot), decoded []byte, isHTML bool) error {
	marks := []struct {
		mark       string
		text, html slot
	}{{render.MarkName, slotTextName, slotHTMLName}, {render.MarkUnsub, slotTextUnsub, slotHTMLUnsub}, {render.MarkManage, slotTextManage, slotHTMLManage}}
	rest := decoded
	for {
		at, which := -1, -1
		for i, m := range marks {
			if j := bytes.Index(rest, []byte(m.mark)); j >= 0 && (at < 0 || j < at) {
				at, which = j, i
			}
		}
		piece := rest
		if at >= 0 {
			piece = rest[:at]
		}
		var enc bytes.Buffer
		w := quotedprintable.NewWriter(&enc)
		if _, err := w.Write(piece); err != nil {
			return err
		}
		if err := w.Close(); err != nil {
			return err
		}
		*cur = append(*cur, enc.Bytes()...)
		if at < 0 {
			return nil
		}
		// A soft line break after every piece: the next one starts on a fresh line.
		*cur = append(*cur, "=\r\n"...)
		s := marks[which].text
		if isHTML {
			s = marks[which].html
		}
		emit(s)
		rest = rest[at+len(marks[which].mark):]
	}
}

// boundaryOf finds the top-level multipart boundary in a header block.
func boundaryOf(header []byte) string {
	unfolded := strings.ReplaceAll(string(header), "\r\n ", " ")
	for _, line := range strings.Split(unfolded, "\r\n") {
		name, value, ok := strings.Cut(line, ":")
		if !ok || !strings.EqualFold(name, "Content-Type") {
			continue
		}
		if _, params, err := mime.ParseMediaType(strings.TrimSpace(value)); err == nil {
			return params["boundary"]
		}
	}
	return ""
}

// textWidthLimit is the renderer's text wrap width; a line with a name longer than this would
// have wrapped differently, so such readers get a message rendered for them alone.
const textWidthLimit = render.TextWidth

// nameLines returns the length (runes, name excluded) of each text line carrying the name marker,
// and whether the fast path is safe: each such line fits the width and ends its paragraph, so the
// renderer did not wrap it and would not wrap a reader's name of fitting length either.
func nameLines(text string) ([]int, bool) {
	lines := strings.Split(text, "\n")
	var out []int
	fast := true
	for i, l := range lines {
		n := strings.Count(l, render.MarkName)
		if n == 0 {
			continue
		}
		if n > 1 {
			fast = false
		}
		rest := utf8.RuneCountInString(strings.TrimRight(l, "\r")) - n*len(render.MarkName)
		out = append(out, rest)
		if rest+len(render.MarkName) > textWidthLimit || (i+1 < len(lines) && strings.TrimSpace(lines[i+1]) != "") {
			fast = false
		}
	}
	return out, fast
}

// nameFits reports whether name can be filled into t's slots byte for byte as the renderer would
// have written it: a single-spaced name without control characters on lines that stay unwrapped.
func (t *msgTemplate) nameFits(name string) bool {
	if !t.nameFast || strings.Join(strings.Fields(name), " ") != name ||
		strings.ContainsFunc(name, func(r rune) bool { return unicode.IsControl(r) || r == utf8.RuneError }) {
		return false
	}
	n := utf8.RuneCountInString(name)
	for _, l := range t.nameLines {
		if l+n > textWidthLimit {
			return false
		}
	}
	return true
}

// fill appends the reader's message to dst.
func (t *msgTemplate) fill(dst []byte, v *readerValues) []byte {
	for _, s := range t.segs {
		dst = append(dst, s.static...)
		switch s.slot {
		case slotTo:
			dst = append(dst, v.To...)
		case slotMessageID:
			dst = append(dst, v.MessageID...)
		case slotUnsubHeader:
			dst = append(dst, v.Unsub...)
		case slotTextName:
			dst = appendQP(dst, v.Name, false)
		case slotTextUnsub:
			dst = appendQP(dst, v.Unsub, false)
		case slotTextManage:
			dst = appendQP(dst, v.Manage, false)
		case slotHTMLName:
			dst = appendQP(dst, v.Name, true)
		case slotHTMLUnsub:
			dst = appendQP(dst, v.Unsub, true)
		case slotHTMLManage:
			dst = appendQP(dst, v.Manage, true)
		}
	}
	return dst
}

const upperHex = "0123456789ABCDEF"

// appendQP appends s quoted-printable encoded (HTML-escaped first when html), ending with a soft
// line break so the following static piece starts a fresh line. Spaces and tabs are always
// encoded, so no line ends in whitespace.
func appendQP(dst []byte, s string, html bool) []byte {
	col := 0
	put := func(b []byte) {
		if col+len(b) > 73 {
			dst = append(dst, "=\r\n"...)
			col = 0
		}
		dst = append(dst, b...)
		col += len(b)
	}
	var one [1]byte
	var enc [3]byte
	for i := 0; i < len(s); i++ {
		c := s[i]
		if html {
			if e := htmlEntity(c); e != "" {
				put([]byte(e))
				continue
			}
		}
		if c >= 33 && c <= 126 && c != '=' {
			one[0] = c
			put(one[:])
			continue
		}
		enc = [3]byte{'=', upperHex[c>>4], upperHex[c&15]}
		put(enc[:])
	}
	return append(dst, "=\r\n"...)
}

// htmlEntity is how golang.org/x/net/html (the CSS inliner's serializer, the last hand on the
// renderer's HTML) escapes text and attribute values.
func htmlEntity(c byte) string {
	switch c {
	case '&':
		return "&amp;"
	case '\'':
		return "&#39;"
	case '<':
		return "&lt;"
	case '>':
		return "&gt;"
	case '"':
		return "&#34;"
	case '\r':
		return "&#13;"
	}
	return ""
}

// messageID is the reader's Message-ID for an issue, without angle brackets: the same every time
// the message is tried, on the From domain, and carrying no guessable reader id.
func messageID(key []byte, issueID int64, readerUUID, domain string) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte("digest-message-id\x00" + strconv.FormatInt(issueID, 10) + "\x00" + readerUUID))
	return "issue-" + strconv.FormatInt(issueID, 10) + "." + hex.EncodeToString(mac.Sum(nil)[:12]) + "@" + domain
}

// domainOf returns the domain of an address.
func domainOf(addr string) string {
	if i := strings.LastIndexByte(addr, '@'); i >= 0 {
		return strings.ToLower(addr[i+1:])
	}
	return "localhost"
}

// listID formats the List-Id header value of a newsletter (its slug: a digest's is "digest-" and
// its language, the id every digest carried before there were other newsletters).
func listID(publication, slug, domain string) string {
	phrase := strings.Join(strings.Fields(publication), " ")
	id := slug + "." + domain
	if phrase == "" {
		return "<" + id + ">"
	}
	if textclean.IsASCIIPrintable(phrase) {
		phrase = strconv.Quote(phrase)
	} else {
		phrase = mime.QEncoding.Encode("utf-8", phrase)
	}
	return phrase + " <" + id + ">"
}

// formatTo is the To header value for a reader, as go-mail writes one.
func formatTo(name, email string) string {
	a := netmail.Address{Name: name, Address: email}
	return a.String()
}

// preparedIssue is an issue rendered and encoded once, ready for per-reader filling. A test send
// prepares it with "[TEST] " before the subject.
type preparedIssue struct {
	id        int64
	renderFor func(render.Recipient) (render.Rendered, error) // one reader's copy (a name that does not fit the template)
	headers   messageHeaders
	named     *msgTemplate // with the greeting, for readers with a name
	unnamed   *msgTemplate
}

// renderer returns how to render the issue for one reader, a digest from its articles or an
// edition from its Markdown, and the slug of its newsletter.
func (s *Sender) renderer(ctx context.Context, id int64) (func(render.Recipient) (render.Rendered, error), string, error) {
	iss, err := s.store.IssueByID(ctx, id)
	if err != nil {
		return nil, "", err
	}
	n, err := newsletters.Get(ctx, s.store.DB(), iss.NewsletterID)
	if err != nil {
		return nil, "", err
	}
	if iss.IsEdition() {
		e := digest.Edition{ID: iss.ID, Lang: iss.Lang, Newsletter: n.Name(iss.Lang), Subject: iss.Subject, Preheader: iss.Preheader,
			Markdown: *iss.Markdown, Date: s.store.Now()}
		if iss.StartedAt != nil {
			e.Date = *iss.StartedAt
		}
		return func(r render.Recipient) (render.Rendered, error) { return s.render.RenderEdition(e, r) }, n.Slug, nil
	}
	c, err := s.store.Content(ctx, id, s.opts.MaxArticles)
	if err != nil {
		return nil, "", err
	}
	return func(r render.Recipient) (render.Rendered, error) { return s.render.Render(c, r) }, n.Slug, nil
}

func (s *Sender) prepare(ctx context.Context, id int64, subjectPrefix string) (*preparedIssue, error) {
	renderFor, slug, err := s.renderer(ctx, id)
	if err != nil {
		return nil, err
	}
	p := &preparedIssue{id: id, renderFor: renderFor}
	named, err := renderFor(render.Marked(true))
	if err != nil {
		return nil, err
	}
	unnamed, err := renderFor(render.Marked(false))
	if err != nil {
		return nil, err
	}
	p.headers = messageHeaders{From: s.from, Subject: subjectPrefix + named.Subject, Date: s.store.Now(),
		ListID: listID(s.opts.Publication, slug, s.domain)}
	if p.named, err = buildTemplate(named, p.headers); err != nil {
		return nil, err
	}
	if p.unnamed, err = buildTemplate(unnamed, p.headers); err != nil {
		return nil, err
	}
	return p, nil
}

// compose appends the reader's message to dst.
func (s *Sender) compose(dst []byte, p *preparedIssue, r claimedRow) ([]byte, error) {
	v := readerValues{
		Email:     r.Email,
		Name:      r.Name,
		MessageID: messageID(s.opts.Secret, p.id, r.UUID, s.domain),
		Unsub:     s.links.IssueUnsubscribeURL(s.opts.BaseURL, r.UUID, p.id),
		Manage:    s.links.ManageURL(s.opts.BaseURL, r.UUID),
		To:        formatTo(r.Name, r.Email),
	}
	t := p.unnamed
	if r.Name != "" {
		t = p.named
		if !t.nameFits(r.Name) {
			// A name the renderer would wrap or fold: render this reader's copy on its own.
			rendered, err := p.renderFor(render.Recipient{Name: r.Name, Email: render.MarkRcpt, UnsubscribeURL: render.MarkUnsub, ManageURL: render.MarkManage})
			if err != nil {
				return dst, err
			}
			if t, err = buildTemplate(rendered, p.headers); err != nil {
				return dst, err
			}
		}
	}
	return t.fill(dst, &v), nil
}
