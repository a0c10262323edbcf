package send

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"log/slog"
	"testing"
	"time"

	gomail "github.com/wneessen/go-mail"

	"newsletter/digest"
	"newsletter/internal/digesttest"
	"newsletter/internal/mailpittest"
	"newsletter/internal/postfixtest"
	"newsletter/internal/smtptest"
	"newsletter/internal/testdb"
	"newsletter/subscribers"
)

// BenchmarkSendRelay sends one issue to b.N readers over 8 connections to each kind of server
// and reports the engine's messages/s: our in-process sink (discarding), Postfix from Debian with
// its strict settings (which writes every message to its queue before it answers), Postfix without
// CHUNKING (DATA, pipelined), and Mailpit. Run with a fixed count, e.g.
//
//	go test ./digest/send/ -run '^$' -bench SendRelay -benchtime 2000x
func BenchmarkSendRelay(b *testing.B) {
	type relay struct {
		host  string
		port  int
		roots *x509.CertPool
	}
	cases := []struct {
		name  string
		start func(b *testing.B) relay
	}{
		{"go-smtp", func(b *testing.B) relay {
			s := smtptest.Start(b)
			s.SetMode(smtptest.Discard)
			return relay{host: s.Host, port: s.Port}
		}},
		{"Postfix", func(b *testing.B) relay {
			p := postfixtest.Start(b, postfixtest.Options{})
			p.Sink().SetMode(smtptest.Discard)
			return relay{host: p.Host, port: p.Port}
		}},
		{"Postfix without CHUNKING", func(b *testing.B) relay {
			p := postfixtest.Start(b, postfixtest.Options{DiscardEHLO: []string{"chunking"}})
			p.Sink().SetMode(smtptest.Discard)
			return relay{host: p.Host, port: p.Port}
		}},
		{"Mailpit", func(b *testing.B) relay {
			m := mailpittest.Start(b, mailpittest.Options{})
			return relay{host: m.Host, port: m.SMTPPort}
		}},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			db := testdb.New(b)
			digesttest.SeedReaders(b, db, "en", b.N)
			digesttest.SeedArticles(b, db, "en", 4)
			store := digest.NewStore(db, nil)
			iss, err := store.Assemble(context.Background(), "en", 0)
			if err != nil {
				b.Fatal(err)
			}
			r := tc.start(b)
			opts := []gomail.Option{gomail.WithPort(r.port), gomail.WithTLSPolicy(gomail.NoTLS), gomail.WithTimeout(30 * time.Second)}
			if r.roots != nil {
				opts = append(opts, gomail.WithTLSPolicy(gomail.TLSMandatory), gomail.WithTLSConfig(&tls.Config{ServerName: r.host, RootCAs: r.roots}))
			}
			client, err := gomail.NewClient(r.host, opts...)
			if err != nil {
				b.Fatal(err)
			}
			secret := []byte("bench-secret-0123456789")
			s, err := NewSender(store, sendTestRenderer(b), subscribers.NewSigner(secret), subscribers.NewStore(db, secret), client,
				SenderOptions{From: "Weekly <digest@news.example>", BaseURL: "https://news.example", Publication: "The Bench Weekly",
					Secret: secret, Concurrency: 8}, slog.New(slog.DiscardHandler), nil)
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			if err := s.SendIssue(context.Background(), iss.ID, nil); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			var sent int
			if err := db.Get(&sent, `SELECT count(*) FROM deliveries WHERE status = 'sent'`); err != nil || sent != b.N {
				b.Fatalf("%d of %d sent (%v)", sent, b.N, err)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}
