package main

import (
	"errors"
	"fmt"
	"net/mail"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/robfig/cron/v3"

	"newsletter/digest"
	"newsletter/subscribers"
	"newsletter/subscribers/bounce"
)

// Config is every setting of the service. Defaults work on a laptop with a local PostgreSQL and a
// local mail catcher; only this file reads the environment.
type Config struct {
	DatabaseURL   string
	SMTPURL       string
	HTTPAddr      string
	BaseURL       string
	Secret        string // empty: generated once and kept in the database
	AdminPassword string // kept one release for compatibility: logs in until an editor has a password
	From          string
	Publication   string
	SiteURL       string
	Languages     []string
	Feeds         []Feed
	CORSOrigins   []string
	PostalAddress string
	TemplatesDir  string

	FeedSchedule      string
	FeedsAllowPrivate bool // feed fetches may reach loopback and private addresses
	DigestSchedule    string
	// Timezone is the zone of a digest schedule without CRON_TZ and of the times the editor pages
	// show (NEWSLETTER_TIMEZONE).
	Timezone          *time.Location
	DigestMaxArticles int
	RequireApproval   bool
	MaxLateness       time.Duration
	UnconfirmedExpiry time.Duration
	ConsentIP         string

	AdminTOTPRequired bool // NEWSLETTER_ADMIN_TOTP=required

	SendConcurrency int
	SendRate        float64
	SendMaxAttempts int

	DKIMDomain   string
	DKIMSelector string
	DKIMKeyFile  string

	// Bounces and complaints (subscribers/bounce): the VERP Return-Path, its mailbox, the webhooks.
	BounceAddress      string
	BounceIMAPURL      string
	BounceIMAPSchedule string
	SESTopicARN        string
	MailgunSigningKey  string

	// SubscribeRateLimit is how many subscribe requests one client may make a minute; 0 turns the
	// limit off (load tests).
	SubscribeRateLimit int
	// TrustProxy takes the client's address from X-Forwarded-For (behind a reverse proxy).
	TrustProxy bool
	// Demo seeds demonstration articles when the database has none and no feed is configured.
	Demo     bool
	LogLevel string
}

// Feed is one configured feed and the language of its articles.
type Feed struct {
	Lang string
	URL  string
}

// setting describes one environment variable: its name, default and where it goes.
type setting struct {
	name, def, help string
	set             func(c *Config, v string) error
}

func str(p func(c *Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error { *p(c) = v; return nil }
}

func list(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func positiveInt(p func(c *Config) *int, allowZero bool) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || (n == 0 && !allowZero) {
			return errors.New("want a positive whole number")
		}
		*p(c) = n
		return nil
	}
}

var settings = []setting{
	{"NEWSLETTER_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/newsletter?sslmode=disable", "PostgreSQL URL; the database is created if missing",
		str(func(c *Config) *string { return &c.DatabaseURL })},
	{"NEWSLETTER_SMTP_URL", "smtp://127.0.0.1:1025", "SMTP relay: smtp://[user:pass@]host:port (STARTTLS when offered; ?tls=required insists; ?auth=login, cram-md5, scram-sha-256 or auto instead of PLAIN), smtps:// for implicit TLS",
		str(func(c *Config) *string { return &c.SMTPURL })},
	{"NEWSLETTER_HTTP_ADDR", "127.0.0.1:8080", "where the web server listens",
		str(func(c *Config) *string { return &c.HTTPAddr })},
	{"NEWSLETTER_BASE_URL", "http://localhost:8080", "public root used in every link in every email",
		func(c *Config, v string) error { c.BaseURL = strings.TrimRight(v, "/"); return nil }},
	{"NEWSLETTER_SECRET", "", "key that signs confirm, unsubscribe and manage links: at least 32 random bytes as 64 hex or 43 base64 characters (default: generated once and kept in the database)",
		func(c *Config, v string) error {
			if v != "" {
				if err := checkSecret(v); err != nil {
					return err
				}
			}
			c.Secret = v
			return nil
		}},
	{"NEWSLETTER_ADMIN_PASSWORD", "", "kept one release for compatibility: the shared editor password, which logs in as an admin with no account while no editor account has a password (then it is refused); it creates nothing",
		str(func(c *Config) *string { return &c.AdminPassword })},
	{"NEWSLETTER_ADMIN_TOTP", "optional", "two-factor login (TOTP) for admins: optional, or required (an admin without it must switch it on before anything else)",
		func(c *Config, v string) error {
			switch v {
			case "optional", "required":
				c.AdminTOTPRequired = v == "required"
				return nil
			}
			return errors.New("want optional or required")
		}},
	{"NEWSLETTER_FROM", "Weekly Digest <digest@localhost>", "From of every email; its domain also ends every Message-ID",
		str(func(c *Config) *string { return &c.From })},
	{"NEWSLETTER_PUBLICATION_NAME", "The Weekly Digest", "the publication's name, on every page and email",
		str(func(c *Config) *string { return &c.Publication })},
	{"NEWSLETTER_SITE_URL", "", "the publication's own site, linked from the digest (\"and N more this week\"); default: NEWSLETTER_BASE_URL",
		func(c *Config, v string) error { c.SiteURL = strings.TrimRight(v, "/"); return nil }},
	{"NEWSLETTER_LANGUAGES", "en,ru", "languages readers can choose (comma-separated)",
		func(c *Config, v string) error { c.Languages = list(v); return nil }},
	{"NEWSLETTER_FEEDS", "", "lang=url pairs, comma-separated",
		func(c *Config, v string) error {
			c.Feeds = nil
			for _, pair := range list(v) {
				lang, u, ok := strings.Cut(pair, "=")
				if !ok || lang == "" || u == "" {
					return fmt.Errorf("%q is not lang=url", pair)
				}
				c.Feeds = append(c.Feeds, Feed{Lang: strings.TrimSpace(lang), URL: strings.TrimSpace(u)})
			}
			return nil
		}},
	{"NEWSLETTER_FEEDS_ALLOW_PRIVATE", "false", "let feed fetches reach loopback and private addresses (a newsroom's own intranet; local tests)",
		func(c *Config, v string) (err error) { c.FeedsAllowPrivate, err = strconv.ParseBool(v); return err }},
	{"NEWSLETTER_CORS_ORIGINS", "", "origins (comma-separated) whose pages may POST /subscribe from the browser",
		func(c *Config, v string) error { c.CORSOrigins = list(v); return nil }},
	{"NEWSLETTER_POSTAL_ADDRESS", "", "the publisher's postal address, printed in every digest footer",
		str(func(c *Config) *string { return &c.PostalAddress })},
	{"NEWSLETTER_TEMPLATES_DIR", "", "directory whose files replace the embedded templates of the same path",
		str(func(c *Config) *string { return &c.TemplatesDir })},
	{"NEWSLETTER_FEED_SCHEDULE", "@every 15m", "when serve polls the feeds (robfig/cron syntax)",
		str(func(c *Config) *string { return &c.FeedSchedule })},
	{"NEWSLETTER_DIGEST_SCHEDULE", "CRON_TZ=UTC 0 8 * * MON", "when the weekly digest goes out (robfig/cron syntax)",
		str(func(c *Config) *string { return &c.DigestSchedule })},
	{"NEWSLETTER_TIMEZONE", "UTC", "the newsroom's time zone (an IANA name such as Europe/Moscow): of a digest schedule without CRON_TZ, and of the times the editor pages show",
		func(c *Config, v string) error {
			// time.LoadLocation also reads "Local" and file paths; only a zone name is meant here.
			if v == "Local" || strings.ContainsAny(v, `.\`) || strings.HasPrefix(v, "/") {
				return errors.New("want an IANA time zone name such as UTC or Europe/Moscow")
			}
			loc, err := time.LoadLocation(v)
			if err != nil {
				return errors.New("want an IANA time zone name such as UTC or Europe/Moscow")
			}
			c.Timezone = loc
			return nil
		}},
	{"NEWSLETTER_DIGEST_MAX_ARTICLES", "12", "most articles in one digest",
		positiveInt(func(c *Config) *int { return &c.DigestMaxArticles }, false)},
	{"NEWSLETTER_REQUIRE_APPROVAL", "false", "a scheduled send waits for an editor's approval",
		func(c *Config, v string) (err error) { c.RequireApproval, err = strconv.ParseBool(v); return err }},
	{"NEWSLETTER_MAX_LATENESS", "6h", "a scheduled run later than this waits for an editor instead of sending",
		func(c *Config, v string) (err error) { c.MaxLateness, err = time.ParseDuration(v); return err }},
	{"NEWSLETTER_UNCONFIRMED_EXPIRY", "30d", "sign-ups still unconfirmed this long after the last confirmation email are removed with their consent (days as 30d, or a duration such as 720h; at least the confirm link's 7 days)",
		func(c *Config, v string) (err error) {
			if c.UnconfirmedExpiry, err = parseDays(v); err == nil && c.UnconfirmedExpiry < subscribers.ConfirmTTL {
				err = fmt.Errorf("want at least %v, how long a confirm link works", subscribers.ConfirmTTL)
			}
			return err
		}},
	{"NEWSLETTER_SEND_CONCURRENCY", "", "SMTP connections used by one sending process (default: chosen for speed)",
		func(c *Config, v string) error {
			if v == "" {
				c.SendConcurrency = max(8, 4*runtime.NumCPU()) // measured: 8 beat 4 by a quarter on 2 cores
				return nil
			}
			return positiveInt(func(c *Config) *int { return &c.SendConcurrency }, false)(c, v)
		}},
	{"NEWSLETTER_SEND_RATE", "0", "most messages per second, across the process (0: no cap)",
		func(c *Config, v string) error {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil || f < 0 {
				return errors.New("want a number, 0 or more")
			}
			c.SendRate = f
			return nil
		}},
	{"NEWSLETTER_SEND_MAX_ATTEMPTS", "5", "tries per reader before a temporary failure becomes final",
		positiveInt(func(c *Config) *int { return &c.SendMaxAttempts }, false)},
	{"NEWSLETTER_DKIM_DOMAIN", "", "sign every email (digests, confirmations, test sends) with DKIM for this domain (with _SELECTOR and _KEY_FILE)",
		str(func(c *Config) *string { return &c.DKIMDomain })},
	{"NEWSLETTER_DKIM_SELECTOR", "", "DKIM selector",
		str(func(c *Config) *string { return &c.DKIMSelector })},
	{"NEWSLETTER_DKIM_KEY_FILE", "", "PEM file with the DKIM private key (RSA or Ed25519)",
		str(func(c *Config) *string { return &c.DKIMKeyFile })},
	{"NEWSLETTER_BOUNCE_ADDRESS", "", "the Return-Path mailbox: each email goes out from local+TOKEN@domain (signed, naming the reader and the issue), and bounces to it are read back",
		str(func(c *Config) *string { return &c.BounceAddress })},
	{"NEWSLETTER_BOUNCE_IMAP_URL", "", "that mailbox over IMAP, read by serve: imaps://USER:PASS@HOST[:993][/MAILBOX][?processed=FOLDER&unhandled=FOLDER], or imap:// with STARTTLS",
		str(func(c *Config) *string { return &c.BounceIMAPURL })},
	{"NEWSLETTER_BOUNCE_IMAP_SCHEDULE", "@every 5m", "when serve reads the bounce mailbox (robfig/cron syntax)",
		str(func(c *Config) *string { return &c.BounceIMAPSchedule })},
	{"NEWSLETTER_SES_TOPIC_ARN", "", "the SNS topic of Amazon SES bounce and complaint notifications; set, POST /webhooks/ses takes them",
		str(func(c *Config) *string { return &c.SESTopicARN })},
	{"NEWSLETTER_MAILGUN_SIGNING_KEY", "", "Mailgun's HTTP webhook signing key; set, POST /webhooks/mailgun takes its failed and complained events",
		str(func(c *Config) *string { return &c.MailgunSigningKey })},
	{"NEWSLETTER_SUBSCRIBE_RATE_LIMIT", "5", "subscribe requests one client may make per minute (0: no limit)",
		positiveInt(func(c *Config) *int { return &c.SubscribeRateLimit }, true)},
	{"NEWSLETTER_TRUST_PROXY", "false", "take the client address for the subscribe rate limit and the editor login throttle from the last X-Forwarded-For entry (set it only behind a reverse proxy that sets that header)",
		func(c *Config, v string) (err error) { c.TrustProxy, err = strconv.ParseBool(v); return err }},
	{"NEWSLETTER_CONSENT_IP", "truncated", "what a consent record keeps of the reader's IP: full, truncated (/24, /48) or none",
		func(c *Config, v string) error {
			switch v {
			case "full", "truncated", "none":
				c.ConsentIP = v
				return nil
			}
			return errors.New("want full, truncated or none")
		}},
	{"NEWSLETTER_DEMO", "false", "seed demonstration articles when there are none and no feed is set",
		func(c *Config, v string) (err error) { c.Demo, err = strconv.ParseBool(v); return err }},
	{"NEWSLETTER_LOG_LEVEL", "info", "debug, info, warn or error",
		str(func(c *Config) *string { return &c.LogLevel })},
}

// parseDays reads "30d" as 30 days, and anything else as a Go duration ("720h").
func parseDays(v string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(v, "d"); ok {
		days, err := strconv.Atoi(n)
		if err != nil || days < 0 {
			return 0, errors.New("want a number of days such as 30d, or a duration such as 720h")
		}
		return time.Duration(days) * 24 * time.Hour, nil
	}
	return time.ParseDuration(v)
}

// LoadConfig reads every setting from getenv, applying defaults, then validates the whole.
func LoadConfig(getenv func(string) string) (Config, error) {
	var c Config
	var errs []error
	for _, s := range settings {
		v := strings.TrimSpace(getenv(s.name))
		if v == "" {
			v = s.def
		}
		if err := s.set(&c, v); err != nil {
			errs = append(errs, fmt.Errorf("%s: %v", s.name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return c, err
	}
	if c.SiteURL == "" {
		c.SiteURL = c.BaseURL
	}
	return c, c.Validate()
}

// Validate checks the rules that span settings.
func (c Config) Validate() error {
	var errs []error
	if u, err := url.Parse(c.BaseURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, errors.New("NEWSLETTER_BASE_URL: want an http:// or https:// URL"))
	}
	if u, err := url.Parse(c.SMTPURL); err != nil || (u.Scheme != "smtp" && u.Scheme != "smtps") || u.Hostname() == "" {
		errs = append(errs, errors.New("NEWSLETTER_SMTP_URL: want smtp://host:port or smtps://host:port"))
	} else if _, ok := smtpAuthTypes[u.Query().Get("auth")]; !ok {
		errs = append(errs, errors.New("NEWSLETTER_SMTP_URL: ?auth= takes plain, login, cram-md5, scram-sha-256 or auto"))
	}
	if _, err := mail.ParseAddress(c.From); err != nil {
		errs = append(errs, errors.New("NEWSLETTER_FROM: want an address such as Weekly Digest <digest@example.org>"))
	}
	if len(c.Languages) == 0 {
		errs = append(errs, errors.New("NEWSLETTER_LANGUAGES: name at least one language"))
	}
	for _, f := range c.Feeds {
		if !c.HasLanguage(f.Lang) {
			errs = append(errs, fmt.Errorf("NEWSLETTER_FEEDS: language %q is not in NEWSLETTER_LANGUAGES", f.Lang))
		}
		if u, err := url.Parse(f.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			errs = append(errs, fmt.Errorf("NEWSLETTER_FEEDS: %q is not an http(s) URL", f.URL))
		}
	}
	// robfig/cron's standard parser (five fields or a descriptor), as every schedule is read; the
	// digest's in the newsroom's zone.
	for name, spec := range map[string]string{"NEWSLETTER_DIGEST_SCHEDULE": digest.InZone(c.DigestSchedule, c.Timezone), "NEWSLETTER_FEED_SCHEDULE": c.FeedSchedule,
		"NEWSLETTER_BOUNCE_IMAP_SCHEDULE": c.BounceIMAPSchedule} {
		if _, err := cron.ParseStandard(spec); err != nil {
			errs = append(errs, fmt.Errorf("%s: %v", name, err))
		}
	}
	if (c.DKIMDomain != "" || c.DKIMSelector != "" || c.DKIMKeyFile != "") && (c.DKIMDomain == "" || c.DKIMSelector == "" || c.DKIMKeyFile == "") {
		errs = append(errs, errors.New("NEWSLETTER_DKIM_DOMAIN, _SELECTOR and _KEY_FILE go together"))
	}
	if c.BounceAddress != "" {
		if err := bounce.CheckBase(c.BounceAddress); err != nil {
			errs = append(errs, fmt.Errorf("NEWSLETTER_BOUNCE_ADDRESS: %v", err))
		}
	}
	if c.BounceIMAPURL != "" {
		// Its errors never repeat the password.
		if _, err := bounce.ParseIMAPURL(c.BounceIMAPURL); err != nil {
			errs = append(errs, fmt.Errorf("NEWSLETTER_BOUNCE_IMAP_URL: %v", err))
		}
		if c.BounceAddress == "" {
			errs = append(errs, errors.New("NEWSLETTER_BOUNCE_IMAP_URL: set NEWSLETTER_BOUNCE_ADDRESS too: without its tokens no bounce in the mailbox names a reader"))
		}
	}
	return errors.Join(errs...)
}

// HasLanguage reports whether readers may choose lang.
func (c Config) HasLanguage(lang string) bool {
	for _, l := range c.Languages {
		if l == lang {
			return true
		}
	}
	return false
}
