// Package bounce turns what comes back after sending into events about one reader and one issue:
// delivery status notifications (RFC 3464), complaint reports (RFC 5965, ARF) and plain-text
// bounces read from a mailbox over IMAP, and the signed webhooks of Amazon SES (through SNS) and
// Mailgun. It decides who a report is about and what kind it is; what that does to the reader
// is the recorder's business (subscribers.Store.RecordEvents).
//
// A report from the mailbox is believed only when it carries a token we signed: the VERP
// Return-Path each copy went out with (Address, Parse), or our signed unsubscribe link in the
// copy a complaint report includes. Anyone can send mail to the bounce address; naming a reader's
// address in a forged report must not unsubscribe them.
package bounce

import (
	"context"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Kind is what a report says about a reader.
type Kind string

// The kinds of events.
const (
	Hard      Kind = "hard"      // a permanent failure (5.x.x): the address refuses mail for good
	Soft      Kind = "soft"      // a final failure of a transient kind (4.x.x): mailbox full, gave up retrying
	Complaint Kind = "complaint" // the reader (or their provider for them) reported the message as spam
)

// Source is where an event came from.
type Source string

// The sources.
const (
	SourceIMAP     Source = "imap"
	SourceSES      Source = "ses"
	SourcePostmark Source = "postmark"
	SourceMailgun  Source = "mailgun"
	// SourceSMTP is a refusal of the address during our own SMTP exchange (a 5xx to RCPT or to
	// the message), which takes the same policy as a hard bounce reported later.
	SourceSMTP Source = "smtp"
)

// Event is one bounce or complaint about one reader.
type Event struct {
	Kind Kind
	// SubscriberUUID is the reader's public handle, from a signed token. Empty when Email names
	// the reader instead.
	SubscriberUUID string
	// Email is the recipient as a signed provider webhook reported it, set only when that report
	// carried no token of ours (say a confirmation email sent without VERP). Reports from the
	// mailbox never identify a reader by address.
	Email string
	// IssueID is the issue the bounced or reported copy belonged to; 0 when not known (a
	// confirmation email, or a report that does not say).
	IssueID int64
	// Reason is the status code and diagnostic, clipped, with addresses taken out.
	Reason string
	At     time.Time
	Source Source
	// ExternalID identifies the report at its source (the report's Message-ID, the provider's
	// event id), so a report handled twice is recorded once.
	ExternalID string
}

// Recorder applies events to the reader list; subscribers.Store is one. It must be idempotent
// per (Source, ExternalID): the intakes may hand it an event again after a failure.
type Recorder interface {
	RecordEvents(ctx context.Context, events []Event) error
}

// MaxReason is the most bytes an event's Reason keeps.
const MaxReason = 300

// addrRe matches what looks like an email address (or one a server half-quoted).
var addrRe = regexp.MustCompile(`[^\s<>"'(),;:\[\]]+@[^\s<>"'(),;:\[\]]+`)

// Reason joins a status code and a diagnostic into an event's Reason: addresses become
// "<address>" (the reason is shown to editors and kept after the reader is erased), control
// characters and runs of spaces become one space, and the result is clipped to MaxReason bytes.
func Reason(parts ...string) string {
	var kept []string
	for _, p := range parts {
		if p = strings.TrimSpace(p); p != "" {
			kept = append(kept, p)
		}
	}
	s := strings.ToValidUTF8(strings.Join(kept, " "), "")
	s = addrRe.ReplaceAllString(s, "<address>")
	s = strings.ReplaceAll(s, "<<address>>", "<address>")
	s = strings.Join(strings.FieldsFunc(s, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }), " ")
	return clip(s, MaxReason)
}

// clip cuts s to at most n bytes at a rune boundary.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
