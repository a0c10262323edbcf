package digest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/robfig/cron/v3"

	"newsletter/internal/textclean"
)

// ScheduleOptions configure the weekly digest schedule.
type ScheduleOptions struct {
	Spec            string   // robfig/cron syntax, CRON_TZ honoured, e.g. "CRON_TZ=UTC 0 8 * * MON"
	Languages       []string // one issue per language per run
	MaxArticles     int
	RequireApproval bool // a draft not approved by send time is skipped
	// MaxLateness: a run later than this (after downtime) is not sent on its own; it waits for an
	// editor (default 6h).
	MaxLateness time.Duration
}

// issueStarter starts sending an issue (*Sender).
type issueStarter interface {
	Start(ctx context.Context, issueID int64) (int, error)
}

// Scheduler runs the digest at the scheduled times: poll the feeds, assemble each language's
// issue and start sending it. Several serve processes on one database run each time once.
type Scheduler struct {
	store   *Store
	starter issueStarter
	poll    func(ctx context.Context)
	sched   cron.Schedule
	opts    ScheduleOptions
	log     *slog.Logger
}

// NewScheduler returns a Scheduler. poll, when set, fetches the feeds before each run (the
// Ingester's PollAll); starter is the Sender. The store's window rule takes its period from the
// schedule given to the store (Store.SetSchedule), the same spec in serve.
func NewScheduler(store *Store, starter issueStarter, poll func(ctx context.Context), opts ScheduleOptions, log *slog.Logger) (*Scheduler, error) {
	sched, err := cron.ParseStandard(opts.Spec) // five fields or a descriptor such as @weekly
	if err != nil {
		return nil, fmt.Errorf("digest schedule %q: %v: %w", opts.Spec, err, ErrInvalid)
	}
	if opts.MaxLateness <= 0 {
		opts.MaxLateness = 6 * time.Hour
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Scheduler{store: store, starter: starter, poll: poll, sched: sched, opts: opts, log: log}, nil
}

// Run handles a scheduled time missed while the service was down, then runs the schedule until
// ctx ends.
func (s *Scheduler) Run(ctx context.Context) error {
	s.CatchUp(ctx)
	c := cron.New(cron.WithLogger(cron.DiscardLogger))
	c.Schedule(s.sched, cron.FuncJob(func() {
		if at := s.previous(s.store.now()); !at.IsZero() {
			s.RunAt(ctx, at)
		}
	}))
	c.Start()
	<-ctx.Done()
	<-c.Stop().Done()
	return nil
}

// previous is the latest scheduled time at or before now (zero when none within a year).
func (s *Scheduler) previous(now time.Time) time.Time {
	return previousRun(s.sched, now)
}

// CatchUp runs the last scheduled time if it was missed: no run recorded for it although the
// service was in use before it. RunAt applies the lateness rule.
func (s *Scheduler) CatchUp(ctx context.Context) {
	at := s.previous(s.store.now())
	if at.IsZero() {
		return
	}
	for _, lang := range s.opts.Languages {
		var before bool
		if err := s.store.db.GetContext(ctx, &before, `SELECT EXISTS (SELECT 1 FROM schedule_runs WHERE lang = $1 AND scheduled_at < $2)
			OR EXISTS (SELECT 1 FROM issues WHERE lang = $1 AND created_at < $2)`, lang, at); err != nil {
			s.log.Error("digest schedule: catch up", "lang", lang, "err", err)
			continue
		}
		if before {
			s.runLang(ctx, lang, at)
		}
	}
}

// RunAt runs the digest scheduled at at for every language: feeds first, then each issue.
func (s *Scheduler) RunAt(ctx context.Context, at time.Time) {
	if s.poll != nil {
		s.poll(ctx)
	}
	for _, lang := range s.opts.Languages {
		s.runLang(ctx, lang, at)
	}
}

// runLang runs one language once across processes: a session advisory lock on a dedicated
// connection keeps two processes from running it at the same time, and the schedule_runs row
// records that it finished (a run that crashed half-way is run again).
func (s *Scheduler) runLang(ctx context.Context, lang string, at time.Time) {
	log := s.log.With("lang", lang, "scheduled", at.UTC().Format(time.RFC3339))
	conn, err := s.store.db.Connx(ctx)
	if err != nil {
		log.Error("digest schedule: connect", "err", err)
		return
	}
	defer conn.Close()
	var locked bool
	if err := conn.GetContext(ctx, &locked, `SELECT pg_try_advisory_lock(hashtext('newsletter.digest.schedule'), hashtext($1))`, lang); err != nil {
		log.Error("digest schedule: lock", "err", err)
		return
	}
	if !locked {
		log.Info("digest schedule: another process is running this digest")
		return
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), `SELECT pg_advisory_unlock(hashtext('newsletter.digest.schedule'), hashtext($1))`, lang)

	var finished sql.NullTime
	err = s.store.db.GetContext(ctx, &finished, `SELECT finished_at FROM schedule_runs WHERE lang = $1 AND scheduled_at = $2`, lang, at)
	switch {
	case err == nil && finished.Valid:
		return
	case err != nil && !errors.Is(err, sql.ErrNoRows):
		log.Error("digest schedule: run record", "err", err)
		return
	}
	if _, err := s.store.db.ExecContext(ctx, `INSERT INTO schedule_runs (lang, scheduled_at) VALUES ($1, $2) ON CONFLICT DO NOTHING`, lang, at); err != nil {
		log.Error("digest schedule: run record", "err", err)
		return
	}
	outcome, issueID := s.decide(ctx, log, lang, at)
	var id *int64
	if issueID != 0 {
		id = &issueID
	}
	if _, err := s.store.db.ExecContext(context.WithoutCancel(ctx), `UPDATE schedule_runs SET finished_at = now(), outcome = $3, issue_id = $4
		WHERE lang = $1 AND scheduled_at = $2`, lang, at, outcome, id); err != nil {
		log.Error("digest schedule: run record", "err", err)
	}
}

// decide assembles the issue and starts it, or says why not.
func (s *Scheduler) decide(ctx context.Context, log *slog.Logger, lang string, at time.Time) (outcome string, issueID int64) {
	now := s.store.now()
	iss, err := s.store.Assemble(ctx, lang, s.opts.MaxArticles)
	if errors.Is(err, ErrNoArticles) {
		log.Info("digest schedule: no new articles; no issue this time")
		return "no new articles", 0
	}
	if err != nil {
		log.Error("digest schedule: assemble", "err", err)
		return "error: " + textclean.ClipLine(err.Error(), MaxReason), 0
	}
	switch iss.Status {
	case StatusDraft, StatusApproved:
	default:
		log.Info("digest schedule: the current issue is already "+iss.Status, "issue", iss.ID)
		return "issue already " + iss.Status, iss.ID
	}
	if late := now.Sub(at); late > s.opts.MaxLateness {
		reason := fmt.Sprintf("the scheduled send of %s ran %s late (more than %s; the service was probably down), so it was not sent automatically: an editor must send it (approve it, then Send now on the editor page, or newsletter digest send --lang %s)",
			at.UTC().Format("2006-01-02 15:04 MST"), late.Round(time.Minute), s.opts.MaxLateness, lang)
		log.Warn("digest schedule: run too late; the issue waits for an editor", "issue", iss.ID, "late", late.Round(time.Minute).String())
		if _, err := s.store.db.ExecContext(ctx, `UPDATE issues SET pause_reason = $2 WHERE id = $1 AND status IN ('draft', 'approved')`, iss.ID, reason); err != nil {
			log.Error("digest schedule: note lateness", "issue", iss.ID, "err", err)
		}
		return "late: waiting for an editor", iss.ID
	}
	if s.opts.RequireApproval && iss.Status != StatusApproved {
		reason := fmt.Sprintf("not approved by its send time (%s): skipped", at.UTC().Format("2006-01-02 15:04 MST"))
		log.Warn("digest schedule: issue not approved by its send time; skipped (its articles go to the next issue)", "issue", iss.ID)
		if _, err := s.store.db.ExecContext(ctx, `UPDATE issues SET status = 'skipped', pause_reason = $2, finished_at = $3
			WHERE id = $1 AND status = 'draft'`, iss.ID, reason, now.UTC()); err != nil {
			log.Error("digest schedule: skip", "issue", iss.ID, "err", err)
		}
		return "skipped: not approved", iss.ID
	}
	n, err := s.starter.Start(ctx, iss.ID)
	if err != nil {
		log.Error("digest schedule: start sending", "issue", iss.ID, "err", err)
		return "error: " + textclean.ClipLine(err.Error(), MaxReason), iss.ID
	}
	log.Info("digest schedule: sending", "issue", iss.ID, "readers", n)
	return fmt.Sprintf("sending to %d readers", n), iss.ID
}
