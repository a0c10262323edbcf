package digest

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"newsletter/internal/testdb"
)

// ledgerStarter starts issues without SMTP: it only fixes the recipients, as the sender's Start
// does, in SQL of its own (the ledger is the send package's).
type ledgerStarter struct {
	store *Store
	mu    sync.Mutex
	calls int
}

func (l *ledgerStarter) Start(ctx context.Context, id int64) (int, error) {
	l.mu.Lock()
	l.calls++
	l.mu.Unlock()
	res, err := l.store.DB().ExecContext(ctx, `WITH started AS (
			UPDATE issues SET status = 'sending', started_at = now() WHERE id = $1 AND status IN ('draft', 'approved') RETURNING lang)
		INSERT INTO deliveries (issue_id, subscriber_id)
		SELECT $1, s.id FROM subscribers s, started WHERE s.lang = started.lang AND s.status = 'confirmed'`, id)
	if err != nil {
		return 0, err
	}
	n, err := res.RowsAffected()
	return int(n), err
}

// seedReaders adds n confirmed readers of lang.
func seedReaders(t testing.TB, db *sqlx.DB, lang string, n int) {
	t.Helper()
	if _, err := db.Exec(`INSERT INTO subscribers (email, name, lang, status, confirmed_at)
		SELECT 'reader-' || g || '@example.org', 'Reader ' || g, $1, 'confirmed', now() FROM generate_series(1, $2) g`, lang, n); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO subscriptions (subscriber_id, newsletter_id)
		SELECT s.id, n.id FROM subscribers s JOIN newsletters n ON n.kind = 'digest' AND n.lang = s.lang
		ON CONFLICT DO NOTHING`); err != nil {
		t.Fatal(err)
	}
}

// seedArticles adds n fresh articles of lang.
func seedArticles(t testing.TB, db *sqlx.DB, lang string, n int) {
	t.Helper()
	for i := range n {
		if _, err := db.Exec(`INSERT INTO articles (lang, guid, title, link, summary, published_at, first_seen_at)
			VALUES ($1, $2, $3, $4, 'A summary.', now() - interval '1 hour', now() - interval '1 hour')`,
			lang, fmt.Sprintf("g-%s-%d", lang, i), fmt.Sprintf("Story %d of the week", i+1), fmt.Sprintf("https://site.example/%s/%d", lang, i)); err != nil {
			t.Fatal(err)
		}
	}
}

// scheduleFixture: a database used before (one sent issue a week ago), readers, fresh articles,
// a daily schedule whose last time is `ago` before the injected clock.
func scheduleFixture(t *testing.T, ago time.Duration, approval bool) (*Scheduler, *Store, *ledgerStarter, *bytes.Buffer, time.Time, *sqlx.DB) {
	t.Helper()
	db := testdb.New(t)
	now := time.Now().UTC().Truncate(time.Minute).Add(30 * time.Second)
	at := now.Add(-ago).Truncate(time.Minute)
	if _, err := db.Exec(`INSERT INTO issues (newsletter_id, lang, window_start, window_end, status, created_at)
		VALUES ((SELECT id FROM newsletters WHERE slug = 'digest-en'), 'en', $1::timestamptz - interval '14 days', $1::timestamptz - interval '7 days', 'sent', $1::timestamptz - interval '7 days')`, at); err != nil {
		t.Fatal(err)
	}
	seedReaders(t, db, "en", 5)
	seedArticles(t, db, "en", 3)
	store := NewStore(db, func() time.Time { return now })
	starter := &ledgerStarter{store: store}
	var logs bytes.Buffer
	s, err := NewScheduler(store, starter, nil, ScheduleOptions{Spec: fmt.Sprintf("CRON_TZ=UTC %d %d * * *", at.Minute(), at.Hour()),
		Languages: []string{"en"}, MaxLateness: 6 * time.Hour, RequireApproval: approval}, slog.New(slog.NewTextHandler(&logs, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if got := s.previous(now); !got.Equal(at) {
		t.Fatalf("previous(%v) = %v, want %v", now, got, at)
	}
	return s, store, starter, &logs, at, db
}

func TestScheduleLateRunWaitsForEditor(t *testing.T) {
	tests := []struct {
		name      string
		ago       time.Duration
		wantStart int
		wantLate  bool
	}{
		{"on time after a restart", time.Hour, 1, false},
		{"just within the lateness", 5*time.Hour + 50*time.Minute, 1, false},
		{"too late after downtime", 7 * time.Hour, 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, store, starter, logs, _, _ := scheduleFixture(t, tc.ago, false)
			ctx := context.Background()
			s.CatchUp(ctx)
			s.CatchUp(ctx) // a second start, or a second process: nothing more
			if starter.calls != tc.wantStart {
				t.Fatalf("started %d times, want %d", starter.calls, tc.wantStart)
			}
			issues, err := store.Issues(ctx, "en")
			if err != nil || len(issues) != 2 {
				t.Fatalf("issues %v, %v", issues, err)
			}
			cur := issues[0]
			if tc.wantLate {
				if cur.Status != StatusDraft || !strings.Contains(cur.PauseReason, "late") || !strings.Contains(cur.PauseReason, "editor") {
					t.Fatalf("late issue: status %q, reason %q", cur.Status, cur.PauseReason)
				}
				if !strings.Contains(logs.String(), "waits for an editor") {
					t.Fatalf("no log line says so:\n%s", logs)
				}
				var n int
				db := store.db
				if err := db.Get(&n, `SELECT count(*) FROM deliveries`); err != nil || n != 0 {
					t.Fatalf("%d deliveries for a late run", n)
				}
			} else if cur.Status != StatusSending {
				t.Fatalf("issue status %q, want sending", cur.Status)
			}
		})
	}
}

func TestScheduleFreshInstallDoesNotCatchUp(t *testing.T) {
	db := testdb.New(t)
	seedArticles(t, db, "en", 2)
	seedReaders(t, db, "en", 2)
	now := time.Now().UTC()
	at := now.Add(-time.Hour)
	store := NewStore(db, func() time.Time { return now })
	starter := &ledgerStarter{store: store}
	s, err := NewScheduler(store, starter, nil, ScheduleOptions{Spec: fmt.Sprintf("CRON_TZ=UTC %d %d * * *", at.Minute(), at.Hour()), Languages: []string{"en"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.CatchUp(context.Background())
	if starter.calls != 0 {
		t.Fatal("a fresh install sent a digest for a time before it existed")
	}
}

func TestScheduleRequireApproval(t *testing.T) {
	t.Run("not approved is skipped", func(t *testing.T) {
		s, store, starter, logs, at, _ := scheduleFixture(t, time.Minute, true)
		s.RunAt(context.Background(), at)
		issues, _ := store.Issues(context.Background(), "en")
		if starter.calls != 0 || issues[0].Status != StatusSkipped || !strings.Contains(logs.String(), "not approved") {
			t.Fatalf("calls %d, status %q, logs:\n%s", starter.calls, issues[0].Status, logs)
		}
	})
	t.Run("approved is sent", func(t *testing.T) {
		s, store, starter, _, at, _ := scheduleFixture(t, time.Minute, true)
		ctx := context.Background()
		iss, err := store.Assemble(ctx, "en", 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := store.Approve(ctx, iss.ID); err != nil {
			t.Fatal(err)
		}
		s.RunAt(ctx, at)
		if starter.calls != 1 {
			t.Fatalf("approved issue started %d times", starter.calls)
		}
	})
}

// TestScheduleOnceAcrossProcesses: several schedulers (as several serve processes would) run the
// same time at once; one issue starts, once.
func TestScheduleOnceAcrossProcesses(t *testing.T) {
	s, store, starter, _, at, _ := scheduleFixture(t, time.Minute, false)
	others := make([]*Scheduler, 4)
	for i := range others {
		o := *s
		others[i] = &o
	}
	var wg sync.WaitGroup
	for _, o := range others {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o.RunAt(context.Background(), at)
		}()
	}
	wg.Wait()
	if starter.calls != 1 {
		t.Fatalf("started %d times, want 1", starter.calls)
	}
	var sending int
	if err := store.db.Get(&sending, `SELECT count(*) FROM issues WHERE status = 'sending'`); err != nil || sending != 1 {
		t.Fatalf("%d issues sending", sending)
	}
}
