package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"newsletter/internal/testdb"
)

func TestDigestPreview(t *testing.T) {
	ctx := context.Background()
	dbURL := testdb.URL(t)
	env := map[string]string{
		"NEWSLETTER_DATABASE_URL":     dbURL,
		"NEWSLETTER_SECRET":           e2eSecret,
		"NEWSLETTER_BASE_URL":         "https://digest.example.com",
		"NEWSLETTER_PUBLICATION_NAME": "The Test Gazette",
		"NEWSLETTER_POSTAL_ADDRESS":   "1 Test Street, Testville",
	}
	preview := func(args ...string) (int, string, string) {
		var stdout, stderr bytes.Buffer
		code := run(ctx, append([]string{"digest", "preview"}, args...), func(k string) string { return env[k] }, strings.NewReader(""), &stdout, &stderr)
		return code, stdout.String(), stderr.String()
	}

	// An empty database: nothing to preview (this run also migrates the database).
	if code, out, errOut := preview(); code != exitNothing || out != "" || !strings.Contains(errOut, "no new articles") {
		t.Fatalf("empty database: exit %d, stdout %q, stderr %q; want exit 3 and a message", code, out, errOut)
	}

	db, err := sqlx.Open("postgres", dbURL)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(`INSERT INTO articles (lang, guid, title, link, summary, section, published_at, first_seen_at)
		VALUES ('en', 'g1', 'Harbour reopens after the storm', 'https://news.example.com/harbour', 'Boats are back.', 'Local', $1, $1),
		       ('ru', 'g2', 'Гавань снова открыта', 'https://news.example.com/ru/harbour', 'Лодки вернулись.', '', $1, $1)`,
		time.Now().Add(-time.Hour)); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		args     []string
		code     int
		contains []string
	}{
		{"HTML", nil, exitOK, []string{"<!DOCTYPE html>", "Harbour reopens after the storm", "https://digest.example.com/unsubscribe/", "1 Test Street, Testville"}},
		{"Text", []string{"--format", "text"}, exitOK, []string{"Harbour reopens after the storm [1]", "[1] https://news.example.com/harbour", "Unsubscribe ["}},
		{"Russian", []string{"--lang", "ru", "--format", "text"}, exitOK, []string{"Гавань снова открыта", "Отписаться", "Еженедельный дайджест"}},
		{"ErrLang", []string{"--lang", "xx"}, exitUsage, nil},
		{"ErrFormat", []string{"--format", "pdf"}, exitUsage, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := preview(tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d (stderr %q)", code, tt.code, errOut)
			}
			for _, s := range tt.contains {
				if !strings.Contains(out, s) {
					t.Errorf("output lacks %q", s)
				}
			}
		})
	}
}
