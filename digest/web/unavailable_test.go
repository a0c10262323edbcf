package web

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"newsletter/internal/pgdb"
	"newsletter/internal/pgtest"
	"newsletter/migrations"
)

// TestDatabaseAwayIs503: with the database stopped, every editor page and the archive answer 503
// with Retry-After, never 500, and show nothing of the driver's error.
func TestDatabaseAwayIs503(t *testing.T) {
	pg := pgtest.Start(t)
	ctx := context.Background()
	db, err := pgdb.Open(ctx, pg.URL("newsletter"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := migrations.Apply(ctx, db.DB, nil); err != nil {
		t.Fatal(err)
	}
	e := newAdminEnvOn(t, db)
	e.addArticle("en", "Harbour reopens", "City", time.Now().Add(-time.Hour))
	csrf := e.mustLogin()
	is := e.coming("en")
	if _, err := db.Exec(`UPDATE issues SET status = 'sent', started_at = now(), finished_at = now() WHERE id = $1`, is.ID); err != nil {
		t.Fatal(err)
	}
	id := "/" + strconv.FormatInt(is.ID, 10)
	if p := e.get("/archive" + id); p.status != http.StatusOK {
		t.Fatalf("archive before the stop: %d", p.status)
	}

	pg.Stop()
	for _, c := range []struct {
		name string
		do   func() page
	}{
		{"Overview", func() page { return e.get("/admin/") }},
		{"DigestPage", func() page { return e.get("/admin/digest/en") }},
		{"IssuePage", func() page { return e.get("/admin/issues" + id) }},
		{"Approve", func() page { return e.post("/admin/issues"+id+"/approve", url.Values{"csrf": {csrf}}) }},
		{"Login", func() page { return e.login(testPassword) }},
		{"ArchiveList", func() page { return e.get("/archive") }},
		{"ArchiveIssue", func() page { return e.get("/archive" + id) }},
		{"ArchiveFeed", func() page { return e.get("/archive.xml") }},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := c.do()
			if p.status != http.StatusServiceUnavailable {
				t.Fatalf("status %d, want 503\n%s", p.status, p.body)
			}
			if ra := p.header.Get("Retry-After"); ra == "" {
				t.Error("no Retry-After")
			}
			for _, leak := range []string{"dial", "connection refused", "pq:", "sql:", "EOF", "127.0.0.1"} {
				if strings.Contains(p.body, leak) {
					t.Errorf("the page shows %q:\n%s", leak, p.body)
				}
			}
		})
	}
}
