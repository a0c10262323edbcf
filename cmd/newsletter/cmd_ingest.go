package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/robfig/cron/v3"

	"newsletter/digest"
	"newsletter/digest/feeds"
)

// ingest runs `newsletter ingest`: every configured feed once, one line per feed; it fails only
// when every feed failed. Feeds that answered 410 Gone are tried too: an operator asked for every
// feed, and a success turns one back on.
func (a *App) ingest(ctx context.Context, args []string) error {
	if len(args) > 0 {
		return usageError{"ingest takes no arguments"}
	}
	if len(a.cfg.Feeds) == 0 {
		return errors.New("no feeds configured: set NEWSLETTER_FEEDS")
	}
	if err := a.open(ctx); err != nil {
		return err
	}
	failed := 0
	for _, r := range a.ingester(true).PollAll(ctx) {
		u := feeds.RedactURL(r.URL)
		if r.Err != nil {
			failed++
			fmt.Fprintf(a.stdout, "FAILED %s %s: %s\n", r.Lang, u, oneLine(r.Err.Error()))
			continue
		}
		if r.Skipped {
			fmt.Fprintf(a.stdout, "WAIT %s %s: its server asked for no fetch before %s\n", r.Lang, u, r.RetryAfter.UTC().Format(time.RFC3339))
			continue
		}
		note := ""
		if r.NotModified {
			note = " (not modified)"
		}
		if r.MovedTo != "" {
			note += " (moved permanently to " + r.MovedTo + ")"
		}
		fmt.Fprintf(a.stdout, "OK %s %s new=%d updated=%d%s\n", r.Lang, u, r.New, r.Updated, note)
	}
	if failed == len(a.cfg.Feeds) {
		return errors.New("every feed failed")
	}
	return nil
}

// ingester builds the digest Ingester for the configured feeds; retryGone also fetches the feeds
// that answered 410 Gone.
func (a *App) ingester(retryGone bool) *feeds.Ingester {
	configs := make([]feeds.Config, 0, len(a.cfg.Feeds))
	for _, f := range a.cfg.Feeds {
		configs = append(configs, feeds.Config{Lang: f.Lang, URL: f.URL})
	}
	return feeds.NewIngester(digest.NewStore(a.db, nil), configs, feeds.Options{BaseURL: a.cfg.BaseURL, AllowPrivate: a.cfg.FeedsAllowPrivate, RetryGone: retryGone}, a.log, a.registry)
}

// pollFeeds is serve's feed worker: one poll at start, then one at each time of spec (robfig/cron
// syntax). A poll that runs long delays the next instead of overlapping it.
func pollFeeds(ctx context.Context, ing *feeds.Ingester, spec string, log *slog.Logger) error {
	sched, err := cron.ParseStandard(spec)
	if err != nil {
		return fmt.Errorf("NEWSLETTER_FEED_SCHEDULE: %w", err)
	}
	for {
		ing.PollAll(ctx)
		next := sched.Next(time.Now())
		log.Debug("next feed poll", "at", next)
		t := time.NewTimer(time.Until(next))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}
