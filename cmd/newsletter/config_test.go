package main

import (
	"os"
	"strings"
	"testing"
	"time"
)

func envMap(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestLoadConfigDefaults(t *testing.T) {
	c, err := LoadConfig(envMap(nil))
	if err != nil {
		t.Fatalf("defaults must be valid: %v", err)
	}
	if c.DatabaseURL != "postgres://postgres@127.0.0.1:5432/newsletter?sslmode=disable" || c.SMTPURL != "smtp://127.0.0.1:1025" ||
		c.HTTPAddr != "127.0.0.1:8080" || c.BaseURL != "http://localhost:8080" || c.DigestMaxArticles != 12 ||
		c.SendMaxAttempts != 5 || c.SendConcurrency < 1 || strings.Join(c.Languages, ",") != "en,ru" ||
		c.UnconfirmedExpiry != 30*24*time.Hour || c.FeedsAllowPrivate || c.BounceAddress != "" || c.BounceIMAPSchedule != "@every 5m" {
		t.Fatalf("unexpected defaults: %+v", c)
	}
}

func TestLoadConfigErrors(t *testing.T) {
	cases := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"BadBaseURL", map[string]string{"NEWSLETTER_BASE_URL": "ftp://x"}, "NEWSLETTER_BASE_URL"},
		{"BadSMTPURL", map[string]string{"NEWSLETTER_SMTP_URL": "http://x"}, "NEWSLETTER_SMTP_URL"},
		{"BadFrom", map[string]string{"NEWSLETTER_FROM": "not an address"}, "NEWSLETTER_FROM"},
		{"FeedNotPair", map[string]string{"NEWSLETTER_FEEDS": "https://example.org/feed"}, "NEWSLETTER_FEEDS"},
		{"FeedUnknownLang", map[string]string{"NEWSLETTER_FEEDS": "de=https://example.org/feed"}, "NEWSLETTER_FEEDS"},
		{"BadSchedule", map[string]string{"NEWSLETTER_DIGEST_SCHEDULE": "every monday"}, "NEWSLETTER_DIGEST_SCHEDULE"},
		{"BadTimezone", map[string]string{"NEWSLETTER_TIMEZONE": "Mars/Olympus"}, "NEWSLETTER_TIMEZONE"},
		{"LocalTimezone", map[string]string{"NEWSLETTER_TIMEZONE": "Local"}, "NEWSLETTER_TIMEZONE"},
		{"BadMax", map[string]string{"NEWSLETTER_DIGEST_MAX_ARTICLES": "0"}, "NEWSLETTER_DIGEST_MAX_ARTICLES"},
		{"DKIMPartial", map[string]string{"NEWSLETTER_DKIM_DOMAIN": "example.org"}, "DKIM"},
		{"BadLateness", map[string]string{"NEWSLETTER_MAX_LATENESS": "soon"}, "NEWSLETTER_MAX_LATENESS"},
		{"BadSMTPAuth", map[string]string{"NEWSLETTER_SMTP_URL": "smtp://u:p@x:25?auth=xoauth"}, "NEWSLETTER_SMTP_URL"},
		{"BadExpiry", map[string]string{"NEWSLETTER_UNCONFIRMED_EXPIRY": "a month"}, "NEWSLETTER_UNCONFIRMED_EXPIRY"},
		{"BadFeedsAllowPrivate", map[string]string{"NEWSLETTER_FEEDS_ALLOW_PRIVATE": "sometimes"}, "NEWSLETTER_FEEDS_ALLOW_PRIVATE"},
		{"ExpiryShorterThanLinks", map[string]string{"NEWSLETTER_UNCONFIRMED_EXPIRY": "3d"}, "NEWSLETTER_UNCONFIRMED_EXPIRY"},
		{"BounceAddressWithName", map[string]string{"NEWSLETTER_BOUNCE_ADDRESS": "Bounces <bounces@news.example.org>"}, "NEWSLETTER_BOUNCE_ADDRESS"},
		{"BounceLocalPartTooLong", map[string]string{"NEWSLETTER_BOUNCE_ADDRESS": "bounces-of-the-gazette@news.example.org"}, "leave room for the 45-character token"},
		{"BounceIMAPWithoutAddress", map[string]string{"NEWSLETTER_BOUNCE_IMAP_URL": "imaps://bounces:pw@imap.example.org"}, "NEWSLETTER_BOUNCE_IMAP_URL: set NEWSLETTER_BOUNCE_ADDRESS"},
		{"BadBounceIMAPURL", map[string]string{"NEWSLETTER_BOUNCE_ADDRESS": "bounces@news.example.org", "NEWSLETTER_BOUNCE_IMAP_URL": "pop3://bounces:pw@imap.example.org"}, "NEWSLETTER_BOUNCE_IMAP_URL"},
		{"BadBounceIMAPSchedule", map[string]string{"NEWSLETTER_BOUNCE_IMAP_SCHEDULE": "now and then"}, "NEWSLETTER_BOUNCE_IMAP_SCHEDULE"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadConfig(envMap(tc.env))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error naming %s", err, tc.want)
			}
			if strings.Contains(err.Error(), ":pw@") {
				t.Errorf("the error shows the IMAP password: %v", err)
			}
		})
	}
}

// The README documents every setting; this keeps the two in step.
func TestReadmeListsEverySetting(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range settings {
		if !strings.Contains(string(b), "`"+s.name+"`") {
			t.Errorf("README.md does not list %s", s.name)
		}
	}
}
