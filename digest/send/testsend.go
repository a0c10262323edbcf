package send

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	netmail "net/mail"

	"newsletter/digest"
	"newsletter/internal/smtpout"
)

// testSubjectPrefix marks an editor's test copy in the inbox.
const testSubjectPrefix = "[TEST] "

// SendTest sends issue issueID once to the address to: an editor's "send a test". It goes down the
// path of every reader's copy (the same rendering, message builder, headers and DKIM signature,
// over a connection of the same dialer), with "[TEST] " before the subject. There is no reader, so
// its unsubscribe and manage links lead to harmless pages of this service, its Message-ID is
// random, and its envelope sender is TestReturnPath (the plain bounce address: the domain, and so
// the SPF check, of every copy; a bounce of it names nobody and is left for a human). It writes no ledger row and counts as no send. ErrInvalid for an address that is not one,
// ErrRelay when the relay does not take the message.
func (s *Sender) SendTest(ctx context.Context, issueID int64, to string) error {
	if a, err := netmail.ParseAddress(to); err != nil || a.Address != to || a.Name != "" {
		return fmt.Errorf("test send: address: %w", digest.ErrInvalid)
	}
	p, err := s.prepare(ctx, issueID, testSubjectPrefix)
	if err != nil {
		return err
	}
	v := readerValues{
		Email:     to,
		MessageID: randomHex(16) + ".test@" + s.domain,
		Unsub:     s.opts.BaseURL + "/unsubscribe/test-message",
		Manage:    s.opts.BaseURL + "/manage/test-message",
		To:        formatTo("", to),
	}
	msg := p.unnamed.fill(nil, &v)
	if s.opts.DKIM != nil {
		if msg, err = s.opts.DKIM.Sign(nil, msg); err != nil {
			return fmt.Errorf("test send: dkim: %w", err)
		}
	}
	conn := &smtpout.Conn{Dialer: s.dialer, Timeout: s.opts.Timeout}
	defer conn.Close()
	if err := conn.Ensure(ctx); err != nil {
		return fmt.Errorf("test send: %w: %w", digest.ErrRelay, err)
	}
	from := s.from.Address
	if s.opts.TestReturnPath != "" {
		from = s.opts.TestReturnPath
	}
	if err := conn.Send(smtpout.Envelope{From: from, To: to}, msg, func() {}, nil); err != nil {
		return fmt.Errorf("test send: %w: %w", digest.ErrRelay, err)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
