package main

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/wneessen/go-mail"

	"newsletter/internal/pgdb"
	"newsletter/internal/smtpout"
	"newsletter/migrations"
	"newsletter/newsletters"
	"newsletter/templates"
)

// App holds what the commands share once opened: settings, database, templates, metrics.
type App struct {
	cfg    Config
	log    *slog.Logger
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string

	db       *sqlx.DB
	secret   []byte
	catalog  *templates.Catalog
	pages    *templates.Pages
	registry *prometheus.Registry
	load     *requestLoad // requests in flight, for background work to make way (build sets it)
	dkim     *smtpout.DKIMSigner

	// ready, when set (tests), receives the web server's address once it listens.
	ready chan string
	// smtpRoots, when set (tests), are the certificate authorities trusted for the SMTP relay's
	// TLS instead of the system's.
	smtpRoots *x509.CertPool
}

// open connects to the database (creating it if missing), applies migrations, loads the signing
// secret and parses the templates. Every command but help starts here.
func (a *App) open(ctx context.Context) error {
	if a.db != nil {
		return nil
	}
	db, err := pgdb.Open(ctx, a.cfg.DatabaseURL)
	if err != nil {
		return err
	}
	a.db = db
	if err := migrations.Apply(ctx, db.DB, a.log); err != nil {
		return err
	}
	// Each configured language has its digest (the migration seeded en and ru).
	if err := newsletters.EnsureDigests(ctx, db, a.cfg.Languages); err != nil {
		return err
	}
	if a.secret, err = loadSecret(ctx, db, a.cfg.Secret); err != nil {
		return err
	}
	fsys := templates.FS(a.cfg.TemplatesDir)
	if a.catalog, err = templates.LoadCatalog(fsys); err != nil {
		return err
	}
	if a.pages, err = templates.ParsePages(fsys, a.catalog); err != nil {
		return err
	}
	a.registry = prometheus.NewRegistry()
	a.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return nil
}

// Close releases the database.
func (a *App) Close() {
	if a.db != nil {
		a.db.Close()
	}
}

// loadSecret returns the configured secret, else the one kept in the database, generating and
// storing it on first use (ON CONFLICT makes concurrent first starts agree on one).
func loadSecret(ctx context.Context, db *sqlx.DB, configured string) ([]byte, error) {
	if configured != "" {
		return []byte(configured), nil // checked with the settings (checkSecret)
	}
	b := make([]byte, minSecretBytes)
	if _, err := rand.Read(b); err != nil {
		return nil, err
	}
	if _, err := db.ExecContext(ctx, `INSERT INTO settings (key, value) VALUES ('secret', $1) ON CONFLICT (key) DO NOTHING`, hex.EncodeToString(b)); err != nil {
		return nil, fmt.Errorf("store secret: %w", err)
	}
	var v string
	if err := db.GetContext(ctx, &v, `SELECT value FROM settings WHERE key = 'secret'`); err != nil {
		if errors.Is(err, sql.ErrNoRows) {
			return nil, errors.New("secret missing from settings")
		}
		return nil, fmt.Errorf("load secret: %w", err)
	}
	b, err := hex.DecodeString(v)
	if err != nil || len(b) < minSecretBytes {
		return nil, errors.New("the secret kept in the database (table settings, key secret) is not 32 hex-encoded bytes; delete the row to make a new one, or set NEWSLETTER_SECRET")
	}
	return b, nil
}

// dkimSigner returns the signer of every outgoing message (digests, confirmations, test sends),
// built once from the NEWSLETTER_DKIM_* settings; nil when they are unset.
func (a *App) dkimSigner() (*smtpout.DKIMSigner, error) {
	if a.cfg.DKIMDomain == "" || a.dkim != nil {
		return a.dkim, nil
	}
	key, err := os.ReadFile(a.cfg.DKIMKeyFile)
	if err != nil {
		return nil, fmt.Errorf("NEWSLETTER_DKIM_KEY_FILE: %w", err)
	}
	if a.dkim, err = smtpout.NewDKIMSigner(a.cfg.DKIMDomain, a.cfg.DKIMSelector, key); err != nil {
		return nil, fmt.Errorf("NEWSLETTER_DKIM_KEY_FILE: %w", err)
	}
	return a.dkim, nil
}

// smtpAuthTypes are the values of NEWSLETTER_SMTP_URL's ?auth=; PLAIN when absent. auto takes the
// strongest the server offers (over an unencrypted connection only challenge-response ones).
var smtpAuthTypes = map[string]mail.SMTPAuthType{
	"": mail.SMTPAuthPlain, "plain": mail.SMTPAuthPlain, "login": mail.SMTPAuthLogin, "cram-md5": mail.SMTPAuthCramMD5,
	"scram-sha-256": mail.SMTPAuthSCRAMSHA256, "auto": mail.SMTPAuthAutoDiscover,
}

// mailClient builds the go-mail client for NEWSLETTER_SMTP_URL, with extra options last.
func (a *App) mailClient(extra ...mail.Option) (*mail.Client, error) {
	u, err := url.Parse(a.cfg.SMTPURL)
	if err != nil {
		return nil, errors.New("NEWSLETTER_SMTP_URL: not a URL")
	}
	opts := []mail.Option{mail.WithTimeout(30 * time.Second), mail.WithTLSPolicy(mail.TLSOpportunistic)}
	port := 25
	if u.Scheme == "smtps" {
		port = 465
		opts = append(opts, mail.WithSSL())
	}
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil {
			return nil, errors.New("NEWSLETTER_SMTP_URL: bad port")
		}
	}
	opts = append(opts, mail.WithPort(port))
	if a.smtpRoots != nil {
		opts = append(opts, mail.WithTLSConfig(&tls.Config{ServerName: u.Hostname(), RootCAs: a.smtpRoots, MinVersion: tls.VersionTLS12}))
	}
	if u.Query().Get("tls") == "required" {
		opts = append(opts, mail.WithTLSPolicy(mail.TLSMandatory))
	}
	if u.User != nil {
		pass, _ := u.User.Password()
		opts = append(opts, mail.WithSMTPAuth(smtpAuthTypes[u.Query().Get("auth")]), mail.WithUsername(u.User.Username()), mail.WithPassword(pass))
	}
	c, err := mail.NewClient(u.Hostname(), append(opts, extra...)...)
	if err != nil {
		return nil, fmt.Errorf("NEWSLETTER_SMTP_URL: %v", err)
	}
	return c, nil
}
