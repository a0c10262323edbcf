package send

import (
	"bytes"
	"context"
	"log/slog"
	"net/mail"
	"testing"
	"time"

	gomail "github.com/wneessen/go-mail"

	"newsletter/digest"
	"newsletter/digest/render"
	"newsletter/internal/digesttest"
	"newsletter/internal/smtptest"
	"newsletter/internal/testdb"
	"newsletter/subscribers"
	"newsletter/templates"
)

// What a publication sets up in production: an https base URL, its own From and a postal address.
const (
	wirePublication = "The Test Gazette"
	wireFrom        = "The Test Gazette <digest@gazette.example>"
	wireBaseURL     = "https://gazette.example"
	wirePostal      = "The Test Gazette, 12 Harbour Street, 10115 Berlin, Germany"
)

// wireMessage is one email exactly as the service hands it to its SMTP relay.
type wireMessage struct {
	Name string // "digest-en", "confirm-ru", ...
	Data []byte
}

// MessageID returns the message's Message-ID header, to tell messages apart in a tool's output.
func (m wireMessage) MessageID() string {
	msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
	if err != nil {
		return ""
	}
	return msg.Header.Get("Message-Id")
}

// wireMessages sends this week's digest in English and in Russian, assembled from the demo content
// (the English lead is the publication's sample article) with a lead image and an editor's note,
// and a confirmation email in each language, through the real Sender and Mailer to a real SMTP
// server, and returns what arrived.
func wireMessages(t *testing.T) []wireMessage {
	t.Helper()
	ctx := context.Background()
	db := testdb.New(t)
	store := digest.NewStore(db, nil)
	if _, err := store.SeedDemo(ctx, []string{"en", "ru"}); err != nil {
		t.Fatal(err)
	}
	// Feeds usually bring a picture with the top story.
	if _, err := db.Exec(`UPDATE articles SET image_url = $1 || '/images/' || split_part(guid, ':', 3) || '.jpg'
		WHERE guid IN ('demo:en:keep-your-terrorists-close', 'demo:ru:kreml-i-taliban')`, wireBaseURL); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO subscribers (email, name, lang, status, confirmed_at) VALUES
		('anna.smith@example.org', 'Anna Smith', 'en', 'confirmed', now()),
		('anna.petrova@example.org', 'Анна Петрова', 'ru', 'confirmed', now())`); err != nil {
		t.Fatal(err)
	}
	digesttest.SubscribeAll(t, db)
	notes := map[string]string{
		"en": "Welcome to this week's digest.\n\nTell us what you think: just reply to this email.",
		"ru": "Добро пожаловать в новый выпуск дайджеста.\n\nНапишите нам, что вы о нём думаете: просто ответьте на это письмо.",
	}
	var issues []int64
	for _, lang := range []string{"en", "ru"} {
		iss, err := store.Assemble(ctx, lang, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.UpdateIssueText(ctx, iss.ID, "", notes[lang]); err != nil {
			t.Fatal(err)
		}
		issues = append(issues, iss.ID)
	}

	srv := smtptest.Start(t)
	client, err := gomail.NewClient(srv.Host, gomail.WithPort(srv.Port), gomail.WithTLSPolicy(gomail.NoTLS), gomail.WithTimeout(10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	fsys := templates.FS("")
	cat, err := templates.LoadCatalog(fsys)
	if err != nil {
		t.Fatal(err)
	}
	render, err := render.NewRenderer(fsys, cat, render.Options{BaseURL: wireBaseURL, Publication: wirePublication,
		PostalAddress: wirePostal, From: wireFrom})
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("wire-test-secret-0123456789")
	signer := subscribers.NewSigner(secret)
	readers := subscribers.NewStore(db, secret)
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	sender, err := NewSender(store, render, signer, readers, client, SenderOptions{From: wireFrom, BaseURL: wireBaseURL,
		Publication: wirePublication, Secret: secret}, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range issues {
		if err := sender.SendIssue(ctx, id, nil); err != nil {
			t.Fatal(err)
		}
	}

	for _, s := range []struct{ email, name, lang string }{
		{"john.doe@example.org", "John Doe", "en"}, {"ivan.ivanov@example.org", "Иван Иванов", "ru"}} {
		if err := readers.Subscribe(ctx, s.email, s.name, s.lang, subscribers.Consent{Source: "form", TextVersion: "v1"}); err != nil {
			t.Fatal(err)
		}
	}
	mailer, err := subscribers.NewMailer(readers, client, signer, fsys, cat, subscribers.MailerOptions{BaseURL: wireBaseURL,
		From: wireFrom, Publication: wirePublication, Poll: 20 * time.Millisecond}, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { mailer.Run(runCtx); close(done) }()
	srv.WaitFor(t, 4, time.Minute)
	stop()
	<-done

	var out []wireMessage
	for _, w := range []struct{ name, rcpt string }{
		{"digest-en", "anna.smith@example.org"}, {"digest-ru", "anna.petrova@example.org"},
		{"confirm-en", "john.doe@example.org"}, {"confirm-ru", "ivan.ivanov@example.org"}} {
		got := srv.To(w.rcpt)
		if len(got) != 1 {
			t.Fatalf("%s: %d messages to %s, want 1", w.name, len(got), w.rcpt)
		}
		out = append(out, wireMessage{Name: w.name, Data: got[0].Data})
	}
	return out
}

// TestMessagesNameNoLibrary: no email we send carries a User-Agent or X-Mailer, nor names the mail
// library anywhere in its headers: a name and version there tell an attacker which advisories to try.
func TestMessagesNameNoLibrary(t *testing.T) {
	for _, m := range wireMessages(t) {
		msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		for _, h := range []string{"User-Agent", "X-Mailer"} {
			if v := msg.Header.Get(h); v != "" {
				t.Errorf("%s: %s: %s", m.Name, h, v)
			}
		}
		header, _, _ := bytes.Cut(m.Data, []byte("\r\n\r\n"))
		if bytes.Contains(bytes.ToLower(header), []byte("go-mail")) || bytes.Contains(bytes.ToLower(header), []byte("wneessen")) {
			t.Errorf("%s: the headers name the mail library:\n%s", m.Name, header)
		}
	}
}
