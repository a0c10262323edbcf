package web

import (
	"context"
	"encoding/xml"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"newsletter/digest/render"
	"newsletter/internal/digesttest"
	"newsletter/internal/testdb"
	"newsletter/templates"
)

func TestArchive(t *testing.T) {
	ctx := context.Background()
	db := testdb.New(t)
	s, ids := digesttest.GoldenIssues(t, db, "../feeds/testdata/feeds")
	r := archiveTestRenderer(t)
	fsys := templates.FS("")
	cat, err := templates.LoadCatalog(fsys)
	if err != nil {
		t.Fatal(err)
	}
	pages, err := templates.ParsePages(fsys, cat)
	if err != nil {
		t.Fatal(err)
	}
	h := NewArchive(s, r, pages, cat, ArchiveOptions{BaseURL: "https://digest.example.com", Publication: "The Example Times", Languages: []string{"en", "ru"}}, nil)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /archive", h.List)
	mux.HandleFunc("GET /archive/{id}", h.Issue)
	mux.HandleFunc("GET /archive.xml", h.Feed)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	// en goes out with its archive copy stored; ru stays a draft.
	c, err := s.Content(ctx, ids["en"], 0)
	if err != nil {
		t.Fatal(err)
	}
	copyForNobody, err := r.Render(c, render.Recipient{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SaveArchive(ctx, ids["en"], copyForNobody.Subject, copyForNobody.Preheader, copyForNobody.HTML, copyForNobody.Text); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE issues SET status = 'sent', started_at = window_end, finished_at = window_end WHERE id = $1`, ids["en"]); err != nil {
		t.Fatal(err)
	}
	en, ru := strconv.FormatInt(ids["en"], 10), strconv.FormatInt(ids["ru"], 10)
	// What came of it: three copies accepted, one refused, two readers left through its link, a
	// bounce and a complaint reported. The public sees the first and the third only.
	db.MustExec(`INSERT INTO deliveries (issue_id, subscriber_id, status) VALUES ($1, 1, 'sent'), ($1, 2, 'sent'), ($1, 3, 'sent'), ($1, 4, 'failed')`, ids["en"])
	db.MustExec(`INSERT INTO reader_events (kind, subscriber_id, issue_id, source, external_id, occurred_at) VALUES
		('unsubscribe', 1, $1, 'link', 'u1', now()), ('unsubscribe', 2, $1, 'link', 'u2', now()),
		('hard', 4, $1, 'smtp', 'h1', now()), ('complaint', 3, $1, 'imap', 'c1', now())`, ids["en"])

	get := func(path string) (*http.Response, string) {
		t.Helper()
		res, err := http.Get(srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res, string(b)
	}

	tests := []struct {
		name       string
		path       string
		status     int
		contains   []string
		excludes   []string
		csp, ctype string
	}{
		{name: "List", path: "/archive", status: 200, ctype: "text/html",
			contains: []string{`href="/archive/` + en + `"`, "Keep your terrorists close", "25 November 2026", `href="/archive.xml"`,
				"Delivered: 3 · unsubscribed through this issue: 2"},
			excludes: []string{"/archive/" + ru + `"`, "omplain", "ounce"}},
		{name: "ListRussian", path: "/archive?lang=ru", status: 200, contains: []string{"Архив дайджестов", "25 ноября 2026",
			"Доставлено: 3 · отписались по ссылке из выпуска: 2"}},
		{name: "Issue", path: "/archive/" + en, status: 200, ctype: "text/html", csp: archiveCSP,
			contains: []string{"Keep your terrorists close", "Subscribe to get it by email", `href="https://digest.example.com/"`},
			excludes: []string{"slot.invalid", "Unsubscribe", "XNLSLOT", "<script"}},
		{name: "ErrDraft", path: "/archive/" + ru, status: 404, contains: []string{"There is no such digest"}},
		{name: "ErrUnknown", path: "/archive/999999", status: 404},
		{name: "ErrNotANumber", path: "/archive/abc", status: 404},
		{name: "ErrNegative", path: "/archive/-1", status: 404},
		{name: "Feed", path: "/archive.xml", status: 200, ctype: "application/rss+xml",
			contains: []string{"<rss version=\"2.0\">", "https://digest.example.com/archive/" + en, "Keep your terrorists close"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, body := get(tt.path)
			if res.StatusCode != tt.status {
				t.Fatalf("status %d, want %d", res.StatusCode, tt.status)
			}
			if tt.ctype != "" && !strings.HasPrefix(res.Header.Get("Content-Type"), tt.ctype) {
				t.Errorf("Content-Type %q, want %s", res.Header.Get("Content-Type"), tt.ctype)
			}
			if tt.csp != "" && res.Header.Get("Content-Security-Policy") != tt.csp {
				t.Errorf("Content-Security-Policy %q, want %q", res.Header.Get("Content-Security-Policy"), tt.csp)
			}
			for _, s := range tt.contains {
				if !strings.Contains(body, s) {
					t.Errorf("body lacks %q", s)
				}
			}
			for _, s := range tt.excludes {
				if strings.Contains(body, s) {
					t.Errorf("body has %q", s)
				}
			}
		})
	}

	// A browser revalidating the copy it has gets 304 and no body; a changed copy is sent again.
	res, _ := get("/archive/" + en)
	etag := res.Header.Get("ETag")
	if etag == "" {
		t.Fatalf("archive copy without ETag: %v", res.Header)
	}
	revalidate := func(etag string) (int, int) {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+"/archive/"+en, nil)
		req.Header.Set("If-None-Match", etag)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, len(b)
	}
	if code, n := revalidate(etag); code != http.StatusNotModified || n != 0 {
		t.Errorf("revalidating with the current ETag: %d with %d bytes, want 304 and none", code, n)
	}
	if code, n := revalidate(`"something-else", W/` + etag); code != http.StatusNotModified || n != 0 {
		t.Errorf("revalidating with a list holding the weak form of the ETag: %d with %d bytes, want 304", code, n)
	}
	if code, n := revalidate(`"something-else"`); code != http.StatusOK || n == 0 {
		t.Errorf("revalidating with another ETag: %d with %d bytes, want 200 and the copy", code, n)
	}

	// The feed is well-formed RSS with one item per sent issue.
	_, body := get("/archive.xml")
	var feed archiveRSS
	if err := xml.Unmarshal([]byte(body), &feed); err != nil {
		t.Fatalf("feed: %v", err)
	}
	if len(feed.Channel.Items) != 1 || feed.Channel.Items[0].Link != "https://digest.example.com/archive/"+en || feed.Channel.Items[0].PubDate == "" {
		t.Errorf("feed items = %+v, want the one sent issue", feed.Channel.Items)
	}

	// An issue sent without a stored copy is rendered on the fly, still without reader data.
	if _, err := db.Exec(`UPDATE issues SET archive_html = '' WHERE id = $1`, ids["en"]); err != nil {
		t.Fatal(err)
	}
	res, body = get("/archive/" + en)
	if res.StatusCode != 200 || !strings.Contains(body, "Subscribe to get it by email") || strings.Contains(body, "Unsubscribe") {
		t.Errorf("copy rendered on demand: status %d", res.StatusCode)
	}
	if res.Header.Get("ETag") != etag {
		t.Errorf("a copy rendered on demand has ETag %q, want the stored copy's %q (the same bytes)", res.Header.Get("ETag"), etag)
	}
	digesttest.CheckInert(t, body)

	// An issue still sending is public already (its readers hold the link) but not yet listed.
	if _, err := db.Exec(`UPDATE issues SET status = 'sending', started_at = window_end WHERE id = $1`, ids["ru"]); err != nil {
		t.Fatal(err)
	}
	if res, body := get("/archive/" + ru); res.StatusCode != 200 || !strings.Contains(body, "Подписаться на рассылку") {
		t.Errorf("issue being sent: status %d, want 200 with the Russian copy", res.StatusCode)
	}
	if _, body := get("/archive"); strings.Contains(body, `href="/archive/`+ru+`"`) {
		t.Error("an issue still sending is listed")
	}
}

// archiveTestRenderer is the renderer of the golden issues.
func archiveTestRenderer(t testing.TB) *render.Renderer {
	t.Helper()
	fsys := templates.FS("")
	cat, err := templates.LoadCatalog(fsys)
	if err != nil {
		t.Fatal(err)
	}
	r, err := render.NewRenderer(fsys, cat, render.Options{
		BaseURL:       "https://digest.example.com",
		SiteURL:       "https://news.example.com",
		Publication:   "The Example Times",
		PostalAddress: "The Example Times, 1 Example Street, 10115 Berlin, Germany",
		From:          "The Example Times <digest@example.com>",
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}
