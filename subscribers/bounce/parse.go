package bounce

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/emersion/go-message"
	_ "github.com/emersion/go-message/charset" // reports in legacy charsets (KOI8-R, windows-1251) read as UTF-8
	"github.com/emersion/go-message/mail"
	"github.com/emersion/go-message/textproto"
)

// Outcomes of Parser.Parse other than an event.
var (
	// ErrIgnored: a report we understood that calls for nothing: a delay warning, a DSN that says
	// delivered, a "not spam" report, an auto-reply. Safe to file away.
	ErrIgnored = errors.New("bounce: nothing to record")
	// ErrUnknown: not a report we understand. For a human to look at.
	ErrUnknown = errors.New("bounce: not a report we understand")
	// ErrUnidentified: a bounce or complaint with no valid token of ours in it, so it names no
	// reader we can believe. For a human to look at; it changes nothing.
	ErrUnidentified = errors.New("bounce: report carries no valid token")
)

// Bounds on what Parse reads of one message: a report is small, and the mailbox is open to anyone.
const (
	maxParts    = 64
	maxDepth    = 6
	maxPartRead = 1 << 20
)

// Parser reads bounce and complaint messages as they arrive in the bounce mailbox.
type Parser struct {
	// Base is the bounce address the VERP addresses are made from (NEWSLETTER_BOUNCE_ADDRESS).
	Base string
	// Secret is the service secret the tokens are signed with.
	Secret []byte
	// UnsubscribeToken, if set, verifies the token of one of our unsubscribe links
	// (BASE/unsubscribe/TOKEN) and returns the reader's uuid and the issue the link belongs to (0
	// when it belongs to none). A complaint report whose included message lost its Return-Path
	// still carries our List-Unsubscribe header; the link is a capability that already
	// unsubscribes the reader, so believing it gives nobody more power.
	UnsubscribeToken func(token string) (uuid string, issueID int64, ok bool)
	// Now is the clock for reports without a usable Date (default time.Now).
	Now func() time.Time
}

// report is what Parse gathers from the MIME tree.
type report struct {
	top         textproto.Header
	deliveryRaw []byte           // message/delivery-status body
	feedbackRaw []byte           // message/feedback-report body
	original    textproto.Header // headers of the returned or reported message
	hasOriginal bool
	texts       []string // text/plain parts, for non-standard bounces
	reportType  string   // report-type of a multipart/report, lower-cased
	parts       int
}

// Parse reads one raw message from the bounce mailbox and returns the event it reports. Errors:
// ErrIgnored, ErrUnknown, ErrUnidentified (each wrapped with the detail).
//
// The reader and the issue come only from a signed token: the VERP address the report was
// delivered to (Delivered-To, X-Original-To, Envelope-To, To), the Original-Mail-From of a
// complaint report, the Return-Path of the message included in the report, or, for a complaint,
// our signed unsubscribe link in the included message (UnsubscribeToken). A recipient the report
// names (Final-Recipient, Original-Rcpt-To, the included message's To) is never believed: anyone
// can mail the bounce address a report naming anyone.
func (p *Parser) Parse(raw []byte) (Event, error) {
	e, err := message.Read(bytes.NewReader(raw))
	if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
		return Event{}, fmt.Errorf("%w: %v", ErrUnknown, err)
	}
	r := &report{top: e.Header.Header}
	if err := r.walk(e, 0); err != nil {
		return Event{}, fmt.Errorf("%w: %v", ErrUnknown, err)
	}
	ev := Event{Source: SourceIMAP, At: p.date(r.top), ExternalID: externalID(r.top, raw)}

	switch {
	case r.feedbackRaw != nil || r.reportType == "feedback-report":
		err = p.complaint(r, &ev)
	case r.deliveryRaw != nil || r.reportType == "delivery-status":
		err = p.dsn(r, &ev)
	default:
		err = p.plain(r, &ev)
	}
	if err != nil {
		return Event{}, err
	}
	return ev, nil
}

// walk collects the parts that matter, depth-first, within bounds.
func (r *report) walk(e *message.Entity, depth int) error {
	if r.parts++; r.parts > maxParts || depth > maxDepth {
		return errors.New("too many parts")
	}
	mt, params, _ := e.Header.ContentType()
	if mr := e.MultipartReader(); mr != nil {
		if mt == "multipart/report" && r.reportType == "" {
			r.reportType = strings.ToLower(params["report-type"])
		}
		for {
			part, err := mr.NextPart()
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil && !message.IsUnknownCharset(err) && !message.IsUnknownEncoding(err) {
				return err
			}
			if err := r.walk(part, depth+1); err != nil {
				return err
			}
		}
	}
	body, err := io.ReadAll(io.LimitReader(e.Body, maxPartRead))
	if err != nil {
		return err
	}
	switch mt {
	case "message/delivery-status", "message/global-delivery-status":
		if r.deliveryRaw == nil {
			r.deliveryRaw = body
		}
	case "message/feedback-report":
		if r.feedbackRaw == nil {
			r.feedbackRaw = body
		}
	case "message/rfc822", "message/global", "text/rfc822-headers", "message/rfc822-headers", "message/global-headers":
		if !r.hasOriginal {
			// Only the headers: a lenient read, as some reports cut the returned message short.
			h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(body)))
			if h.Len() > 0 || err == nil {
				r.original, r.hasOriginal = h, true
			}
		}
	case "text/plain", "":
		if depth == 0 || len(r.texts) < 4 {
			r.texts = append(r.texts, string(body))
		}
	}
	return nil
}

// dsn reads an RFC 3464 delivery status notification: the worst failed recipient decides.
func (p *Parser) dsn(r *report, ev *Event) error {
	if r.deliveryRaw == nil {
		return fmt.Errorf("%w: a delivery-status report without its status part", ErrUnknown)
	}
	blocks := fieldBlocks(r.deliveryRaw)
	if len(blocks) < 2 {
		return fmt.Errorf("%w: a delivery-status report without a recipient", ErrUnknown)
	}
	var worst *textproto.Header
	var worstKind Kind
	for i := range blocks[1:] {
		b := &blocks[1+i]
		action := strings.ToLower(strings.TrimSpace(b.Get("Action")))
		if action != "failed" {
			continue // delayed, delivered, relayed, expanded: no failure (yet)
		}
		k := statusKind(b.Get("Status"), b.Get("Diagnostic-Code"))
		if k == "" {
			continue
		}
		if worst == nil || (k == Hard && worstKind == Soft) {
			worst, worstKind = b, k
		}
	}
	if worst == nil {
		return fmt.Errorf("%w: no recipient failed", ErrIgnored)
	}
	ev.Kind = worstKind
	ev.Reason = Reason(statusCode(worst.Get("Status")), worst.Get("Diagnostic-Code"))
	return p.identify(r, ev, false)
}

// complaint reads an RFC 5965 feedback report.
func (p *Parser) complaint(r *report, ev *Event) error {
	if r.feedbackRaw == nil {
		return fmt.Errorf("%w: a feedback report without its report part", ErrUnknown)
	}
	blocks := fieldBlocks(r.feedbackRaw)
	if len(blocks) == 0 {
		return fmt.Errorf("%w: an empty feedback report", ErrUnknown)
	}
	f := blocks[0]
	ft := strings.ToLower(strings.TrimSpace(f.Get("Feedback-Type")))
	switch ft {
	case "abuse", "fraud", "virus":
	case "":
		return fmt.Errorf("%w: a feedback report without Feedback-Type", ErrUnknown)
	default:
		// not-spam, auth-failure (RFC 6591), other: nobody asked us to stop.
		return fmt.Errorf("%w: feedback type %q", ErrIgnored, ft)
	}
	ev.Kind = Complaint
	ev.Reason = Reason("feedback-type "+ft, clip(f.Get("User-Agent"), 100))
	if from := f.Get("Original-Mail-From"); from != "" {
		if p.fromToken(ev, from) {
			return nil
		}
	}
	return p.identify(r, ev, true)
}

// plainRe finds an SMTP reply in a non-standard bounce: a reply code with an enhanced status
// code of the same class, or a reply code a server is quoted as saying.
var (
	plainStatusRe = regexp.MustCompile(`\b([45])[0-9]{2}[ -]#?([45]\.[0-9]{1,3}\.[0-9]{1,3})\b`)
	plainSaidRe   = regexp.MustCompile(`(?i)(?:said|reason|error|host [^\s:]+(?: \[[0-9a-f.:]+\])?):\s*\(?([45][0-9]{2})[ -]`)
	bounceSubject = regexp.MustCompile(`(?i)undeliver|delivery (?:status notification|failure|has failed)|failure notice|returned mail|mail delivery failed|non[- ]?delivery|could not be delivered`)
	daemonFrom    = regexp.MustCompile(`(?i)^(?:mailer-daemon|postmaster|mail-daemon|mdaemon)@`)
)

// plain handles a message with no report part: a non-standard bounce with an SMTP 5xx line
// (qmail, old Exim, some gateways) becomes a hard bounce; an auto-reply is ignored; anything else
// is unknown. A plain 4xx is not trusted to be final (it reads the same as a delay warning).
func (p *Parser) plain(r *report, ev *Event) error {
	subject, _ := (&mail.Header{Header: message.Header{Header: r.top}}).Subject()
	fromBounce := false
	if addrs, err := (&mail.Header{Header: message.Header{Header: r.top}}).AddressList("From"); err == nil {
		for _, a := range addrs {
			fromBounce = fromBounce || daemonFrom.MatchString(a.Address)
		}
	}
	looksBounce := fromBounce || bounceSubject.MatchString(subject) || strings.TrimSpace(r.top.Get("Return-Path")) == "<>"
	if looksBounce {
		text := strings.Join(r.texts, "\n")
		if m := plainStatusRe.FindStringSubmatch(text); m != nil && m[1] == m[2][:1] {
			if m[1] == "5" {
				ev.Kind, ev.Reason = Hard, Reason(lineAt(text, m[0]))
				return p.identify(r, ev, false)
			}
		} else if m := plainSaidRe.FindStringSubmatch(text); m != nil && m[1][0] == '5' {
			ev.Kind, ev.Reason = Hard, Reason(lineAt(text, m[0]))
			return p.identify(r, ev, false)
		}
		return fmt.Errorf("%w: a bounce without a permanent SMTP reply", ErrUnknown)
	}
	if as := strings.ToLower(r.top.Get("Auto-Submitted")); strings.HasPrefix(as, "auto-") {
		return fmt.Errorf("%w: an automatic reply (%s)", ErrIgnored, clip(as, 40))
	}
	return fmt.Errorf("%w: neither a delivery status nor a feedback report", ErrUnknown)
}

// lineAt returns the line of text that holds match, trimmed.
func lineAt(text, match string) string {
	i := strings.Index(text, match)
	start := strings.LastIndexByte(text[:i], '\n') + 1
	end := strings.IndexByte(text[i:], '\n')
	if end < 0 {
		end = len(text) - i
	}
	return strings.TrimSpace(text[start : i+end])
}

// deliveryHeaders are where the address a report was delivered to shows: set by the receiving
// MTA or the delivery agent, then the report's own To (which bounces address to the Return-Path).
var deliveryHeaders = []string{"Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "X-Delivered-To", "To"}

// identify finds the reader and issue from a signed token; see Parse.
func (p *Parser) identify(r *report, ev *Event, complaint bool) error {
	for _, k := range deliveryHeaders {
		for _, v := range r.top.Values(k) {
			for _, a := range addresses(v) {
				if p.fromToken(ev, a) {
					return nil
				}
			}
		}
	}
	if r.hasOriginal {
		for _, k := range []string{"Return-Path", "X-Return-Path"} {
			for _, v := range r.original.Values(k) {
				if p.fromToken(ev, v) {
					return nil
				}
			}
		}
		if complaint && p.UnsubscribeToken != nil {
			for _, v := range r.original.Values("List-Unsubscribe") {
				for _, tok := range unsubscribeTokens(v) {
					if uuid, issue, ok := p.UnsubscribeToken(tok); ok {
						ev.SubscriberUUID, ev.IssueID = uuid, issue
						return nil
					}
				}
			}
		}
	}
	return ErrUnidentified
}

// fromToken sets the reader and issue from addr when it is one of our VERP addresses.
func (p *Parser) fromToken(ev *Event, addr string) bool {
	uuid, issue, err := Parse(strings.TrimSpace(addr), p.Base, p.Secret)
	if err != nil {
		return false
	}
	ev.SubscriberUUID, ev.IssueID = uuid, issue
	return true
}

// addresses returns the addresses of a header value, leniently: parsed as an address list, or
// failing that every <...> and bare word with an @.
func addresses(v string) []string {
	if list, err := mail.ParseAddressList(v); err == nil {
		out := make([]string, len(list))
		for i, a := range list {
			out[i] = a.Address
		}
		return out
	}
	return addrRe.FindAllString(v, 8)
}

// unsubscribeTokens returns the last path segment of each https or http link in a
// List-Unsubscribe value whose path ends in /unsubscribe/TOKEN.
func unsubscribeTokens(v string) []string {
	var out []string
	for _, part := range strings.Split(v, ",") {
		part = strings.TrimSpace(part)
		part = strings.TrimSuffix(strings.TrimPrefix(part, "<"), ">")
		u, err := url.Parse(part)
		if err != nil || (u.Scheme != "https" && u.Scheme != "http") {
			continue
		}
		dir, tok, ok := cutLast(strings.TrimSuffix(u.Path, "/"), "/")
		if ok && tok != "" && strings.HasSuffix(dir, "/unsubscribe") {
			out = append(out, tok)
		}
	}
	return out
}

func cutLast(s, sep string) (before, after string, ok bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

var statusRe = regexp.MustCompile(`^([245])\.[0-9]{1,3}\.[0-9]{1,3}`)

// statusCode returns the enhanced status code at the start of a Status field ("5.1.1").
func statusCode(status string) string {
	return statusRe.FindString(strings.TrimSpace(status))
}

// diagRe finds the SMTP reply code in a Diagnostic-Code ("smtp; 550 ...").
var diagRe = regexp.MustCompile(`(?i)^\s*smtp\s*;\s*([245])[0-9]{2}\b`)

// statusKind classifies a failed recipient by its Status, else its SMTP reply code: 5 is hard,
// 4 soft. "" when neither says.
func statusKind(status, diagnostic string) Kind {
	class := ""
	if m := statusRe.FindStringSubmatch(strings.TrimSpace(status)); m != nil {
		class = m[1]
	} else if m := diagRe.FindStringSubmatch(diagnostic); m != nil {
		class = m[1]
	}
	switch class {
	case "5":
		return Hard
	case "4":
		return Soft
	}
	return ""
}

// fieldBlocks splits a delivery-status or feedback-report body into its blocks of fields
// (separated by blank lines) and parses each.
func fieldBlocks(body []byte) []textproto.Header {
	body = bytes.ReplaceAll(body, []byte("\r\n"), []byte("\n"))
	var out []textproto.Header
	for _, block := range bytes.Split(body, []byte("\n\n")) {
		block = bytes.TrimLeft(block, "\n")
		if len(bytes.TrimSpace(block)) == 0 {
			continue
		}
		h, _ := textproto.ReadHeader(bufio.NewReader(io.MultiReader(bytes.NewReader(block), strings.NewReader("\n\n"))))
		if h.Len() > 0 {
			out = append(out, h)
		}
	}
	return out
}

// date is when the report says it was written, if that is believable, else now.
func (p *Parser) date(h textproto.Header) time.Time {
	now := time.Now
	if p.Now != nil {
		now = p.Now
	}
	t, err := (&mail.Header{Header: message.Header{Header: h}}).Date()
	if err != nil || t.IsZero() || t.After(now().Add(time.Hour)) || t.Before(now().AddDate(-1, 0, 0)) {
		return now().UTC()
	}
	return t.UTC()
}

// externalID is the report's Message-ID, else a hash of the whole message: the same report read
// twice (the intake stopped before moving it) is recorded once.
func externalID(h textproto.Header, raw []byte) string {
	if id, err := (&mail.Header{Header: message.Header{Header: h}}).MessageID(); err == nil && id != "" {
		return "msgid:" + clip(id, 200)
	}
	sum := sha256.Sum256(raw)
	return "sha256:" + hex.EncodeToString(sum[:16])
}
