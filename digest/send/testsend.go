package send

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	netmail "net/mail"
	"strings"
	"time"

	gomail "github.com/wneessen/go-mail"

	"newsletter/digest"
	"newsletter/digest/render"
	"newsletter/internal/smtpout"
)

// TestSender returns the function behind "send a test" (HandlerOptions.TestSend): issue issueID,
// rendered by the same Renderer as the real send, to one address with "[TEST] " before the
// subject, signed with dkim (when set) and sent over a connection of dialer through the same
// transaction code as every reader's copy. It writes no ledger row and counts as no send. There is
// no reader, so the unsubscribe and manage links point at harmless pages of this service.
func TestSender(store *digest.Store, renderer *render.Renderer, dialer smtpout.Dialer, dkim *smtpout.DKIMSigner, from, baseURL string, maxArticles int) func(ctx context.Context, issueID int64, to string) error {
	baseURL = strings.TrimRight(baseURL, "/")
	return func(ctx context.Context, issueID int64, to string) error {
		to, err := testAddress(to)
		if err != nil {
			return fmt.Errorf("test send: address: %w", digest.ErrInvalid)
		}
		c, err := store.Content(ctx, issueID, maxArticles)
		if err != nil {
			return err
		}
		out, err := renderer.Render(c, render.Recipient{Email: to, UnsubscribeURL: baseURL + "/unsubscribe/test-message", ManageURL: baseURL + "/manage/test-message"})
		if err != nil {
			return err
		}
		m := gomail.NewMsg(gomail.WithNoDefaultUserAgent())
		if err := m.From(from); err != nil {
			return fmt.Errorf("test send: from: %w", err)
		}
		if err := m.To(to); err != nil {
			return fmt.Errorf("test send: address: %w", digest.ErrInvalid)
		}
		m.Subject("[TEST] " + out.Subject)
		m.SetDate()
		m.SetMessageIDWithValue(randomHex(16) + ".test@" + testFromDomain(from))
		m.SetBodyString(gomail.TypeTextPlain, out.Text)
		m.AddAlternativeString(gomail.TypeTextHTML, out.HTML)
		var raw bytes.Buffer
		if _, err := m.WriteTo(&raw); err != nil {
			return fmt.Errorf("test send: %w", err)
		}
		msg := raw.Bytes()
		if dkim != nil {
			if msg, err = dkim.Sign(nil, msg); err != nil {
				return fmt.Errorf("test send: dkim: %w", err)
			}
		}
		sender, err := netmail.ParseAddress(from)
		if err != nil {
			return fmt.Errorf("test send: from: %w", err)
		}
		conn := &smtpout.Conn{Dialer: dialer, Timeout: 30 * time.Second}
		defer conn.Close()
		if err := conn.Ensure(ctx); err != nil {
			return fmt.Errorf("test send: %w", err)
		}
		if err := conn.Send(smtpout.Envelope{From: sender.Address, To: to}, msg, func() {}, nil); err != nil {
			return fmt.Errorf("test send: %w", err)
		}
		return nil
	}
}

// testAddress accepts one bare address (no display name, no list), as typed in the form.
func testAddress(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > 254 || strings.ContainsAny(s, "\r\n\x00<>,;\" ") {
		return "", digest.ErrInvalid
	}
	addr, err := netmail.ParseAddress(s)
	if err != nil || addr.Address != s || !strings.Contains(s[strings.LastIndexByte(s, '@')+1:], ".") && !strings.HasSuffix(s, "@localhost") {
		return "", digest.ErrInvalid
	}
	return s, nil
}

// testFromDomain is the domain of the From setting (a "Name <addr>" string), for the test
// message's Message-ID.
func testFromDomain(from string) string {
	if a, err := netmail.ParseAddress(from); err == nil {
		if i := strings.LastIndexByte(a.Address, '@'); i >= 0 {
			return a.Address[i+1:]
		}
	}
	return "localhost"
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
