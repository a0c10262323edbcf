package digest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
)

// defaultPeriod is one period of the default weekly schedule: the period of a Store without a
// schedule, and of a schedule that has not fired twice within a year (or never fires).
const defaultPeriod = 7 * 24 * time.Hour

// issueWindow is the window of a language's coming issue: what the window rule compares dates with.
type issueWindow struct {
	start, end time.Time
	period     time.Duration
	first      bool // the language has no earlier issue (sent, cancelled or skipped)
}

// admits is the window rule as an SQL condition on the article alias; its placeholders start at
// $n and args are their values. The rule lives here only: Assemble and the editor pages use it.
//
// The window rule decides which articles an issue of a language takes on its own. An issue
// covers the window from start to end; end is when it is assembled, start is where the
// language's last issue (sent, cancelled or skipped) ended, and for the first issue of a language
// one period before its end (so a first draft's start moves each time it is refreshed).
//
// One period is the gap of the digest schedule that ends at the issue: from the run before the
// latest scheduled run at or before end, to that run; 7 days for the default weekly schedule.
// An irregular schedule gives each issue the gap before it ("0 8 * * MON,THU": 4 days on Monday,
// 3 on Thursday), the span readers waited. "@every D" has period D; a schedule that has not run
// twice within a year counts as weekly.
//
// A feed's items present when it is first fetched successfully (the service's first run, or a
// feed added later) are its baseline: stored, and an editor may pick them, but not news.
//
// The first issue of a language takes the articles first seen by its end and published within
// one period before it, baseline or not: a new service starts with the last period's stories,
// not the back catalogue. A baseline item without a date of its own is not taken, as nothing
// says it is recent.
//
// A later issue takes articles first seen by its end that are not baseline and were published
// within the window, and late arrivals: first seen within the window, published before it, but
// no more than one period before its start. Anything older needs an editor.
//
// Dates: a date later than the first-seen time (beyond ten minutes of clock skew), and a missing
// date, count as the first-seen time (feedItemArticle sets them so); the article is marked
// undated, which matters only in a baseline.
//
// Whatever the dates, an issue also takes what an editor picked (an article of their own, one
// they pinned or added from the earlier articles), and never a hidden article or one already in
// another issue; Assemble adds the articles released by an issue that never went out.
func (w issueWindow) admits(alias string, n int) (cond string, args []any) {
	a := alias + "."
	if w.first {
		cond = fmt.Sprintf(`(%[1]spicked OR %[1]sfirst_seen_at <= $%[2]d AND %[1]spublished_at >= $%[3]d
			AND NOT (%[1]sbaseline AND %[1]sundated))`, a, n, n+1)
		return cond, []any{w.end, w.start}
	}
	cond = fmt.Sprintf(`(%[1]spicked OR %[1]sfirst_seen_at <= $%[2]d AND NOT %[1]sbaseline
			AND (%[1]spublished_at >= $%[3]d OR %[1]sfirst_seen_at >= $%[3]d AND %[1]spublished_at >= $%[4]d))`, a, n, n+1, n+2)
	return cond, []any{w.end, w.start, w.start.Add(-w.period)}
}

// comingWindow returns the window of lang's coming issue if it were assembled at now.
func (s *Store) comingWindow(ctx context.Context, q getter, lang string, now time.Time) (issueWindow, error) {
	var prev sql.NullTime
	if err := q.GetContext(ctx, &prev, `SELECT max(window_end) FROM issues
		WHERE lang = $1 AND status IN ('sent', 'cancelled', 'skipped')`, lang); err != nil {
		return issueWindow{}, fmt.Errorf("previous window: %w", err)
	}
	// The digest's own schedule (newsletters.schedule) sets its period; else the setting's.
	sched := s.sched
	var own sql.NullString
	if err := q.GetContext(ctx, &own, `SELECT schedule FROM newsletters WHERE kind = 'digest' AND lang = $1`, lang); err != nil && !errors.Is(err, sql.ErrNoRows) {
		return issueWindow{}, fmt.Errorf("digest schedule: %w", err)
	}
	if own.Valid {
		if p, err := ParseSchedule(own.String, s.loc); err == nil {
			sched = p
		}
	}
	w := issueWindow{end: now, period: periodOf(sched, now)}
	if prev.Valid {
		w.start = prev.Time.UTC()
	} else {
		w.first, w.start = true, now.Add(-w.period)
	}
	return w, nil
}

// SetSchedule sets the default digest schedule (robfig/cron syntax) whose period the window rule
// uses for a digest without its own schedule; without one the period is the default weekly
// schedule's 7 days. Call it before the Store is in use.
func (s *Store) SetSchedule(spec string) error {
	sched, err := cron.ParseStandard(spec)
	if err != nil {
		return fmt.Errorf("digest schedule %q: %v: %w", spec, err, ErrInvalid)
	}
	s.sched = sched
	return nil
}

// SetLocation sets the zone of a digest's own schedule without CRON_TZ (NEWSLETTER_TIMEZONE;
// UTC when unset). Call it before the Store is in use.
func (s *Store) SetLocation(loc *time.Location) { s.loc = loc }

// period is one period of the default schedule for an issue assembled at t.
func (s *Store) period(t time.Time) time.Duration { return periodOf(s.sched, t) }

// periodOf is one period of sched for an issue assembled at t: the gap between the latest
// scheduled run at or before t and the run before it.
func periodOf(sched cron.Schedule, t time.Time) time.Duration {
	if sched == nil {
		return defaultPeriod
	}
	if every, ok := sched.(cron.ConstantDelaySchedule); ok {
		return every.Delay // "@every D" has no fixed times to measure between
	}
	last := previousRun(sched, t)
	if last.IsZero() {
		return defaultPeriod
	}
	before := previousRun(sched, last.Add(-time.Nanosecond))
	if before.IsZero() {
		return defaultPeriod
	}
	return last.Sub(before)
}

// previousRun is the latest time of sched at or before now (zero when none within a year).
func previousRun(sched cron.Schedule, now time.Time) time.Time {
	for _, back := range []time.Duration{time.Hour, 25 * time.Hour, 8 * 24 * time.Hour, 32 * 24 * time.Hour, 367 * 24 * time.Hour} {
		t := sched.Next(now.Add(-back))
		if t.IsZero() || t.After(now) {
			continue
		}
		for {
			next := sched.Next(t)
			if next.IsZero() || next.After(now) {
				return t
			}
			t = next
		}
	}
	return time.Time{}
}
