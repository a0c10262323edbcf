package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestBrowserFeedStatus runs serve against feeds on a local server (allowed by
// NEWSLETTER_FEEDS_ALLOW_PRIVATE) that work, are gone, and fail, and reads the editor overview in
// headless Chromium: the failing and the gone feed are red, every feed URL without its password.
func TestBrowserFeedStatus(t *testing.T) {
	const password = "editor password for the feeds test"
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(`<?xml version="1.0"?><rss version="2.0"><channel><title>T</title><item><guid>g1</guid><title>A story</title>` +
			`<link>https://news.example.com/a</link><pubDate>` + time.Now().UTC().Format(time.RFC1123Z) + `</pubDate></item></channel></rss>`))
	})
	mux.HandleFunc("/gone", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "gone", http.StatusGone) })
	mux.HandleFunc("/broken", func(w http.ResponseWriter, r *http.Request) { http.Error(w, "oops", http.StatusBadGateway) })
	feeds := httptest.NewServer(mux)
	defer feeds.Close()
	withPassword := strings.Replace(feeds.URL, "http://", "http://editor:s3cret@", 1)
	s := startService(t, map[string]string{
		"NEWSLETTER_ADMIN_PASSWORD":      password,
		"NEWSLETTER_FEEDS":               "en=" + withPassword + "/ok,en=" + feeds.URL + "/gone,ru=" + feeds.URL + "/broken",
		"NEWSLETTER_FEEDS_ALLOW_PRIVATE": "true",
		"NEWSLETTER_FEED_SCHEDULE":       "@every 1s",
	})
	// Three polls have failed in a row once the broken feed counts three.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var failures int
		s.DB.Get(&failures, `SELECT failures FROM feeds WHERE url = $1`, feeds.URL+"/broken")
		if failures >= 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the broken feed failed %d times in 30 s", failures)
		}
		time.Sleep(200 * time.Millisecond)
	}

	ctx := newBrowser(t)
	do(t, ctx, "log in", chromedp.EmulateViewport(1280, 900), chromedp.Navigate(s.URL+"/admin/"),
		chromedp.WaitVisible(chromedp.ID("password")), chromedp.SendKeys(chromedp.ID("password"), password))
	if st := press(t, ctx, "form.card button[type=submit]"); st != 200 {
		t.Fatalf("login answered %d", st)
	}
	text := eval(t, ctx, "overview text", chromedp.Text(chromedp.CSS("main")))
	if strings.Contains(text, "s3cret") || strings.Contains(text, "editor:") {
		t.Errorf("the overview shows the feed's password")
	}
	if !strings.Contains(text, feeds.URL+"/ok") {
		t.Errorf("the overview lacks the feed %s/ok", feeds.URL)
	}
	// Each feed row: its URL, whether it is red (the row's background and the status badge's
	// colour as the browser computes them), and its status text.
	rows := eval(t, ctx, "feed rows", chromedp.Evaluate[[][]string](`[...document.querySelectorAll('table.list tbody tr')]
		.filter(tr => tr.cells.length === 6)
		.map(tr => [tr.cells[0].textContent.trim(), getComputedStyle(tr.cells[0]).backgroundColor,
			getComputedStyle(tr.cells[2].querySelector('.status') || tr.cells[2]).color, tr.cells[2].textContent.trim()])`))
	seen := map[string]bool{}
	for _, r := range rows {
		url, bg, badge, status := r[0], r[1], r[2], r[3]
		red := bg != "rgba(0, 0, 0, 0)" && bg != "transparent"
		switch {
		case strings.HasSuffix(url, "/ok"):
			if red || !strings.HasPrefix(status, "ok") {
				t.Errorf("working feed: background %s, status %q", bg, status)
			}
		case strings.HasSuffix(url, "/gone"):
			if !red || !strings.Contains(status, "Answered 410 Gone") || !reddish(badge) {
				t.Errorf("gone feed: background %s, badge %s, status %q", bg, badge, status)
			}
		case strings.HasSuffix(url, "/broken"):
			if !red || !strings.Contains(status, "polls in a row failed") || !reddish(badge) {
				t.Errorf("failing feed: background %s, badge %s, status %q", bg, badge, status)
			}
		default:
			continue
		}
		seen[url[strings.LastIndex(url, "/"):]] = true
	}
	if len(seen) != 3 {
		t.Errorf("feed rows %v", rows)
	}
	if problems := eval(t, ctx, "check overview", chromedp.Evaluate[[]string](adminChecks)); len(problems) > 0 {
		t.Errorf("overview: %s", strings.Join(problems, "; "))
	}
	screenshot(t, ctx, "admin-feeds")
}

// reddish reports whether a computed rgb() colour is mostly red.
func reddish(css string) bool {
	var r, g, b int
	if _, err := fmt.Sscanf(css, "rgb(%d, %d, %d)", &r, &g, &b); err != nil {
		return false
	}
	return r > 100 && r > 2*g && r > 2*b
}
