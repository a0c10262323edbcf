package send

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/mail"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"newsletter/digest"
	"newsletter/internal/digesttest"
	"newsletter/internal/pgdb"
	"newsletter/internal/smtptest"
	"newsletter/internal/testdb"
	"newsletter/migrations"
)

// buildNewsletter builds the real binary once per test.
func buildNewsletter(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "newsletter")
	out, err := exec.Command("go", "build", "-o", bin, "newsletter/cmd/newsletter").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// childFixture is a throwaway database with readers and articles, and a slow-ish SMTP server
// that keeps only headers, for sending processes started as children.
type childFixture struct {
	bin   string
	url   string
	db    *sqlx.DB
	srv   *smtptest.Server
	conns int
}

func newChildFixture(t *testing.T, readers, conns int) *childFixture {
	t.Helper()
	f := &childFixture{bin: buildNewsletter(t), url: testdb.URL(t), srv: smtptest.Start(t), conns: conns}
	ctx := context.Background()
	db, err := pgdb.Open(ctx, f.url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := migrations.Apply(ctx, db.DB, nil); err != nil {
		t.Fatal(err)
	}
	f.db = db
	digesttest.SeedReaders(t, db, "en", readers)
	digesttest.SeedArticles(t, db, "en", 4)
	f.srv.SetMode(smtptest.KeepHeaders)
	f.srv.SetDelay(2 * time.Millisecond)
	return f
}

func (f *childFixture) command(args ...string) (*exec.Cmd, *bytes.Buffer) {
	cmd := exec.Command(f.bin, args...)
	cmd.Env = []string{
		"NEWSLETTER_DATABASE_URL=" + f.url,
		"NEWSLETTER_SMTP_URL=" + f.srv.URL(),
		"NEWSLETTER_SECRET=56724609ea8eafbc69dc119e0e2fc40ec80709b6bf3bb4a459c5711513ca0c36",
		"NEWSLETTER_LANGUAGES=en",
		"NEWSLETTER_FROM=Weekly <digest@news.example>",
		"NEWSLETTER_BASE_URL=https://news.example",
		fmt.Sprintf("NEWSLETTER_SEND_CONCURRENCY=%d", f.conns),
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	return cmd, &out
}

// received groups what the server accepted by recipient: the Message-IDs of each copy.
func (f *childFixture) received(t *testing.T) map[string][]string {
	t.Helper()
	got := map[string][]string{}
	for _, m := range f.srv.Messages() {
		msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatalf("received message: %v", err)
		}
		got[m.To[0]] = append(got[m.To[0]], msg.Header.Get("Message-Id"))
	}
	return got
}

// checkLedger compares the server's received list with the ledger: every reader was sent and
// received the message, duplicates are at most maxDup in all, and copies share one Message-ID.
func (f *childFixture) checkLedger(t *testing.T, readers, maxDup int) {
	t.Helper()
	got := f.received(t)
	var sent []string
	if err := f.db.Select(&sent, `SELECT s.email FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id WHERE d.status = 'sent'`); err != nil {
		t.Fatal(err)
	}
	if len(sent) != readers {
		t.Errorf("ledger has %d sent rows, want %d", len(sent), readers)
	}
	dups := 0
	for i := 1; i <= readers; i++ {
		email := fmt.Sprintf("reader-%d@example.org", i)
		ids := got[email]
		if len(ids) == 0 {
			t.Fatalf("%s never received the issue", email)
		}
		for _, id := range ids[1:] {
			if id != ids[0] {
				t.Errorf("%s received copies with different Message-IDs: %v", email, ids)
			}
		}
		dups += len(ids) - 1
	}
	if dups > maxDup {
		t.Errorf("%d duplicate messages, want at most %d", dups, maxDup)
	}
	t.Logf("%d readers, %d messages received, %d duplicates", readers, f.srv.Count(), dups)
}

// TestSendSurvivesSIGKILL starts `newsletter digest send` as a child process, kills it with
// SIGKILL mid-way, starts another, and checks the server's received list against the ledger.
func TestSendSurvivesSIGKILL(t *testing.T) {
	const readers, conns = 3000, 4
	f := newChildFixture(t, readers, conns)

	first, out1 := f.command("digest", "send", "--lang", "en", "--yes")
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for f.srv.Count() < readers/3 {
		if time.Now().After(deadline) {
			first.Process.Kill()
			first.Wait()
			t.Fatalf("the first sender did not get a third of the way:\n%s", out1)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := first.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	first.Wait()
	killedAt := f.srv.Count()
	if killedAt >= readers {
		t.Fatalf("the first sender finished (%d messages) before the kill", killedAt)
	}
	t.Logf("killed after %d messages", killedAt)

	second, out2 := f.command("digest", "send", "--lang", "en", "--yes")
	if err := second.Run(); err != nil {
		t.Fatalf("second sender: %v\n%s", err, out2)
	}
	f.checkLedger(t, readers, conns)
	var status string
	if err := f.db.Get(&status, `SELECT status FROM issues`); err != nil || status != digest.StatusSent {
		t.Fatalf("issue status %q (%v)", status, err)
	}

	// Again for the finished window: nothing to send, exit 3.
	again, out3 := f.command("digest", "send", "--lang", "en", "--yes")
	err := again.Run()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Fatalf("sending again: %v, want exit status 3\n%s", err, out3)
	}
}

// TestSendTwoProcessesOneIssue starts two sending processes at once on one issue: each reader
// gets exactly one message.
func TestSendTwoProcessesOneIssue(t *testing.T) {
	const readers = 1500
	f := newChildFixture(t, readers, 3)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	outs := make([]*bytes.Buffer, 2)
	for i := range 2 {
		cmd, out := f.command("digest", "send", "--lang", "en", "--yes")
		outs[i] = out
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = cmd.Run()
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("process %d: %v\n%s", i, err, outs[i])
		}
	}
	f.checkLedger(t, readers, 0)
	if n := f.srv.Count(); n != readers {
		t.Fatalf("%d messages for %d readers", n, readers)
	}
}
