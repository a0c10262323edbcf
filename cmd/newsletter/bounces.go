package main

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/robfig/cron/v3"

	"newsletter/subscribers"
	"newsletter/subscribers/bounce"
)

// The bounce and complaint intake of serve: the Return-Path mailbox read over IMAP on a schedule,
// and the providers' signed webhooks. Every report goes to the reader list's one policy
// (subscribers.Store.RecordEvents), as the sender's own SMTP refusals do.

// returnPath is the envelope sender of a reader's copy of an issue (issue 0: a confirmation): the
// signed VERP address under NEWSLETTER_BOUNCE_ADDRESS, keyed by the links' secret; "" without one.
func (a *App) returnPath(subscriberUUID string, issueID int64) string {
	if a.cfg.BounceAddress == "" {
		return ""
	}
	return bounce.Address(a.cfg.BounceAddress, a.secret, subscriberUUID, issueID)
}

// bounceMailbox is the worker that reads NEWSLETTER_BOUNCE_IMAP_URL; nil when it is unset.
func (a *App) bounceMailbox(store *subscribers.Store, signer *subscribers.Signer) (*worker, error) {
	if a.cfg.BounceIMAPURL == "" {
		return nil, nil
	}
	cfg, err := bounce.ParseIMAPURL(a.cfg.BounceIMAPURL)
	if err != nil {
		return nil, err // already refused by Validate; its errors never hold the password
	}
	sched, err := cron.ParseStandard(a.cfg.BounceIMAPSchedule)
	if err != nil {
		return nil, err
	}
	log := a.log.With("worker", "bounce mailbox")
	in := &bounce.IMAPIntake{Config: cfg, Recorder: store, Log: log,
		Parser: &bounce.Parser{Base: a.cfg.BounceAddress, Secret: a.secret,
			UnsubscribeToken: func(token string) (string, int64, bool) {
				uuid, issue, err := signer.VerifyUnsubscribe(token)
				return uuid, issue, err == nil
			}}}
	return &worker{name: "bounce mailbox", run: func(ctx context.Context) error {
		return pollBounces(ctx, in, sched, log)
	}}, nil
}

// pollBounces reads the mailbox at start and then on the schedule until ctx ends. Each pass logs
// its counts; a failed pass is logged and the next one tries again (what was not recorded stays in
// the mailbox).
func pollBounces(ctx context.Context, in *bounce.IMAPIntake, sched cron.Schedule, log *slog.Logger) error {
	for {
		res, err := in.Poll(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			// The intake's errors name the step and the server's answer, never the password.
			log.Warn("bounce mailbox: pass failed; the next one tries again", "recorded", res.Recorded,
				"ignored", res.Ignored, "unhandled", res.Unhandled, "err", err)
		case res.Recorded+res.Ignored+res.Unhandled > 0:
			log.Info("bounce mailbox: pass", "recorded", res.Recorded, "ignored", res.Ignored, "unhandled", res.Unhandled)
		default:
			log.Debug("bounce mailbox: pass, nothing new")
		}
		t := time.NewTimer(time.Until(sched.Next(time.Now())))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// sesWebhook is POST /webhooks/ses's handler; nil without NEWSLETTER_SES_TOPIC_ARN, so the route
// does not exist.
func (a *App) sesWebhook(store *subscribers.Store) http.Handler {
	if a.cfg.SESTopicARN == "" {
		return nil
	}
	return &bounce.SESHandler{TopicARN: a.cfg.SESTopicARN, Base: a.cfg.BounceAddress, Secret: a.secret, Recorder: store,
		Log: a.log.With("webhook", "ses")}
}

// mailgunWebhook is POST /webhooks/mailgun's handler; nil without NEWSLETTER_MAILGUN_SIGNING_KEY.
func (a *App) mailgunWebhook(store *subscribers.Store) http.Handler {
	if a.cfg.MailgunSigningKey == "" {
		return nil
	}
	return &bounce.MailgunHandler{SigningKey: []byte(a.cfg.MailgunSigningKey), Base: a.cfg.BounceAddress, Secret: a.secret,
		Recorder: store, Log: a.log.With("webhook", "mailgun")}
}
