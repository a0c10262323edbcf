package send

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"newsletter/digest"
	"newsletter/internal/digesttest"
	"newsletter/internal/pgdb"
	"newsletter/internal/smtptest"
	"newsletter/internal/testdb"
	"newsletter/migrations"
	"newsletter/newsletters"
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

// TestServeSurvivesSIGKILLThreeNewsletters spreads readers over three newsletters (the digests of
// en, ru and de; a quarter of the readers also take a second one), starts the three issues, and
// lets `newsletter serve` send them. It kills serve with SIGKILL a third of the way, starts another
// serve, and checks that every reader received exactly the newsletters they subscribe to: none
// missing, none they do not take, duplicates bounded and sharing their Message-ID.
func TestServeSurvivesSIGKILLThreeNewsletters(t *testing.T) {
	const readers, conns = 3000, 4
	langs := []string{"en", "ru", "de"}
	bin := buildNewsletter(t)
	url := testdb.URL(t)
	ctx := context.Background()
	db, err := pgdb.Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := migrations.Apply(ctx, db.DB, nil); err != nil {
		t.Fatal(err)
	}
	if err := newsletters.EnsureDigests(ctx, db, langs); err != nil {
		t.Fatal(err)
	}
	// Reader g's language is langs[g%3]; every fourth reader also takes the next language's digest.
	if _, err := db.Exec(`INSERT INTO subscribers (email, name, lang, status, confirmed_at)
		SELECT 'reader-' || g || '@example.org', 'Reader ' || g, ($2::text[])[g % 3 + 1], 'confirmed', now()
		FROM generate_series(1, $1) g`, readers, pq.Array(langs)); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO subscriptions (subscriber_id, newsletter_id)
		SELECT s.id, n.id FROM subscribers s JOIN newsletters n ON n.kind = 'digest'
		  AND (n.lang = s.lang OR s.id % 4 = 0 AND n.lang = ($1::text[])[(array_position($1::text[], s.lang)) % 3 + 1])`,
		pq.Array(langs)); err != nil {
		t.Fatal(err)
	}
	store := digest.NewStore(db, nil)
	issueLang := map[string]string{} // Message-ID prefix "issue-N." -> language
	for _, l := range langs {
		digesttest.SeedArticles(t, db, l, 3)
		iss, err := store.Assemble(ctx, l, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := StartSending(ctx, store, iss.ID); err != nil {
			t.Fatal(err)
		}
		issueLang[fmt.Sprintf("issue-%d.", iss.ID)] = l
	}
	var want map[string]map[string]bool // email -> languages of the digests they take
	{
		var rows []struct {
			Email string `db:"email"`
			Lang  string `db:"lang"`
		}
		if err := db.Select(&rows, `SELECT s.email, n.lang FROM subscriptions sub JOIN subscribers s ON s.id = sub.subscriber_id
			JOIN newsletters n ON n.id = sub.newsletter_id`); err != nil {
			t.Fatal(err)
		}
		want = map[string]map[string]bool{}
		for _, r := range rows {
			if want[r.Email] == nil {
				want[r.Email] = map[string]bool{}
			}
			want[r.Email][r.Lang] = true
		}
	}
	total := 0
	for _, ls := range want {
		total += len(ls)
	}

	srv := smtptest.Start(t)
	srv.SetMode(smtptest.KeepHeaders)
	srv.SetDelay(2 * time.Millisecond)
	serve := func() (*exec.Cmd, *bytes.Buffer) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		cmd := exec.Command(bin, "serve")
		cmd.Env = []string{
			"NEWSLETTER_DATABASE_URL=" + url,
			"NEWSLETTER_SMTP_URL=" + srv.URL(),
			"NEWSLETTER_SECRET=56724609ea8eafbc69dc119e0e2fc40ec80709b6bf3bb4a459c5711513ca0c36",
			"NEWSLETTER_LANGUAGES=en,ru,de",
			"NEWSLETTER_FROM=Weekly <digest@news.example>",
			"NEWSLETTER_BASE_URL=https://news.example",
			"NEWSLETTER_HTTP_ADDR=" + addr,
			fmt.Sprintf("NEWSLETTER_SEND_CONCURRENCY=%d", conns),
		}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, &out
	}

	first, out1 := serve()
	deadline := time.Now().Add(2 * time.Minute)
	for srv.Count() < total/3 {
		if time.Now().After(deadline) {
			first.Process.Kill()
			first.Wait()
			t.Fatalf("serve did not get a third of the way (%d of %d):\n%s", srv.Count(), total, out1)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := first.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	first.Wait()
	killedAt := srv.Count()
	if killedAt >= total {
		t.Fatalf("serve finished (%d messages) before the kill", killedAt)
	}

	second, out2 := serve()
	defer func() {
		second.Process.Kill()
		second.Wait()
	}()
	deadline = time.Now().Add(3 * time.Minute)
	for {
		var unsent int
		if err := db.Get(&unsent, `SELECT count(*) FROM issues WHERE status <> 'sent'`); err != nil {
			t.Fatal(err)
		}
		if unsent == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d issues still not sent after the restart:\n%s", unsent, out2)
		}
		time.Sleep(50 * time.Millisecond)
	}

	got := map[string]map[string][]string{} // email -> language -> Message-IDs received
	for _, m := range srv.Messages() {
		msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatal(err)
		}
		id := strings.Trim(msg.Header.Get("Message-Id"), "<>")
		lang := ""
		for prefix, l := range issueLang {
			if strings.HasPrefix(id, prefix) {
				lang = l
			}
		}
		if lang == "" {
			t.Fatalf("a message of no issue: %q", id)
		}
		if got[m.To[0]] == nil {
			got[m.To[0]] = map[string][]string{}
		}
		got[m.To[0]][lang] = append(got[m.To[0]][lang], id)
	}
	missing, extra, dups := 0, 0, 0
	for email, ls := range want {
		for l := range ls {
			ids := got[email][l]
			if len(ids) == 0 {
				missing++
				continue
			}
			for _, id := range ids[1:] {
				if id != ids[0] {
					t.Errorf("%s: copies of the %s digest with different Message-IDs: %v", email, l, ids)
				}
			}
			dups += len(ids) - 1
		}
	}
	for email, ls := range got {
		for l := range ls {
			if !want[email][l] {
				extra++
			}
		}
	}
	if missing > 0 || extra > 0 {
		t.Errorf("%d deliveries missing, %d to readers who do not take that newsletter", missing, extra)
	}
	// Each of the killed process's connections may have had a message accepted but not recorded.
	if dups > conns {
		t.Errorf("%d duplicates, want at most %d", dups, conns)
	}
	t.Logf("%d readers over 3 newsletters, %d deliveries; killed after %d; %d received, %d missing, %d duplicates",
		readers, total, killedAt, srv.Count(), missing, dups)
}
