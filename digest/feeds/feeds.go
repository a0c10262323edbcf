package feeds

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"newsletter/digest"
	"newsletter/internal/metrics"

	"github.com/prometheus/client_golang/prometheus"
)

// Config is one configured feed and the language of its articles.
type Config struct {
	Lang, URL string
}

// Result is the outcome of fetching one feed once.
type Result struct {
	URL, Lang    string
	New, Updated int
	NotModified  bool      // the server answered 304
	MovedTo      string    // a permanent redirect moved the feed here (credentials and query hidden)
	Skipped      bool      // not fetched: gone, or its server asked for time (RetryAfter)
	Gone         bool      // it answered 410 Gone, now or before: the poller leaves it alone
	RetryAfter   time.Time // the server asked for no fetch before then
	Err          error
}

// Options tune fetching; the zero value is fine.
type Options struct {
	Timeout      time.Duration // per fetch, headers and body; default 20s
	MaxBodyBytes int64         // larger feeds fail; default 10 MiB
	Concurrency  int           // feeds fetched at once; default 4
	BaseURL      string        // named in the User-Agent so a feed's owner can see who polls
	UserAgent    string        // default "newsletter/1.0 (+BaseURL)"
	// AllowPrivate lets fetches reach loopback and private addresses (an intranet feed, local
	// tests); otherwise only public addresses are dialled, redirects and every DNS answer included.
	AllowPrivate bool
	// RetryGone fetches feeds that answered 410 Gone as well (an operator's explicit run); a
	// success turns them back on.
	RetryGone bool
	Client    *http.Client // default: a client of its own; a given one is used as is, without the address check
}

// Ingester fetches the configured feeds and stores their items as articles.
type Ingester struct {
	store    *digest.Store
	feeds    []Config
	opts     Options
	log      *slog.Logger
	client   *http.Client
	fetches  *prometheus.CounterVec
	ingested *prometheus.CounterVec
}

// NewIngester returns an Ingester for feeds. reg may be nil (no metrics kept).
func NewIngester(store *digest.Store, feeds []Config, opts Options, log *slog.Logger, reg prometheus.Registerer) *Ingester {
	if opts.Timeout <= 0 {
		opts.Timeout = 20 * time.Second
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 10 << 20
	}
	if opts.Concurrency <= 0 {
		opts.Concurrency = 4
	}
	if opts.UserAgent == "" {
		opts.UserAgent = "newsletter/1.0"
		if opts.BaseURL != "" {
			opts.UserAgent += " (+" + opts.BaseURL + ")"
		}
	}
	client := opts.Client
	if client == nil {
		// The transport asks for gzip and decompresses it; the body cap applies after that.
		client = &http.Client{Timeout: opts.Timeout, Transport: newFeedTransport(feedAddrCheck(opts.AllowPrivate), nil)}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	i := &Ingester{
		store: store, feeds: feeds, opts: opts, log: log, client: client,
		fetches: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "newsletter_feed_fetch_total", Help: "Feed fetches by outcome.",
		}, []string{"result"})),
		ingested: metrics.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "newsletter_articles_ingested_total", Help: "Articles stored from feeds, new or changed.",
		}, []string{"kind"})),
	}
	return i
}

// PollAll fetches every feed once, a few at a time; a failing feed never stops the others. Results
// come back in configuration order.
func (i *Ingester) PollAll(ctx context.Context) []Result {
	results := make([]Result, len(i.feeds))
	sem := make(chan struct{}, i.opts.Concurrency)
	var wg sync.WaitGroup
	for n, f := range i.feeds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
				results[n] = i.Poll(ctx, f)
			case <-ctx.Done():
				results[n] = Result{URL: f.URL, Lang: f.Lang, Err: ctx.Err()}
			}
		}()
	}
	wg.Wait()
	return results
}

// Poll fetches one feed once (conditional GET), stores its items and records the outcome in the
// feeds table. Its error is in the result, logged, and kept as the feed's last_error. A feed that
// answered 410 Gone is not fetched again (unless RetryGone), nor one whose server asked for time
// (429 or 503 with Retry-After) before that time.
func (i *Ingester) Poll(ctx context.Context, f Config) Result {
	res := Result{URL: f.URL, Lang: f.Lang}
	log := i.log.With("lang", f.Lang, "feed", RedactURL(f.URL))
	state, err := i.feedState(ctx, f)
	if err == nil {
		switch {
		case state.GoneAt != nil && !i.opts.RetryGone:
			res.Skipped, res.Gone = true, true
			i.fetches.WithLabelValues("skipped").Inc()
			log.Debug("feed gone: not fetched", "since", *state.GoneAt)
			return res
		case state.RetryAfter != nil && i.store.Now().Before(*state.RetryAfter):
			res.Skipped, res.RetryAfter = true, *state.RetryAfter
			i.fetches.WithLabelValues("skipped").Inc()
			log.Info("feed not fetched: its server asked for time", "until", *state.RetryAfter)
			return res
		}
		var fetched *fetchedFeed
		fetched, err = i.fetch(ctx, f, state)
		switch {
		case err != nil:
		case fetched.notModified:
			res.NotModified = true
			err = i.feedOK(ctx, f.URL, fetched.movedTo, state.ETag, state.LastModified)
		default:
			res.New, res.Updated, err = i.storeFeed(ctx, f, fetched)
		}
		if err == nil && fetched.movedTo != "" {
			res.MovedTo = RedactURL(fetched.movedTo)
			log.Info("feed moved permanently", "to", res.MovedTo)
		}
	}
	if err != nil && ctx.Err() != nil {
		// Shutting down: the feed did nothing wrong, so its status stays as it was.
		res.Err = fmt.Errorf("stopped: %w", ctx.Err())
		return res
	}
	if err != nil {
		res.Err = err
		var retryAfter *time.Time
		var se *httpStatusError
		if errors.As(err, &se) {
			res.Gone = se.code == http.StatusGone
			if !se.retryAfter.IsZero() {
				res.RetryAfter, retryAfter = se.retryAfter, &se.retryAfter
			}
		}
		i.fetches.WithLabelValues("error").Inc()
		if rerr := i.feedFailed(context.WithoutCancel(ctx), f.URL, err.Error(), retryAfter, res.Gone); rerr != nil {
			log.Error("record feed error", "err", rerr)
		}
		log.Warn("feed failed", "err", err)
		return res
	}
	if res.NotModified {
		i.fetches.WithLabelValues("not_modified").Inc()
	} else {
		i.fetches.WithLabelValues("ok").Inc()
	}
	i.ingested.WithLabelValues("new").Add(float64(res.New))
	i.ingested.WithLabelValues("updated").Add(float64(res.Updated))
	log.Info("feed fetched", "new", res.New, "updated", res.Updated, "not_modified", res.NotModified)
	return res
}

// fetchedFeed is a fetched feed's items and the validators to send next time.
type fetchedFeed struct {
	items        []parsedItem
	etag         string
	lastModified string
	notModified  bool   // 304: no items, the stored validators stand
	movedTo      string // where permanent redirects led, "" if none did
}

// httpStatusError is a fetch the server answered with a status other than 2xx or 304. Its text
// is the standard one for the code: the server's own reason phrase is not shown.
type httpStatusError struct {
	code       int
	retryAfter time.Time // 429 and 503: the server's Retry-After, if any
}

func (e *httpStatusError) Error() string {
	msg := fmt.Sprintf("HTTP %d %s", e.code, http.StatusText(e.code))
	switch {
	case e.code == http.StatusGone:
		msg += ": the feed is gone, no longer fetched"
	case !e.retryAfter.IsZero():
		msg += ": no fetch before " + e.retryAfter.UTC().Format("2006-01-02 15:04 UTC")
	}
	return msg
}

// maxRetryAfter caps a server's Retry-After: a longer wait is more likely a mistake than a plan,
// and would keep the feed out of a digest.
const maxRetryAfter = 24 * time.Hour

// parseRetryAfter reads Retry-After, seconds or an HTTP date, as a time no later than
// maxRetryAfter from now; zero when absent or unreadable.
func parseRetryAfter(v string, now time.Time) time.Time {
	v = strings.TrimSpace(v)
	if v == "" {
		return time.Time{}
	}
	var t time.Time
	if secs, err := strconv.ParseUint(v, 10, 32); err == nil {
		t = now.Add(time.Duration(secs) * time.Second)
	} else if d, err := http.ParseTime(v); err == nil {
		t = d
	} else {
		return time.Time{}
	}
	if !t.After(now) {
		return time.Time{}
	}
	if limit := now.Add(maxRetryAfter); t.After(limit) {
		t = limit
	}
	return t.UTC()
}

// fetch GETs the feed, sending the stored validators, and parses it, all within the fetch's
// timeout. It fetches from where a permanent redirect last moved the feed, if one did.
func (i *Ingester) fetch(ctx context.Context, f Config, state Status) (*fetchedFeed, error) {
	ctx, cancel := context.WithTimeout(ctx, i.opts.Timeout)
	defer cancel()
	target := f.URL
	if state.FetchURL != "" {
		target = state.FetchURL
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: feed URL", digest.ErrInvalid)
	}
	// A redirect chain moves the feed only as far as it stays permanent: 301 then 302 moves it to
	// the 302's source, which is where the 301 said the feed now lives.
	movedTo, permanent := "", true
	client := *i.client
	client.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		if code := req.Response.StatusCode; permanent && (code == http.StatusMovedPermanently || code == http.StatusPermanentRedirect) {
			movedTo = req.URL.String()
		} else {
			permanent = false
		}
		return nil
	}
	req.Header.Set("User-Agent", i.opts.UserAgent)
	req.Header.Set("Accept", "application/rss+xml, application/atom+xml, application/feed+json, application/json;q=0.9, application/xml;q=0.8, text/xml;q=0.8, */*;q=0.5")
	if state.ETag != "" {
		req.Header.Set("If-None-Match", state.ETag)
	}
	if state.LastModified != "" {
		req.Header.Set("If-Modified-Since", state.LastModified)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, i.fetchError(ctx, err)
	}
	defer resp.Body.Close()
	switch code := resp.StatusCode; {
	case code == http.StatusNotModified:
		return &fetchedFeed{notModified: true, movedTo: movedTo}, nil
	case code == http.StatusTooManyRequests || code == http.StatusServiceUnavailable:
		return nil, &httpStatusError{code: code, retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), i.store.Now())}
	case code < 200 || code > 299:
		return nil, &httpStatusError{code: code}
	}
	body, err := readFeedBody(resp.Body, i.opts.MaxBodyBytes)
	if errors.Is(err, errFeedTooLarge) {
		return nil, err
	}
	if err != nil {
		return nil, i.fetchError(ctx, err)
	}
	// Relative links resolve against where the body came from, after any redirect.
	items, err := parseFeedBody(ctx, body, resp.Request.URL, f.Lang, i.store.Now())
	if err != nil {
		if ctx.Err() != nil {
			return nil, i.fetchError(ctx, err)
		}
		return nil, err
	}
	return &fetchedFeed{items: items, etag: resp.Header.Get("ETag"), lastModified: resp.Header.Get("Last-Modified"), movedTo: movedTo}, nil
}

// readFeedBody reads a body of at most max bytes (after any gzip the transport took off).
func readFeedBody(r io.Reader, max int64) ([]byte, error) {
	body, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(body)) > max {
		return nil, fmt.Errorf("%w than %d bytes", errFeedTooLarge, max)
	}
	return body, nil
}

var errFeedTooLarge = errors.New("feed larger")

// fetchError words a transport error without the URL, which may carry credentials or a token.
func (i *Ingester) fetchError(ctx context.Context, err error) error {
	if errors.Is(ctx.Err(), context.DeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("timed out after %s", i.opts.Timeout)
	}
	if errors.Is(err, errAddressNotAllowed) {
		// Without the address or port: one message for every refusal.
		return fmt.Errorf("fetch: %w", errAddressNotAllowed)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return fmt.Errorf("fetch: %v", err)
}

// RedactURL returns u fit for logs and output: no user info, and query values hidden.
func RedactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparseable URL)"
	}
	p.User = nil
	if p.RawQuery != "" {
		p.RawQuery = "…"
	}
	p.Fragment = ""
	return p.String()
}
