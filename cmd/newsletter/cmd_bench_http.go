package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"

	"newsletter/digest"
	"newsletter/digest/render"
	"newsletter/internal/pgdb"
	"newsletter/internal/smtptest"
	"newsletter/migrations"
	"newsletter/subscribers"
	"newsletter/templates"
)

// Bounds that keep a load run self-stopping and sized for one machine.
const (
	benchMaxDuration = 10 * time.Minute
	benchMaxClients  = 1024
	benchMaxReaders  = 200_000
)

// benchHTTPOptions is one load run: each target driven for Duration by Clients concurrent clients.
type benchHTTPOptions struct {
	Duration time.Duration
	Clients  int
	Targets  []string // "subscribe", "archive", "unsubscribe", in that order
}

// loadResult is what one target's run measured.
type loadResult struct {
	Target    string
	Requests  int
	Elapsed   time.Duration
	Latencies []time.Duration // sorted
	Status    map[int]int     // answers by status code
	Transport int             // requests that got no answer (connection error, timeout)
}

func (r loadResult) count(from, to int) int {
	n := 0
	for code, c := range r.Status {
		if code >= from && code < to {
			n += c
		}
	}
	return n
}

func (r loadResult) percentile(p float64) time.Duration {
	if len(r.Latencies) == 0 {
		return 0
	}
	i := int(float64(len(r.Latencies))*p+0.5) - 1
	return r.Latencies[min(max(i, 0), len(r.Latencies)-1)]
}

// benchCheck is one correctness check made after the load.
type benchCheck struct {
	Name   string
	OK     bool
	Detail string
}

// benchHTTPReport is a whole run: its figures, its checks, and the database it used (dropped).
type benchHTTPReport struct {
	Database    string
	Results     []loadResult
	Checks      []benchCheck
	ErrorLogs   int64
	ConfirmSent int64
}

// failed reports whether the run must exit 1: a 5xx, a request without an answer, or a failed check.
func (r benchHTTPReport) failed() bool {
	for _, res := range r.Results {
		if res.count(500, 600) > 0 || res.Transport > 0 {
			return true
		}
	}
	for _, c := range r.Checks {
		if !c.OK {
			return true
		}
	}
	return false
}

// benchHTTPCmd runs `newsletter bench http [--duration 60s] [--clients 64] [--target T]`.
func (a *App) benchHTTPCmd(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("bench http", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	duration := fs.Duration("duration", 60*time.Second, "how long to drive each target")
	clients := fs.Int("clients", 64, "concurrent clients, each on its own keep-alive connection")
	target := fs.String("target", "all", "subscribe, archive, unsubscribe or all")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the whole run (service and load) to this file")
	if err := fs.Parse(args); err != nil {
		return usageError{"bench http: " + err.Error()}
	}
	opts := benchHTTPOptions{Duration: *duration, Clients: *clients}
	switch *target {
	case "all":
		opts.Targets = []string{"subscribe", "archive", "unsubscribe"}
	case "subscribe", "archive", "unsubscribe":
		opts.Targets = []string{*target}
	default:
		return usageError{"bench http: --target: want subscribe, archive, unsubscribe or all"}
	}
	switch {
	case fs.NArg() > 0:
		return usageError{"bench http: unexpected argument " + strconv.Quote(fs.Arg(0))}
	case opts.Duration <= 0 || opts.Duration > benchMaxDuration:
		return usageError{fmt.Sprintf("bench http: --duration: want more than 0 and at most %s", benchMaxDuration)}
	case opts.Clients <= 0 || opts.Clients > benchMaxClients:
		return usageError{fmt.Sprintf("bench http: --clients: want 1 to %d", benchMaxClients)}
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	rep, err := a.benchHTTP(ctx, opts)
	if err != nil {
		return err
	}
	if rep.failed() {
		return errors.New("bench http: a request failed or a check did not hold (see above)")
	}
	return nil
}

// benchHTTP starts the real service (a.build, as serve wires it) on a loopback port against a
// throwaway database on the configured server and an in-process discard SMTP server, seeds what the
// targets need, drives each target, checks the outcome in the database, and drops the database.
func (a *App) benchHTTP(ctx context.Context, opts benchHTTPOptions) (rep benchHTTPReport, err error) {
	rnd := make([]byte, 6)
	rand.Read(rnd)
	runID := hex.EncodeToString(rnd)
	rep.Database = "newsletter_bench_" + runID
	u, err := url.Parse(a.cfg.DatabaseURL)
	if err != nil {
		return rep, errors.New("NEWSLETTER_DATABASE_URL: not a URL")
	}
	u.Path = "/" + rep.Database
	db, err := pgdb.Open(ctx, u.String())
	if err != nil {
		return rep, err
	}
	defer dropBenchDatabase(a.cfg.DatabaseURL, rep.Database, a.log)
	defer db.Close()
	if err := migrations.Apply(ctx, db.DB, nil); err != nil {
		return rep, err
	}

	sink, err := smtptest.Listen("127.0.0.1:0")
	if err != nil {
		return rep, err
	}
	defer sink.Close()
	sink.SetMode(smtptest.Discard)

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return rep, err
	}
	defer ln.Close()
	base := "http://" + ln.Addr().String()

	// The service as serve builds it, with its own secret, metrics, mail server and no rate limit.
	var errorLogs atomic.Int64
	svc := *a
	svc.db = db
	svc.secret = []byte("bench-" + runID + "-secret-padding")
	svc.registry = prometheus.NewRegistry()
	svc.cfg.SMTPURL = sink.URL()
	svc.cfg.BaseURL = base
	svc.cfg.SiteURL = base
	svc.cfg.SubscribeRateLimit = 0
	svc.cfg.Feeds = nil
	svc.cfg.Demo = false
	svc.cfg.DigestMaxArticles = 16
	svc.log = slog.New(&countingHandler{next: slog.NewTextHandler(a.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}), errors: &errorLogs})
	fsys := templates.FS(a.cfg.TemplatesDir)
	if svc.catalog, err = templates.LoadCatalog(fsys); err != nil {
		return rep, err
	}
	if svc.pages, err = templates.ParsePages(fsys, svc.catalog); err != nil {
		return rep, err
	}
	wants := func(t string) bool { return slices.Contains(opts.Targets, t) }

	// Seed: a sent issue for the archive, confirmed readers for one-click unsubscribes.
	var issueID int64
	if wants("archive") {
		if issueID, err = seedSentIssue(ctx, &svc); err != nil {
			return rep, fmt.Errorf("seed issue: %w", err)
		}
	}
	var unsubPaths []string
	if wants("unsubscribe") {
		// Enough distinct readers that most one-click requests leave for real; later ones repeat
		// (the idempotent path).
		n := min(benchMaxReaders, max(1000, int(opts.Duration.Seconds()*3000)))
		if unsubPaths, err = seedUnsubscribeReaders(ctx, db, subscribers.NewSigner(svc.secret), n); err != nil {
			return rep, fmt.Errorf("seed readers: %w", err)
		}
	}
	fmt.Fprintf(a.stdout, "database %s, service at %s, %d clients, %s per target\n", rep.Database, base, opts.Clients, opts.Duration)

	handler, workers, err := svc.build(ctx)
	if err != nil {
		return rep, err
	}
	srv := &http.Server{Handler: handler, ReadHeaderTimeout: 10 * time.Second, ReadTimeout: 30 * time.Second, WriteTimeout: 60 * time.Second, IdleTimeout: 120 * time.Second}
	wctx, stopWorkers := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	for _, w := range workers {
		wg.Go(func() {
			if err := w.run(wctx); err != nil && !errors.Is(err, context.Canceled) {
				svc.log.Error("worker stopped", "worker", w.name, "err", err)
			}
		})
	}
	go srv.Serve(ln)
	stopService := func() {
		sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		stopWorkers()
		wg.Wait()
	}
	stopped := false
	defer func() {
		if !stopped {
			stopService()
		}
	}()

	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
		MaxIdleConns:        opts.Clients,
		MaxIdleConnsPerHost: opts.Clients,
		MaxConnsPerHost:     opts.Clients,
		IdleConnTimeout:     time.Minute,
		DisableCompression:  true,
	}}
	defer client.CloseIdleConnections()

	var accepted [][]string // per client, the addresses whose subscribe got a 200
	for _, t := range opts.Targets {
		var next func(client, i int) *http.Request
		switch t {
		case "subscribe":
			accepted = make([][]string, opts.Clients)
			next = func(c, i int) *http.Request {
				body := url.Values{"email": {benchEmail(c, i, runID)}, "name": {"Load Reader " + strconv.Itoa(i)}, "lang": {"en"}}.Encode()
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+"/subscribe", strings.NewReader(body))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("Accept", "text/html")
				req.Header.Set("User-Agent", "newsletter-bench")
				return req
			}
		case "archive":
			path := base + "/archive/" + strconv.FormatInt(issueID, 10)
			next = func(c, i int) *http.Request {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, path, nil)
				return req
			}
		case "unsubscribe":
			var seq atomic.Int64
			next = func(c, i int) *http.Request {
				p := unsubPaths[int(seq.Add(1)-1)%len(unsubPaths)]
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost, base+p, strings.NewReader("List-Unsubscribe=One-Click"))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				return req
			}
		}
		onOK := func(c, i int) {}
		if t == "subscribe" {
			onOK = func(c, i int) { accepted[c] = append(accepted[c], benchEmail(c, i, runID)) }
		}
		res := driveLoad(ctx, client, t, opts, next, onOK)
		rep.Results = append(rep.Results, res)
		printLoadResult(a.stdout, res)
		if ctx.Err() != nil {
			break
		}
	}
	stopService()
	stopped = true
	rep.ErrorLogs = errorLogs.Load()
	rep.ConfirmSent = int64(sink.Count())

	// Checks, against the database once the service has stopped.
	// Checks scale with the requests made; bounded so a run still stops by itself.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Minute)
	defer cancel()
	if accepted != nil {
		var emails []string
		for _, e := range accepted {
			emails = append(emails, e...)
		}
		rep.Checks = append(rep.Checks, checkSubscriptions(cctx, db, emails))
	}
	for _, res := range rep.Results {
		if res.Target == "unsubscribe" {
			rep.Checks = append(rep.Checks, checkUnsubscribed(cctx, db, min(res.count(200, 300), len(unsubPaths))))
		}
	}
	rep.Checks = append(rep.Checks, benchCheck{Name: "service log has no error", OK: rep.ErrorLogs == 0,
		Detail: fmt.Sprintf("%d error records", rep.ErrorLogs)})
	fmt.Fprintf(a.stdout, "confirmation emails the mailer sent meanwhile: %d\n", rep.ConfirmSent)
	for _, c := range rep.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(a.stdout, "check %s %s: %s\n", mark, c.Name, c.Detail)
	}
	return rep, nil
}

// benchEmail is the distinct address client c subscribes with its ith request.
func benchEmail(c, i int, runID string) string {
	return "load-" + strconv.Itoa(c) + "-" + strconv.Itoa(i) + "@" + runID + ".bench.example"
}

// driveLoad runs opts.Clients clients, each sending next(client, i) back to back on its own
// keep-alive connection until opts.Duration has passed; requests in flight at the end finish.
func driveLoad(ctx context.Context, client *http.Client, target string, opts benchHTTPOptions, next func(c, i int) *http.Request, onOK func(c, i int)) loadResult {
	type tally struct {
		lat       []time.Duration
		status    map[int]int
		transport int
	}
	tallies := make([]tally, opts.Clients)
	start := time.Now()
	end := start.Add(opts.Duration)
	var wg sync.WaitGroup
	for c := range opts.Clients {
		wg.Go(func() {
			t := &tallies[c]
			t.status = map[int]int{}
			t.lat = make([]time.Duration, 0, 4096)
			for i := 0; ctx.Err() == nil && time.Now().Before(end); i++ {
				req := next(c, i)
				t0 := time.Now()
				resp, err := client.Do(req)
				if err != nil {
					t.transport++
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				t.lat = append(t.lat, time.Since(t0))
				t.status[resp.StatusCode]++
				if resp.StatusCode == http.StatusOK {
					onOK(c, i)
				}
			}
		})
	}
	wg.Wait()
	res := loadResult{Target: target, Elapsed: time.Since(start), Status: map[int]int{}}
	for _, t := range tallies {
		res.Latencies = append(res.Latencies, t.lat...)
		for code, n := range t.status {
			res.Status[code] += n
		}
		res.Transport += t.transport
	}
	slices.Sort(res.Latencies)
	res.Requests = len(res.Latencies) + res.Transport
	return res
}

func printLoadResult(w io.Writer, r loadResult) {
	ms := func(d time.Duration) string {
		return strconv.FormatFloat(float64(d)/float64(time.Millisecond), 'f', 2, 64) + " ms"
	}
	var codes []string
	for _, code := range slices.Sorted(func(yield func(int) bool) {
		for c := range r.Status {
			if !yield(c) {
				return
			}
		}
	}) {
		codes = append(codes, fmt.Sprintf("%d×%d", r.Status[code], code))
	}
	fmt.Fprintf(w, "%-11s %7d requests in %s: %.0f requests/s; p50 %s, p90 %s, p99 %s, max %s; non-2xx %d, 5xx %d, no answer %d [%s]\n",
		r.Target, r.Requests, r.Elapsed.Round(time.Millisecond), float64(r.Requests)/r.Elapsed.Seconds(),
		ms(r.percentile(.50)), ms(r.percentile(.90)), ms(r.percentile(.99)), ms(r.percentile(1)),
		r.Requests-r.Transport-r.count(200, 300), r.count(500, 600), r.Transport, strings.Join(codes, " "))
}

// checkSubscriptions checks that every address answered 200 has a committed reader, a consent and
// a queued (or already sent) confirmation email. The addresses are copied into a temporary table and
// joined once, on the index the service itself looks addresses up by.
func checkSubscriptions(ctx context.Context, db *sqlx.DB, emails []string) benchCheck {
	c := benchCheck{Name: "every subscribe 200 has a committed row, a consent and a queued confirmation"}
	found, err := countSubscribed(ctx, db, emails)
	if err != nil {
		c.Detail = err.Error()
		return c
	}
	c.OK = found == len(emails)
	c.Detail = fmt.Sprintf("%d of %d accepted addresses", found, len(emails))
	return c
}

func countSubscribed(ctx context.Context, db *sqlx.DB, emails []string) (int, error) {
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `CREATE TEMP TABLE bench_accepted (email text NOT NULL) ON COMMIT DROP`); err != nil {
		return 0, err
	}
	stmt, err := tx.PrepareContext(ctx, `COPY bench_accepted (email) FROM STDIN`)
	if err != nil {
		return 0, err
	}
	for _, e := range emails {
		if _, err := stmt.ExecContext(ctx, e); err != nil {
			stmt.Close()
			return 0, err
		}
	}
	if _, err := stmt.ExecContext(ctx); err != nil {
		stmt.Close()
		return 0, err
	}
	if err := stmt.Close(); err != nil {
		return 0, err
	}
	if _, err := tx.ExecContext(ctx, `ANALYZE bench_accepted`); err != nil {
		return 0, err
	}
	var n int
	err = tx.GetContext(ctx, &n, `
		SELECT count(*) FROM bench_accepted a
		JOIN subscribers s ON lower(s.email) = lower(a.email)
		WHERE s.status = 'pending'
		  AND EXISTS (SELECT 1 FROM consents c WHERE c.subscriber_id = s.id)
		  AND EXISTS (SELECT 1 FROM outbox o WHERE o.subscriber_id = s.id AND o.kind = 'confirm')`)
	return n, err
}

// checkUnsubscribed checks that the first n seeded readers (each sent at least one 200 one-click
// request, handed out in id order) have left.
func checkUnsubscribed(ctx context.Context, db *sqlx.DB, n int) benchCheck {
	c := benchCheck{Name: "every reader whose one-click unsubscribe got a 200 has left"}
	var left int
	if err := db.GetContext(ctx, &left, `
		SELECT count(*) FROM (SELECT status FROM subscribers WHERE email LIKE 'reader-%@bench.example' ORDER BY id LIMIT $1) r
		WHERE status = 'unsubscribed'`, n); err != nil {
		c.Detail = err.Error()
		return c
	}
	c.OK = left >= n
	c.Detail = fmt.Sprintf("%d of the first %d readers unsubscribed", left, n)
	return c
}

// seedSentIssue assembles an English issue from a week of articles, keeps its archive copy the
// way the sender does, and marks it sent.
func seedSentIssue(ctx context.Context, svc *App) (int64, error) {
	if err := seedBenchArticles(ctx, svc.db, "en"); err != nil {
		return 0, err
	}
	store := digest.NewStore(svc.db, nil)
	iss, err := store.Assemble(ctx, "en", svc.cfg.DigestMaxArticles)
	if err != nil {
		return 0, err
	}
	renderer, err := svc.digestRenderer()
	if err != nil {
		return 0, err
	}
	c, err := store.Content(ctx, iss.ID, svc.cfg.DigestMaxArticles)
	if err != nil {
		return 0, err
	}
	out, err := renderer.Render(c, render.Recipient{})
	if err != nil {
		return 0, err
	}
	if err := store.SaveArchive(ctx, iss.ID, out.Subject, out.Preheader, out.HTML, out.Text); err != nil {
		return 0, err
	}
	_, err = svc.db.ExecContext(ctx, `UPDATE issues SET status = 'sent', approved_at = now(), started_at = now(), finished_at = now() WHERE id = $1`, iss.ID)
	return iss.ID, err
}

// seedUnsubscribeReaders adds n confirmed readers and returns their one-click unsubscribe paths,
// in id order.
func seedUnsubscribeReaders(ctx context.Context, db *sqlx.DB, signer *subscribers.Signer, n int) ([]string, error) {
	if err := seedBenchReaders(ctx, db, n, []string{"en"}); err != nil {
		return nil, err
	}
	var uuids []string
	if err := db.SelectContext(ctx, &uuids, `SELECT uuid FROM subscribers WHERE email LIKE 'reader-%@bench.example' ORDER BY id`); err != nil {
		return nil, err
	}
	paths := make([]string, len(uuids))
	for i, id := range uuids {
		paths[i] = signer.UnsubscribeURL("", id)
	}
	return paths, nil
}

// countingHandler counts the error records the service logs during a load run and passes every
// record on.
type countingHandler struct {
	next   slog.Handler
	errors *atomic.Int64
}

func (h *countingHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelError || h.next.Enabled(ctx, l)
}

func (h *countingHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Level >= slog.LevelError {
		h.errors.Add(1)
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

func (h *countingHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &countingHandler{next: h.next.WithAttrs(as), errors: h.errors}
}

func (h *countingHandler) WithGroup(name string) slog.Handler {
	return &countingHandler{next: h.next.WithGroup(name), errors: h.errors}
}
