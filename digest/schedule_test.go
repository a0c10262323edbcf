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

// clock is a settable clock for the scheduler's ticks.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.t = t; c.mu.Unlock() }

// tickFixture: a database used before, 5 readers and 3 fresh articles in English, a scheduler
// whose default schedule (the setting) is daily at base+30m UTC, in Moscow's zone for expressions
// without CRON_TZ, its first tick at base.
func tickFixture(t *testing.T, opts ScheduleOptions) (*Scheduler, *clock, *ledgerStarter, *sqlx.DB, time.Time) {
	t.Helper()
	db := testdb.New(t)
	// The next full hour: every time below falls in one hour (in Moscow too, a whole hour off UTC);
	// the articles seeded an hour ago are within the window of an issue assembled then.
	base := time.Now().UTC().Truncate(time.Hour).Add(time.Hour)
	if _, err := db.Exec(`INSERT INTO issues (newsletter_id, lang, window_start, window_end, status, created_at)
		VALUES ((SELECT id FROM newsletters WHERE slug = 'digest-en'), 'en', $1::timestamptz - interval '14 days', $1::timestamptz - interval '7 days', 'sent', $1::timestamptz - interval '7 days')`, base); err != nil {
		t.Fatal(err)
	}
	seedReaders(t, db, "en", 5)
	seedArticles(t, db, "en", 3)
	clk := &clock{t: base}
	store := NewStore(db, clk.now)
	starter := &ledgerStarter{store: store}
	def := base.Add(30 * time.Minute)
	opts.Spec = fmt.Sprintf("CRON_TZ=UTC %d %d * * *", def.Minute(), def.Hour())
	opts.Languages = []string{"en"}
	moscow, err := time.LoadLocation("Europe/Moscow")
	if err != nil {
		t.Fatal(err)
	}
	opts.Location = moscow
	s, err := NewScheduler(store, starter, nil, opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	s.tick(context.Background(), base)
	return s, clk, starter, db, base
}

// moscowDaily is a daily expression without a zone for the given instants (same hour in Moscow).
func moscowDaily(t *testing.T, at ...time.Time) string {
	t.Helper()
	moscow, _ := time.LoadLocation("Europe/Moscow")
	var mins []string
	for _, a := range at {
		mins = append(mins, fmt.Sprint(a.In(moscow).Minute()))
	}
	return fmt.Sprintf("%s %d * * *", strings.Join(mins, ","), at[0].In(moscow).Hour())
}

func tickAt(s *Scheduler, clk *clock, t time.Time) {
	clk.set(t)
	s.tick(context.Background(), t)
}

type runRow struct {
	ScheduledAt  time.Time `db:"scheduled_at"`
	Outcome      string    `db:"outcome"`
	NewsletterID *int64    `db:"newsletter_id"`
	IssueID      *int64    `db:"issue_id"`
}

func runs(t *testing.T, db *sqlx.DB) []runRow {
	t.Helper()
	var out []runRow
	if err := db.Select(&out, `SELECT scheduled_at, outcome, newsletter_id, issue_id FROM schedule_runs ORDER BY scheduled_at`); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestScheduleFromDatabase: a schedule saved in the newsletters table after the scheduler started
// takes effect at its next tick (in NEWSLETTER_TIMEZONE's zone), and the setting's time no longer runs.
func TestScheduleFromDatabase(t *testing.T) {
	s, clk, starter, db, base := tickFixture(t, ScheduleOptions{})
	at := base.Add(2 * time.Minute)
	if _, err := db.Exec(`UPDATE newsletters SET schedule = $1 WHERE slug = 'digest-en'`, moscowDaily(t, at)); err != nil {
		t.Fatal(err)
	}
	tickAt(s, clk, base.Add(time.Minute))
	if starter.calls != 0 {
		t.Fatal("ran before its time")
	}
	tickAt(s, clk, base.Add(3*time.Minute))
	if starter.calls != 1 {
		t.Fatalf("started %d times at the database's time, want 1", starter.calls)
	}
	rs := runs(t, db)
	if len(rs) != 1 || !rs[0].ScheduledAt.Equal(at) || rs[0].NewsletterID == nil || rs[0].IssueID == nil || !strings.HasPrefix(rs[0].Outcome, "sending") {
		t.Fatalf("runs %+v, want one at %v naming the digest and its issue", rs, at)
	}
	tickAt(s, clk, base.Add(31*time.Minute)) // the setting's time: replaced by the digest's own
	if starter.calls != 1 || len(runs(t, db)) != 1 {
		t.Fatalf("the setting's schedule still ran: %d starts, runs %+v", starter.calls, runs(t, db))
	}
}

// TestScheduleTicksOnceAcrossProcesses: two schedulers (two serve processes) tick at the same
// time; the digest runs once.
func TestScheduleTicksOnceAcrossProcesses(t *testing.T) {
	s1, clk, starter, db, base := tickFixture(t, ScheduleOptions{})
	s2, err := NewScheduler(s1.store, starter, nil, s1.opts, nil)
	if err != nil {
		t.Fatal(err)
	}
	s2.tick(context.Background(), base)
	at := base.Add(2 * time.Minute)
	if _, err := db.Exec(`UPDATE newsletters SET schedule = $1 WHERE slug = 'digest-en'`, moscowDaily(t, at)); err != nil {
		t.Fatal(err)
	}
	clk.set(base.Add(3 * time.Minute))
	var wg sync.WaitGroup
	for _, s := range []*Scheduler{s1, s2} {
		wg.Add(1)
		go func() { defer wg.Done(); s.tick(context.Background(), clk.now()) }()
	}
	wg.Wait()
	if starter.calls != 1 || len(runs(t, db)) != 1 {
		t.Fatalf("%d starts, runs %+v; want one", starter.calls, runs(t, db))
	}
}

// TestScheduleSkipNext: an editor's skip of the next run records that run as skipped, sends
// nothing and assembles nothing; the run after it goes out with the articles.
func TestScheduleSkipNext(t *testing.T) {
	s, clk, starter, db, base := tickFixture(t, ScheduleOptions{})
	first, second := base.Add(2*time.Minute), base.Add(4*time.Minute)
	if _, err := db.Exec(`UPDATE newsletters SET schedule = $1, skip_run_at = $2 WHERE slug = 'digest-en'`, moscowDaily(t, first, second), first); err != nil {
		t.Fatal(err)
	}
	tickAt(s, clk, base.Add(3*time.Minute))
	rs := runs(t, db)
	if starter.calls != 0 || len(rs) != 1 || rs[0].Outcome != OutcomeSkippedByEditor || rs[0].IssueID != nil || rs[0].NewsletterID == nil {
		t.Fatalf("skipped run: %d starts, runs %+v", starter.calls, rs)
	}
	var drafts int
	var skip *time.Time
	if err := db.Get(&drafts, `SELECT count(*) FROM issues WHERE status <> 'sent'`); err != nil || drafts != 0 {
		t.Fatalf("%d issues assembled for a skipped run (%v)", drafts, err)
	}
	if err := db.Get(&skip, `SELECT skip_run_at FROM newsletters WHERE slug = 'digest-en'`); err != nil || skip != nil {
		t.Fatalf("skip_run_at after the skipped run: %v (%v)", skip, err)
	}
	tickAt(s, clk, base.Add(5*time.Minute))
	rs = runs(t, db)
	if starter.calls != 1 || len(rs) != 2 || !strings.HasPrefix(rs[1].Outcome, "sending") {
		t.Fatalf("the run after the skip: %d starts, runs %+v", starter.calls, rs)
	}
	var articles int
	if err := db.Get(&articles, `SELECT count(*) FROM issue_articles WHERE issue_id = $1`, *rs[1].IssueID); err != nil || articles != 3 {
		t.Fatalf("the issue after the skip has %d articles, want the 3 kept (%v)", articles, err)
	}
}

// TestSchedulePerDigestSettings: a digest's own max_articles and require_approval win over the
// settings, either way.
func TestSchedulePerDigestSettings(t *testing.T) {
	t.Run("max articles", func(t *testing.T) {
		s, _, starter, db, base := tickFixture(t, ScheduleOptions{MaxArticles: 12})
		if _, err := db.Exec(`UPDATE newsletters SET max_articles = 2 WHERE slug = 'digest-en'`); err != nil {
			t.Fatal(err)
		}
		s.RunAt(context.Background(), base)
		rs := runs(t, db)
		if starter.calls != 1 || len(rs) != 1 || rs[0].IssueID == nil {
			t.Fatalf("%d starts, runs %+v", starter.calls, rs)
		}
		// What the email and the archive show (Content, with the setting's 12).
		c, err := s.store.Content(context.Background(), *rs[0].IssueID, 12)
		if err != nil || c.Total-c.More != 2 {
			t.Fatalf("shown %d of %d articles, want the digest's 2 (%v)", c.Total-c.More, c.Total, err)
		}
	})
	t.Run("approval required by the digest", func(t *testing.T) {
		s, _, starter, db, base := tickFixture(t, ScheduleOptions{RequireApproval: false})
		if _, err := db.Exec(`UPDATE newsletters SET require_approval = true WHERE slug = 'digest-en'`); err != nil {
			t.Fatal(err)
		}
		s.RunAt(context.Background(), base)
		if rs := runs(t, db); starter.calls != 0 || len(rs) != 1 || rs[0].Outcome != "skipped: not approved" {
			t.Fatalf("%d starts, runs %+v", starter.calls, rs)
		}
	})
	t.Run("approval waived by the digest", func(t *testing.T) {
		s, _, starter, db, base := tickFixture(t, ScheduleOptions{RequireApproval: true})
		if _, err := db.Exec(`UPDATE newsletters SET require_approval = false WHERE slug = 'digest-en'`); err != nil {
			t.Fatal(err)
		}
		s.RunAt(context.Background(), base)
		if starter.calls != 1 {
			t.Fatalf("%d starts, want 1", starter.calls)
		}
	})
}

// TestWindowPeriodFromDigestSchedule: the window rule's period is the digest's own schedule's
// (daily: one day), not the setting's (weekly), read in the newsroom's zone.
func TestWindowPeriodFromDigestSchedule(t *testing.T) {
	db := testdb.New(t)
	store := NewStore(db, nil)
	if err := store.SetSchedule("CRON_TZ=UTC 0 8 * * MON"); err != nil {
		t.Fatal(err)
	}
	moscow, _ := time.LoadLocation("Europe/Moscow")
	store.SetLocation(moscow)
	now := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	ctx := context.Background()
	w, err := store.comingWindow(ctx, db, "en", now)
	if err != nil || w.period != 7*24*time.Hour {
		t.Fatalf("default: period %v (%v), want 7 days", w.period, err)
	}
	if _, err := db.Exec(`UPDATE newsletters SET schedule = '0 8 * * *' WHERE slug = 'digest-en'`); err != nil {
		t.Fatal(err)
	}
	if w, err = store.comingWindow(ctx, db, "en", now); err != nil || w.period != 24*time.Hour || !w.start.Equal(now.Add(-24*time.Hour)) {
		t.Fatalf("own daily schedule: period %v, start %v (%v)", w.period, w.start, err)
	}
	if w, err = store.comingWindow(ctx, db, "ru", now); err != nil || w.period != 7*24*time.Hour {
		t.Fatalf("the other digest: period %v (%v), want 7 days", w.period, err)
	}
}
