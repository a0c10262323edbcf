package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/url"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/prometheus/client_golang/prometheus"

	"newsletter/digest"
	"newsletter/digest/render"
	"newsletter/digest/send"
	"newsletter/internal/pgdb"
	"newsletter/internal/smtptest"
	"newsletter/migrations"
	"newsletter/newsletters"
	"newsletter/templates"
)

// benchCmd runs `newsletter bench send --readers N [--rtt D] [--data]`: N confirmed readers seeded
// with COPY into a throwaway database on the configured server, one issue of realistic size sent by
// the real engine to an in-process discard SMTP server on 127.0.0.1; it prints messages/s, CPU
// seconds and peak RSS. --rtt puts a latency proxy in front of the sink (a relay that far away) and
// reports messages/s per connection against the one-round-trip ideal, 1/RTT; --data sends with
// DATA instead of BDAT, as to a server without CHUNKING.
func (a *App) benchCmd(ctx context.Context, args []string) error {
	if len(args) > 0 && args[0] == "http" {
		return a.benchHTTPCmd(ctx, args[1:])
	}
	if len(args) == 0 || args[0] != "send" {
		return usageError{"bench: want `bench send [--readers N]`"}
	}
	fs := flag.NewFlagSet("bench send", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	readers := fs.Int("readers", 100000, "confirmed readers to seed")
	rtt := fs.Duration("rtt", 0, "round trip to the sink, through a latency proxy (0: none)")
	data := fs.Bool("data", false, "send with DATA, not BDAT")
	spread := fs.Int("newsletters", 3, "newsletters the readers are spread over (1 to 3: the digests of en, ru, de)")
	if err := fs.Parse(args[1:]); err != nil {
		return usageError{"bench send: " + err.Error()}
	}
	if fs.NArg() > 0 || *readers <= 0 || *rtt < 0 || *spread < 1 || *spread > 3 {
		return usageError{"bench send: want --readers N (N > 0), --rtt D (0 or more), --newsletters K (1 to 3) and --data"}
	}
	langs := []string{"en", "ru", "de"}[:*spread]

	// A throwaway database, dropped afterwards.
	b := make([]byte, 6)
	rand.Read(b)
	name := "newsletter_bench_" + hex.EncodeToString(b)
	u, err := url.Parse(a.cfg.DatabaseURL)
	if err != nil {
		return fmt.Errorf("NEWSLETTER_DATABASE_URL: not a URL")
	}
	u.Path = "/" + name
	db, err := pgdb.Open(ctx, u.String())
	if err != nil {
		return err
	}
	defer dropBenchDatabase(a.cfg.DatabaseURL, name, a.log)
	defer db.Close()
	if err := migrations.Apply(ctx, db.DB, nil); err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "database %s: seeding %d readers with COPY over %d newsletters\n", name, *readers, len(langs))
	t0 := time.Now()
	if err := newsletters.EnsureDigests(ctx, db, langs); err != nil {
		return err
	}
	if err := seedBenchReaders(ctx, db, *readers, langs); err != nil {
		return err
	}
	for _, l := range langs {
		if err := seedBenchArticles(ctx, db, l); err != nil {
			return err
		}
	}
	fmt.Fprintf(a.stdout, "seeded in %s\n", time.Since(t0).Round(time.Millisecond))

	sink, err := smtptest.Listen("127.0.0.1:0")
	if err != nil {
		return err
	}
	defer sink.Close()
	sink.SetMode(smtptest.Discard)

	// The real engine, wired as serve wires it, against the bench database and the sink.
	bench := *a
	bench.db = db
	bench.secret = b
	bench.secret = append(bench.secret, "bench-secret-padding"...)
	bench.registry = prometheus.NewRegistry()
	bench.cfg.SMTPURL = sink.URL()
	if *rtt > 0 {
		proxy, err := smtptest.ListenProxy(sink.Addr, *rtt/2)
		if err != nil {
			return err
		}
		defer proxy.Close()
		bench.cfg.SMTPURL = "smtp://" + proxy.Addr
	}
	bench.cfg.DigestMaxArticles = 16 // every seeded article shown: about 30 KB of HTML
	bench.log = slog.New(slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	if bench.catalog, err = templates.LoadCatalog(templates.FS(a.cfg.TemplatesDir)); err != nil {
		return err
	}
	store := digest.NewStore(db, nil)
	sender, err := bench.newSender(store, func(o *send.SenderOptions) { o.NoChunking = *data })
	if err != nil {
		return err
	}
	renderer, err := bench.digestRenderer()
	if err != nil {
		return err
	}
	// One issue per newsletter, all started (their ledgers fixed) before the clock starts, then
	// sent one after the other as serve's sender takes them.
	var issues []int64
	t1 := time.Now()
	rows := 0
	for _, l := range langs {
		iss, err := store.Assemble(ctx, l, bench.cfg.DigestMaxArticles)
		if err != nil {
			return err
		}
		c, err := store.Content(ctx, iss.ID, bench.cfg.DigestMaxArticles)
		if err != nil {
			return err
		}
		sample, err := renderer.Render(c, render.Recipient{Name: "Sample Reader", UnsubscribeURL: a.cfg.BaseURL + "/unsubscribe/x", ManageURL: a.cfg.BaseURL + "/manage/x"})
		if err != nil {
			return err
		}
		n, err := sender.Start(ctx, iss.ID)
		if err != nil {
			return err
		}
		rows += n
		issues = append(issues, iss.ID)
		fmt.Fprintf(a.stdout, "issue %d (%s): %d KB of HTML, %d KB of text, %d readers\n", iss.ID, l, len(sample.HTML)/1024, len(sample.Text)/1024, n)
	}
	fmt.Fprintf(a.stdout, "ledgers of %d rows in %s\n", rows, time.Since(t1).Round(time.Millisecond))

	cpu0 := cpuSeconds()
	start := time.Now()
	done := make(chan struct{})
	go func() {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fmt.Fprintf(a.stderr, "  %d sent, %.0f/s\n", sink.Count(), float64(sink.Count())/time.Since(start).Seconds())
			}
		}
	}()
	for _, id := range issues {
		if err = sender.SendIssue(ctx, id, nil); err != nil {
			break
		}
	}
	close(done)
	elapsed := time.Since(start)
	cpu := cpuSeconds() - cpu0
	if err != nil {
		return err
	}
	sent := sink.Count()
	path := "BDAT"
	if *data {
		path = "DATA"
	}
	rate := float64(sent) / elapsed.Seconds()
	fmt.Fprintf(a.stdout, "sent %d messages in %s over %d connections with %s: %.0f messages/s\n", sent, elapsed.Round(time.Millisecond),
		a.cfg.SendConcurrency, path, rate)
	if *rtt > 0 {
		perConn := rate / float64(a.cfg.SendConcurrency)
		ideal := 1 / rtt.Seconds()
		fmt.Fprintf(a.stdout, "round trip %s: %.1f messages/s per connection, %.2f of the one-round-trip ideal (%.1f/s)\n",
			*rtt, perConn, perConn/ideal, ideal)
	}
	fmt.Fprintf(a.stdout, "CPU %.1f s (this process, sink included; PostgreSQL not counted), %.0f µs per message\n", cpu, cpu/float64(max(1, sent))*1e6)
	fmt.Fprintf(a.stdout, "peak RSS %s\n", peakRSS())
	return nil
}

// seedBenchReaders adds n confirmed readers with COPY, reader i in langs[i%len(langs)] and
// subscribed to that language's digest; with more than one language every fourth reader also
// takes the next language's digest.
func seedBenchReaders(ctx context.Context, db *sqlx.DB, n int, langs []string) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `COPY subscribers (email, name, lang, status, confirmed_at) FROM STDIN`)
	if err != nil {
		return err
	}
	now := time.Now()
	for i := 1; i <= n; i++ {
		name := ""
		if i%4 != 0 {
			name = "Reader " + strconv.Itoa(i)
		}
		if _, err := stmt.ExecContext(ctx, "reader-"+strconv.Itoa(i)+"@bench.example", name, langs[i%len(langs)], "confirmed", now); err != nil {
			return err
		}
	}
	if _, err := stmt.ExecContext(ctx); err != nil {
		return err
	}
	if err := stmt.Close(); err != nil {
		return err
	}
	// Subscribed as their confirmation would have done.
	if _, err := tx.ExecContext(ctx, `INSERT INTO subscriptions (subscriber_id, newsletter_id)
		SELECT s.id, n.id FROM subscribers s JOIN newsletters n ON n.kind = 'digest' AND (n.lang = s.lang
			OR cardinality($1::text[]) > 1 AND s.id % 4 = 0 AND n.lang = ($1::text[])[array_position($1::text[], s.lang) % cardinality($1::text[]) + 1])`,
		pq.Array(langs)); err != nil {
		return err
	}
	return tx.Commit()
}

// seedBenchArticles adds a week of articles in lang long enough for an issue of about 30 KB of HTML.
func seedBenchArticles(ctx context.Context, db *sqlx.DB, lang string) error {
	summary := strings.Repeat("The council met on Tuesday to weigh the harbour plan, and residents packed the hall to hear it. ", 9)
	for i := range 16 {
		if _, err := db.ExecContext(ctx, `INSERT INTO articles (lang, guid, title, link, summary, author, section, image_url, published_at, first_seen_at)
			VALUES ($8, $1, $2, $3, $4, 'Staff reporter', $5, $6, now() - $7 * interval '1 hour', now() - interval '1 minute')`,
			fmt.Sprintf("bench-%s-%d", lang, i), fmt.Sprintf("Story %d: what the week's vote on the harbour means for the city", i+1),
			fmt.Sprintf("https://site.example/news/2026/11/story-%d", i+1), summary, []string{"City", "Business", "Culture", ""}[i%4],
			fmt.Sprintf("https://site.example/img/story-%d.jpg", i+1), i+1, lang); err != nil {
			return err
		}
	}
	return nil
}

func dropBenchDatabase(dsn, name string, log *slog.Logger) {
	u, err := url.Parse(dsn)
	if err != nil {
		return
	}
	u.Path = "/postgres"
	admin, err := sqlx.Open("postgres", u.String())
	if err != nil {
		return
	}
	defer admin.Close()
	if _, err := admin.Exec("DROP DATABASE IF EXISTS " + pq.QuoteIdentifier(name) + " WITH (FORCE)"); err != nil {
		log.Warn("bench: drop database", "database", name, "err", err)
	}
}

// cpuSeconds is the user and system CPU time of this process so far.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}

// peakRSS reads VmHWM, the peak resident set size, from /proc/self/status.
func peakRSS() string {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return "unknown"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.Fields(v)[0])
			return fmt.Sprintf("%.1f MB", float64(kb)/1024)
		}
	}
	return "unknown"
}
