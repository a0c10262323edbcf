package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"newsletter/internal/pgdb"
	"newsletter/internal/smtptest"
	"newsletter/internal/testdb"
	"newsletter/migrations"
)

// TestDigestSendCommand runs `digest send` and the issue controls through run, as the binary does.
func TestDigestSendCommand(t *testing.T) {
	ctx := context.Background()
	srv := smtptest.Start(t)
	dbURL := testdb.URL(t)
	db, err := pgdb.Open(ctx, dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := migrations.Apply(ctx, db.DB, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO subscribers (email, name, lang, status, confirmed_at)
		SELECT 'r' || g || '@example.org', 'R ' || g, 'en', 'confirmed', now() FROM generate_series(1, 5) g`); err != nil {
		t.Fatal(err)
	}
	subscribeAll(t, db)
	if _, err := db.Exec(`INSERT INTO articles (lang, guid, title, link, published_at, first_seen_at)
		VALUES ('en', 'a1', 'First story', 'https://site.example/1', now() - interval '1 hour', now() - interval '1 hour')`); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{
		"NEWSLETTER_DATABASE_URL": dbURL, "NEWSLETTER_SMTP_URL": srv.URL(), "NEWSLETTER_SECRET": "5e4d9980f8c0789e26be204e52cfbbe08d2f19463b66db12aefdbc19c2b3722a",
		"NEWSLETTER_FROM": "Weekly <digest@news.example>", "NEWSLETTER_BASE_URL": "https://news.example",
	}
	cli := func(args ...string) (int, string, string) {
		var out, errOut bytes.Buffer
		code := run(ctx, args, func(k string) string { return env[k] }, strings.NewReader(""), &out, &errOut)
		return code, out.String(), errOut.String()
	}

	tests := []struct {
		name     string
		args     []string
		code     int
		contains string
	}{
		{"sends the current issue", []string{"digest", "send", "--yes"}, exitOK, "sent 5, failed 0, skipped 0 of 5"},
		{"nothing new the second time", []string{"digest", "send", "--lang", "en"}, exitNothing, "nothing to send"},
		{"unknown language", []string{"digest", "send", "--lang", "xx"}, exitUsage, "not one of"},
		{"pause needs an id", []string{"digest", "pause"}, exitUsage, "ISSUE_ID"},
		{"pause a bad id", []string{"digest", "pause", "x"}, exitUsage, "not an issue id"},
		{"pause a missing issue", []string{"digest", "pause", "999"}, exitFailure, "not found"},
		{"pause a sent issue", []string{"digest", "pause", "1"}, exitFailure, "conflict"},
		{"cancel a sent issue", []string{"digest", "cancel", "1"}, exitFailure, "conflict"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := cli(tc.args...)
			if code != tc.code || !strings.Contains(out+errOut, tc.contains) {
				t.Fatalf("exit %d, want %d; output:\n%s%s", code, tc.code, out, errOut)
			}
		})
	}
	if n := len(srv.Messages()); n != 5 {
		t.Fatalf("%d messages, want 5", n)
	}
}
