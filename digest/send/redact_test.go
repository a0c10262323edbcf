package send

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	gomail "github.com/wneessen/go-mail"

	"newsletter/internal/smtpout"
	"newsletter/subscribers"
)

// TestRefusalTextsKeepNoAddress: servers quote the recipient in their refusals, in their own
// case, sometimes by local part only. What the sender keeps of them (the ledger's last error, the
// hard bounce's reason) and what it logs, at debug level, holds neither.
func TestRefusalTextsKeepNoAddress(t *testing.T) {
	f := newSendFixture(t, 3)
	f.srv.OnRcpt(func(to string) error {
		switch to {
		case "reader-2@example.org":
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1},
				Message: "<READER-2@Example.ORG>: Recipient address rejected: mailbox reader-2 unknown"}
		case "reader-3@example.org":
			return &smtp.SMTPError{Code: 452, EnhancedCode: smtp.EnhancedCode{4, 2, 2}, Message: "reader-3@example.org over quota"}
		}
		return nil
	})
	client, err := gomail.NewClient(f.srv.Host, gomail.WithPort(f.srv.Port), gomail.WithTLSPolicy(gomail.NoTLS), gomail.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var logs bytes.Buffer
	opts := SenderOptions{From: "Weekly <digest@news.example>", BaseURL: "https://news.example", Publication: "The Test Weekly",
		Secret: []byte("test-secret-0123456789"), Concurrency: 2, Retry: smtpout.Policy{First: 5 * time.Millisecond, Max: 10 * time.Millisecond, Attempts: 2},
		Reconnect: smtpout.Policy{First: 10 * time.Millisecond}, BatchSize: 10}
	s, err := NewSender(f.store, sendTestRenderer(t), subscribers.NewSigner(opts.Secret), subscribers.NewStore(f.db, opts.Secret), client, opts,
		slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})), nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendIssue(context.Background(), f.issue.ID, nil); err != nil {
		t.Fatal(err)
	}
	var texts []string
	if err := f.db.Select(&texts, `SELECT last_error FROM deliveries WHERE last_error <> '' UNION ALL SELECT reason FROM reader_events`); err != nil {
		t.Fatal(err)
	}
	if len(texts) < 3 {
		t.Fatalf("kept texts %q, want the two failures and the hard bounce", texts)
	}
	for _, txt := range append(texts, logs.String()) {
		for _, bad := range []string{"reader-2", "reader-3"} {
			if strings.Contains(strings.ToLower(txt), bad) {
				t.Errorf("%q holds %q", txt, bad)
			}
		}
	}
	for _, txt := range texts {
		if !strings.Contains(txt, "<address>") {
			t.Errorf("%q: the address was not marked where it stood", txt)
		}
	}
}
