package digest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"newsletter/internal/textclean"
)

// ScheduleOptions configure the digest schedules. Each digest newsletter has its own schedule,
// most articles and approval rule (newsletters.schedule, max_articles, require_approval); these
// are the settings a digest without its own takes.
type ScheduleOptions struct {
	Spec            string   // robfig/cron syntax, CRON_TZ honoured, e.g. "CRON_TZ=UTC 0 8 * * MON"
	Languages       []string // the digests of these languages run (all digests when empty)
	MaxArticles     int
	RequireApproval bool // a draft not approved by send time is skipped
	// MaxLateness: a run later than this (after downtime) is not sent on its own; it waits for an
	// editor (default 6h).
	MaxLateness time.Duration
	// Location is the zone of an expression without CRON_TZ (NEWSLETTER_TIMEZONE; default UTC).
	Location *time.Location
	// Tick is how often Run re-reads the schedules and looks for a time that has come (default a
	// minute: the resolution of a cron expression).
	Tick time.Duration
}

// OutcomeSkippedByEditor is the schedule_runs outcome of a run an editor chose to skip.
const OutcomeSkippedByEditor = "skipped by an editor"

// issueStarter starts sending an issue (*Sender).
type issueStarter interface {
	Start(ctx context.Context, issueID int64) (int, error)
}

// Scheduler runs each digest newsletter at its scheduled times: poll the feeds, assemble the
// digest's issue and start sending it. Several serve processes on one database run each time once.
type Scheduler struct {
	store   *Store
	starter issueStarter
	poll    func(ctx context.Context)
	sched   cron.Schedule // the default schedule (Spec)
	opts    ScheduleOptions
	log     *slog.Logger
	// checked is the time up to which the schedules were looked at (tick); zero before the first.
	checked time.Time
}

// ParseSchedule reads a cron expression (five fields or a descriptor such as @weekly) as every
// digest schedule is read: an expression without CRON_TZ= or TZ= is in loc (UTC when nil).
func ParseSchedule(spec string, loc *time.Location) (cron.Schedule, error) {
	sched, err := cron.ParseStandard(InZone(spec, loc))
	if err != nil {
		return nil, fmt.Errorf("digest schedule %q: %v: %w", spec, err, ErrInvalid)
	}
	return sched, nil
}

// InZone prefixes spec with CRON_TZ=loc unless it names its own zone, so robfig/cron reads it in
// loc rather than in the process's local zone.
func InZone(spec string, loc *time.Location) string {
	spec = strings.TrimSpace(spec)
	if strings.HasPrefix(spec, "CRON_TZ=") || strings.HasPrefix(spec, "TZ=") {
		return spec
	}
	if loc == nil {
		loc = time.UTC
	}
	return "CRON_TZ=" + loc.String() + " " + spec
}

// NextRuns returns the next n times of sched after now.
func NextRuns(sched cron.Schedule, now time.Time, n int) []time.Time {
	var out []time.Time
	t := now
	for range n {
		t = sched.Next(t)
		if t.IsZero() {
			break
		}
		out = append(out, t)
	}
	return out
}

// NewScheduler returns a Scheduler. poll, when set, fetches the feeds before each run (the
// Ingester's PollAll); starter is the Sender. The store's window rule takes its period from the
// schedule given to the store (Store.SetSchedule), the same spec in serve.
func NewScheduler(store *Store, starter issueStarter, poll func(ctx context.Context), opts ScheduleOptions, log *slog.Logger) (*Scheduler, error) {
	if opts.Location == nil {
		opts.Location = time.UTC
	}
	sched, err := ParseSchedule(opts.Spec, opts.Location)
	if err != nil {
		return nil, err
	}
	if opts.MaxLateness <= 0 {
		opts.MaxLateness = 6 * time.Hour
	}
	if opts.Tick <= 0 {
		opts.Tick = time.Minute
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Scheduler{store: store, starter: starter, poll: poll, sched: sched, opts: opts, log: log}, nil
}

// scheduledDigest is what the scheduler reads of a digest newsletter, its settings applied.
type scheduledDigest struct {
	ID              int64      `db:"id"`
	Lang            string     `db:"lang"`
	Spec            *string    `db:"schedule"`
	MaxArticles     *int       `db:"max_articles"`
	RequireApproval *bool      `db:"require_approval"`
	SkipRunAt       *time.Time `db:"skip_run_at"`

	sched cron.Schedule
}

func (d scheduledDigest) maxArticles(opts ScheduleOptions) int {
	if d.MaxArticles != nil {
		return *d.MaxArticles
	}
	return opts.MaxArticles
}

func (d scheduledDigest) requireApproval(opts ScheduleOptions) bool {
	if d.RequireApproval != nil {
		return *d.RequireApproval
	}
	return opts.RequireApproval
}

const scheduledDigestColumns = `id, lang, schedule, max_articles, require_approval, skip_run_at`

// digests reads the digest newsletters the scheduler runs, each with its parsed schedule. A
// stored expression that no longer parses (the pages refuse one, so only a hand edit) falls back
// to the default schedule, logged, rather than stopping that digest.
func (s *Scheduler) digests(ctx context.Context) ([]scheduledDigest, error) {
	var all []scheduledDigest
	if err := s.store.db.SelectContext(ctx, &all, `SELECT `+scheduledDigestColumns+`
		FROM newsletters WHERE kind = 'digest' ORDER BY lang`); err != nil {
		return nil, fmt.Errorf("digest schedules: %w", err)
	}
	out := all[:0]
	for _, d := range all {
		if len(s.opts.Languages) > 0 && !slices.Contains(s.opts.Languages, d.Lang) {
			continue
		}
		d.sched = s.sched
		if d.Spec != nil {
			sched, err := ParseSchedule(*d.Spec, s.opts.Location)
			if err != nil {
				s.log.Error("digest schedule: stored expression unreadable; using the default", "lang", d.Lang, "err", err)
			} else {
				d.sched = sched
			}
		}
		out = append(out, d)
	}
	return out, nil
}

// Run handles a scheduled time missed while the service was down, then looks at the schedules
// once a tick until ctx ends. Each tick re-reads them from the database rather than registering
// them with a cron runner once: an editor's change (or skip) then takes effect within a minute in
// every serve process without a restart or any message between processes, for one small query a
// minute; a minute is the finest a cron expression names, so no scheduled time falls between ticks.
func (s *Scheduler) Run(ctx context.Context) error {
	s.CatchUp(ctx)
	s.checked = s.store.now()
	t := time.NewTicker(s.opts.Tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			s.tick(ctx, s.store.now())
		}
	}
}

// tick runs every digest whose latest scheduled time at or before now came after the previous
// tick (the first tick only records now: CatchUp looked before it). The lateness rule of decide
// still applies, so a tick delayed past MaxLateness leaves the issue for an editor.
func (s *Scheduler) tick(ctx context.Context, now time.Time) {
	since := s.checked
	s.checked = now
	if since.IsZero() || !now.After(since) {
		return
	}
	ds, err := s.digests(ctx)
	if err != nil {
		s.log.Error("digest schedule: read schedules", "err", err)
		return
	}
	polled := false
	for _, d := range ds {
		at := previousRun(d.sched, now)
		if at.IsZero() || !at.After(since) {
			continue
		}
		if !polled && s.poll != nil && !s.skipped(ctx, d.ID, at) {
			s.poll(ctx) // once for every digest due at this tick
			polled = true
		}
		s.runDigest(ctx, d, at)
	}
}

// skipped reports whether an editor skipped digest id's run at at (read now, not at the last tick).
func (s *Scheduler) skipped(ctx context.Context, id int64, at time.Time) bool {
	var skip sql.NullTime
	if err := s.store.db.GetContext(ctx, &skip, `SELECT skip_run_at FROM newsletters WHERE id = $1`, id); err != nil {
		return false
	}
	return skip.Valid && skip.Time.Equal(at)
}

// previous is the latest time of the default schedule at or before now (zero when none within a year).
func (s *Scheduler) previous(now time.Time) time.Time {
	return previousRun(s.sched, now)
}

// CatchUp runs each digest's last scheduled time if it was missed: no run recorded for it
// although the service was in use before it. runDigest applies the lateness rule.
func (s *Scheduler) CatchUp(ctx context.Context) {
	ds, err := s.digests(ctx)
	if err != nil {
		s.log.Error("digest schedule: catch up", "err", err)
		return
	}
	now := s.store.now()
	for _, d := range ds {
		at := previousRun(d.sched, now)
		if at.IsZero() {
			continue
		}
		var before bool
		if err := s.store.db.GetContext(ctx, &before, `SELECT EXISTS (SELECT 1 FROM schedule_runs WHERE lang = $1 AND scheduled_at < $2)
			OR EXISTS (SELECT 1 FROM issues WHERE lang = $1 AND created_at < $2)`, d.Lang, at); err != nil {
			s.log.Error("digest schedule: catch up", "lang", d.Lang, "err", err)
			continue
		}
		if before {
			s.runDigest(ctx, d, at)
		}
	}
}

// RunAt runs every digest for the time at, whatever its schedule says: feeds first, then each
// issue (an editor's skip of at still holds).
func (s *Scheduler) RunAt(ctx context.Context, at time.Time) {
	ds, err := s.digests(ctx)
	if err != nil {
		s.log.Error("digest schedule: read schedules", "err", err)
		return
	}
	if s.poll != nil {
		s.poll(ctx)
	}
	for _, d := range ds {
		s.runDigest(ctx, d, at)
	}
}

// runDigest runs one digest once across processes: a session advisory lock on a dedicated
// connection keeps two processes from running it at the same time, and the schedule_runs row
// records that it finished (a run that crashed half-way is run again). The digest's row is read
// again under the lock, so a skip or setting saved since the tick counts.
func (s *Scheduler) runDigest(ctx context.Context, d scheduledDigest, at time.Time) {
	lang := d.Lang
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
	fresh := d
	if err := s.store.db.GetContext(ctx, &fresh, `SELECT `+scheduledDigestColumns+` FROM newsletters WHERE id = $1`, d.ID); err != nil {
		log.Error("digest schedule: read digest", "err", err)
		return
	}
	if _, err := s.store.db.ExecContext(ctx, `INSERT INTO schedule_runs (lang, scheduled_at, newsletter_id) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING`, lang, at, d.ID); err != nil {
		log.Error("digest schedule: run record", "err", err)
		return
	}
	var outcome string
	var issueID int64
	if fresh.SkipRunAt != nil && fresh.SkipRunAt.Equal(at) {
		// Nothing is assembled: the articles stay for the next issue. The skip is spent.
		log.Info("digest schedule: an editor skipped this run")
		outcome = OutcomeSkippedByEditor
		if _, err := s.store.db.ExecContext(ctx, `UPDATE newsletters SET skip_run_at = NULL WHERE id = $1 AND skip_run_at = $2`, d.ID, at); err != nil {
			log.Error("digest schedule: clear the skip", "err", err)
		}
	} else {
		outcome, issueID = s.decide(ctx, log, lang, at, fresh.maxArticles(s.opts), fresh.requireApproval(s.opts))
	}
	var id *int64
	if issueID != 0 {
		id = &issueID
	}
	if _, err := s.store.db.ExecContext(context.WithoutCancel(ctx), `UPDATE schedule_runs SET finished_at = now(), outcome = $3, issue_id = $4, newsletter_id = $5
		WHERE lang = $1 AND scheduled_at = $2`, lang, at, outcome, id, d.ID); err != nil {
		log.Error("digest schedule: run record", "err", err)
	}
}

// decide assembles the issue and starts it, or says why not.
func (s *Scheduler) decide(ctx context.Context, log *slog.Logger, lang string, at time.Time, maxArticles int, requireApproval bool) (outcome string, issueID int64) {
	now := s.store.now()
	iss, err := s.store.Assemble(ctx, lang, maxArticles)
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
	if requireApproval && iss.Status != StatusApproved {
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
