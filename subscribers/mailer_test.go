package subscribers

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"mime/multipart"
	"net"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/emersion/go-msgauth/dkim"
	"github.com/emersion/go-smtp"
	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/wneessen/go-mail"
	gmsmtp "github.com/wneessen/go-mail/smtp"

	"newsletter/internal/smtpout"
	"newsletter/internal/smtptest"
	"newsletter/internal/testdb"
	"newsletter/subscribers/bounce"
	"newsletter/templates"
)

const mailerBaseURL = "http://news.test"

// mailerFixture is a Mailer on a real database, sending through a real SMTP client.
type mailerFixture struct {
	t      *testing.T
	db     *sqlx.DB
	store  *Store
	signer *Signer
	cat    *templates.Catalog
	m      *Mailer
	logs   *syncBuffer
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

func smtpClient(t *testing.T, port int) *mail.Client {
	t.Helper()
	c, err := mail.NewClient("127.0.0.1", mail.WithPort(port), mail.WithTLSPolicy(mail.NoTLS), mail.WithTimeout(5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func newMailerFixture(t *testing.T, client smtpout.Dialer, opts MailerOptions) *mailerFixture {
	t.Helper()
	db := testdb.New(t)
	fsys := templates.FS("")
	cat, err := templates.LoadCatalog(fsys)
	if err != nil {
		t.Fatal(err)
	}
	f := &mailerFixture{t: t, db: db, store: NewStore(db, dataSecret), signer: NewSigner(dataSecret), cat: cat, logs: &syncBuffer{}}
	opts.BaseURL = mailerBaseURL
	opts.From = "Тестовый дайджест <digest@news.test>"
	opts.Publication = "Вестник"
	if opts.Poll == 0 {
		opts.Poll = 20 * time.Millisecond
	}
	log := slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.m, err = NewMailer(f.store, client, f.signer, fsys, cat, opts, log, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// run runs the mailer until the test ends.
func (f *mailerFixture) run() {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { f.m.Run(ctx); close(done) }()
	f.t.Cleanup(func() { cancel(); <-done })
}

var confirmLink = regexp.MustCompile(regexp.QuoteMeta(mailerBaseURL) + `/confirm/[A-Za-z0-9_-]+`)

// mimeParts checks the message is multipart/alternative with text/plain then text/html, both
// UTF-8, and returns the decoded bodies.
func mimeParts(t *testing.T, m smtptest.Message) (header map[string][]string, text, html string) {
	t.Helper()
	msg, err := m.Parsed()
	if err != nil {
		t.Fatalf("message does not parse: %v", err)
	}
	mt, params, err := mime.ParseMediaType(msg.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/alternative" {
		t.Fatalf("Content-Type = %q (%v), want multipart/alternative", msg.Header.Get("Content-Type"), err)
	}
	mr := multipart.NewReader(msg.Body, params["boundary"])
	var types []string
	var bodies []string
	for {
		p, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("part: %v", err)
		}
		pt, pp, err := mime.ParseMediaType(p.Header.Get("Content-Type"))
		if err != nil {
			t.Fatalf("part Content-Type: %v", err)
		}
		if !strings.EqualFold(pp["charset"], "utf-8") {
			t.Errorf("part %s charset = %q, want UTF-8", pt, pp["charset"])
		}
		b, err := io.ReadAll(p) // multipart decodes quoted-printable itself
		if err != nil {
			t.Fatal(err)
		}
		types = append(types, pt)
		bodies = append(bodies, string(b))
	}
	if len(types) != 2 || types[0] != "text/plain" || types[1] != "text/html" {
		t.Fatalf("parts = %v, want [text/plain text/html]", types)
	}
	return msg.Header, bodies[0], bodies[1]
}

func TestMailerDeliversConfirmation(t *testing.T) {
	srv := smtptest.Start(t)
	f := newMailerFixture(t, smtpClient(t, srv.Port), MailerOptions{})
	ctx := context.Background()
	if err := f.store.Subscribe(ctx, " Reader@Example.COM ", "Анна", "ru", Consent{Source: "form", TextVersion: "v1"}); err != nil {
		t.Fatal(err)
	}
	f.run()
	f.m.Wake()
	msgs := srv.WaitFor(t, 1, 10*time.Second)
	if len(msgs) != 1 || len(msgs[0].To) != 1 || msgs[0].To[0] != "Reader@example.com" {
		t.Fatalf("got %d messages to %v, want one to Reader@example.com", len(msgs), msgs[0].To)
	}
	header, text, html := mimeParts(t, msgs[0])

	rawSubject := header["Subject"][0]
	if !strings.HasPrefix(rawSubject, "=?UTF-8?") && !strings.HasPrefix(rawSubject, "=?utf-8?") {
		t.Errorf("Subject %q is not RFC 2047 encoded", rawSubject)
	}
	subject, err := new(mime.WordDecoder).DecodeHeader(rawSubject)
	if want := f.cat.T("ru", "email.confirm.subject", "Вестник"); err != nil || subject != want {
		t.Errorf("Subject = %q (%v), want %q", subject, err, want)
	}
	if !strings.Contains(subject, "Подтвердите") {
		t.Errorf("Subject %q is not Russian", subject)
	}
	from, err := new(mime.WordDecoder).DecodeHeader(header["From"][0])
	if err != nil || !strings.Contains(from, "<digest@news.test>") {
		t.Errorf("From = %q", from)
	}
	// The publication is named in the subject and the masthead only (see confirm.html).
	if !strings.Contains(html, "Вестник") {
		t.Errorf("the HTML part has no masthead:\n%s", html)
	}
	for name, body := range map[string]string{"text": text, "html": html} {
		// The name a request carried is no part of the confirmation (TestConfirmationCarriesNoName).
		if !strings.Contains(body, "Здравствуйте!") || strings.Contains(body, "Анна") || !strings.Contains(body, "наш еженедельный дайджест") {
			t.Errorf("%s part is not the Russian greeting without a name:\n%s", name, body)
		}
		if !strings.Contains(body, "7 дней") {
			t.Errorf("%s part lacks the expiry in Russian plural form", name)
		}
	}
	link := confirmLink.FindString(text)
	if link == "" || !strings.Contains(html, `href="`+link+`"`) {
		t.Fatalf("confirm link %q missing from the text or the html part", link)
	}
	uuid, issued, err := f.signer.Verify(PurposeConfirm, strings.TrimPrefix(link, mailerBaseURL+"/confirm/"), time.Now())
	if err != nil {
		t.Fatalf("link does not verify: %v", err)
	}
	s, err := f.store.Confirm(ctx, uuid, issued)
	if err != nil || s.Status != StatusConfirmed || s.Email != "Reader@example.com" {
		t.Fatalf("Confirm through the emailed link = %+v, %v", s, err)
	}
	waitFor(t, "outbox row marked sent", func() bool {
		var n int
		f.db.Get(&n, `SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL`)
		return n == 1
	})
	if got := testutil.ToFloat64(f.m.sent); got != 1 {
		t.Errorf("sent counter = %v, want 1", got)
	}
	if logs := f.logs.String(); strings.Contains(strings.ToLower(logs), "reader@example.com") || strings.Contains(logs, "/confirm/") {
		t.Errorf("logs carry the address or the link:\n%s", logs)
	}
}

// With a bounce address, a confirmation's envelope sender is the reader's signed VERP address
// of no issue; without one, From's address.
func TestMailerReturnPath(t *testing.T) {
	for _, base := range []string{"", "bounces@news.test"} {
		srv := smtptest.Start(t)
		f := newMailerFixture(t, smtpClient(t, srv.Port), MailerOptions{BounceAddress: base})
		if err := f.store.Subscribe(context.Background(), "reader@example.com", "", "en", formConsent); err != nil {
			t.Fatal(err)
		}
		f.run()
		f.m.Wake()
		msg := srv.WaitFor(t, 1, 10*time.Second)[0]
		if base == "" {
			if msg.From != "digest@news.test" {
				t.Errorf("envelope sender %q without a bounce address, want From's", msg.From)
			}
			continue
		}
		uuid, issue, err := bounce.Parse(msg.From, base, dataSecret)
		if err != nil || uuid != reader(t, f.db, "reader@example.com").UUID || issue != 0 {
			t.Errorf("envelope sender %q: %q, %d, %v; want the reader's VERP address of no issue", msg.From, uuid, issue, err)
		}
	}
}

// TestConfirmationCarriesNoName: the name came with the request, typed by whoever made it, and
// the confirmation goes to an address nobody has vouched for, so no part of it (the headers, To's
// display name included, and both bodies) carries that name.
func TestConfirmationCarriesNoName(t *testing.T) {
	const name = "WIN $500 → evil.example/claim"
	for _, lang := range []string{"en", "ru"} {
		srv := smtptest.Start(t)
		f := newMailerFixture(t, smtpClient(t, srv.Port), MailerOptions{})
		if err := f.store.Subscribe(context.Background(), "victim@example.com", name, lang, formConsent); err != nil {
			t.Fatal(err)
		}
		if got := reader(t, f.db, "victim@example.com").Name; got != name {
			t.Fatalf("stored name %q, want %q (the reader's own pages still show it)", got, name)
		}
		f.run()
		f.m.Wake()
		msg := srv.WaitFor(t, 1, 10*time.Second)[0]
		header, text, html := mimeParts(t, msg)
		var all strings.Builder
		dec := new(mime.WordDecoder)
		for k, vs := range header {
			for _, v := range vs {
				d, err := dec.DecodeHeader(v)
				if err != nil {
					d = v
				}
				fmt.Fprintf(&all, "%s: %s\n", k, d)
			}
		}
		all.WriteString(text + html + string(msg.Data))
		for _, bad := range []string{"evil.example", "WIN", "$500"} {
			if strings.Contains(all.String(), bad) {
				t.Errorf("%s confirmation carries %q of the name:\n%s", lang, bad, all.String())
			}
		}
		if want := f.cat.T(lang, "email.confirm.greeting_anon"); !strings.HasPrefix(text, want) || !strings.Contains(html, want) {
			t.Errorf("%s confirmation does not greet with %q:\n%s", lang, want, text)
		}
	}
}

func TestMailerEnglishWithoutName(t *testing.T) {
	srv := smtptest.Start(t)
	f := newMailerFixture(t, smtpClient(t, srv.Port), MailerOptions{})
	if err := f.store.Subscribe(context.Background(), "plain@example.com", "", "en", Consent{Source: "api", TextVersion: "v1"}); err != nil {
		t.Fatal(err)
	}
	f.run()
	f.m.Wake()
	msgs := srv.WaitFor(t, 1, 10*time.Second)
	header, text, _ := mimeParts(t, msgs[0])
	subject, _ := new(mime.WordDecoder).DecodeHeader(header["Subject"][0])
	if subject != "Confirm your subscription to Вестник" {
		t.Errorf("Subject = %q", subject)
	}
	if !strings.HasPrefix(text, "Hello,\r\n") && !strings.HasPrefix(text, "Hello,\n") {
		t.Errorf("text part starts %q, want the anonymous greeting", text[:min(40, len(text))])
	}
	if !strings.Contains(header["Message-Id"][0], "@news.test>") {
		t.Errorf("Message-ID %q not on the From domain", header["Message-Id"][0])
	}
}

// switchClient connects through whichever client is current, so a test can bring SMTP up later.
type switchClient struct{ c atomic.Pointer[mail.Client] }

func (s *switchClient) DialToSMTPClientWithContext(ctx context.Context) (*gmsmtp.Client, error) {
	return s.c.Load().DialToSMTPClientWithContext(ctx)
}

// deadPort returns a loopback port nobody listens on.
func deadPort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	return port
}

func TestMailerRetriesUntilSMTPIsUp(t *testing.T) {
	tests := []struct {
		name string
		down func(t *testing.T, srv *smtptest.Server, sw *switchClient) (up func())
	}{
		{"connection refused", func(t *testing.T, srv *smtptest.Server, sw *switchClient) func() {
			sw.c.Store(smtpClient(t, deadPort(t)))
			return func() { sw.c.Store(smtpClient(t, srv.Port)) }
		}},
		{"451 temporary failure", func(t *testing.T, srv *smtptest.Server, sw *switchClient) func() {
			sw.c.Store(smtpClient(t, srv.Port))
			var refuse atomic.Bool
			refuse.Store(true)
			srv.OnData(func(smtptest.Message) error {
				if refuse.Load() {
					return &smtp.SMTPError{Code: 451, EnhancedCode: smtp.EnhancedCode{4, 3, 0}, Message: "try later, Retry@example.com"}
				}
				return nil
			})
			return func() { refuse.Store(false) }
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := smtptest.Start(t)
			sw := &switchClient{}
			up := tc.down(t, srv, sw)
			f := newMailerFixture(t, sw, MailerOptions{Retry: smtpout.Policy{First: 10 * time.Millisecond, Max: 40 * time.Millisecond}})
			if err := f.store.Subscribe(context.Background(), "Retry@example.com", "", "en", Consent{Source: "form", TextVersion: "v1"}); err != nil {
				t.Fatal(err)
			}
			f.run()
			f.m.Wake()
			waitFor(t, "three failed attempts", func() bool { return testutil.ToFloat64(f.m.failed) >= 3 })
			if n := len(srv.Messages()); n != 0 {
				t.Fatalf("%d messages arrived while SMTP was down", n)
			}
			var lastError string
			f.db.Get(&lastError, `SELECT last_error FROM outbox`)
			if lastError == "" || strings.Contains(strings.ToLower(lastError), "retry@example.com") {
				t.Errorf("last_error = %q, want the failure without the address", lastError)
			}
			up()
			msgs := srv.WaitFor(t, 1, 10*time.Second)
			if msgs[0].To[0] != "Retry@example.com" {
				t.Errorf("to %v", msgs[0].To)
			}
			_, text, _ := mimeParts(t, msgs[0])
			if confirmLink.FindString(text) == "" {
				t.Error("no confirm link in the retried email")
			}
			logs := f.logs.String()
			if !strings.Contains(logs, "will retry") {
				t.Errorf("no retry warning logged:\n%s", logs)
			}
			if strings.Contains(strings.ToLower(logs), "retry@example.com") || strings.Contains(logs, "/confirm/") {
				t.Errorf("logs carry the address or the link:\n%s", logs)
			}
			waitFor(t, "outbox row marked sent", func() bool {
				var n int
				f.db.Get(&n, `SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL`)
				return n == 1
			})
			if got := len(srv.Messages()); got != 1 {
				t.Errorf("%d messages, want exactly 1", got)
			}
		})
	}
}

func TestMailerSkipsReadersNoLongerPending(t *testing.T) {
	srv := smtptest.Start(t)
	f := newMailerFixture(t, smtpClient(t, srv.Port), MailerOptions{})
	ctx := context.Background()
	for _, email := range []string{"left@example.com", "stays@example.com"} {
		if err := f.store.Subscribe(ctx, email, "", "en", Consent{Source: "form", TextVersion: "v1"}); err != nil {
			t.Fatal(err)
		}
	}
	var uuid string
	f.db.Get(&uuid, `SELECT uuid FROM subscribers WHERE email = 'left@example.com'`)
	if _, err := f.store.Unsubscribe(ctx, uuid); err != nil {
		t.Fatal(err)
	}
	f.m.drain(ctx)
	msgs := srv.Messages()
	if len(msgs) != 1 || msgs[0].To[0] != "stays@example.com" {
		t.Fatalf("messages %+v, want one to stays@example.com", msgs)
	}
	var skipped int
	f.db.Get(&skipped, `SELECT count(*) FROM outbox o JOIN subscribers s ON s.id = o.subscriber_id
		WHERE s.email = 'left@example.com' AND o.skipped_at IS NOT NULL AND o.sent_at IS NULL`)
	if skipped != 1 {
		t.Errorf("the unsubscribed reader's row is not marked skipped")
	}
}

// waitFor polls cond until it holds, failing the test after 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestMailerShutdownFinishesInFlight: when Run's context ends mid-send, the message in flight is
// still delivered and recorded, and the rest of the claimed batch is handed back at once.
func TestMailerShutdownFinishesInFlight(t *testing.T) {
	srv := smtptest.Start(t)
	// The server holds each message's reply until the gate opens: the message is in flight.
	started, gate := make(chan struct{}, 10), make(chan struct{})
	srv.OnData(func(smtptest.Message) error {
		started <- struct{}{}
		<-gate
		return nil
	})
	f := newMailerFixture(t, smtpClient(t, srv.Port), MailerOptions{})
	ctx := context.Background()
	for _, email := range []string{"first@example.com", "second@example.com"} {
		if err := f.store.Subscribe(ctx, email, "", "en", formConsent); err != nil {
			t.Fatal(err)
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { f.m.Run(runCtx); close(done) }()
	<-started
	cancel()
	close(gate)
	<-done
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages delivered, want the one in flight", len(msgs))
	}
	var rows []struct {
		Email    string `db:"email"`
		Sent     bool   `db:"sent"`
		Attempts int    `db:"attempts"`
		Due      bool   `db:"due"`
	}
	if err := f.db.Select(&rows, `SELECT s.email, o.sent_at IS NOT NULL AS sent, o.attempts, o.next_attempt_at <= now() AS due
		FROM outbox o JOIN subscribers s ON s.id = o.subscriber_id ORDER BY o.id`); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 2 || rows[0].Email != msgs[0].To[0] || !rows[0].Sent || rows[1].Sent || !rows[1].Due || rows[1].Attempts != 0 {
		t.Errorf("outbox after shutdown: %+v", rows)
	}
}

// TestMailerThrottle: however often the form is sent, one email per address per 10 minutes.
func TestMailerThrottle(t *testing.T) {
	srv := smtptest.Start(t)
	f := newMailerFixture(t, smtpClient(t, srv.Port), MailerOptions{})
	ctx := context.Background()
	subscribe := func() {
		t.Helper()
		if err := f.store.Subscribe(ctx, "often@example.com", "", "en", formConsent); err != nil {
			t.Fatal(err)
		}
	}
	for range 3 {
		subscribe()
	}
	f.m.drain(ctx)
	subscribe()
	f.m.drain(ctx)
	if n := len(srv.Messages()); n != 1 {
		t.Fatalf("%d emails within 10 minutes, want 1", n)
	}
	f.db.MustExec(`UPDATE subscribers SET confirmation_sent_at = confirmation_sent_at - interval '10 minutes 1 second'`)
	subscribe()
	f.m.drain(ctx)
	msgs := srv.Messages()
	if len(msgs) != 2 {
		t.Fatalf("%d emails after the throttle, want 2", len(msgs))
	}
	// Both links belong to the same opt-in, so either confirms.
	_, text, _ := mimeParts(t, msgs[0])
	uuid, issued, err := f.signer.Verify(PurposeConfirm, strings.TrimPrefix(confirmLink.FindString(text), mailerBaseURL+"/confirm/"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if s, err := f.store.Confirm(ctx, uuid, issued); err != nil || s.Status != StatusConfirmed {
		t.Errorf("first link: %+v, %v", s, err)
	}
}

func TestMailerDrainsEveryBatch(t *testing.T) {
	srv := smtptest.Start(t)
	f := newMailerFixture(t, smtpClient(t, srv.Port), MailerOptions{})
	ctx := context.Background()
	const n = 3*batchSize + 1
	for i := range n {
		if err := f.store.Subscribe(ctx, fmt.Sprintf("reader%d@example.com", i), "", "en", formConsent); err != nil {
			t.Fatal(err)
		}
	}
	f.m.drain(ctx)
	if got := len(srv.Messages()); got != n {
		t.Errorf("%d emails after one drain, want %d", got, n)
	}
}

// TestMailerWake: a Wake sends at once, without waiting for the next poll (an hour here).
func TestMailerWake(t *testing.T) {
	srv := smtptest.Start(t)
	f := newMailerFixture(t, smtpClient(t, srv.Port), MailerOptions{Poll: time.Hour})
	ctx := context.Background()
	// A first email, sent by Run's first look at the outbox; once it is recorded, Run waits.
	if err := f.store.Subscribe(ctx, "early@example.com", "", "en", formConsent); err != nil {
		t.Fatal(err)
	}
	f.run()
	srv.WaitFor(t, 1, 10*time.Second)
	waitFor(t, "the first email recorded", func() bool {
		var n int
		f.db.Get(&n, `SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL`)
		return n == 1
	})
	time.Sleep(50 * time.Millisecond)
	if err := f.store.Subscribe(ctx, "woken@example.com", "", "en", formConsent); err != nil {
		t.Fatal(err)
	}
	f.m.Wake()
	srv.WaitFor(t, 2, 10*time.Second)
}

// TestMailerBatchSharesConnection: a claimed batch goes over one SMTP connection; a recipient the
// server refuses mid-batch fails alone (retried later) and the rest of the batch still goes, over
// the same connection.
func TestMailerBatchSharesConnection(t *testing.T) {
	srv := smtptest.Start(t)
	f := newMailerFixture(t, smtpClient(t, srv.Port), MailerOptions{Retry: smtpout.Policy{First: time.Hour}})
	ctx := context.Background()
	const n = 2 * batchSize
	for i := range n {
		if err := f.store.Subscribe(ctx, fmt.Sprintf("reader%d@example.com", i), "", "en", formConsent); err != nil {
			t.Fatal(err)
		}
	}
	srv.Script("reader3@example.com", smtptest.Answer{At: smtptest.AtData, Code: 451})
	f.m.drain(ctx)
	if got := len(srv.Messages()); got != n-1 {
		t.Errorf("%d emails delivered, want %d (all but the refused one)", got, n-1)
	}
	// Two batches; a refusal is a reply, after which the connection goes on.
	if got := srv.Sessions(); got != 2 {
		t.Errorf("%d SMTP connections for %d emails in batches of %d with one refusal, want 2", got, n, batchSize)
	}
	var rows []struct {
		Email string `db:"email"`
		Sent  bool   `db:"sent"`
		Error string `db:"last_error"`
	}
	if err := f.db.Select(&rows, `SELECT s.email, o.sent_at IS NOT NULL AS sent, o.last_error
		FROM outbox o JOIN subscribers s ON s.id = o.subscriber_id WHERE o.sent_at IS NULL`); err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].Email != "reader3@example.com" || !strings.Contains(rows[0].Error, "451") {
		t.Errorf("unsent rows %+v, want only reader3 with its 451", rows)
	}
}

// TestMailerWorkersShareTheBacklog: Run's workers claim different batches, so a backlog is sent
// once each, on several connections at once.
func TestMailerWorkersShareTheBacklog(t *testing.T) {
	srv := smtptest.Start(t)
	srv.SetDelay(5 * time.Millisecond) // each message takes a while, so workers overlap
	f := newMailerFixture(t, smtpClient(t, srv.Port), MailerOptions{Workers: 4})
	ctx := context.Background()
	const n = 8 * batchSize
	for i := range n {
		if err := f.store.Subscribe(ctx, fmt.Sprintf("reader%d@example.com", i), "", "en", formConsent); err != nil {
			t.Fatal(err)
		}
	}
	f.run()
	f.m.Wake()
	msgs := srv.WaitFor(t, n, 20*time.Second)
	waitFor(t, "every email recorded", func() bool {
		var sent int
		f.db.Get(&sent, `SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL`)
		return sent == n
	})
	seen := map[string]int{}
	for _, m := range srv.Messages() {
		seen[m.To[0]]++
	}
	if len(msgs) != n || len(seen) != n {
		t.Errorf("%d messages to %d readers, want each of %d once", len(srv.Messages()), len(seen), n)
	}
	if s := srv.Sessions(); s < 2 {
		t.Errorf("%d SMTP connections: the workers did not overlap", s)
	}
}

// BenchmarkMailerDrain measures how fast Run's workers empty a backlog of queued confirmations (as
// after a burst of subscriptions) into a local SMTP server that keeps nothing.
func BenchmarkMailerDrain(b *testing.B) {
	const n = 5000
	srv, err := smtptest.Listen("127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	srv.SetMode(smtptest.Discard)
	c, err := mail.NewClient("127.0.0.1", mail.WithPort(srv.Port), mail.WithTLSPolicy(mail.NoTLS), mail.WithTimeout(10*time.Second))
	if err != nil {
		b.Fatal(err)
	}
	db := testdb.New(b)
	fsys := templates.FS("")
	cat, err := templates.LoadCatalog(fsys)
	if err != nil {
		b.Fatal(err)
	}
	m, err := NewMailer(NewStore(db, dataSecret), c, NewSigner(dataSecret), fsys, cat, MailerOptions{BaseURL: mailerBaseURL,
		From: "Digest <digest@news.test>", Publication: "Вестник", Poll: time.Hour}, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	for range b.N {
		db.MustExec(`TRUNCATE subscribers CASCADE`)
		db.MustExec(`WITH s AS (
				INSERT INTO subscribers (email, name, lang, status)
				SELECT 'reader' || i || '@example.com', 'Reader ' || i, CASE WHEN i % 2 = 0 THEN 'en' ELSE 'ru' END, 'pending'
				FROM generate_series(1, $1) i RETURNING id)
			INSERT INTO outbox (kind, subscriber_id) SELECT 'confirm', id FROM s`, n)
		sent := srv.Count()
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		b.StartTimer()
		go func() { m.Run(ctx); close(done) }()
		for srv.Count()-sent < n {
			time.Sleep(time.Millisecond)
		}
		b.StopTimer()
		cancel()
		<-done
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "emails/s")
}

// TestMailerYieldsButNeverStops: while the request path is saturated (Yield true) each batch
// waits up to maxYield, and still goes.
func TestMailerYieldsButNeverStops(t *testing.T) {
	srv := smtptest.Start(t)
	var asked atomic.Int64
	f := newMailerFixture(t, smtpClient(t, srv.Port), MailerOptions{Workers: 1, Yield: func() bool { asked.Add(1); return true }})
	ctx := context.Background()
	const n = 2 * batchSize
	for i := range n {
		if err := f.store.Subscribe(ctx, fmt.Sprintf("reader%d@example.com", i), "", "en", formConsent); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	f.m.drain(ctx)
	took := time.Since(start)
	if got := len(srv.Messages()); got != n {
		t.Fatalf("%d emails while yielding, want all %d", got, n)
	}
	// Two batches and the final empty claim each waited the longest.
	if took < 3*maxYield || asked.Load() < 3 {
		t.Errorf("drain took %s asking Yield %d times: it did not make way", took, asked.Load())
	}
}

// TestMailerPermanentRefusalIsFinal: a 5xx for the address, at RCPT or after the message, is never
// retried; the reader is marked bounced, and subscribing the address again sends nothing more.
// A 5xx to MAIL FROM is our setup's fault and is retried.
func TestMailerPermanentRefusalIsFinal(t *testing.T) {
	srv := smtptest.Start(t)
	f := newMailerFixture(t, smtpClient(t, srv.Port), MailerOptions{Retry: smtpout.Policy{First: 10 * time.Millisecond, Max: 20 * time.Millisecond}})
	ctx := context.Background()
	srv.OnRcpt(func(to string) error {
		if to == "gone@example.com" {
			return &smtp.SMTPError{Code: 550, EnhancedCode: smtp.EnhancedCode{5, 1, 1}, Message: "no such user gone@example.com"}
		}
		return nil
	})
	srv.Script("full@example.com", smtptest.Answer{At: smtptest.AtData, Code: 552})
	for _, email := range []string{"gone@example.com", "full@example.com", "fine@example.com"} {
		if err := f.store.Subscribe(ctx, email, "", "en", formConsent); err != nil {
			t.Fatal(err)
		}
	}
	f.run()
	f.m.Wake()
	waitFor(t, "both refusals recorded", func() bool {
		var n int
		f.db.Get(&n, `SELECT count(*) FROM outbox WHERE failed_at IS NOT NULL`)
		return n == 2
	})
	time.Sleep(100 * time.Millisecond) // several backoffs: a retry would show now
	if got := srv.Attempts("gone@example.com") + srv.Attempts("full@example.com"); got != 2 {
		t.Errorf("%d attempts for the two refused addresses, want one each", got)
	}
	var rows []struct {
		Email  string `db:"email"`
		Status Status `db:"status"`
		Reason string `db:"bounce_reason"`
	}
	if err := f.db.Select(&rows, `SELECT email, status, bounce_reason FROM subscribers ORDER BY email`); err != nil {
		t.Fatal(err)
	}
	want := map[string]Status{"fine@example.com": StatusPending, "full@example.com": StatusBounced, "gone@example.com": StatusBounced}
	for _, r := range rows {
		if r.Status != want[r.Email] {
			t.Errorf("%s is %s, want %s", r.Email, r.Status, want[r.Email])
		}
		if r.Status == StatusBounced && (!strings.Contains(r.Reason, "55") || strings.Contains(r.Reason, r.Email)) {
			t.Errorf("%s: bounce reason %q, want the server's refusal without the address", r.Email, r.Reason)
		}
	}
	if got := testutil.ToFloat64(f.m.refused); got != 2 {
		t.Errorf("refused counter = %v, want 2", got)
	}
	// Each refusal is a hard bounce under the reader list's policy: an event from source smtp,
	// without the address in its reason, and a suppression.
	var events []struct {
		What   string `db:"what"`
		Reason string `db:"reason"`
	}
	if err := f.db.Select(&events, `SELECT kind || '/' || source || '/' || effect AS what, reason FROM reader_events ORDER BY id`); err != nil {
		t.Fatal(err)
	}
	if len(events) != 2 {
		t.Errorf("events %+v, want two refusals", events)
	}
	for _, e := range events {
		if e.What != "hard/smtp/bounced" || !strings.Contains(e.Reason, "55") || strings.Contains(e.Reason, "@") {
			t.Errorf("event %+v, want hard/smtp/bounced with the server's reply and no address", e)
		}
	}
	if n := countRows(t, f.db, `SELECT count(*) FROM suppressions WHERE reason = 'bounced'`); n != 2 {
		t.Errorf("%d bounced suppressions, want 2", n)
	}
	// Asking again changes nothing and queues nothing.
	db := f.db
	before := countRows(t, db, `SELECT count(*) FROM outbox`)
	if err := f.store.Subscribe(ctx, "gone@example.com", "", "en", formConsent); err != nil {
		t.Fatal(err)
	}
	if after := countRows(t, db, `SELECT count(*) FROM outbox`); after != before {
		t.Errorf("a new confirmation was queued for a bounced address (%d -> %d rows)", before, after)
	}

	// The server refusing our sender is not the reader's fault: retried, reader still pending.
	srv.OnMail(func(string) error { return &smtp.SMTPError{Code: 553, Message: "sender not allowed"} })
	if err := f.store.Subscribe(ctx, "later@example.com", "", "en", formConsent); err != nil {
		t.Fatal(err)
	}
	f.m.Wake()
	waitFor(t, "two failed attempts for later@", func() bool { return testutil.ToFloat64(f.m.failed) >= 2 })
	var st Status
	db.Get(&st, `SELECT status FROM subscribers WHERE email = 'later@example.com'`)
	if st != StatusPending {
		t.Errorf("after a refused MAIL FROM the reader is %s, want pending", st)
	}
}

// TestMailerSignsWithDKIM: confirmations are signed like digests, and the signature verifies on
// what the server received.
func TestMailerSignsWithDKIM(t *testing.T) {
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKCS8PrivateKey(key)
	signer, err := smtpout.NewDKIMSigner("news.test", "confirm", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if err != nil {
		t.Fatal(err)
	}
	srv := smtptest.Start(t)
	f := newMailerFixture(t, smtpClient(t, srv.Port), MailerOptions{DKIM: signer})
	if err := f.store.Subscribe(context.Background(), "signed@example.com", "Анна", "ru", formConsent); err != nil {
		t.Fatal(err)
	}
	f.run()
	f.m.Wake()
	msg := srv.WaitFor(t, 1, 10*time.Second)[0]
	txt := "v=DKIM1; k=ed25519; p=" + base64.StdEncoding.EncodeToString(key.Public().(ed25519.PublicKey))
	vs, err := dkim.VerifyWithOptions(bytes.NewReader(msg.Data), &dkim.VerifyOptions{LookupTXT: func(domain string) ([]string, error) {
		if domain != "confirm._domainkey.news.test" {
			return nil, fmt.Errorf("no record %s", domain)
		}
		return []string{txt}, nil
	}})
	if err != nil || len(vs) != 1 || vs[0].Err != nil || vs[0].Domain != "news.test" {
		t.Fatalf("verify: %v %+v", err, vs)
	}
}
