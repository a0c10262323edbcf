package subscribers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	htmltemplate "html/template"
	"io"
	"io/fs"
	"log/slog"
	netmail "net/mail"
	"strconv"
	"strings"
	"sync"
	texttemplate "text/template"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/wneessen/go-mail"

	"newsletter/internal/metrics"
	"newsletter/internal/smtpout"
	"newsletter/internal/textclean"
	"newsletter/newsletters"
	"newsletter/subscribers/bounce"
	"newsletter/templates"
)

// MailerOptions configures the confirmation mailer.
type MailerOptions struct {
	BaseURL     string        // public root of the confirm links
	From        string        // From header, e.g. "Weekly Digest <digest@example.com>"
	Publication string        // the publication's name, in the subject and the text
	Poll        time.Duration // how often to look for due emails without a Wake; default 2s
	// Retry is how an email that failed for now is tried again (zero fields: smtpout.ConfirmRetry's).
	// Its Attempts is not used: a confirmation is tried until it goes or its address is refused.
	Retry       smtpout.Policy
	SendTimeout time.Duration       // connecting, and one message on a connection; default 30s
	Workers     int                 // batches sent at once, each on its own SMTP connection; default 2
	DKIM        *smtpout.DKIMSigner // nil: not signed
	// BounceAddress, when set (NEWSLETTER_BOUNCE_ADDRESS), makes each email's envelope sender the
	// reader's signed VERP address under it (bounce.Address, issue 0), so a bounce that comes back
	// later names the reader. Empty: From's address.
	BounceAddress string
	// Yield, when set and true, holds each batch back a little (at most maxYield): the service is
	// under load (serve: subscriptions queueing, see Store.Busy, or many requests in flight), and
	// requests come before the mail they cause.
	Yield func() bool
	// Welcome renders a newsletter's welcome for a reader (the edition's frame, package
	// digest/render, which this package does not import); nil: welcomes are not sent.
	Welcome func(w WelcomeEmail) (subject, html, text string, err error)
}

// WelcomeEmail is what a welcome is rendered from.
type WelcomeEmail struct {
	Lang, Newsletter  string
	Subject, Markdown string
	ManageURL         string
	UnsubscribeURL    string
}

// Under sustained load each batch waits at most maxYield, so confirmations slow but never stop.
const (
	yieldStep = 50 * time.Millisecond
	maxYield  = 500 * time.Millisecond
)

// Mailer is the outbox worker that sends confirmation emails. Several may run (several serve
// processes): rows are claimed with FOR UPDATE SKIP LOCKED and leased while they are sent.
type Mailer struct {
	store    *Store
	db       *sqlx.DB
	dialer   smtpout.Dialer
	signer   *Signer
	cat      *templates.Catalog
	opts     MailerOptions
	log      *slog.Logger
	html     *htmltemplate.Template
	text     *texttemplate.Template
	fromAddr string          // the envelope sender: From's address
	domain   string          // of From, for Message-IDs
	wake     []chan struct{} // one per worker

	sent, failed, refused prometheus.Counter
}

// batchSize is how many due emails one claim takes, sent over one SMTP connection. Small, because
// the lease must outlast sending the whole batch one by one while SMTP hangs (see claim).
const batchSize = 10

// NewMailer parses the confirmation templates (email/confirm.html and email/confirm.txt of fsys)
// and registers the mailer's metrics with reg (nil: not registered). store is the reader list,
// whose policy a refused address takes (RecordEvents); dialer opens the SMTP connections
// (*mail.Client).
func NewMailer(store *Store, dialer smtpout.Dialer, signer *Signer, fsys fs.FS, cat *templates.Catalog, opts MailerOptions, log *slog.Logger, reg prometheus.Registerer) (*Mailer, error) {
	if opts.Poll <= 0 {
		opts.Poll = 2 * time.Second
	}
	opts.Retry = opts.Retry.Fill(smtpout.ConfirmRetry)
	if opts.SendTimeout <= 0 {
		opts.SendTimeout = 30 * time.Second
	}
	if opts.Workers <= 0 {
		opts.Workers = 2
	}
	from, err := netmail.ParseAddress(opts.From)
	if err != nil {
		return nil, fmt.Errorf("mailer: From %q: %w", opts.From, err)
	}
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	m := &Mailer{store: store, db: store.db, dialer: dialer, signer: signer, cat: cat, opts: opts, log: log,
		fromAddr: from.Address, domain: from.Address[strings.LastIndexByte(from.Address, '@')+1:]}
	for range opts.Workers {
		m.wake = append(m.wake, make(chan struct{}, 1))
	}
	funcs := templates.Funcs(cat)
	src, err := fs.ReadFile(fsys, "email/confirm.html")
	if err == nil {
		m.html, err = htmltemplate.New("confirm.html").Funcs(funcs).Parse(string(src))
	}
	if err != nil {
		return nil, fmt.Errorf("mailer: %w", err)
	}
	src, err = fs.ReadFile(fsys, "email/confirm.txt")
	if err == nil {
		m.text, err = texttemplate.New("confirm.txt").Funcs(texttemplate.FuncMap(funcs)).Parse(string(src))
	}
	if err != nil {
		return nil, fmt.Errorf("mailer: %w", err)
	}
	m.sent = prometheus.NewCounter(prometheus.CounterOpts{Name: "newsletter_confirmation_emails_sent_total",
		Help: "Confirmation emails handed to the SMTP server."})
	m.failed = prometheus.NewCounter(prometheus.CounterOpts{Name: "newsletter_confirmation_emails_failed_total",
		Help: "Attempts to send a confirmation email that failed and will be retried."})
	m.refused = prometheus.NewCounter(prometheus.CounterOpts{Name: "newsletter_confirmation_emails_refused_total",
		Help: "Confirmation emails refused for good (a 5xx for the address, or an address the relay cannot carry)."})
	m.sent = metrics.Register(reg, m.sent)
	m.failed = metrics.Register(reg, m.failed)
	m.refused = metrics.Register(reg, m.refused)
	return m, nil
}

// Wake makes Run look for due emails now rather than at the next poll.
func (m *Mailer) Wake() {
	for _, w := range m.wake {
		select {
		case w <- struct{}{}:
		default:
		}
	}
}

// Run sends due confirmations with opts.Workers workers until ctx ends, then returns nil. While
// SMTP is down each email is retried with exponential backoff, forever: an accepted subscription
// never loses its email. A permanent refusal of the address (a 5xx to RCPT or to the message) is
// final: it is a hard bounce under the reader list's policy (RecordEvents), so the reader is
// bounced, the address suppressed, and they get no more. An address this relay cannot carry
// (smtpout.Undeliverable) fails the email for good without bouncing the reader, as for digests.
func (m *Mailer) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, wake := range m.wake {
		wg.Go(func() {
			tick := time.NewTicker(m.opts.Poll)
			defer tick.Stop()
			for {
				m.drain(ctx)
				select {
				case <-ctx.Done():
					return
				case <-tick.C:
				case <-wake:
				}
			}
		})
	}
	wg.Wait()
	return nil
}

// drain sends batches until none is due.
func (m *Mailer) drain(ctx context.Context) {
	for ctx.Err() == nil {
		m.yield(ctx)
		jobs, err := m.claim(ctx)
		if err != nil {
			if ctx.Err() == nil {
				m.log.Warn("confirmation outbox: claim failed", "error", err)
			}
			return
		}
		if len(jobs) == 0 {
			return
		}
		m.sendBatch(ctx, jobs)
	}
}

// yield waits while opts.Yield says the request path is saturated, up to maxYield.
func (m *Mailer) yield(ctx context.Context) {
	if m.opts.Yield == nil {
		return
	}
	for waited := time.Duration(0); waited < maxYield && m.opts.Yield(); waited += yieldStep {
		select {
		case <-ctx.Done():
			return
		case <-time.After(yieldStep):
		}
	}
}

// sendBatch sends claimed emails one after another over one SMTP connection, through the same
// transaction code as the digests (smtpout: pipelined, the next envelope riding with the previous
// message's end), then records every outcome in one transaction: one commit per batch, not per
// email, keeps a burst of confirmations from competing with the subscriptions themselves for WAL
// flushes. When ctx ends, the message in flight finishes, the batch so far is recorded and the
// rest handed back. A crash before recording re-sends the batch's emails once the lease ends: a
// duplicate confirmation (the same Message-ID), whose links both work.
func (m *Mailer) sendBatch(ctx context.Context, jobs []job) {
	conn := &smtpout.Conn{Dialer: m.dialer, Timeout: m.opts.SendTimeout}
	defer conn.Close()
	outcomes := make([]error, 0, len(jobs))
	defer func() { m.record(jobs[:len(outcomes)], outcomes) }()
	msgs := make([][]byte, len(jobs))
	errs := make([]error, len(jobs))
	for i, j := range jobs {
		msgs[i], errs[i] = m.message(j)
	}
	envelope := func(i int) smtpout.Envelope { return smtpout.Envelope{From: m.returnPath(jobs[i]), To: jobs[i].Email} }
	for i := range jobs {
		if ctx.Err() != nil {
			m.release(jobs[i:])
			return
		}
		err := errs[i]
		if err == nil {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.opts.SendTimeout)
			err = conn.Ensure(dctx)
			cancel()
			if err != nil {
				// Nothing of this batch can go now: each waits its own backoff.
				for range jobs[i:] {
					outcomes = append(outcomes, err)
				}
				return
			}
		}
		if err == nil {
			next := func() (smtpout.Envelope, bool) {
				if i+1 < len(jobs) && errs[i+1] == nil && ctx.Err() == nil {
					return envelope(i + 1), true
				}
				return smtpout.Envelope{}, false
			}
			err = conn.Send(envelope(i), msgs[i], func() {}, next)
		} else {
			conn.Abandon()
		}
		outcomes = append(outcomes, err)
	}
}

// returnPath is the envelope sender of j's email: the reader's VERP address, else From's.
func (m *Mailer) returnPath(j job) string {
	if m.opts.BounceAddress != "" {
		if a := bounce.Address(m.opts.BounceAddress, m.signer.secret, j.UUID, 0); a != "" {
			return a
		}
	}
	return m.fromAddr
}

// record stores the outcome of each email (errs[i] of jobs[i]): sent; failed for good, a refused
// address then a hard bounce (see Run); or due again after a backoff, all in one transaction. It
// runs even when the mailer is stopping, so a message handed to SMTP is never left looking unsent.
func (m *Mailer) record(jobs []job, errs []error) {
	if len(jobs) == 0 {
		return
	}
	var sent []int64
	var failedIDs, waits []int64
	var reasons []string
	var refusedIDs []int64
	var refusedReasons []string
	var bounces []bounce.Event
	for i, j := range jobs {
		if errs[i] == nil {
			sent = append(sent, j.ID)
			continue
		}
		msg := textclean.ClipBytes(redact(errs[i].Error(), j.Email), 1000)
		switch smtpout.Classify(errs[i]) {
		case smtpout.Refused:
			refusedIDs, refusedReasons = append(refusedIDs, j.ID), append(refusedReasons, msg)
			bounces = append(bounces, refusal(j.UUID, 0, "confirm:"+strconv.FormatInt(j.ID, 10), msg))
			m.log.Warn("confirmation refused for good; the reader is bounced", "outbox_id", j.ID, "error", msg)
			continue
		case smtpout.Undeliverable:
			refusedIDs, refusedReasons = append(refusedIDs, j.ID), append(refusedReasons, msg)
			m.log.Warn("confirmation cannot go through this relay; not retried", "outbox_id", j.ID, "error", msg)
			continue
		}
		wait := m.opts.Retry.Delay(j.Attempts) // j.Attempts counts this try
		failedIDs, waits, reasons = append(failedIDs, j.ID), append(waits, wait.Milliseconds()), append(reasons, msg)
		m.log.Warn("confirmation not sent, will retry", "outbox_id", j.ID, "attempt", j.Attempts, "retry_in", wait, "error", msg)
	}
	m.sent.Add(float64(len(sent)))
	m.failed.Add(float64(len(failedIDs)))
	m.refused.Add(float64(len(refusedIDs)))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := func() error {
		tx, err := m.db.BeginTxx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		if len(sent) > 0 {
			if _, err := tx.ExecContext(ctx, `UPDATE outbox SET sent_at = now(), last_error = '' WHERE id = ANY($1)`, pq.Array(sent)); err != nil {
				return err
			}
		}
		if len(failedIDs) > 0 {
			if _, err := tx.ExecContext(ctx, `
				UPDATE outbox o SET next_attempt_at = now() + f.wait * interval '1 millisecond', last_error = f.reason
				FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS f(id, wait, reason) WHERE o.id = f.id`,
				pq.Array(failedIDs), pq.Array(waits), pq.Array(reasons)); err != nil {
				return err
			}
		}
		if len(refusedIDs) > 0 {
			if _, err := tx.ExecContext(ctx, `
				UPDATE outbox o SET failed_at = now(), last_error = f.reason
				FROM unnest($1::bigint[], $2::text[]) AS f(id, reason) WHERE o.id = f.id`,
				pq.Array(refusedIDs), pq.Array(refusedReasons)); err != nil {
				return err
			}
		}
		// The address does not take mail: the reader becomes bounced, which Subscribe leaves
		// alone, so no further confirmation goes to it, and the suppression keeps imports off it.
		for _, e := range bounces {
			if err := m.store.recordEvent(ctx, tx, e); err != nil {
				return err
			}
		}
		return tx.Commit()
	}()
	if err != nil {
		// Sent ones go again after their lease (a duplicate); failed ones are retried then anyway.
		m.log.Error("confirmation outcomes not recorded", "sent", len(sent), "failed", len(failedIDs), "refused", len(refusedIDs), "error", err)
		return
	}
	if len(sent) > 0 {
		m.log.Info("confirmations sent", "count", len(sent), "outbox_ids", sent)
	}
}

// job is one claimed confirmation email.
type job struct {
	ID           int64     `db:"id"`
	Attempts     int       `db:"attempts"`
	UUID         string    `db:"uuid"`
	Email        string    `db:"email"`
	Lang         string    `db:"lang"`
	Status       Status    `db:"status"`
	SubscribedAt time.Time `db:"subscribed_at"`
	Now          time.Time `db:"now"`
	Open         bool      `db:"open"` // an open request that a confirm link could still answer
	Kind         string    `db:"kind"` // confirm or welcome
	NewsletterID int64     `db:"newsletter_id"`
	Active       bool      `db:"active"` // a welcome's reader is confirmed and still takes its newsletter
	// Asked are the names of the newsletters the open request asked for (a confirmation's).
	Asked pq.StringArray `db:"asked"`
}

// claim takes up to batchSize due rows in one short transaction, leasing them (next_attempt_at
// moves past the time the batch may take) so no other worker takes them meanwhile; a crash
// mid-batch only delays those emails until the lease ends. Rows whose reader has confirmed or
// bounced since, or left after asking, are marked skipped.
func (m *Mailer) claim(ctx context.Context) ([]job, error) {
	tx, err := m.db.BeginTxx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	var all []job
	lease := batchSize*m.opts.SendTimeout + time.Minute
	err = tx.SelectContext(ctx, &all, `
		WITH due AS (
			SELECT id FROM outbox
			WHERE kind IN ('confirm', 'welcome') AND sent_at IS NULL AND skipped_at IS NULL AND failed_at IS NULL AND next_attempt_at <= now()
			ORDER BY next_attempt_at, id
			LIMIT $1
			FOR UPDATE SKIP LOCKED
		)
		UPDATE outbox o SET attempts = o.attempts + 1, next_attempt_at = now() + $2 * interval '1 millisecond'
		FROM due, subscribers s
		WHERE o.id = due.id AND s.id = o.subscriber_id
		RETURNING o.id, o.attempts, s.uuid, s.email, s.lang, s.status, s.subscribed_at, now() AS now,
			EXISTS (SELECT 1 FROM consents c WHERE c.subscriber_id = s.id AND c.confirmed_at IS NULL AND c.source <> 'import'
			        AND c.created_at > `+requestsSince+`) AS open,
			o.kind, coalesce(o.newsletter_id, 0) AS newsletter_id,
			s.status = 'confirmed' AND EXISTS (SELECT 1 FROM subscriptions sub WHERE sub.subscriber_id = s.id
				AND sub.newsletter_id = o.newsletter_id AND sub.state = 'active') AS active,
			ARRAY(SELECT coalesce(nullif(n.names ->> s.lang, ''), nullif(n.names ->> 'en', ''), n.slug)
				FROM consent_newsletters cn JOIN newsletters n ON n.id = cn.newsletter_id
				WHERE cn.consent_id = (SELECT c.id FROM consents c WHERE c.subscriber_id = s.id AND c.confirmed_at IS NULL
					AND c.source <> 'import' ORDER BY c.created_at DESC, c.id DESC LIMIT 1)
				ORDER BY n.kind, n.slug) AS asked`,
		batchSize, lease.Milliseconds())
	if err != nil {
		return nil, err
	}
	var jobs []job
	var skipped []int64
	for _, j := range all {
		// A request may be answered while the reader is pending, has left, or is confirmed and
		// asked for more (see Store.Confirm); one answered or bounced since, or who left after
		// asking, needs no email.
		if j.Kind == "welcome" {
			// A welcome goes while the reader still takes the newsletter and welcomes are sent.
			if j.Active && m.opts.Welcome != nil {
				jobs = append(jobs, j)
			} else {
				skipped = append(skipped, j.ID)
			}
		} else if j.Open && (j.Status == StatusPending || j.Status == StatusUnsubscribed || j.Status == StatusComplained || j.Status == StatusConfirmed) {
			jobs = append(jobs, j)
		} else {
			skipped = append(skipped, j.ID)
		}
	}
	if len(skipped) > 0 {
		if _, err := tx.ExecContext(ctx, `UPDATE outbox SET skipped_at = now() WHERE id = ANY($1)`, pq.Array(skipped)); err != nil {
			return nil, err
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, err
	}
	for _, id := range skipped {
		m.log.Info("confirmation skipped: nothing left to confirm", "outbox_id", id)
	}
	return jobs, nil
}

// release gives claimed but unsent rows back at shutdown, so the next start (or another process)
// sends them at once instead of after the lease.
func (m *Mailer) release(jobs []job) {
	ids := make([]int64, len(jobs))
	for i, j := range jobs {
		ids[i] = j.ID
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := m.db.ExecContext(ctx, `UPDATE outbox SET next_attempt_at = now(), attempts = attempts - 1 WHERE id = ANY($1)`, pq.Array(ids)); err != nil {
		m.log.Warn("confirmation outbox: release at shutdown failed; rows wait for their lease", "error", err)
	}
}

// redact keeps the reader's address out of logs and stored errors (SMTP replies often quote it,
// in any case or spelling of the domain).
func redact(s, email string) string {
	return textclean.NewAddressScrubber(email).All(s)
}

// confirmData is what email/confirm.html and email/confirm.txt receive.
type confirmData struct {
	Lang        string
	Publication string
	// Name is always empty: the name came with the request, typed by whoever made it, and the
	// confirmation goes to an address nobody has vouched for yet, so it would carry a stranger's
	// words (a "WIN $500" and a link) into any inbox. Kept so templates that test it still render.
	Name       string
	Email      string
	ConfirmURL string
	Days       int
	// Newsletters are the names, in the reader's language, of what the request asked for.
	Newsletters []string
}

// message renders the email in the reader's language as multipart/alternative (text/plain first,
// then text/html, UTF-8, quoted-printable so it is 7-bit on the wire), DKIM-signed when set.
func (m *Mailer) message(j job) ([]byte, error) {
	if j.Kind == "welcome" {
		return m.welcome(j)
	}
	issued := j.Now
	if issued.Before(j.SubscribedAt) {
		issued = j.SubscribedAt
	}
	d := confirmData{Lang: j.Lang, Publication: m.opts.Publication, Email: j.Email,
		ConfirmURL: m.signer.ConfirmURL(m.opts.BaseURL, j.UUID, issued), Days: int(ConfirmTTL / (24 * time.Hour)), Newsletters: j.Asked}
	var html, text bytes.Buffer
	if err := m.html.Execute(&html, d); err != nil {
		return nil, fmt.Errorf("render confirm.html: %w", err)
	}
	if err := m.text.Execute(&text, d); err != nil {
		return nil, fmt.Errorf("render confirm.txt: %w", err)
	}
	// No User-Agent or X-Mailer naming the mail library (a fingerprint of our stack), as for digests.
	msg := mail.NewMsg(mail.WithCharset(mail.CharsetUTF8), mail.WithEncoding(mail.EncodingQP), mail.WithNoDefaultUserAgent())
	if err := msg.From(m.opts.From); err != nil {
		return nil, fmt.Errorf("from: %w", err)
	}
	// The plain address in To, for the same reason as confirmData.Name.
	if err := msg.To(j.Email); err != nil {
		return nil, errors.New("recipient address refused by the mail library")
	}
	msg.Subject(m.cat.T(j.Lang, "email.confirm.subject", d.Publication))
	msg.SetDate()
	// The same id on every attempt, so a retry after an unclear failure is recognisably one message.
	msg.SetMessageIDWithValue(fmt.Sprintf("confirm.%d@%s", j.ID, m.domain))
	msg.SetGenHeader(mail.Header("Auto-Submitted"), "auto-generated")
	msg.SetGenHeader(mail.HeaderXAutoResponseSuppress, "All")
	msg.SetBodyString(mail.TypeTextPlain, text.String())
	msg.AddAlternativeString(mail.TypeTextHTML, html.String())
	var raw bytes.Buffer
	if _, err := msg.WriteTo(&raw); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	if m.opts.DKIM == nil {
		return raw.Bytes(), nil
	}
	signed, err := m.opts.DKIM.Sign(nil, raw.Bytes())
	if err != nil {
		return nil, fmt.Errorf("dkim: %w", err)
	}
	return signed, nil
}

// welcome renders a newsletter's welcome in the reader's language, with the manage link in its
// footer and List-Unsubscribe to the reader's link that leaves this newsletter, DKIM-signed when
// set.
func (m *Mailer) welcome(j job) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n, err := newsletters.Get(ctx, m.db, j.NewsletterID)
	if err != nil {
		return nil, err
	}
	w, ok := n.Welcome[j.Lang]
	if !ok || w.Markdown == "" {
		return nil, fmt.Errorf("welcome of newsletter %d in %q: none", n.ID, j.Lang)
	}
	// The link leaves this newsletter only, as an issue's leaves the issue's.
	unsub := m.signer.NewsletterUnsubscribeURL(m.opts.BaseURL, j.UUID, n.ID)
	subject, html, text, err := m.opts.Welcome(WelcomeEmail{Lang: j.Lang, Newsletter: n.Name(j.Lang), Subject: w.Subject, Markdown: w.Markdown,
		ManageURL: m.signer.ManageURL(m.opts.BaseURL, j.UUID), UnsubscribeURL: unsub})
	if err != nil {
		return nil, err
	}
	msg := mail.NewMsg(mail.WithCharset(mail.CharsetUTF8), mail.WithEncoding(mail.EncodingQP), mail.WithNoDefaultUserAgent())
	if err := msg.From(m.opts.From); err != nil {
		return nil, fmt.Errorf("from: %w", err)
	}
	if err := msg.To(j.Email); err != nil {
		return nil, errors.New("recipient address refused by the mail library")
	}
	msg.Subject(subject)
	msg.SetDate()
	msg.SetMessageIDWithValue(fmt.Sprintf("welcome.%d@%s", j.ID, m.domain))
	msg.SetGenHeader(mail.Header("Auto-Submitted"), "auto-generated")
	// The newsletter's List-Id, as its issues carry it, so a filter a reader sets for the newsletter
	// catches its welcome too.
	msg.SetGenHeaderPreformatted(mail.Header("List-Id"), "<"+n.Slug+"."+strings.ToLower(m.domain)+">")
	msg.SetGenHeader(mail.HeaderListUnsubscribe, "<"+unsub+">")
	msg.SetGenHeader(mail.Header("List-Unsubscribe-Post"), "List-Unsubscribe=One-Click")
	msg.SetBodyString(mail.TypeTextPlain, text)
	msg.AddAlternativeString(mail.TypeTextHTML, html)
	var raw bytes.Buffer
	if _, err := msg.WriteTo(&raw); err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	if m.opts.DKIM == nil {
		return raw.Bytes(), nil
	}
	return m.opts.DKIM.Sign(nil, raw.Bytes())
}
