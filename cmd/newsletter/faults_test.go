package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"newsletter/digest"
	"newsletter/digest/send"
	"newsletter/internal/pgdb"
	"newsletter/internal/pgtest"
	"newsletter/internal/smtptest"
	"newsletter/internal/testdb"
	"newsletter/migrations"
)

// seedIssueReaders adds n confirmed English readers (reader-1@example.org ...) and a week of
// articles, so an issue can be assembled and sent.
func seedIssueReaders(t *testing.T, db *sqlx.DB, n int) {
	t.Helper()
	if _, err := db.Exec(`INSERT INTO subscribers (email, name, lang, status, confirmed_at)
		SELECT 'reader-' || g || '@example.org', 'Reader ' || g, 'en', 'confirmed', now() FROM generate_series(1, $1) g`, n); err != nil {
		t.Fatal(err)
	}
	subscribeAll(t, db)
	for i := range 6 {
		if _, err := db.Exec(`INSERT INTO articles (lang, guid, title, link, summary, section, published_at, first_seen_at)
			VALUES ('en', $1, $2, $3, $4, 'City', now() - interval '1 hour', now() - interval '1 hour')`,
			fmt.Sprintf("fault-%d", i), fmt.Sprintf("Story %d of the week", i+1), fmt.Sprintf("https://site.example/en/%d", i),
			strings.Repeat("A summary sentence of reasonable length for the digest. ", 5)); err != nil {
			t.Fatal(err)
		}
	}
}

// receivedIDs groups what the SMTP server accepted by recipient: the Message-ID of each copy.
func receivedIDs(t *testing.T, srv *smtptest.Server) map[string][]string {
	t.Helper()
	got := map[string][]string{}
	for _, m := range srv.Messages() {
		msg, err := mail.ReadMessage(bytes.NewReader(m.Data))
		if err != nil {
			t.Fatalf("received message: %v", err)
		}
		for _, to := range m.To {
			got[strings.ToLower(to)] = append(got[strings.ToLower(to)], msg.Header.Get("Message-Id"))
		}
	}
	return got
}

// checkIssueDelivered checks the issue against what the server received: every reader's row is
// sent, every reader got the issue, copies share one Message-ID, and duplicates are at most maxDup.
func checkIssueDelivered(t *testing.T, db *sqlx.DB, srv *smtptest.Server, issueID int64, readers, maxDup int) {
	t.Helper()
	var counts []struct {
		Status string `db:"status"`
		N      int    `db:"n"`
	}
	if err := db.Select(&counts, `SELECT status, count(*) AS n FROM deliveries WHERE issue_id = $1 GROUP BY status`, issueID); err != nil {
		t.Fatal(err)
	}
	if len(counts) != 1 || counts[0].Status != digest.DeliverySent || counts[0].N != readers {
		t.Errorf("ledger %+v, want all %d sent", counts, readers)
	}
	var status string
	if err := db.Get(&status, `SELECT status FROM issues WHERE id = $1`, issueID); err != nil || status != digest.StatusSent {
		t.Errorf("issue is %q (%v), want sent", status, err)
	}
	got := receivedIDs(t, srv)
	dups := 0
	for i := 1; i <= readers; i++ {
		email := fmt.Sprintf("reader-%d@example.org", i)
		ids := got[email]
		if len(ids) == 0 {
			t.Errorf("%s never received the issue", email)
			continue
		}
		for _, id := range ids[1:] {
			if id != ids[0] {
				t.Errorf("%s received copies with different Message-IDs: %v", email, ids)
			}
		}
		dups += len(ids) - 1
	}
	if dups > maxDup {
		t.Errorf("%d duplicate copies, want at most %d", dups, maxDup)
	}
	t.Logf("%d readers, %d duplicates", readers, dups)
}

// TestPostgresRestartDuringSendAndSubscribe runs serve against a private PostgreSQL server,
// restarts that server while an issue is sending and readers subscribe, and checks that the send
// resumes by itself, /subscribe answers 503 (never 500) while the database is away, every 200
// has its reader and its queued confirmation, /healthz goes 503 then 200, and nothing is half
// written.
func TestPostgresRestartDuringSendAndSubscribe(t *testing.T) {
	const readers, conns = 4000, 4
	pg := pgtest.Start(t)
	s := startService(t, map[string]string{
		"NEWSLETTER_DATABASE_URL":     pg.URL("newsletter"),
		"NEWSLETTER_SEND_CONCURRENCY": strconv.Itoa(conns),
		"NEWSLETTER_LOG_LEVEL":        "info",
	})
	s.SMTP.SetMode(smtptest.KeepHeaders)
	s.SMTP.SetDelay(2 * time.Millisecond)
	seedIssueReaders(t, s.DB, readers)
	ctx := context.Background()
	store := digest.NewStore(s.DB, nil)
	iss, err := store.Assemble(ctx, "en", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := send.StartSending(ctx, store, iss.ID); err != nil {
		t.Fatal(err)
	}

	// Readers subscribe all along, each with a new address, until told to stop.
	type answer struct {
		email  string
		status int
	}
	var (
		mu      sync.Mutex
		answers []answer
	)
	client := &http.Client{Timeout: 30 * time.Second}
	subscribe := func(email string) int {
		res, err := client.Post(s.URL+"/subscribe", "application/json",
			strings.NewReader(fmt.Sprintf(`{"email":%q,"name":"New Reader","lang":"en"}`, email)))
		if err != nil {
			mu.Lock()
			answers = append(answers, answer{email, -1})
			mu.Unlock()
			return -1
		}
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
		mu.Lock()
		answers = append(answers, answer{email, res.StatusCode})
		mu.Unlock()
		return res.StatusCode
	}
	stop := make(chan struct{})
	var subscribers sync.WaitGroup
	for w := range 3 {
		subscribers.Add(1)
		go func() {
			defer subscribers.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				subscribe(fmt.Sprintf("new-%d-%d@example.net", w, i))
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}

	// Restart the database once the send is under way (the wait is a deadlock guard).
	deadline := time.Now().Add(2 * time.Minute)
	for s.SMTP.Count() < readers/4 {
		if time.Now().After(deadline) {
			close(stop)
			t.Fatalf("the send did not get under way: %d messages", s.SMTP.Count())
		}
		time.Sleep(10 * time.Millisecond)
	}
	pg.Stop()
	atStop := s.SMTP.Count()
	if res := s.Get(t, "/healthz"); res.Status != http.StatusServiceUnavailable {
		t.Errorf("/healthz with the database away: %d, want 503", res.Status)
	}
	if code := subscribe("while-away@example.net"); code != http.StatusServiceUnavailable {
		t.Errorf("POST /subscribe with the database away: %d, want 503", code)
	}
	time.Sleep(2 * time.Second)
	pg.Start()
	healthy := false
	for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(100 * time.Millisecond) {
		if s.Get(t, "/healthz").Status == http.StatusOK {
			healthy = true
			break
		}
	}
	if !healthy {
		t.Error("/healthz did not answer 200 after the database came back")
	}
	t.Logf("database restarted after %d messages", atStop)

	// The send resumes by itself and finishes.
	for end := time.Now().Add(3 * time.Minute); ; time.Sleep(100 * time.Millisecond) {
		p, err := store.Progress(ctx, iss.ID)
		if err == nil && p.Status != digest.StatusSending {
			break
		}
		if time.Now().After(end) {
			t.Fatalf("the send did not finish after the restart: %+v, %v", p, err)
		}
	}
	close(stop)
	subscribers.Wait()
	checkIssueDelivered(t, s.DB, s.SMTP, iss.ID, readers, conns)

	// Every 200 is a reader with its consent and a queued confirmation; no answer was a 500.
	byStatus := map[int]int{}
	for _, a := range answers {
		byStatus[a.status]++
		switch a.status {
		case http.StatusOK:
			var n struct {
				Readers  int `db:"readers"`
				Consents int `db:"consents"`
				Outbox   int `db:"outbox"`
			}
			if err := s.DB.Get(&n, `SELECT count(DISTINCT s.id) AS readers, count(DISTINCT c.id) AS consents, count(DISTINCT o.id) AS outbox
				FROM subscribers s LEFT JOIN consents c ON c.subscriber_id = s.id LEFT JOIN outbox o ON o.subscriber_id = s.id
				WHERE s.email = $1`, a.email); err != nil {
				t.Fatal(err)
			}
			if n.Readers != 1 || n.Consents != 1 || n.Outbox != 1 {
				t.Errorf("%s was answered 200 but has %d reader rows, %d consents, %d queued emails", a.email, n.Readers, n.Consents, n.Outbox)
			}
		case http.StatusServiceUnavailable:
		default:
			t.Errorf("POST /subscribe for %s answered %d, want 200 or 503", a.email, a.status)
		}
	}
	if byStatus[http.StatusServiceUnavailable] == 0 {
		t.Error("no subscribe answered 503: the outage was not exercised")
	}
	// Nothing half-written: no reader of the form without its consent and its queued email.
	var orphans int
	if err := s.DB.Get(&orphans, `SELECT count(*) FROM subscribers s WHERE s.email LIKE '%@example.net'
		AND (NOT EXISTS (SELECT 1 FROM consents c WHERE c.subscriber_id = s.id) OR NOT EXISTS (SELECT 1 FROM outbox o WHERE o.subscriber_id = s.id))`); err != nil {
		t.Fatal(err)
	}
	if orphans > 0 {
		t.Errorf("%d readers without their consent or confirmation email", orphans)
	}
	t.Logf("subscribe answers by status: %v", byStatus)
}

// buildBinary builds the newsletter program into a temporary directory.
func buildBinary(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "newsletter")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// TestSIGTERMDuringSend sends SIGTERM to a real `digest send` and a real `serve` in the middle of
// an issue: the messages in flight finish and are recorded, the rest stay queued, the process
// exits within 30 s (serve with status 0), and a second run finishes the issue with no one missing.
func TestSIGTERMDuringSend(t *testing.T) {
	bin := buildBinary(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"digest send", []string{"digest", "send", "--lang", "en", "--yes"}},
		{"serve", []string{"serve"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const readers, conns = 3000, 4
			dbURL := testdb.URL(t)
			ctx := context.Background()
			db, err := pgdb.Open(ctx, dbURL)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			if err := migrations.Apply(ctx, db.DB, nil); err != nil {
				t.Fatal(err)
			}
			seedIssueReaders(t, db, readers)
			srv := smtptest.Start(t)
			srv.SetMode(smtptest.KeepHeaders)
			srv.SetDelay(2 * time.Millisecond)
			command := func(args ...string) (*exec.Cmd, *lockedBuffer) {
				cmd := exec.Command(bin, args...)
				cmd.Env = []string{
					"NEWSLETTER_DATABASE_URL=" + dbURL,
					"NEWSLETTER_SMTP_URL=" + srv.URL(),
					"NEWSLETTER_SECRET=" + e2eSecret,
					"NEWSLETTER_LANGUAGES=en",
					"NEWSLETTER_FROM=Weekly <digest@news.example>",
					"NEWSLETTER_BASE_URL=https://news.example",
					"NEWSLETTER_HTTP_ADDR=127.0.0.1:" + strconv.Itoa(freePort(t)),
					"NEWSLETTER_SEND_CONCURRENCY=" + strconv.Itoa(conns),
				}
				out := &lockedBuffer{}
				cmd.Stdout, cmd.Stderr = out, out
				return cmd, out
			}
			store := digest.NewStore(db, nil)
			if tc.args[0] == "serve" {
				// serve sends what is 'sending' when it starts.
				iss, err := store.Assemble(ctx, "en", 0)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := send.StartSending(ctx, store, iss.ID); err != nil {
					t.Fatal(err)
				}
			}

			first, out := command(tc.args...)
			if err := first.Start(); err != nil {
				t.Fatal(err)
			}
			exited := make(chan error, 1)
			go func() { exited <- first.Wait() }()
			deadline := time.After(2 * time.Minute)
		wait:
			for srv.Count() < readers/3 {
				select {
				case err := <-exited:
					t.Fatalf("exited (%v) before a third of the issue went:\n%s", err, out)
				case <-deadline:
					first.Process.Kill()
					t.Fatalf("the send did not get a third of the way: %d\n%s", srv.Count(), out)
				case <-time.After(5 * time.Millisecond):
					continue wait
				}
			}
			if err := first.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			var exitErr error
			select {
			case exitErr = <-exited:
			case <-time.After(30 * time.Second):
				first.Process.Kill()
				<-exited
				t.Fatalf("still running 30 s after SIGTERM:\n%s", out)
			}
			state := first.ProcessState
			if ws, ok := state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				t.Fatalf("killed by %v instead of stopping:\n%s", ws.Signal(), out)
			}
			if tc.args[0] == "serve" && exitErr != nil {
				t.Errorf("serve after SIGTERM: %v, want exit status 0\n%s", exitErr, out)
			}
			t.Logf("%s after SIGTERM: exit status %d", tc.name, state.ExitCode())

			// In flight finished and recorded: the server's list and the ledger's sent rows agree
			// exactly; the rest stay queued with no lease held.
			var issueID int64
			if err := db.Get(&issueID, `SELECT id FROM issues WHERE lang = 'en'`); err != nil {
				t.Fatal(err)
			}
			var sent []string
			if err := db.Select(&sent, `SELECT s.email FROM deliveries d JOIN subscribers s ON s.id = d.subscriber_id
				WHERE d.issue_id = $1 AND d.status = 'sent'`, issueID); err != nil {
				t.Fatal(err)
			}
			got := receivedIDs(t, srv)
			if len(got) != len(sent) || srv.Count() != len(sent) {
				t.Errorf("the server accepted %d messages for %d readers, the ledger has %d sent", srv.Count(), len(got), len(sent))
			}
			for _, e := range sent {
				if len(got[e]) == 0 {
					t.Errorf("%s is sent in the ledger but was never received", e)
				}
			}
			var queued, leased int
			if err := db.Get(&queued, `SELECT count(*) FROM deliveries WHERE issue_id = $1 AND status = 'queued'`, issueID); err != nil {
				t.Fatal(err)
			}
			if err := db.Get(&leased, `SELECT count(*) FROM deliveries WHERE issue_id = $1 AND status = 'queued' AND claimed_by IS NOT NULL`, issueID); err != nil {
				t.Fatal(err)
			}
			if queued == 0 || queued+len(sent) != readers {
				t.Errorf("after SIGTERM %d sent and %d queued of %d readers", len(sent), queued, readers)
			}
			if leased > 0 {
				t.Errorf("%d queued rows still leased to the stopped process", leased)
			}
			t.Logf("stopped after %d of %d; %d queued", len(sent), readers, queued)

			second, out2 := command("digest", "send", "--lang", "en", "--yes")
			if err := second.Run(); err != nil {
				t.Fatalf("second run: %v\n%s", err, out2)
			}
			checkIssueDelivered(t, db, srv, issueID, readers, 0)
			if t.Failed() {
				t.Logf("first run:\n%s", out)
			}
		})
	}
}
