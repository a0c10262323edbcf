package web

import (
	"encoding/xml"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cespare/xxhash/v2"

	"newsletter/digest"
	"newsletter/digest/render"
	"newsletter/internal/httpx"
	"newsletter/newsletters"
	"newsletter/templates"
)

// archiveCSP is the policy of an archived email served as its own document: nothing runs, nothing
// loads but images, and only the inlined styles the email needs.
const archiveCSP = "default-src 'none'; img-src https: http: data:; style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'; frame-ancestors 'self'"

// ArchiveOptions are the plain settings of the public archive.
type ArchiveOptions struct {
	BaseURL     string
	Publication string
	Languages   []string // the first is the pages' default language
	MaxArticles int
}

// Archive serves the public archive of sent issues and its RSS feed; its methods are the endpoints.
type Archive struct {
	store    *digest.Store
	renderer *render.Renderer
	pages    *templates.Pages
	catalog  *templates.Catalog
	opts     ArchiveOptions
	log      *slog.Logger

	figuresMu sync.Mutex // held while counting, so concurrent visits wait for one count
	figuresAt time.Time
	figures   map[int64]digest.Figures
}

// figuresTTL is how long the list keeps the issues' figures: counting them reads every ledger row
// of every sent issue, too much for each anonymous visit.
const figuresTTL = 5 * time.Minute

// NewArchive returns the archive over store; renderer draws the copies of issues sent before
// copies were kept.
func NewArchive(store *digest.Store, renderer *render.Renderer, pages *templates.Pages, cat *templates.Catalog, opts ArchiveOptions, log *slog.Logger) *Archive {
	if len(opts.Languages) == 0 {
		opts.Languages = []string{"en"}
	}
	if opts.MaxArticles <= 0 {
		opts.MaxArticles = digest.DefaultMaxArticles
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Archive{store: store, renderer: renderer, pages: pages, catalog: cat, opts: opts, log: log}
}

// pageLang is the language the request asks for with ?lang=, else the default one.
func (h *Archive) pageLang(r *http.Request) string {
	if l := r.URL.Query().Get("lang"); slices.Contains(h.opts.Languages, l) {
		return l
	}
	return h.opts.Languages[0]
}

type archiveEntry struct {
	ID      int64
	Date    string
	Subject string
	// Path is the copy's address; Newsletter names an edition's newsletter ("" for a digest).
	Path, Newsletter string
	Figures          *publicFigures
}

// archiveDate is when an issue is dated in the archive: a digest by the end of its window, an
// edition (which has none) by when it went out.
func archiveDate(iss digest.Issue) time.Time {
	if iss.IsEdition() && iss.StartedAt != nil {
		return *iss.StartedAt
	}
	return iss.WindowEnd
}

// archivePath is the public address of an issue's copy: an edition's is the one its "view in
// browser" link names.
func archivePath(iss digest.Issue) string {
	if iss.IsEdition() {
		return "/archive/editions/" + strconv.FormatInt(iss.ID, 10)
	}
	return "/archive/" + strconv.FormatInt(iss.ID, 10)
}

// newsletterNames maps each newsletter id to its name in lang; empty when they cannot be read
// (the list then goes without them).
func (h *Archive) newsletterNames(r *http.Request, lang string) map[int64]string {
	all, err := newsletters.List(r.Context(), h.store.DB())
	if err != nil {
		h.log.Warn("archive: newsletters", "err", err)
		return nil
	}
	names := make(map[int64]string, len(all))
	for _, n := range all {
		names[n.ID] = n.Name(lang)
	}
	return names
}

// publicFigures is what the archive shows of an issue's figures: how many readers it went to and
// how many left through its own link. Both are aggregates of the readers' own doing with the
// issue; hard and soft bounces and complaints stay on the editors' page, as they say more about
// the readers' mailboxes, their providers' filters and our sending than about the issue, and
// keep arriving for days.
type publicFigures struct{ Delivered, Unsubscribes int }

type archiveLang struct {
	Lang    string
	Heading string
	Issues  []archiveEntry
}

type archivePage struct {
	Langs        []archiveLang
	Empty        bool
	SubscribeURL string
}

// List lists the sent issues of every language: GET /archive.
func (h *Archive) List(w http.ResponseWriter, r *http.Request) {
	lang := h.pageLang(r)
	issues, err := h.store.SentIssues(r.Context(), "")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	figures := h.issueFigures(r, issues)
	var names map[int64]string
	if slices.ContainsFunc(issues, digest.Issue.IsEdition) {
		names = h.newsletterNames(r, lang)
	}
	page := archivePage{Empty: len(issues) == 0, SubscribeURL: "/"}
	// The reader's language first, then the others in configured order.
	order := append([]string{lang}, slices.DeleteFunc(slices.Clone(h.opts.Languages), func(l string) bool { return l == lang })...)
	for _, l := range order {
		al := archiveLang{Lang: l, Heading: h.catalog.T(lang, "archive.lang."+l)}
		if al.Heading == "archive.lang."+l {
			al.Heading = l // a language the strings do not name yet
		}
		for _, iss := range issues {
			if iss.Lang == l {
				e := archiveEntry{ID: iss.ID, Date: render.FormatDate(lang, archiveDate(iss)), Subject: iss.Subject, Path: archivePath(iss)}
				if iss.IsEdition() {
					e.Newsletter = names[iss.NewsletterID]
				}
				if f, ok := figures[iss.ID]; ok {
					e.Figures = &publicFigures{Delivered: f.Delivered, Unsubscribes: f.Unsubscribes}
				}
				al.Issues = append(al.Issues, e)
			}
		}
		if len(al.Issues) > 0 {
			page.Langs = append(page.Langs, al)
		}
	}
	h.render(w, http.StatusOK, "archive", templates.View{Lang: lang, Title: h.catalog.T(lang, "archive.title"), Publication: h.opts.Publication, Data: page})
}

// issueFigures returns the figures of the listed issues, counted at most every figuresTTL (or when
// an issue is new to the list). The figures are an extra: when they cannot be counted, the list
// goes without them.
func (h *Archive) issueFigures(r *http.Request, issues []digest.Issue) map[int64]digest.Figures {
	h.figuresMu.Lock()
	defer h.figuresMu.Unlock()
	fresh := time.Since(h.figuresAt) < figuresTTL
	ids := make([]int64, len(issues))
	for i, iss := range issues {
		ids[i] = iss.ID
		if _, ok := h.figures[iss.ID]; !ok {
			fresh = false
		}
	}
	if fresh || len(ids) == 0 {
		return h.figures
	}
	f, err := h.store.IssueFigures(r.Context(), ids...)
	if err != nil {
		h.log.Warn("archive: issue figures", "err", err)
		return nil
	}
	h.figures, h.figuresAt = f, time.Now()
	return f
}

// Issue shows one issue as it went out, without any reader's data: GET /archive/{id}.
// The stored copy is served as its own document under a policy that lets nothing run.
func (h *Archive) Issue(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		h.archiveNotFound(w, r)
		return
	}
	iss, err := h.store.IssueByID(r.Context(), id)
	if errors.Is(err, digest.ErrNotFound) || err == nil && !archived(iss) {
		h.archiveNotFound(w, r)
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	body := iss.ArchiveHTML
	if body == "" {
		// Sent before copies were kept: render it now, the same way, for nobody.
		c, err := h.store.Content(r.Context(), id, h.opts.MaxArticles)
		if errors.Is(err, digest.ErrNoArticles) {
			h.archiveNotFound(w, r)
			return
		}
		if err != nil {
			h.fail(w, r, err)
			return
		}
		out, err := h.renderer.Render(c, render.Recipient{})
		if err != nil {
			h.fail(w, r, err)
			return
		}
		body = out.HTML
	}
	hd := w.Header()
	hd.Set("Content-Security-Policy", archiveCSP)
	hd.Set("Content-Type", "text/html; charset=utf-8")
	hd.Set("Cache-Control", "public, max-age=300")
	// A copy's hash (xxhash: fast, and stable across processes) names it, so a reader's browser (or
	// a cache) revalidating "view in browser" gets a 304 instead of the whole issue again.
	etag := `"` + strconv.FormatUint(xxhash.Sum64String(body), 36) + `"`
	hd.Set("ETag", etag)
	if etagMatches(r.Header.Get("If-None-Match"), etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	io.WriteString(w, body)
}

// etagMatches reports whether an If-None-Match header names etag (or is "*"); weak validators
// match too, as RFC 9110 asks for GET.
// Edition serves GET /archive/editions/{id}, the address an edition's "view in browser" link
// names: a sent edition's copy, as Issue serves it; a digest's id there is not found.
func (h *Archive) Edition(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		h.archiveNotFound(w, r)
		return
	}
	iss, err := h.store.IssueByID(r.Context(), id)
	if errors.Is(err, digest.ErrNotFound) || err == nil && !iss.IsEdition() {
		h.archiveNotFound(w, r)
		return
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	h.Issue(w, r)
}

func etagMatches(header, etag string) bool {
	for _, t := range strings.Split(header, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}

// archived reports whether an issue has gone out to anyone, so its copy is public. An issue
// still sending counts: its readers already hold a "view in browser" link.
func archived(iss digest.Issue) bool {
	switch iss.Status {
	case digest.StatusSent, digest.StatusSending, digest.StatusPaused:
		return true
	case digest.StatusCancelled:
		return iss.StartedAt != nil
	}
	return false
}

type archiveRSS struct {
	XMLName xml.Name   `xml:"rss"`
	Version string     `xml:"version,attr"`
	Channel rssChannel `xml:"channel"`
}

type rssChannel struct {
	Title       string    `xml:"title"`
	Link        string    `xml:"link"`
	Description string    `xml:"description"`
	Language    string    `xml:"language,omitempty"`
	Items       []rssItem `xml:"item"`
}

type rssItem struct {
	Title       string  `xml:"title"`
	Link        string  `xml:"link"`
	GUID        rssGUID `xml:"guid"`
	PubDate     string  `xml:"pubDate"`
	Description string  `xml:"description,omitempty"`
	Category    string  `xml:"category,omitempty"`
}

type rssGUID struct {
	IsPermaLink string `xml:"isPermaLink,attr"`
	Value       string `xml:",chardata"`
}

// Feed is the RSS 2.0 feed of sent issues: GET /archive.xml (?lang=L for one language).
func (h *Archive) Feed(w http.ResponseWriter, r *http.Request) {
	only := r.URL.Query().Get("lang")
	if only != "" && !slices.Contains(h.opts.Languages, only) {
		only = ""
	}
	issues, err := h.store.SentIssues(r.Context(), only)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	lang := h.pageLang(r)
	feed := archiveRSS{Version: "2.0", Channel: rssChannel{
		Title:       h.opts.Publication + " — " + h.catalog.T(lang, "digest.weekly"),
		Link:        h.opts.BaseURL + "/archive",
		Description: h.catalog.T(lang, "archive.rss_description", h.opts.Publication),
		Language:    only,
	}}
	for _, iss := range issues {
		link := h.opts.BaseURL + archivePath(iss)
		when := archiveDate(iss)
		if iss.FinishedAt != nil {
			when = *iss.FinishedAt
		}
		feed.Channel.Items = append(feed.Channel.Items, rssItem{
			Title:       iss.Subject,
			Link:        link,
			GUID:        rssGUID{IsPermaLink: "true", Value: link},
			PubDate:     when.UTC().Format(time.RFC1123Z),
			Description: iss.Preheader,
			Category:    iss.Lang,
		})
	}
	out, err := xml.MarshalIndent(feed, "", "  ")
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "application/rss+xml; charset=utf-8")
	w.Write([]byte(xml.Header))
	w.Write(out)
	w.Write([]byte("\n"))
}

func (h *Archive) archiveNotFound(w http.ResponseWriter, r *http.Request) {
	lang := h.pageLang(r)
	h.render(w, http.StatusNotFound, "archive_missing", templates.View{Lang: lang, Title: h.catalog.T(lang, "archive.title"),
		Publication: h.opts.Publication, Data: archivePage{SubscribeURL: "/"}})
}

// render writes an archive page with status.
func (h *Archive) render(w http.ResponseWriter, status int, name string, v templates.View) {
	page, err := h.pages.Page(name, v)
	httpx.Page(w, h.log.With("page", name), status, page, err)
}
