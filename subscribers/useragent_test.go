package subscribers

import (
	"context"
	"os"
	"strings"
	"testing"
)

// userAgents are real user agents (browsers' own, as sent in 2024-2025) and what a consent keeps
// of each.
var userAgents = []struct{ ua, want string }{
	{"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0", "Firefox 128"},
	{"Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:133.0) Gecko/20100101 Firefox/133.0", "Firefox 133"},
	{"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) FxiOS/131.0 Mobile/15E148 Safari/605.1.15", "Firefox 131"},
	{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36", "Chrome 131"},
	{"Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36", "Chrome 131"},
	{"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) CriOS/131.0.6778.73 Mobile/15E148 Safari/604.1", "Chrome 131"},
	{"Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15", "Safari 17"},
	{"Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1", "Safari 18"},
	{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.2903.51", "Edge 131"},
	{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/130.0.0.0 Safari/537.36 OPR/115.0.0.0", "Opera 115"},
	{"Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/128.0.0.0 YaBrowser/24.10.0.0 Safari/537.36", "Yandex 24"},
	{"Mozilla/5.0 (Linux; Android 14; SAMSUNG SM-S918B) AppleWebKit/537.36 (KHTML, like Gecko) SamsungBrowser/26.0 Chrome/122.0.0.0 Mobile Safari/537.36", "Samsung Internet 26"},
	{"Mozilla/5.0 (Linux; U; Android 4.0.3; ko-kr; LG-L160L Build/IML74K) AppleWebKit/534.30 (KHTML, like Gecko) Version/4.0 Mobile Safari/534.30", "other"},
	{"Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 350.0.0.0", "other"},
	{"curl/8.5.0", "other"},
	{"python-requests/2.32.3", "other"},
	{"WIN $500 → evil.example/claim", "other"},
	{"Chrome/1311111 Firefox/0128", "Firefox 128"},
	{"Chrome/0", "Chrome 0"},
	{"   ", ""},
	{"", ""},
}

func TestReduceUserAgent(t *testing.T) {
	for _, c := range userAgents {
		if got := ReduceUserAgent(c.ua); got != c.want {
			t.Errorf("ReduceUserAgent(%q) = %q, want %q", c.ua, got, c.want)
		}
	}
}

// TestUserAgentMigrationAgrees runs migration 0018's statement over consents stored whole, as
// before it, and checks it keeps what ReduceUserAgent keeps for new ones.
func TestUserAgentMigrationAgrees(t *testing.T) {
	ctx := context.Background()
	db, s := newStore(t)
	if err := s.Subscribe(ctx, "ua@example.org", "", "en", formConsent); err != nil {
		t.Fatal(err)
	}
	r := reader(t, db, "ua@example.org")
	for _, c := range userAgents {
		db.MustExec(`INSERT INTO consents (subscriber_id, user_agent, source, text_version) VALUES ($1, $2, 'form', 'v')`, r.ID, c.ua)
	}
	sql, err := os.ReadFile("../migrations/0018_consents_user_agent_reduced.sql")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, strings.Replace(string(sql), "-- +goose Up", "", 1)); err != nil {
		t.Fatal(err)
	}
	var rows []struct {
		ID int64  `db:"id"`
		UA string `db:"user_agent"`
	}
	if err := db.Select(&rows, `SELECT id, user_agent FROM consents WHERE subscriber_id = $1 ORDER BY id`, r.ID); err != nil {
		t.Fatal(err)
	}
	if len(rows) != len(userAgents)+1 || rows[0].UA != "Chrome 131" {
		t.Fatalf("%d consents, the first %q; want the subscription's (Chrome 131) and %d more", len(rows), rows[0].UA, len(userAgents))
	}
	for i, c := range userAgents {
		if got := rows[i+1].UA; got != c.want && !(c.want == "" && strings.TrimSpace(got) == "") {
			t.Errorf("migration keeps %q of %q, ReduceUserAgent %q", got, c.ua, c.want)
		}
	}
}
