package send

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	gomail "github.com/wneessen/go-mail"

	"newsletter/digest"
	"newsletter/internal/digesttest"
	"newsletter/internal/smtpout"
	"newsletter/internal/smtptest"
	"newsletter/internal/testdb"
	"newsletter/subscribers"
	"newsletter/subscribers/bounce"
)

// sendFixture is a database with readers and one assembled issue, and a real SMTP server.
type sendFixture struct {
	db    *sqlx.DB
	store *digest.Store
	srv   *smtptest.Server
	issue digest.Issue
}

// ledger is the fixture's ledger, as its senders see it.
func (f *sendFixture) ledger() ledger { return ledger{db: f.db, now: f.store.Now} }

func newSendFixture(t *testing.T, readers int) *sendFixture {
	t.Helper()
	db := testdb.New(t)
	digesttest.SeedReaders(t, db, "en", readers)
	digesttest.SeedArticles(t, db, "en", 4)
	store := digest.NewStore(db, nil)
	iss, err := store.Assemble(context.Background(), "en", 0)
	if err != nil {
		t.Fatal(err)
	}
	return &sendFixture{db: db, store: store, srv: smtptest.Start(t), issue: iss}
}

// testSender is a Sender against the fixture's SMTP server with quick retries.
func (f *sendFixture) sender(t *testing.T, tune func(*SenderOptions)) *Sender {
	t.Helper()
	client, err := gomail.NewClient(f.srv.Host, gomail.WithPort(f.srv.Port), gomail.WithTLSPolicy(gomail.NoTLS), gomail.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	opts := SenderOptions{From: "Weekly <digest@news.example>", BaseURL: "https://news.example", Publication: "The Test Weekly",
		Secret: []byte("test-secret-0123456789"), Concurrency: 3, Retry: smtpout.Policy{First: 20 * time.Millisecond, Max: 100 * time.Millisecond},
		Reconnect: smtpout.Policy{First: 10 * time.Millisecond}, BatchSize: 10}
	if tune != nil {
		tune(&opts)
	}
	s, err := NewSender(f.store, sendTestRenderer(t), subscribers.NewSigner(opts.Secret), subscribers.NewStore(f.db, opts.Secret), client, opts,
		slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})), nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

func (f *sendFixture) delivery(t *testing.T, email string) (status, lastError string, attempts int) {
	t.Helper()
	var row struct {
		Status    string `db:"status"`
		LastError string `db:"last_error"`
		Attempts  int    `db:"attempts"`
	}
	if err := f.db.Get(&row, `SELECT d.status, d.last_error, d.attempts FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
		WHERE d.issue_id = $1 AND s.email = $2`, f.issue.ID, email); err != nil {
		t.Fatal(err)
	}
	return row.Status, row.LastError, row.Attempts
}

// outcomeCase is one SMTP behaviour and what the ledger, the server and the reader must show.
type outcomeCase struct {
	name   string
	script func(srv *smtptest.Server)
	tune   func(*SenderOptions)
	// want for the target reader
	status       string
	attempts     int
	received     int
	errContains  string
	subscriber   string
	paused       bool
	issueStatus  string
	othersAllOut bool
}

func TestSendOutcomes(t *testing.T) {
	const target = "reader-3@example.org"
	tests := []outcomeCase{
		{name: "250 accepted", script: func(*smtptest.Server) {}, status: "sent", attempts: 1, received: 1, subscriber: "confirmed", issueStatus: "sent", othersAllOut: true},
		{name: "421 then accepted", script: func(s *smtptest.Server) { s.Script(target, smtptest.Answer{At: smtptest.AtRcpt, Code: 421}) },
			status: "sent", attempts: 2, received: 1, subscriber: "confirmed", issueStatus: "sent", othersAllOut: true},
		{name: "451 after data then accepted", script: func(s *smtptest.Server) {
			s.Script(target, smtptest.Answer{At: smtptest.AtData, Code: 451}, smtptest.Answer{At: smtptest.AtRcpt, Code: 451})
		}, status: "sent", attempts: 3, received: 1, subscriber: "confirmed", issueStatus: "sent", othersAllOut: true},
		{name: "550 bounces the reader", script: func(s *smtptest.Server) { s.Script(target, smtptest.Answer{At: smtptest.AtRcpt, Code: 550}) },
			status: "failed", attempts: 1, received: 0, errContains: "550", subscriber: "bounced", issueStatus: "sent", othersAllOut: true},
		{name: "554 after data bounces the reader", script: func(s *smtptest.Server) { s.Script(target, smtptest.Answer{At: smtptest.AtData, Code: 554}) },
			status: "failed", attempts: 1, received: 0, errContains: "554", subscriber: "bounced", issueStatus: "sent", othersAllOut: true},
		{name: "dropped mid-data is retried", script: func(s *smtptest.Server) { s.Script(target, smtptest.Answer{At: smtptest.AtData, Drop: true}) },
			status: "sent", attempts: 2, received: 1, subscriber: "confirmed", issueStatus: "sent", othersAllOut: true},
		{name: "dropped at rcpt is retried", script: func(s *smtptest.Server) { s.Script(target, smtptest.Answer{At: smtptest.AtRcpt, Drop: true}) },
			status: "sent", attempts: 2, received: 1, subscriber: "confirmed", issueStatus: "sent", othersAllOut: true},
		{name: "451 every time fails after the last attempt", script: func(s *smtptest.Server) {
			s.Script(target, smtptest.Answer{At: smtptest.AtRcpt, Code: 451}, smtptest.Answer{At: smtptest.AtRcpt, Code: 451}, smtptest.Answer{At: smtptest.AtRcpt, Code: 451})
		}, tune: func(o *SenderOptions) { o.Retry.Attempts = 3 },
			status: "failed", attempts: 3, received: 0, errContains: "451", subscriber: "confirmed", issueStatus: "sent", othersAllOut: true},
		{name: "5xx on MAIL FROM pauses the issue", script: func(s *smtptest.Server) {
			s.OnMail(func(string) error { return &smtp.SMTPError{Code: 553, Message: "sender not allowed"} })
		}, status: "queued", attempts: 0, received: 0, paused: true, subscriber: "confirmed", issueStatus: "paused"},
		{name: "failures in a row pause the issue", script: func(s *smtptest.Server) {
			s.OnRcpt(func(string) error { return &smtp.SMTPError{Code: 451, Message: "try later"} })
		}, tune: func(o *SenderOptions) {
			o.FailureStreak = 5
			o.Retry = smtpout.Policy{First: time.Hour, Max: time.Hour}
		},
			status: "", received: 0, paused: true, subscriber: "confirmed", issueStatus: "paused"},
	}
	for _, tc := range tests {
		for _, transport := range []string{"BDAT", "DATA"} {
			t.Run(tc.name+"/"+transport, func(t *testing.T) {
				f := newSendFixture(t, 12)
				tc.script(f.srv)
				s := f.sender(t, tc.tune)
				s.opts.NoChunking = transport == "DATA"
				checkOutcome(t, f, s, tc, target)
			})
		}
	}
}

func checkOutcome(t *testing.T, f *sendFixture, s *Sender, tc outcomeCase, target string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := s.SendIssue(ctx, f.issue.ID, nil)
	if tc.paused != errors.Is(err, ErrPaused) {
		t.Fatalf("SendIssue: %v (want paused: %v)", err, tc.paused)
	}
	if !tc.paused && err != nil {
		t.Fatal(err)
	}
	p, err := f.store.Progress(ctx, f.issue.ID)
	if err != nil {
		t.Fatal(err)
	}
	if p.Status != tc.issueStatus {
		t.Fatalf("issue status %q, want %q (%+v)", p.Status, tc.issueStatus, p)
	}
	if tc.paused && p.PauseReason == "" {
		t.Error("paused without a reason")
	}
	if tc.status != "" {
		status, lastErr, attempts := f.delivery(t, target)
		if status != tc.status || attempts != tc.attempts || !strings.Contains(lastErr, tc.errContains) {
			t.Errorf("target: %s after %d attempts (%q), want %s after %d (%q)", status, attempts, lastErr, tc.status, tc.attempts, tc.errContains)
		}
	}
	if got := len(f.srv.To(target)); got != tc.received {
		t.Errorf("target received %d messages, want %d", got, tc.received)
	}
	var subStatus string
	if err := f.db.Get(&subStatus, `SELECT status FROM subscribers WHERE email = $1`, target); err != nil || subStatus != tc.subscriber {
		t.Errorf("subscriber status %q (%v), want %q", subStatus, err, tc.subscriber)
	}
	if tc.othersAllOut {
		for i := 1; i <= 12; i++ {
			email := fmt.Sprintf("reader-%d@example.org", i)
			if email != target && len(f.srv.To(email)) != 1 {
				t.Errorf("%s received %d messages, want 1", email, len(f.srv.To(email)))
			}
		}
		if p.Queued != 0 || p.Sent+p.Failed != 12 {
			t.Errorf("progress %+v", p)
		}
	}
	if tc.paused {
		if p.Sent != 0 || p.Queued == 0 {
			t.Errorf("paused issue progress %+v", p)
		}
		var leased int
		if err := f.db.Get(&leased, `SELECT count(*) FROM deliveries WHERE claimed_by IS NOT NULL AND status = 'queued'`); err != nil || leased != 0 {
			t.Errorf("%d rows still leased after the pause (%v)", leased, err)
		}
	}
}

// TestSendSkipsReadersWhoLeft: the recipients are fixed when sending starts, but a reader who
// unsubscribes or bounces before their turn is not sent, and a bounced reader is left out of the
// next issue.
func TestSendSkipsReadersWhoLeft(t *testing.T) {
	f := newSendFixture(t, 6)
	ctx := context.Background()
	s := f.sender(t, nil)
	n, err := f.ledger().startSending(ctx, f.issue.ID)
	if err != nil || n != 6 {
		t.Fatalf("startSending = %d, %v", n, err)
	}
	if n, err := f.ledger().startSending(ctx, f.issue.ID); err != nil || n != 0 {
		t.Fatalf("startSending again = %d, %v; want 0, nil", n, err)
	}
	if _, err := f.db.Exec(`UPDATE subscribers SET status = 'unsubscribed', unsubscribed_at = now() WHERE email = 'reader-2@example.org'`); err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.Exec(`DELETE FROM subscribers WHERE email = 'reader-4@example.org'`); err != nil {
		t.Fatal(err)
	}
	if err := s.SendIssue(ctx, f.issue.ID, nil); err != nil {
		t.Fatal(err)
	}
	p, _ := f.store.Progress(ctx, f.issue.ID)
	if p.Sent != 4 || p.Skipped != 2 || p.Status != digest.StatusSent {
		t.Fatalf("progress %+v, want 4 sent, 2 skipped", p)
	}
	if len(f.srv.To("reader-2@example.org")) != 0 || len(f.srv.To("reader-4@example.org")) != 0 {
		t.Fatal("a reader who left was sent")
	}
	// Bounced readers are not in the next issue's ledger.
	if _, err := f.db.Exec(`UPDATE subscribers SET status = 'bounced', bounced_at = now() WHERE email = 'reader-5@example.org'`); err != nil {
		t.Fatal(err)
	}
	seedArticlesNow(t, f.db, "en", 2)
	next, err := f.store.Assemble(ctx, "en", 0)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := f.ledger().startSending(ctx, next.ID); err != nil || n != 3 {
		t.Fatalf("next issue has %d readers (%v), want 3", n, err)
	}
}

func seedArticlesNow(t *testing.T, db *sqlx.DB, lang string, n int) {
	t.Helper()
	for i := range n {
		if _, err := db.Exec(`INSERT INTO articles (lang, guid, title, link, published_at, first_seen_at)
			VALUES ($1, $2, 'Later story', 'https://site.example/later', now(), now())`, lang, fmt.Sprintf("later-%d", i)); err != nil {
			t.Fatal(err)
		}
	}
}

// TestSendMessageHeaders checks what one reader receives against the public interface.
func TestSendMessageHeaders(t *testing.T) {
	f := newSendFixture(t, 2)
	s := f.sender(t, nil)
	if err := s.SendIssue(context.Background(), f.issue.ID, nil); err != nil {
		t.Fatal(err)
	}
	msgs := f.srv.To("reader-1@example.org")
	if len(msgs) != 1 {
		t.Fatalf("%d messages", len(msgs))
	}
	v := parseMIME(t, msgs[0].Data)
	var uuid string
	if err := f.db.Get(&uuid, `SELECT uuid::text FROM subscribers WHERE email = 'reader-1@example.org'`); err != nil {
		t.Fatal(err)
	}
	signer := subscribers.NewSigner([]byte("test-secret-0123456789"))
	unsub := signer.IssueUnsubscribeURL("https://news.example", uuid, f.issue.ID)
	checks := map[string]string{
		"From":                  `"Weekly" <digest@news.example>`,
		"To":                    `"Reader 1" <reader-1@example.org>`,
		"Message-Id":            "<" + messageID([]byte("test-secret-0123456789"), f.issue.ID, uuid, "news.example") + ">",
		"List-Unsubscribe":      "<" + unsub + ">",
		"List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
		"List-Id":               `"The Test Weekly" <digest-en.news.example>`,
		"Precedence":            "bulk",
	}
	for k, want := range checks {
		if got := v.header.Get(k); got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if v.header.Get("Date") == "" || v.header.Get("Subject") == "" {
		t.Error("Date or Subject missing")
	}
	for _, part := range []string{v.text, v.html} {
		if !strings.Contains(part, unsub) || !strings.Contains(part, signer.ManageURL("https://news.example", uuid)) || !strings.Contains(part, "Reader 1") {
			t.Errorf("part lacks the reader's links or name")
		}
	}
	if msgs[0].From != "digest@news.example" {
		t.Errorf("envelope from %q", msgs[0].From)
	}
}

// TestSendReturnPath: with a ReturnPath, each copy's envelope sender is the reader's signed VERP
// address for the issue (the Return-Path a bounce comes back to), an editor's test copy goes from
// the plain bounce address, and a 5xx for an address is kept as a hard bounce from source smtp
// with the issue, the reader bounced and the address suppressed.
func TestSendReturnPath(t *testing.T) {
	const base = "bounces@news.example"
	f := newSendFixture(t, 3)
	secret := []byte("test-secret-0123456789")
	s := f.sender(t, func(o *SenderOptions) {
		o.ReturnPath = func(uuid string, issue int64) string { return bounce.Address(base, secret, uuid, issue) }
		o.TestReturnPath = base
	})
	f.srv.Script("reader-2@example.org", smtptest.Answer{At: smtptest.AtRcpt, Code: 550})
	if err := s.SendIssue(context.Background(), f.issue.ID, nil); err != nil {
		t.Fatal(err)
	}
	msgs := f.srv.Messages()
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want 2", len(msgs))
	}
	for _, m := range msgs {
		var want string
		if err := f.db.Get(&want, `SELECT uuid::text FROM subscribers WHERE email = $1`, m.To[0]); err != nil {
			t.Fatal(err)
		}
		uuid, issue, err := bounce.Parse(m.From, base, secret)
		if err != nil || uuid != want || issue != f.issue.ID {
			t.Errorf("envelope sender of %s: %q reads %q, %d, %v", m.To[0], m.From, uuid, issue, err)
		}
	}
	var ev []struct {
		What    string `db:"what"`
		IssueID int64  `db:"issue_id"`
		Reason  string `db:"reason"`
	}
	if err := f.db.Select(&ev, `SELECT kind || '/' || source || '/' || effect AS what, issue_id, reason FROM reader_events`); err != nil {
		t.Fatal(err)
	}
	if len(ev) != 1 || ev[0].What != "hard/smtp/bounced" || ev[0].IssueID != f.issue.ID || !strings.Contains(ev[0].Reason, "550") {
		t.Errorf("events %+v, want the refusal as a hard bounce of issue %d", ev, f.issue.ID)
	}
	var suppressed int
	if err := f.db.Get(&suppressed, `SELECT count(*) FROM suppressions WHERE reason = 'bounced'`); err != nil || suppressed != 1 {
		t.Errorf("%d bounced suppressions (%v), want 1", suppressed, err)
	}
	if err := s.SendTest(context.Background(), f.issue.ID, "editor@example.org"); err != nil {
		t.Fatal(err)
	}
	if got := f.srv.To("editor@example.org"); len(got) != 1 || got[0].From != base {
		t.Errorf("test send: %+v, want one from the plain bounce address", got)
	}
}

// TestSendTwoSendersOneIssue: two senders (separate connection pools, separate owners) work on
// one issue at once; each reader gets exactly one message.
func TestSendTwoSendersOneIssue(t *testing.T) {
	f := newSendFixture(t, 400)
	f.srv.SetMode(smtptest.KeepHeaders)
	f.srv.SetDelay(time.Millisecond)
	ctx := context.Background()
	if _, err := f.sender(t, nil).Start(ctx, f.issue.ID); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i := range 2 {
		db2, err := sqlx.Open("postgres", dsnOf(t, f.db))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db2.Close() })
		g := &sendFixture{db: db2, store: digest.NewStore(db2, nil), srv: f.srv, issue: f.issue}
		s := g.sender(t, nil)
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.SendIssue(ctx, f.issue.ID, nil)
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, m := range f.srv.Messages() {
		seen[m.To[0]]++
	}
	for i := 1; i <= 400; i++ {
		if n := seen[fmt.Sprintf("reader-%d@example.org", i)]; n != 1 {
			t.Fatalf("reader-%d received %d messages", i, n)
		}
	}
}

// dsnOf returns the URL of the fixture's database (its current_database on the test server).
func dsnOf(t *testing.T, db *sqlx.DB) string {
	t.Helper()
	var name string
	if err := db.Get(&name, `SELECT current_database()`); err != nil {
		t.Fatal(err)
	}
	u := testdb.ServerURL()
	i := strings.LastIndex(u, "/")
	j := strings.Index(u[i:], "?")
	if j < 0 {
		return u[:i+1] + name
	}
	return u[:i+1] + name + u[i+j:]
}

// TestPauseResumeCancel drives the editor controls through the Store.
func TestPauseResumeCancel(t *testing.T) {
	f := newSendFixture(t, 3)
	ctx := context.Background()
	if err := f.store.Pause(ctx, f.issue.ID, "x"); !errors.Is(err, digest.ErrConflict) {
		t.Fatalf("pausing a draft: %v, want ErrConflict", err)
	}
	if _, err := f.ledger().startSending(ctx, f.issue.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.store.Pause(ctx, f.issue.ID, "editor wants a fix"); err != nil {
		t.Fatal(err)
	}
	s := f.sender(t, nil)
	if err := s.SendIssue(ctx, f.issue.ID, nil); !errors.Is(err, ErrPaused) || !strings.Contains(err.Error(), "editor wants a fix") {
		t.Fatalf("sending a paused issue: %v", err)
	}
	if err := f.store.Resume(ctx, f.issue.ID); err != nil {
		t.Fatal(err)
	}
	if err := f.store.Cancel(ctx, f.issue.ID); err != nil {
		t.Fatal(err)
	}
	p, _ := f.store.Progress(ctx, f.issue.ID)
	if p.Status != digest.StatusCancelled || p.Skipped != 3 || len(f.srv.Messages()) != 0 {
		t.Fatalf("after cancel: %+v, %d messages", p, len(f.srv.Messages()))
	}
	if err := f.store.Resume(ctx, f.issue.ID); !errors.Is(err, digest.ErrConflict) {
		t.Fatalf("resuming a cancelled issue: %v", err)
	}
	if err := f.store.Pause(ctx, 999999, "x"); !errors.Is(err, digest.ErrNotFound) {
		t.Fatalf("pausing a missing issue: %v", err)
	}
}

// BenchmarkSendIssue sends an issue to b.N readers through a discard SMTP server (profiling aid;
// `newsletter bench send` is the full benchmark).
func BenchmarkSendIssue(b *testing.B) {
	db := testdb.New(b)
	digesttest.SeedReaders(b, db, "en", b.N)
	digesttest.SeedArticles(b, db, "en", 12)
	store := digest.NewStore(db, nil)
	iss, err := store.Assemble(context.Background(), "en", 0)
	if err != nil {
		b.Fatal(err)
	}
	srv := smtptest.Start(b)
	srv.SetMode(smtptest.Discard)
	client, err := gomail.NewClient(srv.Host, gomail.WithPort(srv.Port), gomail.WithTLSPolicy(gomail.NoTLS))
	if err != nil {
		b.Fatal(err)
	}
	secret := []byte("bench-secret-0123456789")
	s, err := NewSender(store, sendTestRenderer(b), subscribers.NewSigner(secret), subscribers.NewStore(db, secret), client,
		SenderOptions{From: "Weekly <digest@news.example>", BaseURL: "https://news.example", Secret: secret, Concurrency: benchConcurrency}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := s.Start(context.Background(), iss.ID); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	if err := s.SendIssue(context.Background(), iss.ID, nil); err != nil {
		b.Fatal(err)
	}
	if srv.Count() != b.N {
		b.Fatalf("%d sent", srv.Count())
	}
}

var benchConcurrency = 4

// TestRunContinuesAndStopsCleanly: serve's worker picks up an issue left in 'sending' (as a
// crashed process leaves it); cancelling its context mid-way finishes the messages in flight and
// hands the rest back unleased; a later Run finishes the issue, each reader once.
func TestRunContinuesAndStopsCleanly(t *testing.T) {
	const readers = 300
	f := newSendFixture(t, readers)
	f.srv.SetMode(smtptest.KeepHeaders)
	f.srv.SetDelay(2 * time.Millisecond)
	ctx := context.Background()
	if _, err := f.ledger().startSending(ctx, f.issue.ID); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s := f.sender(t, func(o *SenderOptions) { o.Poll = 50 * time.Millisecond })
	s.metrics = newSenderMetrics(reg)

	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(runCtx) }()
	for f.srv.Count() < readers/3 {
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context ended")
	}
	var leased, sent int
	if err := f.db.Get(&leased, `SELECT count(*) FROM deliveries WHERE status = 'queued' AND claimed_by IS NOT NULL`); err != nil || leased != 0 {
		t.Fatalf("%d rows still leased after the stop (%v)", leased, err)
	}
	if err := f.db.Get(&sent, `SELECT count(*) FROM deliveries WHERE status = 'sent'`); err != nil || sent != f.srv.Count() || sent >= readers {
		t.Fatalf("%d rows sent, the server got %d (%v)", sent, f.srv.Count(), err)
	}

	runCtx, stop = context.WithCancel(ctx)
	defer stop()
	go func() { done <- s.Run(runCtx) }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		p, err := f.store.Progress(ctx, f.issue.ID)
		if err != nil {
			t.Fatal(err)
		}
		if p.Status == digest.StatusSent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("issue not finished: %+v", p)
		}
		time.Sleep(20 * time.Millisecond)
	}
	seen := map[string]int{}
	for _, m := range f.srv.Messages() {
		seen[m.To[0]]++
	}
	for i := 1; i <= readers; i++ {
		if n := seen[fmt.Sprintf("reader-%d@example.org", i)]; n != 1 {
			t.Fatalf("reader-%d received %d messages", i, n)
		}
	}
	if got := testutil.ToFloat64(s.metrics.sent); got != readers {
		t.Errorf("newsletter_digest_sent_total = %v, want %d", got, readers)
	}
	if n, err := testutil.GatherAndCount(reg, "newsletter_digest_send_seconds", "newsletter_digest_queue_depth", "newsletter_digest_failed_total", "newsletter_digest_retried_total"); err != nil || n != 4 {
		t.Errorf("metrics gathered: %d (%v)", n, err)
	}
}

// TestLateMarksLeaveSentRowsAlone: a retry or failure mark written late (the database was away
// while another sender took the row over and had its message accepted) must not turn a sent row
// back into a queued one, which would send the reader a second copy, nor into a failed one.
func TestLateMarksLeaveSentRowsAlone(t *testing.T) {
	f := newSendFixture(t, 2)
	ctx := context.Background()
	l := f.ledger()
	if _, err := l.startSending(ctx, f.issue.ID); err != nil {
		t.Fatal(err)
	}
	rows, err := l.claim(ctx, f.issue.ID, 1, 2, time.Minute, 0)
	if err != nil || len(rows) != 2 {
		t.Fatalf("claim = %v, %v", rows, err)
	}
	rec, err := l.newRecorder(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.close()
	ids := []int64{rows[0].SubscriberID, rows[1].SubscriberID}
	if err := rec.markSent(ctx, f.issue.ID, ids); err != nil {
		t.Fatal(err)
	}
	if failed, err := l.markRetry(ctx, f.issue.ID, ids[0], "451 try again later", time.Second, false); err != nil || failed {
		t.Fatalf("late markRetry = %v, %v", failed, err)
	}
	if err := l.markFailed(ctx, f.issue.ID, ids[1], "550 no such user"); err != nil {
		t.Fatal(err)
	}
	for _, email := range []string{rows[0].Email, rows[1].Email} {
		if status, lastErr, attempts := f.delivery(t, email); status != digest.DeliverySent || lastErr != "" || attempts != 1 {
			t.Errorf("%s after a late mark: %s (%q), %d attempts; want sent, 1 attempt", email, status, lastErr, attempts)
		}
	}
}
