package send

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"net/mail"
	"strings"
	"testing"

	"github.com/emersion/go-msgauth/dkim"

	"newsletter/digest/render"
	"newsletter/internal/smtpout"
)

// TestDKIMSignedMessagesVerify sends an issue signed with each kind of key and verifies what the
// SMTP server received with go-msgauth's verifier, the public key served by a stub DNS lookup.
func TestDKIMSignedMessagesVerify(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	pkcs8 := func(k any) []byte {
		b, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: b})
	}
	rsaPub, _ := x509.MarshalPKIXPublicKey(&rsaKey.PublicKey)
	tests := []struct {
		name string
		pem  []byte
		txt  string
	}{
		{"rsa pkcs1", pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(rsaKey)}),
			"v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(rsaPub)},
		{"rsa pkcs8", pkcs8(rsaKey), "v=DKIM1; k=rsa; p=" + base64.StdEncoding.EncodeToString(rsaPub)},
		{"ed25519", pkcs8(edKey), "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(edKey.Public().(ed25519.PublicKey))},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			signer, err := smtpout.NewDKIMSigner("news.example", "digest2026", tc.pem)
			if err != nil {
				t.Fatal(err)
			}
			f := newSendFixture(t, 3)
			if _, err := f.db.Exec(`UPDATE subscribers SET name = 'Анна Каренина' WHERE email = 'reader-1@example.org'`); err != nil {
				t.Fatal(err)
			}
			s := f.sender(t, func(o *SenderOptions) { o.DKIM = signer })
			if err := s.SendIssue(context.Background(), f.issue.ID, nil); err != nil {
				t.Fatal(err)
			}
			msgs := f.srv.Messages()
			if len(msgs) != 3 {
				t.Fatalf("%d messages", len(msgs))
			}
			lookup := func(domain string) ([]string, error) {
				if domain != "digest2026._domainkey.news.example" {
					return nil, errors.New("no such record: " + domain)
				}
				return []string{tc.txt}, nil
			}
			for _, m := range msgs {
				vs, err := dkim.VerifyWithOptions(bytes.NewReader(m.Data), &dkim.VerifyOptions{LookupTXT: lookup})
				if err != nil || len(vs) != 1 {
					t.Fatalf("verify: %v (%d signatures)", err, len(vs))
				}
				if vs[0].Err != nil || vs[0].Domain != "news.example" {
					t.Fatalf("signature of %v: %v (domain %q)", m.To, vs[0].Err, vs[0].Domain)
				}
				for _, h := range []string{"from", "to", "subject", "message-id", "list-unsubscribe", "list-unsubscribe-post"} {
					found := false
					for _, k := range vs[0].HeaderKeys {
						found = found || strings.EqualFold(k, h)
					}
					if !found {
						t.Errorf("%s is not signed (h=%v)", h, vs[0].HeaderKeys)
					}
				}
				// A changed body must fail: the verifier is not a rubber stamp.
				tampered := bytes.Replace(m.Data, []byte("Story 1"), []byte("Story 9"), 1)
				if vs, err := dkim.VerifyWithOptions(bytes.NewReader(tampered), &dkim.VerifyOptions{LookupTXT: lookup}); err == nil && len(vs) == 1 && vs[0].Err == nil {
					t.Fatal("a tampered message verified")
				}
			}
		})
	}
}

// BenchmarkDKIMSign is the signing cost per reader for a digest of realistic size.
func BenchmarkDKIMSign(b *testing.B) {
	r := sendTestRenderer(b)
	c := sendTestContent("en", 1, 14)
	rendered, err := r.Render(c, render.Recipient{Name: render.MarkName, UnsubscribeURL: render.MarkUnsub, ManageURL: render.MarkManage})
	if err != nil {
		b.Fatal(err)
	}
	tmpl, err := buildTemplate(rendered, messageHeaders{From: &mail.Address{Address: "digest@news.example"}, Subject: rendered.Subject, ListID: "<digest-en.news.example>"})
	if err != nil {
		b.Fatal(err)
	}
	msg := tmpl.fill(nil, &readerValues{Email: "a@example.org", Name: "Anna", MessageID: "x@news.example", Unsub: "https://news.example/u/x", Manage: "https://news.example/m/x", To: "<a@example.org>"})
	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	_, edKey, _ := ed25519.GenerateKey(rand.Reader)
	for _, k := range []struct {
		name string
		key  any
	}{{"rsa2048", rsaKey}, {"ed25519", edKey}} {
		der, _ := x509.MarshalPKCS8PrivateKey(k.key)
		signer, err := smtpout.NewDKIMSigner("news.example", "s", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(k.name, func(b *testing.B) {
			b.SetBytes(int64(len(msg)))
			var out []byte
			for b.Loop() {
				if out, err = signer.Sign(out[:0], msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
