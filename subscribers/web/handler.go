// Package web serves the reader pages of the reader list: the subscribe page and API, and the pages
// behind the signed links (confirm, unsubscribe with RFC 8058 one-click, manage), one file per
// flow. The store and the links are the subscribers package's.
package web

import (
	"encoding/json"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/robfig/cron/v3"
	"golang.org/x/text/language"
	"golang.org/x/text/language/display"

	"newsletter/internal/httpx"
	"newsletter/internal/metrics"
	"newsletter/subscribers"
	"newsletter/templates"
)

// ConsentTextVersion names the consent wording shown beside the subscribe form
// ("subscribers.consent" in templates/i18n/subscribers.*.json). Change it whenever that text changes,
// so every recorded consent says which words the reader agreed to.
const ConsentTextVersion = "form-2026-11"

// HandlerOptions configures the reader-facing pages.
type HandlerOptions struct {
	Publication string   // the publication's name, on every page
	Languages   []string // languages readers may choose; the first is the default
	Schedule    string   // the digest's cron spec, described on the subscribe page ("every Monday")
	CORSOrigins []string // origins whose pages may POST /subscribe from the browser
	RateLimit   int      // subscribe requests one client may make a minute; 0: no limit
	TrustProxy  bool     // take the client address from the last X-Forwarded-For entry
	// ConsentIP is what a consent record keeps of the client's address: "full", "truncated"
	// (/24, /48; the default) or "none".
	ConsentIP string
	// Now is the clock (tests); nil means time.Now.
	Now func() time.Time
}

// Handler serves the subscribe page and API and the pages behind the signed links: confirm,
// unsubscribe (also RFC 8058 one-click) and manage. Its methods are the endpoints.
type Handler struct {
	store  *subscribers.Store
	signer *subscribers.Signer
	pages  *templates.Pages
	cat    *templates.Catalog
	mailer interface{ Wake() }
	opts   HandlerOptions
	log    *slog.Logger

	matcher language.Matcher
	limiter *rateLimiter
	origins map[string]bool
	sched   schedule
	// acceptedPages holds the "check your inbox" page per language, rendered once: it is the
	// same for every subscriber and was the costliest part of answering a subscribe.
	acceptedPages sync.Map // lang -> []byte
	offers        offers

	requests      *prometheus.CounterVec
	confirmations prometheus.Counter
	unsubscribes  prometheus.Counter
}

// NewHandler returns the reader-facing handler. mailer may be nil (no confirmation is then sent
// until the mailer's next poll); reg may be nil (no metrics).
func NewHandler(store *subscribers.Store, signer *subscribers.Signer, pages *templates.Pages, cat *templates.Catalog, mailer interface{ Wake() }, opts HandlerOptions, log *slog.Logger, reg prometheus.Registerer) *Handler {
	if len(opts.Languages) == 0 {
		opts.Languages = []string{"en"}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	h := &Handler{store: store, signer: signer, pages: pages, cat: cat, mailer: mailer, opts: opts, log: log,
		limiter: newRateLimiter(opts.RateLimit), origins: map[string]bool{}, sched: describeSchedule(opts.Schedule)}
	tags := make([]language.Tag, len(opts.Languages))
	for i, l := range opts.Languages {
		tags[i] = language.Make(l)
	}
	h.matcher = language.NewMatcher(tags)
	for _, o := range opts.CORSOrigins {
		h.origins[strings.TrimRight(o, "/")] = true
	}
	h.requests = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "newsletter_subscribe_requests_total",
		Help: "Subscribe requests by result: accepted, invalid, rate_limited, honeypot."}, []string{"result"})
	h.confirmations = prometheus.NewCounter(prometheus.CounterOpts{Name: "newsletter_confirmations_total", Help: "Readers who confirmed their subscription."})
	h.unsubscribes = prometheus.NewCounter(prometheus.CounterOpts{Name: "newsletter_unsubscribes_total", Help: "Readers who unsubscribed through their link."})
	for _, r := range []string{"accepted", "invalid", "rate_limited", "honeypot"} {
		h.requests.WithLabelValues(r)
	}
	h.requests = metrics.Register(reg, h.requests)
	h.confirmations = metrics.Register(reg, h.confirmations)
	h.unsubscribes = metrics.Register(reg, h.unsubscribes)
	return h
}

// message is the data of page/message.html, the generic result and error page.
type message struct {
	Title, Text, Detail string
	Back, BackText      string
	OK                  bool
}

func (h *Handler) message(w http.ResponseWriter, status int, lang string, m message) {
	h.render(w, status, "message", lang, m.Title, m)
}

// render writes page name with status.
func (h *Handler) render(w http.ResponseWriter, status int, name, lang, title string, data any) {
	page, err := h.page(name, lang, title, data)
	httpx.Page(w, h.log.With("page", name), status, page, err)
}

// page renders page name in full.
func (h *Handler) page(name, lang, title string, data any) ([]byte, error) {
	return h.pages.Page(name, templates.View{Lang: lang, Title: title, Publication: h.opts.Publication, Data: data})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, `{"error":"internal error"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// --- languages, clients, schedule ---

// pageLang is want when readers may choose it, else the best match for Accept-Language, else the
// first configured language.
func (h *Handler) pageLang(want string, r *http.Request) string {
	if h.hasLang(want) {
		return want
	}
	tags, _, _ := language.ParseAcceptLanguage(r.Header.Get("Accept-Language"))
	if len(tags) > 0 {
		if _, i, conf := h.matcher.Match(tags...); conf != language.No {
			return h.opts.Languages[i]
		}
	}
	return h.opts.Languages[0]
}

func (h *Handler) hasLang(l string) bool {
	for _, x := range h.opts.Languages {
		if x == l {
			return true
		}
	}
	return false
}

// languageName is a language's own name for itself, capitalised ("English", "Русский").
func languageName(code string) string {
	name := display.Self.Name(language.Make(code))
	if name == "" {
		return code
	}
	r, size := utf8.DecodeRuneInString(name)
	return strings.ToUpper(string(r)) + name[size:]
}

// acceptsJSON reports whether the Accept header prefers JSON to HTML.
func acceptsJSON(r *http.Request) bool {
	var qJSON, qHTML float64 = -1, -1
	for _, part := range strings.Split(r.Header.Get("Accept"), ",") {
		mt, params, err := mime.ParseMediaType(strings.TrimSpace(part))
		if err != nil {
			continue
		}
		q := 1.0
		if v, ok := params["q"]; ok {
			if f, err := strconv.ParseFloat(v, 64); err == nil {
				q = f
			}
		}
		switch mt {
		case "application/json":
			qJSON = max(qJSON, q)
		case "text/html":
			qHTML = max(qHTML, q)
		}
	}
	return qJSON > 0 && qJSON > qHTML
}

func isJSON(r *http.Request) bool {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return mt == "application/json"
}

// maskEmail shows enough of an address to recognise it ("j…@example.org"), since unsubscribe links
// travel in forwarded emails.
func maskEmail(email string) string {
	at := strings.LastIndexByte(email, '@')
	if at < 1 {
		return "…"
	}
	r, _ := utf8.DecodeRuneInString(email)
	return string(r) + "…" + email[at:]
}

// schedule is what the subscribe page says about when the digest comes.
type schedule struct {
	kind    string // "weekly", "daily" or "" (said vaguely)
	weekday time.Weekday
	at      string // "08:00 UTC"
}

// describeSchedule reads a cron spec: runs a week apart on one weekday are "weekly", a day apart
// "daily"; anything else is described without a day.
func describeSchedule(spec string) schedule {
	sch, err := cron.ParseStandard(spec)
	if err != nil || spec == "" {
		return schedule{}
	}
	start := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	if ss, ok := sch.(*cron.SpecSchedule); ok {
		start = start.In(ss.Location) // describe the times in the schedule's own zone
	}
	t := sch.Next(start)
	runs := []time.Time{t}
	for range 4 {
		t = sch.Next(t)
		runs = append(runs, t)
	}
	s := schedule{weekday: runs[0].Weekday(), at: runs[0].Format("15:04") + " " + zoneName(runs[0])}
	week, day := true, true
	for i := 1; i < len(runs); i++ {
		d := runs[i].Sub(runs[i-1])
		week = week && d >= 167*time.Hour && d <= 169*time.Hour && runs[i].Format("15:04") == runs[0].Format("15:04")
		day = day && d >= 23*time.Hour && d <= 25*time.Hour && runs[i].Format("15:04") == runs[0].Format("15:04")
	}
	switch {
	case week:
		s.kind = "weekly"
	case day:
		s.kind = "daily"
	}
	return s
}

func zoneName(t time.Time) string {
	if name := t.Location().String(); name != "Local" {
		return name
	}
	name, _ := t.Zone()
	return name
}

// cadence says in lang when the digest comes, e.g. "every Monday, at about 08:00 UTC".
func (h *Handler) cadence(lang string) string {
	switch h.sched.kind {
	case "weekly":
		return h.cat.T(lang, "subscribers.cadence.weekly", h.cat.T(lang, "subscribers.weekday."+strconv.Itoa(int(h.sched.weekday))), h.sched.at)
	case "daily":
		return h.cat.T(lang, "subscribers.cadence.daily", h.sched.at)
	}
	return h.cat.T(lang, "subscribers.cadence.regular")
}
