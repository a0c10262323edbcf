package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"newsletter/digest"
	"newsletter/digest/send"
	"newsletter/internal/smtpout"
	"newsletter/subscribers"
)

// newSender builds the digest sending engine from the settings (serve and `digest send`); tune, when
// given, adjusts its options last (the bench).
func (a *App) newSender(store *digest.Store, tune ...func(*send.SenderOptions)) (*send.Sender, error) {
	renderer, err := a.digestRenderer()
	if err != nil {
		return nil, err
	}
	client, err := a.mailClient()
	if err != nil {
		return nil, err
	}
	dkim, err := a.dkimSigner()
	if err != nil {
		return nil, err
	}
	opts := send.SenderOptions{
		From: a.cfg.From, BaseURL: a.cfg.BaseURL, Publication: a.cfg.Publication, Secret: a.secret,
		MaxArticles: a.cfg.DigestMaxArticles, Concurrency: a.cfg.SendConcurrency, Rate: a.cfg.SendRate,
		Retry: smtpout.Policy{Attempts: a.cfg.SendMaxAttempts}, DKIM: dkim,
		ReturnPath: a.returnPath, TestReturnPath: a.cfg.BounceAddress,
	}
	for _, f := range tune {
		f(&opts)
	}
	// The reader list records refusals (send.Bouncer) under the same policy as later bounces.
	return send.NewSender(store, renderer, subscribers.NewSigner(a.secret), subscribers.NewStore(a.db, a.secret), client, opts, a.log, a.registry)
}

// digestSend runs `newsletter digest send [--lang L|all] [--yes]`: it assembles the issue of the
// current window (or picks up the unfinished one) for each language and sends it in the foreground.
func (a *App) digestSend(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("digest send", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	lang := fs.String("lang", "all", "language of the digest, or all")
	yes := fs.Bool("yes", false, "do not ask for confirmation")
	if err := fs.Parse(args); err != nil {
		return usageError{"digest send: " + err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("digest send: unexpected argument %q", fs.Arg(0))}
	}
	langs := a.cfg.Languages
	if *lang != "all" {
		if !slices.Contains(a.cfg.Languages, *lang) {
			return usageError{fmt.Sprintf("digest send: --lang %q is not one of NEWSLETTER_LANGUAGES", *lang)}
		}
		langs = []string{*lang}
	}
	if err := a.open(ctx); err != nil {
		return err
	}
	store, err := a.digestStore()
	if err != nil {
		return err
	}
	sender, err := a.newSender(store)
	if err != nil {
		return err
	}

	type plan struct {
		issue   digest.Issue
		readers int
	}
	var plans []plan
	for _, l := range langs {
		iss, err := store.Assemble(ctx, l, a.cfg.DigestMaxArticles)
		if errors.Is(err, digest.ErrNoArticles) {
			fmt.Fprintf(a.stderr, "%s: no new articles since the last issue\n", l)
			continue
		}
		if err != nil {
			return err
		}
		switch iss.Status {
		case digest.StatusPaused:
			return fmt.Errorf("issue %d (%s) is paused (%s); resume it with `newsletter digest resume %d`", iss.ID, l, iss.PauseReason, iss.ID)
		case digest.StatusSending:
			p, err := store.Progress(ctx, iss.ID)
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stderr, "%s: resuming issue %d: %d of %d readers left\n", l, iss.ID, p.Queued, p.Total)
			plans = append(plans, plan{iss, p.Queued})
		default:
			n, err := store.ConfirmedReaders(ctx, l)
			if err != nil {
				return err
			}
			if n == 0 {
				fmt.Fprintf(a.stderr, "%s: no confirmed readers\n", l)
				continue
			}
			plans = append(plans, plan{iss, n})
		}
	}
	if len(plans) == 0 {
		return fmt.Errorf("digest send: nothing to send: %w", errNothing)
	}

	bar := isTerminal(a.stderr)
	if bar && !*yes && isTerminal(a.stdin) {
		for _, p := range plans {
			fmt.Fprintf(a.stderr, "issue %d (%s) %q to %d readers\n", p.issue.ID, p.issue.Lang, p.issue.Subject, p.readers)
		}
		fmt.Fprint(a.stderr, "Send now? [y/N] ")
		answer, _ := bufio.NewReader(a.stdin).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			return errors.New("digest send: not confirmed; nothing sent")
		}
	}

	for _, p := range plans {
		show := progressPrinter(a, p.issue, bar)
		err := sender.SendIssue(ctx, p.issue.ID, show)
		if bar {
			fmt.Fprintln(a.stderr)
		}
		if ctx.Err() != nil {
			return fmt.Errorf("interrupted: messages in flight were finished, the rest stay queued; run the command again to continue")
		}
		if err != nil {
			return err
		}
		final, err := store.Progress(ctx, p.issue.ID)
		if err != nil {
			return err
		}
		fmt.Fprintf(a.stdout, "issue %d (%s): sent %d, failed %d, skipped %d of %d in %s\n", final.IssueID, final.Lang,
			final.Sent, final.Failed, final.Skipped, final.Total, final.Duration(time.Now()).Round(time.Second))
		if final.Failed > 0 {
			reasons, _ := store.FailureReasons(ctx, final.IssueID)
			for _, r := range reasons {
				fmt.Fprintf(a.stdout, "  failed %d: %s\n", r.Count, r.Reason)
			}
		}
	}
	return nil
}

// progressPrinter shows the sending: a bar redrawn in place on a terminal, a log line every few
// seconds otherwise.
func progressPrinter(a *App, iss digest.Issue, bar bool) func(digest.Progress) {
	start := time.Now()
	var firstDone int
	started := false
	lastLog := time.Time{}
	return func(p digest.Progress) {
		done := p.Sent + p.Failed + p.Skipped
		if !started {
			firstDone, started = done, true
		}
		elapsed := time.Since(start).Seconds()
		rate := 0.0
		if elapsed > 0.5 {
			rate = float64(done-firstDone) / elapsed
		}
		eta := "?"
		if rate > 0 {
			eta = (time.Duration(float64(p.Queued)/rate) * time.Second).Round(time.Second).String()
		}
		if bar {
			const width = 30
			filled := 0
			if p.Total > 0 {
				filled = width * done / p.Total
			}
			fmt.Fprintf(a.stderr, "\r%s [%s%s] sent %d failed %d of %d · %.0f/s · ETA %s   ", iss.Lang,
				strings.Repeat("#", filled), strings.Repeat(".", width-filled), p.Sent, p.Failed, p.Total, rate, eta)
			return
		}
		if time.Since(lastLog) >= 5*time.Second || p.Queued == 0 {
			lastLog = time.Now()
			a.log.Info("sending", "issue", iss.ID, "lang", iss.Lang, "sent", p.Sent, "failed", p.Failed, "skipped", p.Skipped,
				"total", p.Total, "rate", fmt.Sprintf("%.0f/s", rate), "eta", eta)
		}
	}
}

// isTerminal reports whether f is a character device (a terminal), by a stat of its descriptor.
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	if !ok {
		return false
	}
	st, err := file.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// digestIssueAction runs `newsletter digest pause|resume|cancel ISSUE_ID`.
func (a *App) digestIssueAction(ctx context.Context, action string, args []string) error {
	if len(args) != 1 {
		return usageError{fmt.Sprintf("digest %s: want one ISSUE_ID", action)}
	}
	id, err := strconv.ParseInt(args[0], 10, 64)
	if err != nil || id <= 0 {
		return usageError{fmt.Sprintf("digest %s: %q is not an issue id", action, args[0])}
	}
	if err := a.open(ctx); err != nil {
		return err
	}
	store := digest.NewStore(a.db, nil)
	switch action {
	case "pause":
		err = store.Pause(ctx, id, "paused from the command line")
	case "resume":
		err = store.Resume(ctx, id)
	case "cancel":
		err = store.Cancel(ctx, id)
	}
	if err != nil {
		return err
	}
	p, err := store.Progress(ctx, id)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "issue %d (%s): %s; sent %d, failed %d, queued %d of %d\n", id, p.Lang, p.Status, p.Sent, p.Failed, p.Queued, p.Total)
	if action == "resume" {
		fmt.Fprintln(a.stdout, "a running `newsletter serve` continues it; or run `newsletter digest send` to send it in the foreground")
	}
	return nil
}
