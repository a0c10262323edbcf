// Package send is the digest's sending engine: the deliveries ledger (one row per issue and
// reader, claimed, sent and marked, safe to kill at any line), the message built once per issue and
// filled per reader, the retry policy applied to each outcome, and the editors' test send down the
// same path. Its SMTP transactions and DKIM signing are internal/smtpout's, which the confirmation
// mailer shares.
package send

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	netmail "net/mail"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"

	"newsletter/digest"
	"newsletter/digest/render"
	"newsletter/internal/metrics"
	"newsletter/internal/smtpout"
)

// ErrPaused reports an issue whose sending is paused (by an editor, or by the sender itself after
// a configuration error or too many failures in a row); the issue's pause reason says which.
var ErrPaused = errors.New("sending paused")

// SenderOptions tune the sending engine; zero values take the defaults noted.
type SenderOptions struct {
	From        string // From of every digest; its domain ends every Message-ID
	BaseURL     string // root of the unsubscribe and manage links
	Publication string // the List-Id phrase
	// Secret keys the Message-ID hash, so Message-IDs carry no guessable reader id.
	Secret      []byte
	MaxArticles int // articles shown per issue (0: digest.DefaultMaxArticles)

	Concurrency int           // SMTP connections (default 4)
	Rate        float64       // messages per second across the process (0: no cap)
	Timeout     time.Duration // per SMTP exchange (default 30s)
	// Retry is how a reader's copy is tried again after a failure that may pass, and how many
	// tries it gets (zero fields: smtpout.DigestRetry's).
	Retry smtpout.Policy
	// Reconnect is how a connection backs off after a failed dial or a 421 (zero fields:
	// smtpout.Reconnect's).
	Reconnect smtpout.Policy
	Lease     time.Duration // how long a claimed row is reserved for this process (default 5m)
	BatchSize int           // rows per claim (default 100)
	// FailureStreak pauses the issue after this many failures in a row (default 50).
	FailureStreak int
	// Poll is how often Run looks for issues to send when not woken (default 5s).
	Poll time.Duration
	DKIM *smtpout.DKIMSigner // nil: messages are not signed
	// NoChunking sends with DATA even where the server offers CHUNKING (tests and benchmarks of
	// that path, which Mailpit, Amazon SES and many relays take).
	NoChunking bool
	// ReturnPath, when set, is the envelope sender (the Return-Path) of a reader's copy of an
	// issue: cmd makes it the signed VERP address of NEWSLETTER_BOUNCE_ADDRESS, so a bounce that
	// comes back later names the reader and the issue. nil, or "" from it: From's address.
	ReturnPath func(subscriberUUID string, issueID int64) string
	// TestReturnPath is the envelope sender of an editor's test send, which belongs to no reader
	// ("": From's address).
	TestReturnPath string
}

func (o *SenderOptions) defaults() {
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	o.Retry = o.Retry.Fill(smtpout.DigestRetry)
	o.Reconnect = o.Reconnect.Fill(smtpout.Reconnect)
	if o.Lease <= 0 {
		o.Lease = 5 * time.Minute
	}
	if o.BatchSize <= 0 {
		o.BatchSize = 100
	}
	if o.FailureStreak <= 0 {
		o.FailureStreak = 50
	}
	if o.Poll <= 0 {
		o.Poll = 5 * time.Second
	}
	o.BaseURL = strings.TrimRight(o.BaseURL, "/")
}

// issueRenderer is what the sender needs of the Renderer.
type issueRenderer interface {
	Render(c digest.IssueContent, rcpt render.Recipient) (render.Rendered, error)
	RenderEdition(e digest.Edition, rcpt render.Recipient) (render.Rendered, error)
}

// Links makes a reader's signed links (subscribers.Signer is one): the unsubscribe link of one
// issue's copy, which names the issue so a departure through it is counted for the issue, and the
// manage link.
type Links interface {
	IssueUnsubscribeURL(baseURL, uuid string, issueID int64) string
	ManageURL(baseURL, uuid string) string
}

// Bouncer records that a reader's address was refused for good (a 5xx to RCPT or to the message)
// while issueID was sent to them, as a hard bounce under the reader list's policy
// (subscribers.Store is one). It must be idempotent for one reader and issue, as the sender
// retries a failed write until it is written, and a reader who is no longer there (erased since)
// must not be an error: there is nothing left to record.
type Bouncer interface {
	RecordRefusal(ctx context.Context, subscriberUUID string, issueID int64, reason string) error
}

// Sender sends issues to their readers from the ledger, over long-lived SMTP connections.
type Sender struct {
	store   *digest.Store
	ledger  ledger
	render  issueRenderer
	links   Links
	bounces Bouncer
	dialer  smtpout.Dialer
	opts    SenderOptions
	log     *slog.Logger
	metrics senderMetrics
	limiter *rate.Limiter
	from    *netmail.Address
	domain  string
	wake    chan struct{}
}

// NewSender returns a Sender. renderer is the digest Renderer, links signs each reader's links,
// bounces (may be nil) records refused addresses, dialer is the go-mail client of the SMTP relay.
func NewSender(store *digest.Store, renderer issueRenderer, links Links, bounces Bouncer, dialer smtpout.Dialer,
	opts SenderOptions, log *slog.Logger, reg prometheus.Registerer) (*Sender, error) {
	opts.defaults()
	from, err := netmail.ParseAddress(opts.From)
	if err != nil {
		return nil, fmt.Errorf("sender: From %q: %w", opts.From, digest.ErrInvalid)
	}
	if len(opts.Secret) == 0 {
		return nil, fmt.Errorf("sender: no secret: %w", digest.ErrInvalid)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &Sender{store: store, ledger: ledger{db: store.DB(), now: store.Now}, render: renderer, links: links, bounces: bounces, dialer: dialer, opts: opts,
		log: log, metrics: newSenderMetrics(reg), from: from, domain: domainOf(from.Address), wake: make(chan struct{}, 1)}
	if opts.Rate > 0 {
		s.limiter = rate.NewLimiter(rate.Limit(opts.Rate), max(1, int(opts.Rate/20)))
	}
	return s, nil
}

// returnPath is the envelope sender of r's copy of issueID.
func (s *Sender) returnPath(r claimedRow, issueID int64) string {
	if s.opts.ReturnPath != nil {
		if a := s.opts.ReturnPath(r.UUID, issueID); a != "" {
			return a
		}
	}
	return s.from.Address
}

// Wake tells Run an issue started sending, so it begins now rather than at its next poll.
func (s *Sender) Wake() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Start begins sending a draft or approved issue: it keeps the archive copy, fixes the recipients
// in the ledger and wakes Run. It returns how many readers the issue goes to.
func (s *Sender) Start(ctx context.Context, issueID int64) (int, error) {
	renderFor, _, err := s.renderer(ctx, issueID)
	if err != nil {
		return 0, err
	}
	archive, err := renderFor(render.Recipient{})
	if err != nil {
		return 0, err
	}
	if err := s.store.SaveArchive(ctx, issueID, archive.Subject, archive.Preheader, archive.HTML, archive.Text); err != nil {
		return 0, err
	}
	n, err := s.ledger.startSending(ctx, issueID)
	if err != nil {
		return 0, err
	}
	s.Wake()
	return n, nil
}

// Run sends every issue in 'sending', including those a crashed process left, until ctx ends;
// then it finishes the messages in flight and returns, leaving the rest queued.
func (s *Sender) Run(ctx context.Context) error {
	for {
		ids, err := s.ledger.sendingIssues(ctx)
		if err != nil && ctx.Err() == nil {
			s.log.Error("digest sender: list issues", "err", err)
		}
		for _, id := range ids {
			if ctx.Err() != nil {
				break
			}
			if err := s.runIssue(ctx, id, nil); err != nil && ctx.Err() == nil {
				s.log.Error("digest sender: issue", "issue", id, "err", err)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.wake:
		case <-time.After(s.opts.Poll):
		}
	}
}

// SendIssue sends one issue in the foreground (starting it when it is a draft or approved) and
// returns when every reader was sent, failed for good or skipped. progress, when set, is called
// about twice a second and once at the end. ErrPaused when the issue is or becomes paused.
func (s *Sender) SendIssue(ctx context.Context, issueID int64, progress func(digest.Progress)) error {
	status, reason, err := s.ledger.issueStatus(ctx, issueID)
	if err != nil {
		return err
	}
	switch status {
	case digest.StatusDraft, digest.StatusApproved:
		if _, err := s.Start(ctx, issueID); err != nil {
			return err
		}
	case digest.StatusSending:
	case digest.StatusPaused:
		return fmt.Errorf("issue %d: %w: %s", issueID, ErrPaused, reason)
	case digest.StatusSent:
	default:
		return fmt.Errorf("issue %d is %s: %w", issueID, status, digest.ErrConflict)
	}
	runErr := s.runIssue(ctx, issueID, progress)
	for errors.Is(runErr, errLockLost) && ctx.Err() == nil {
		s.log.Warn("digest sender: " + runErr.Error())
		sleep(ctx, nil, time.Second)
		runErr = s.runIssue(ctx, issueID, progress)
	}
	p, err := s.store.Progress(context.WithoutCancel(ctx), issueID)
	if err != nil {
		return errors.Join(runErr, err)
	}
	if progress != nil {
		progress(p)
	}
	switch {
	case runErr != nil:
		return runErr
	case ctx.Err() != nil:
		return ctx.Err()
	case p.Status == digest.StatusPaused:
		return fmt.Errorf("issue %d: %w: %s", issueID, ErrPaused, p.PauseReason)
	case p.Status != digest.StatusSent:
		return fmt.Errorf("issue %d is %s: %w", issueID, p.Status, digest.ErrConflict)
	}
	return nil
}

// senderMetrics are the engine's Prometheus metrics.
type senderMetrics struct {
	sent, failed, retried prometheus.Counter
	queue                 prometheus.Gauge
	latency               prometheus.Histogram
}

func newSenderMetrics(reg prometheus.Registerer) senderMetrics {
	m := senderMetrics{
		sent:    prometheus.NewCounter(prometheus.CounterOpts{Name: "newsletter_digest_sent_total", Help: "Digest messages the SMTP server accepted."}),
		failed:  prometheus.NewCounter(prometheus.CounterOpts{Name: "newsletter_digest_failed_total", Help: "Digest deliveries that failed for good."}),
		retried: prometheus.NewCounter(prometheus.CounterOpts{Name: "newsletter_digest_retried_total", Help: "Digest deliveries put back for a later attempt."}),
		queue:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "newsletter_digest_queue_depth", Help: "Readers of the issue being sent not yet sent, failed or skipped."}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "newsletter_digest_send_seconds", Help: "Time of one SMTP transaction (MAIL to accepted DATA).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}),
	}
	m.sent = metrics.Register(reg, m.sent)
	m.failed = metrics.Register(reg, m.failed)
	m.retried = metrics.Register(reg, m.retried)
	m.queue = metrics.Register(reg, m.queue)
	m.latency = metrics.Register(reg, m.latency)
	return m
}
