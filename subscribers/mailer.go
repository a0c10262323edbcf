package subscribers

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/wneessen/go-mail"

	"newsletter/templates"
)

// mailClient is the part of *mail.Client the mailer uses.
type mailClient interface {
	DialAndSendWithContext(context.Context, ...*mail.Msg) error
}

// MailerOptions configures the confirmation mailer.
type MailerOptions struct {
	BaseURL     string        // public root of the confirm links
	From        string        // From header
	Publication string        // name shown in the email
	Poll        time.Duration // how often to look for due rows without a Wake; default 2s
	MaxBackoff  time.Duration // longest wait between retries; default 5 minutes
}

// Mailer is the outbox worker that sends confirmation emails.
type Mailer struct {
	db     *sqlx.DB
	client mailClient
	signer *Signer
	cat    *templates.Catalog
	opts   MailerOptions
	log    *slog.Logger
	wake   chan struct{}
}

// NewMailer parses the confirmation templates and registers the mailer's metrics.
func NewMailer(db *sqlx.DB, client interface {
	DialAndSendWithContext(context.Context, ...*mail.Msg) error
}, signer *Signer, fsys fs.FS, cat *templates.Catalog, opts MailerOptions, log *slog.Logger, reg prometheus.Registerer) (*Mailer, error) {
	return &Mailer{db: db, client: client, signer: signer, cat: cat, opts: opts, log: log, wake: make(chan struct{}, 1)}, nil
}

// Run sends due confirmations until ctx ends, retrying while SMTP is down.
func (m *Mailer) Run(ctx context.Context) error {
	return errors.New("todo")
}

// Wake makes Run look for due rows now rather than at the next poll.
func (m *Mailer) Wake() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}
