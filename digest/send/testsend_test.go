package send

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"mime"
	"net/mail"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"newsletter/digest"
	"newsletter/internal/smtpout"
)

// TestSendTest: an editor's test copy goes down the real path: the headers of every reader's copy
// (List-Unsubscribe, its one-click Post, List-Id, Precedence), "[TEST] " before the subject, no
// library named, a DKIM signature that verifies; and it leaves no trace in the ledger or the issue.
func TestSendTest(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := smtpout.NewDKIMSigner("news.example", "test2026", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	f := newSendFixture(t, 2)
	s := f.sender(t, func(o *SenderOptions) { o.DKIM = signer })
	ctx := context.Background()
	if err := s.SendTest(ctx, f.issue.ID, "editor@example.org"); err != nil {
		t.Fatal(err)
	}
	msgs := f.srv.Messages()
	if len(msgs) != 1 || len(msgs[0].To) != 1 || msgs[0].To[0] != "editor@example.org" || msgs[0].From != "digest@news.example" {
		t.Fatalf("sent %d messages: %+v", len(msgs), msgs)
	}
	m, err := mail.ReadMessage(bytes.NewReader(msgs[0].Data))
	if err != nil {
		t.Fatal(err)
	}
	dec := new(mime.WordDecoder)
	subject, err := dec.DecodeHeader(m.Header.Get("Subject"))
	if err != nil || !strings.HasPrefix(subject, "[TEST] ") || !strings.Contains(subject, "Story") {
		t.Errorf("Subject %q (%v), want [TEST] before the issue's subject", subject, err)
	}
	for k, want := range map[string]string{
		"From":                  `"Weekly" <digest@news.example>`,
		"To":                    "<editor@example.org>",
		"List-Unsubscribe":      "<https://news.example/unsubscribe/test-message>",
		"List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
		"List-Id":               `"The Test Weekly" <digest-en.news.example>`,
		"Precedence":            "bulk",
		"User-Agent":            "",
		"X-Mailer":              "",
	} {
		if got := m.Header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if id := m.Header.Get("Message-Id"); !strings.HasSuffix(id, ".test@news.example>") {
		t.Errorf("Message-Id %q", id)
	}
	if ct := m.Header.Get("Content-Type"); !strings.HasPrefix(ct, "multipart/alternative") {
		t.Errorf("Content-Type %q", ct)
	}
	v := parseMIME(t, msgs[0].Data)
	for _, part := range []string{v.text, v.html} {
		if !strings.Contains(part, "https://news.example/unsubscribe/test-message") || !strings.Contains(part, "https://news.example/manage/test-message") {
			t.Error("a part lacks the harmless unsubscribe and manage links")
		}
	}

	lookup := func(domain string) ([]string, error) {
		if domain != "test2026._domainkey.news.example" {
			return nil, errors.New("no such record: " + domain)
		}
		return []string{"v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey))}, nil
	}
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(msgs[0].Data), &dkim.VerifyOptions{LookupTXT: lookup})
	if err != nil || len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "news.example" {
		t.Fatalf("DKIM: %v, %+v", err, vs)
	}
	for _, h := range []string{"from", "to", "subject", "list-unsubscribe", "list-unsubscribe-post", "list-id"} {
		signed := false
		for _, k := range vs[0].HeaderKeys {
			signed = signed || strings.EqualFold(k, h)
		}
		if !signed {
			t.Errorf("%s is not signed (h=%v)", h, vs[0].HeaderKeys)
		}
	}

	var rows int
	if err := f.db.Get(&rows, `SELECT count(*) FROM deliveries`); err != nil || rows != 0 {
		t.Errorf("a test send wrote %d ledger rows (%v)", rows, err)
	}
	if got, _ := f.store.IssueByID(ctx, f.issue.ID); got.Status != digest.StatusDraft || got.StartedAt != nil || got.ArchiveHTML != "" {
		t.Errorf("a test send changed the issue: %s", got.Status)
	}

	for _, bad := range []string{"", "not an address", "Eve <eve@example.org>", "a@example.org, b@example.org"} {
		if err := s.SendTest(ctx, f.issue.ID, bad); !errors.Is(err, digest.ErrInvalid) {
			t.Errorf("SendTest to %q: %v, want ErrInvalid", bad, err)
		}
	}
	if err := s.SendTest(ctx, 999999, "editor@example.org"); !errors.Is(err, digest.ErrNotFound) {
		t.Errorf("SendTest of an unknown issue: %v, want ErrNotFound", err)
	}
	if n := len(f.srv.Messages()); n != 1 {
		t.Errorf("%d messages after the refused ones, want 1", n)
	}
}
