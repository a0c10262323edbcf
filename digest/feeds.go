package digest

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
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

	"github.com/jmoiron/sqlx"
	"github.com/mmcdole/gofeed"
	ext "github.com/mmcdole/gofeed/extensions"
	"github.com/prometheus/client_golang/prometheus"

	"newsletter/internal/textclean"
)

// FeedConfig is one configured feed and the language of its articles.
type FeedConfig struct {
	Lang, URL string
}

// FeedResult is the outcome of fetching one feed once.
type FeedResult struct {
	URL, Lang    string
	New, Updated int
	NotModified  bool      // the server answered 304
	MovedTo      string    // a permanent redirect moved the feed here (credentials and query hidden)
	Skipped      bool      // not fetched: gone, or its server asked for time (RetryAfter)
	Gone         bool      // it answered 410 Gone, now or before: the poller leaves it alone
	RetryAfter   time.Time // the server asked for no fetch before then
	Err          error
}

// IngestOptions tune fetching; the zero value is fine.
type IngestOptions struct {
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
	store    *Store
	feeds    []FeedConfig
	opts     IngestOptions
	log      *slog.Logger
	client   *http.Client
	fetches  *prometheus.CounterVec
	ingested *prometheus.CounterVec
}

// NewIngester returns an Ingester for feeds. reg may be nil (no metrics kept).
func NewIngester(store *Store, feeds []FeedConfig, opts IngestOptions, log *slog.Logger, reg prometheus.Registerer) *Ingester {
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
		fetches: ingestCounter(reg, prometheus.CounterOpts{
			Name: "newsletter_feed_fetch_total", Help: "Feed fetches by outcome.",
		}, "result"),
		ingested: ingestCounter(reg, prometheus.CounterOpts{
			Name: "newsletter_articles_ingested_total", Help: "Articles stored from feeds, new or changed.",
		}, "kind"),
	}
	return i
}

// ingestCounter registers a counter vector, or reuses the one already registered under its name
// (several Ingesters may share a registry in tests).
func ingestCounter(reg prometheus.Registerer, opts prometheus.CounterOpts, label string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(opts, []string{label})
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return existing
			}
		}
	}
	return c
}

// PollAll fetches every feed once, a few at a time; a failing feed never stops the others. Results
// come back in configuration order.
func (i *Ingester) PollAll(ctx context.Context) []FeedResult {
	results := make([]FeedResult, len(i.feeds))
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
				results[n] = FeedResult{URL: f.URL, Lang: f.Lang, Err: ctx.Err()}
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
func (i *Ingester) Poll(ctx context.Context, f FeedConfig) FeedResult {
	res := FeedResult{URL: f.URL, Lang: f.Lang}
	log := i.log.With("lang", f.Lang, "feed", RedactFeedURL(f.URL))
	state, err := i.store.feedState(ctx, f)
	if err == nil {
		switch {
		case state.GoneAt != nil && !i.opts.RetryGone:
			res.Skipped, res.Gone = true, true
			i.fetches.WithLabelValues("skipped").Inc()
			log.Debug("feed gone: not fetched", "since", *state.GoneAt)
			return res
		case state.RetryAfter != nil && i.store.now().Before(*state.RetryAfter):
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
			err = i.store.feedOK(ctx, f.URL, fetched.movedTo, state.ETag, state.LastModified)
		default:
			res.New, res.Updated, err = i.store.storeFeed(ctx, f, fetched)
		}
		if err == nil && fetched.movedTo != "" {
			res.MovedTo = RedactFeedURL(fetched.movedTo)
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
		if rerr := i.store.feedFailed(context.WithoutCancel(ctx), f.URL, err.Error(), retryAfter, res.Gone); rerr != nil {
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
func (i *Ingester) fetch(ctx context.Context, f FeedConfig, state FeedStatus) (*fetchedFeed, error) {
	ctx, cancel := context.WithTimeout(ctx, i.opts.Timeout)
	defer cancel()
	target := f.URL
	if state.FetchURL != "" {
		target = state.FetchURL
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: feed URL", ErrInvalid)
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
		return nil, &httpStatusError{code: code, retryAfter: parseRetryAfter(resp.Header.Get("Retry-After"), i.store.now())}
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
	items, err := parseFeedBody(ctx, body, resp.Request.URL, f.Lang, i.store.now())
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

// RedactFeedURL returns u fit for logs and output: no user info, and query values hidden.
func RedactFeedURL(u string) string {
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

// feedItemArticle maps one feed item to an article; ok is false for an item with nothing to show.
// now stands in for a missing date. date is nil when the item has none (or one in the future), so
// that a re-poll keeps the first-seen time instead of moving it.
func feedItemArticle(item *gofeed.Item, base *url.URL, lang string, now time.Time) (a Article, date *time.Time, ok bool) {
	a.Lang = lang
	a.Source = "feed"
	a.Title = textclean.PlainTitle(item.Title, textclean.TitleMaxRunes)
	link := item.Link
	if link == "" && len(item.Links) > 0 {
		link = item.Links[0]
	}
	a.Link = textclean.CanonicalLink(base, link)
	desc := item.Description
	if strings.TrimSpace(desc) == "" {
		desc = item.Content
	}
	a.Summary = textclean.Summarize(desc)
	if a.Title == "" {
		a.Title = textclean.CutAtWord(a.Summary, 100)
	}
	if a.Title == "" {
		return a, nil, false
	}
	a.Author = feedAuthor(item)
	for _, c := range item.Categories {
		if a.Section = textclean.PlainTitle(c, 100); a.Section != "" {
			break
		}
	}
	a.ImageURL, a.ImageAlt = feedImage(item, base)
	if a.ImageURL == "" {
		a.ImageAlt = ""
	} else if a.ImageAlt == "" {
		a.ImageAlt = a.Title
	}

	switch {
	case item.PublishedParsed != nil:
		date = item.PublishedParsed
	case item.UpdatedParsed != nil:
		date = item.UpdatedParsed
	}
	if date != nil && date.After(now.Add(10*time.Minute)) {
		date = nil // a date in the future would keep the item on top for ever
	}
	a.PublishedAt = now
	if date != nil {
		d := date.UTC()
		date = &d
		a.PublishedAt = d
	}

	a.GUID = textclean.FoldSpace(item.GUID)
	if a.GUID == "" {
		a.GUID = a.Link
	}
	if a.GUID == "" {
		stamp := ""
		if date != nil {
			stamp = date.Format(time.RFC3339)
		}
		a.GUID = hashGUID(a.Title + "\n" + stamp)
	}
	if len(a.GUID) > 500 {
		a.GUID = hashGUID(a.GUID) // a btree index entry must stay small
	}
	return a, date, true
}

// feedAuthor is the first author's name. gofeed reads "Name <email>" out of a creator and can come
// back empty on odd input, so the raw Dublin Core creator is the fallback.
func feedAuthor(item *gofeed.Item) string {
	var names []string
	for _, p := range item.Authors {
		if p != nil {
			names = append(names, p.Name)
		}
	}
	if item.Author != nil {
		names = append(names, item.Author.Name)
	}
	if dc := item.DublinCoreExt; dc != nil {
		names = append(names, dc.Creator...)
		names = append(names, dc.Author...)
	}
	for _, n := range names {
		if n = textclean.PlainTitle(n, 200); n != "" {
			return n
		}
	}
	return ""
}

func hashGUID(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "sha256:" + hex.EncodeToString(sum[:])
}

// feedImage picks the lead image: an image enclosure, else Media RSS content or thumbnail, else the
// item's own image. 1x1 images are tracking pixels and never chosen.
func feedImage(item *gofeed.Item, base *url.URL) (src, alt string) {
	for _, e := range item.Enclosures {
		if e != nil && strings.HasPrefix(strings.ToLower(e.Type), "image/") {
			if u := textclean.CanonicalLink(base, e.URL); u != "" {
				return u, ""
			}
		}
	}
	if media, ok := item.Extensions["media"]; ok {
		candidates := append([]ext.Extension{}, media["content"]...)
		for _, g := range media["group"] {
			candidates = append(candidates, g.Children["content"]...)
		}
		candidates = append(candidates, media["thumbnail"]...)
		rejected := map[string]bool{}
		defer func() {
			if rejected[src] {
				src, alt = "", "" // gofeed's own pick (item.Image) may be the pixel we skipped
			}
		}()
		for _, c := range candidates {
			medium, typ := c.Attrs["medium"], strings.ToLower(c.Attrs["type"])
			if c.Name == "content" && medium != "image" && !strings.HasPrefix(typ, "image/") {
				continue
			}
			if tinyImage(c.Attrs["width"]) || tinyImage(c.Attrs["height"]) {
				rejected[textclean.CanonicalLink(base, c.Attrs["url"])] = true
				continue
			}
			if u := textclean.CanonicalLink(base, c.Attrs["url"]); u != "" {
				for _, d := range c.Children["description"] {
					alt = textclean.PlainTitle(d.Value, 300)
				}
				return u, alt
			}
		}
	}
	if item.Image != nil {
		if u := textclean.CanonicalLink(base, item.Image.URL); u != "" {
			return u, textclean.PlainTitle(item.Image.Title, 300)
		}
	}
	return "", ""
}

func tinyImage(dim string) bool {
	n, err := strconv.Atoi(strings.TrimSpace(dim))
	return err == nil && n <= 1
}

// feedColumns are the feeds table's columns, as FeedStatus reads them.
const feedColumns = `url, lang, etag, last_modified, last_fetched_at, last_ok_at, last_error, fetch_url, failures, retry_after, gone_at`

// feedFailingPolls is how many polls in a row a feed must fail to show in red on the editor
// pages: with the default 15-minute schedule, three is 45 minutes, past a blip such as one
// timeout or a server restart, and long before a weekly digest.
const feedFailingPolls = 3

// Failing reports whether the editor pages show the feed in red: gone, or failed
// feedFailingPolls polls in a row.
func (f FeedStatus) Failing() bool { return f.GoneAt != nil || f.Failures >= feedFailingPolls }

// DisplayURL is the configured URL as the editor pages show it: no credentials, no query values.
func (f FeedStatus) DisplayURL() string { return RedactFeedURL(f.URL) }

// DisplayFetchURL is where the feed moved, shown as DisplayURL; "" when it did not move.
func (f FeedStatus) DisplayFetchURL() string {
	if f.FetchURL == "" {
		return ""
	}
	return RedactFeedURL(f.FetchURL)
}

// feedState returns the feed's row, creating it on first sight.
func (s *Store) feedState(ctx context.Context, f FeedConfig) (FeedStatus, error) {
	var st FeedStatus
	err := s.db.GetContext(ctx, &st, `
		INSERT INTO feeds (url, lang) VALUES ($1, $2)
		ON CONFLICT (url) DO UPDATE SET lang = EXCLUDED.lang
		RETURNING `+feedColumns, f.URL, f.Lang)
	if err != nil {
		return st, fmt.Errorf("feed state: %w", err)
	}
	return st, nil
}

// feedOK records a successful fetch, where a permanent redirect moved the feed ("" if none did)
// and the validators to send next time.
func (s *Store) feedOK(ctx context.Context, feedURL, movedTo, etag, lastModified string) error {
	return feedOKTx(ctx, s.db, s.now(), feedURL, movedTo, etag, lastModified)
}

// feedOKTx: a success clears the failure count, any Retry-After and a 410.
func feedOKTx(ctx context.Context, tx sqlx.ExecerContext, now time.Time, feedURL, movedTo, etag, lastModified string) error {
	if len(movedTo) > 2000 {
		movedTo = "" // not kept, not cut: the redirect is followed again next time
	}
	_, err := tx.ExecContext(ctx, `
		UPDATE feeds SET etag = $2, last_modified = $3, last_fetched_at = $4, last_ok_at = $4, last_error = '',
			fetch_url = CASE WHEN $5 = '' THEN fetch_url ELSE $5 END,
			failures = 0, retry_after = NULL, gone_at = NULL
		WHERE url = $1`, feedURL, textclean.ClipBytes(etag, 500), textclean.ClipBytes(lastModified, 100), now, movedTo)
	if err != nil {
		return fmt.Errorf("record feed: %w", err)
	}
	return nil
}

// feedFailed records a failed fetch, the time before which the server asked for no other (nil:
// none) and whether it answered 410 Gone (only a success undoes that). The validators stay, so
// the next fetch is still conditional.
func (s *Store) feedFailed(ctx context.Context, feedURL, msg string, retryAfter *time.Time, gone bool) error {
	_, err := s.db.ExecContext(ctx, `
		UPDATE feeds SET last_fetched_at = $2, last_error = $3, failures = failures + 1, retry_after = $4,
			gone_at = CASE WHEN $5 THEN COALESCE(gone_at, $2) ELSE gone_at END
		WHERE url = $1`,
		feedURL, s.now(), textclean.ClipBytes(textclean.FoldSpace(msg), 500), retryAfter, gone)
	return err
}

// storeFeed upserts the feed's items and records the fetch, in one transaction: the new validators
// are kept only if the items were.
func (s *Store) storeFeed(ctx context.Context, f FeedConfig, fetched *fetchedFeed) (created, updated int, err error) {
	now := s.now()
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return 0, 0, fmt.Errorf("store feed: %w", err)
	}
	defer tx.Rollback()
	// A feed's first successful fetch is its baseline (window.go): what it already carries is
	// stored, but it is not news. The row lock makes two first fetches at once agree.
	var baseline bool
	err = tx.GetContext(ctx, &baseline, `SELECT last_ok_at IS NULL FROM feeds WHERE url = $1 FOR UPDATE`, f.URL)
	if errors.Is(err, sql.ErrNoRows) {
		baseline, err = true, nil
	}
	if err != nil {
		return 0, 0, fmt.Errorf("store feed: %w", err)
	}
	for _, item := range fetched.items {
		a := item.article
		a.FeedURL = f.URL
		inserted, changed, err := upsertFeedArticle(ctx, tx, a, item.date, now, baseline)
		if err != nil {
			return 0, 0, err
		}
		switch {
		case inserted:
			created++
		case changed:
			updated++
		}
	}
	if err := feedOKTx(ctx, tx, now, f.URL, fetched.movedTo, fetched.etag, fetched.lastModified); err != nil {
		return 0, 0, err
	}
	if err := tx.Commit(); err != nil {
		return 0, 0, fmt.Errorf("store feed: %w", err)
	}
	return created, updated, nil
}

// upsertFeedArticle inserts a, or updates the stored article when something changed. Editors'
// pinned/hidden/position are never touched, and an article an editor edited (source 'editor')
// keeps the editor's text. A missing date keeps the stored one. baseline marks a new article as
// part of its feed's baseline; a stored one keeps its mark. (xmax = 0) tells an insert from an
// update; no row back means nothing changed.
func upsertFeedArticle(ctx context.Context, tx *sqlx.Tx, a Article, date *time.Time, now time.Time, baseline bool) (inserted, changed bool, err error) {
	err = tx.QueryRowContext(ctx, `
		INSERT INTO articles (lang, guid, source, feed_url, title, link, summary, author, section,
			image_url, image_alt, published_at, first_seen_at, updated_at, baseline, undated)
		VALUES ($1, $2, 'feed', $3, $4, $5, $6, $7, $8, $9, $10, COALESCE($11::timestamptz, $12::timestamptz), $12, $12,
			$13, $11::timestamptz IS NULL)
		ON CONFLICT (lang, guid) DO UPDATE SET
			feed_url = EXCLUDED.feed_url, title = EXCLUDED.title, link = EXCLUDED.link,
			summary = EXCLUDED.summary, author = EXCLUDED.author, section = EXCLUDED.section,
			image_url = EXCLUDED.image_url, image_alt = EXCLUDED.image_alt,
			published_at = COALESCE($11::timestamptz, articles.published_at),
			undated = articles.undated AND $11::timestamptz IS NULL, updated_at = $12
		WHERE articles.source = 'feed'
			AND (articles.title, articles.link, articles.summary, articles.author, articles.section,
				articles.image_url, articles.image_alt, articles.published_at)
			IS DISTINCT FROM (EXCLUDED.title, EXCLUDED.link, EXCLUDED.summary, EXCLUDED.author,
				EXCLUDED.section, EXCLUDED.image_url, EXCLUDED.image_alt, COALESCE($11::timestamptz, articles.published_at))
		RETURNING (xmax = 0)`,
		a.Lang, a.GUID, a.FeedURL, a.Title, a.Link, a.Summary, a.Author, a.Section,
		a.ImageURL, a.ImageAlt, date, now, baseline).Scan(&inserted)
	if errors.Is(err, sql.ErrNoRows) {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("store article: %w", err)
	}
	return inserted, !inserted, nil
}
