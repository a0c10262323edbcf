package web

import (
	"bytes"
	"encoding/json"
	"errors"
	"log/slog"
	"math"
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

	"newsletter/internal/clientaddr"
	"newsletter/internal/httpx"
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
	if reg != nil {
		h.requests = register(reg, h.requests)
		h.confirmations = register(reg, h.confirmations)
		h.unsubscribes = register(reg, h.unsubscribes)
	}
	return h
}

// register adds c to reg, or returns the collector already registered under its name.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err) // a programming error: two different metrics under one name
	}
	return c
}

// --- the subscribe page and API ---

// subscribePage is the data of page/subscribe.html.
type subscribePage struct {
	Email, Name, Lang string
	Languages         []langOption
	Errors            map[string]string // field -> message
	Cadence           string
	Honeypot          string // the honeypot field's name
	Switch            []langOption
}

type langOption struct {
	Code, Label string
	Selected    bool
}

// SubscribePage serves GET /: the subscribe form, in the language of ?lang=, else Accept-Language.
func (h *Handler) SubscribePage(w http.ResponseWriter, r *http.Request) {
	lang := h.pageLang(r.URL.Query().Get("lang"), r)
	h.renderSubscribe(w, r, http.StatusOK, lang, subscribeInput{Lang: lang}, nil)
}

func (h *Handler) renderSubscribe(w http.ResponseWriter, r *http.Request, status int, lang string, in subscribeInput, errs map[string]string) {
	form := in.Lang
	if !h.hasLang(form) {
		form = lang
	}
	d := subscribePage{Email: in.Email, Name: in.Name, Lang: form, Errors: errs, Cadence: h.cadence(lang), Honeypot: honeypotField}
	for _, l := range h.opts.Languages {
		d.Languages = append(d.Languages, langOption{Code: l, Label: languageName(l), Selected: l == form})
		d.Switch = append(d.Switch, langOption{Code: l, Label: languageName(l), Selected: l == lang})
	}
	h.render(w, status, "subscribe", lang, h.cat.T(lang, "subscribers.subscribe.title"), d)
}

// Subscribe serves POST /subscribe, from the page's form or as JSON from the publication's own
// site. Every accepted address, new or known, gets the same answer, so no one can probe the list.
func (h *Handler) Subscribe(w http.ResponseWriter, r *http.Request) {
	h.cors(w, r)
	wantJSON := acceptsJSON(r) || isJSON(r)
	lang := h.pageLang("", r)
	ip := clientaddr.Of(r, h.opts.TrustProxy)
	if ok, retry := h.limiter.allow(clientaddr.Key(ip), h.opts.Now()); !ok {
		h.requests.WithLabelValues("rate_limited").Inc()
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(retry.Seconds())))))
		h.requestError(w, r, wantJSON, lang, http.StatusTooManyRequests, "subscribers.error.rate_limited")
		return
	}
	in, err := decodeSubscribe(w, r)
	if err != nil {
		h.requests.WithLabelValues("invalid").Inc()
		status, key := http.StatusBadRequest, "subscribers.error.malformed"
		switch {
		case errors.Is(err, errTooLarge):
			status, key = http.StatusRequestEntityTooLarge, "subscribers.error.too_large"
		case errors.Is(err, errMediaType):
			status, key = http.StatusUnsupportedMediaType, "subscribers.error.media_type"
		}
		h.requestError(w, r, wantJSON, lang, status, key)
		return
	}
	if h.hasLang(in.Lang) {
		lang = in.Lang
	}
	if in.Honeypot != "" {
		h.requests.WithLabelValues("honeypot").Inc()
		h.log.Info("subscribe: honeypot filled", "ip", ip)
		h.accepted(w, wantJSON, lang)
		return
	}
	email, name, formLang, ferr := h.validate(in, lang)
	if ferr == nil {
		source := "form"
		if in.JSON {
			source = "api"
		}
		ferr = h.store.Subscribe(r.Context(), email, name, formLang, subscribers.Consent{IP: ip, UserAgent: truncate(r.UserAgent(), 512), Source: source, TextVersion: ConsentTextVersion})
	}
	var fe *subscribers.FieldError
	switch {
	case errors.As(ferr, &fe):
		h.requests.WithLabelValues("invalid").Inc()
		h.fieldError(w, r, wantJSON, lang, in, fe)
		return
	case errors.Is(ferr, subscribers.ErrInvalid):
		h.requests.WithLabelValues("invalid").Inc()
		h.fieldError(w, r, wantJSON, lang, in, &subscribers.FieldError{Field: "email", Key: "subscribers.error.email"})
		return
	case ferr != nil:
		h.internal(w, r, wantJSON, lang, "subscribe", ferr)
		return
	}
	if h.mailer != nil {
		h.mailer.Wake()
	}
	h.requests.WithLabelValues("accepted").Inc()
	h.accepted(w, wantJSON, lang)
}

// validate checks every field and returns the stored forms of email, name and language.
func (h *Handler) validate(in subscribeInput, pageLang string) (email, name, lang string, err error) {
	for _, f := range []struct{ field, v string }{{"email", in.Email}, {"name", in.Name}, {"lang", in.Lang}} {
		if strings.ContainsAny(f.v, "\r\n\x00") || !utf8.ValidString(f.v) {
			return "", "", "", &subscribers.FieldError{Field: f.field, Key: "subscribers.error.control"}
		}
	}
	if strings.TrimSpace(in.Email) == "" {
		return "", "", "", &subscribers.FieldError{Field: "email", Key: "subscribers.error.email_required"}
	}
	if email, err = subscribers.NormalizeEmail(in.Email); err != nil {
		return "", "", "", asFieldError(err, "email")
	}
	if name, err = subscribers.ValidateName(in.Name); err != nil {
		return "", "", "", asFieldError(err, "name")
	}
	lang = strings.TrimSpace(in.Lang)
	switch {
	case lang == "":
		lang = pageLang
	case !h.hasLang(lang):
		return "", "", "", &subscribers.FieldError{Field: "lang", Key: "subscribers.error.lang"}
	}
	return email, name, lang, nil
}

func asFieldError(err error, field string) error {
	var fe *subscribers.FieldError
	if errors.As(err, &fe) {
		return err
	}
	return &subscribers.FieldError{Field: field, Key: "subscribers.error." + field}
}

// accepted answers an accepted (or honeypot) subscription; it depends on nothing but the language.
func (h *Handler) accepted(w http.ResponseWriter, wantJSON bool, lang string) {
	if wantJSON {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok", "message": h.cat.T(lang, "subscribers.accepted.text")})
		return
	}
	if page, ok := h.acceptedPages.Load(lang); ok {
		h.writePage(w, http.StatusOK, "message", page.([]byte), nil)
		return
	}
	m := message{Title: h.cat.T(lang, "subscribers.accepted.title"), Text: h.cat.T(lang, "subscribers.accepted.text"),
		Detail: h.cat.T(lang, "subscribers.accepted.detail"), OK: true}
	page, err := h.page("message", lang, m.Title, m)
	if err == nil { // a failed render is not kept: the next request tries again
		h.acceptedPages.Store(lang, page)
	}
	h.writePage(w, http.StatusOK, "message", page, err)
}

func (h *Handler) fieldError(w http.ResponseWriter, r *http.Request, wantJSON bool, lang string, in subscribeInput, fe *subscribers.FieldError) {
	msg := h.fieldMessage(lang, fe)
	if wantJSON {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": msg, "field": fe.Field})
		return
	}
	if strings.ContainsAny(in.Email+in.Name+in.Lang, "\r\n\x00") || !utf8.ValidString(in.Email+in.Name+in.Lang) {
		in = subscribeInput{Lang: lang} // never echo a control character back into the form
	}
	h.renderSubscribe(w, r, http.StatusBadRequest, lang, in, map[string]string{fe.Field: msg})
}

// fieldMessage translates a FieldError's key, falling back to a general message for its field.
func (h *Handler) fieldMessage(lang string, fe *subscribers.FieldError) string {
	if msg := h.cat.T(lang, fe.Key); msg != fe.Key {
		return msg
	}
	if key := "subscribers.error." + fe.Field; h.cat.T(lang, key) != key {
		return h.cat.T(lang, key)
	}
	return h.cat.T(lang, "subscribers.error.malformed")
}

// requestError answers a request that is wrong as a whole (size, type, syntax, rate).
func (h *Handler) requestError(w http.ResponseWriter, r *http.Request, wantJSON bool, lang string, status int, key string) {
	if wantJSON {
		writeJSON(w, status, map[string]string{"error": h.cat.T(lang, key)})
		return
	}
	h.message(w, status, lang, message{Title: h.cat.T(lang, "subscribers.error.title"), Text: h.cat.T(lang, key), Back: "/?lang=" + lang, BackText: h.cat.T(lang, "subscribers.back_to_form")})
}

// Preflight answers the CORS preflight of POST /subscribe.
func (h *Handler) Preflight(w http.ResponseWriter, r *http.Request) {
	if h.cors(w, r) {
		w.Header().Set("Access-Control-Allow-Methods", "POST")
		w.Header().Set("Access-Control-Allow-Headers", "Content-Type, Accept")
		w.Header().Set("Access-Control-Max-Age", "600")
	}
	w.WriteHeader(http.StatusNoContent)
}

// cors allows a listed origin to read the answer; other origins get no CORS headers at all.
func (h *Handler) cors(w http.ResponseWriter, r *http.Request) bool {
	w.Header().Add("Vary", "Origin")
	o := r.Header.Get("Origin")
	if o == "" || !h.origins[o] {
		return false
	}
	w.Header().Set("Access-Control-Allow-Origin", o)
	return true
}

// --- confirm ---

// confirmPage is the data of page/confirm.html.
type confirmPage struct {
	Action  string
	Cadence string
}

// ConfirmPage serves GET /confirm/{token}: a page with one button. It changes nothing, because mail
// scanners open links.
func (h *Handler) ConfirmPage(w http.ResponseWriter, r *http.Request) {
	s, issued, ok := h.reader(w, r, subscribers.PurposeConfirm)
	if !ok {
		return
	}
	if s.Status == subscribers.StatusConfirmed {
		h.message(w, http.StatusOK, s.Lang, h.confirmedMessage(s.Lang))
		return
	}
	open, err := h.store.CanConfirm(r.Context(), s.UUID, issued)
	switch {
	case err != nil:
		h.internal(w, r, false, s.Lang, "confirm page", err)
	case open:
		h.render(w, http.StatusOK, "confirm", s.Lang, h.cat.T(s.Lang, "subscribers.confirm.title"), confirmPage{Action: r.URL.EscapedPath(), Cadence: h.cadence(s.Lang)})
	default: // left, bounced or complained since the request: this opt-in is over
		h.linkError(w, s.Lang, http.StatusGone, "expired")
	}
}

// Confirm serves POST /confirm/{token}: completes the opt-in; confirming twice is harmless.
func (h *Handler) Confirm(w http.ResponseWriter, r *http.Request) {
	if err := drainBody(w, r); err != nil {
		h.bodyError(w, r, err)
		return
	}
	s, issued, ok := h.reader(w, r, subscribers.PurposeConfirm)
	if !ok {
		return
	}
	after, err := h.store.Confirm(r.Context(), s.UUID, issued)
	switch {
	case errors.Is(err, subscribers.ErrExpired):
		h.linkError(w, s.Lang, http.StatusGone, "expired")
		return
	case errors.Is(err, subscribers.ErrNotFound):
		h.linkError(w, s.Lang, http.StatusGone, "gone")
		return
	case err != nil:
		h.internal(w, r, false, s.Lang, "confirm", err)
		return
	}
	if s.Status != subscribers.StatusConfirmed && after.Status == subscribers.StatusConfirmed {
		h.confirmations.Inc()
	}
	h.message(w, http.StatusOK, after.Lang, h.confirmedMessage(after.Lang))
}

func (h *Handler) confirmedMessage(lang string) message {
	return message{Title: h.cat.T(lang, "subscribers.confirmed.title"), Text: h.cat.T(lang, "subscribers.confirmed.text", h.cadence(lang)),
		Detail: h.cat.T(lang, "subscribers.confirmed.detail"), OK: true}
}

// --- unsubscribe ---

type unsubscribePage struct {
	Action string
	Email  string
}

// UnsubscribePage serves GET /unsubscribe/{token}: a page with one button.
func (h *Handler) UnsubscribePage(w http.ResponseWriter, r *http.Request) {
	s, _, ok := h.reader(w, r, subscribers.PurposeUnsubscribe)
	if !ok {
		return
	}
	if s.Status == subscribers.StatusUnsubscribed {
		h.message(w, http.StatusOK, s.Lang, h.unsubscribedMessage(s.Lang))
		return
	}
	h.render(w, http.StatusOK, "unsubscribe", s.Lang, h.cat.T(s.Lang, "subscribers.unsubscribe.title"), unsubscribePage{Action: r.URL.EscapedPath(), Email: maskEmail(s.Email)})
}

// Unsubscribe serves POST /unsubscribe/{token}, from the page's button or as an RFC 8058 one-click
// request (body "List-Unsubscribe=One-Click"): the signed token is the only authority needed.
func (h *Handler) Unsubscribe(w http.ResponseWriter, r *http.Request) {
	if err := drainBody(w, r); err != nil {
		h.bodyError(w, r, err)
		return
	}
	s, _, ok := h.reader(w, r, subscribers.PurposeUnsubscribe)
	if !ok {
		return
	}
	after, err := h.store.Unsubscribe(r.Context(), s.UUID)
	switch {
	case errors.Is(err, subscribers.ErrNotFound):
		h.linkError(w, s.Lang, http.StatusGone, "gone")
		return
	case err != nil:
		h.internal(w, r, false, s.Lang, "unsubscribe", err)
		return
	}
	if s.Status != subscribers.StatusUnsubscribed && after.Status == subscribers.StatusUnsubscribed {
		h.unsubscribes.Inc()
	}
	h.message(w, http.StatusOK, s.Lang, h.unsubscribedMessage(s.Lang))
}

func (h *Handler) unsubscribedMessage(lang string) message {
	return message{Title: h.cat.T(lang, "subscribers.unsubscribed.title"), Text: h.cat.T(lang, "subscribers.unsubscribed.text"),
		Back: "/?lang=" + lang, BackText: h.cat.T(lang, "subscribers.unsubscribed.again"), OK: true}
}

// --- manage ---

// managePage is the data of page/manage.html.
type managePage struct {
	Action, EraseAction, DataAction string
	Email, Name, Lang, Status       string
	Languages                       []langOption
	Errors                          map[string]string
	Saved                           bool
}

// ManagePage serves GET /manage/{token}: name and language, download my data, erase me.
func (h *Handler) ManagePage(w http.ResponseWriter, r *http.Request) {
	s, _, ok := h.reader(w, r, subscribers.PurposeManage)
	if !ok {
		return
	}
	h.renderManage(w, r, http.StatusOK, s, nil, false)
}

func (h *Handler) renderManage(w http.ResponseWriter, r *http.Request, status int, s subscribers.Subscriber, errs map[string]string, saved bool) {
	base := "/manage/" + r.PathValue("token")
	lang := s.Lang
	if !h.hasLang(lang) {
		lang = h.opts.Languages[0]
	}
	d := managePage{Action: base, EraseAction: base + "/erase", DataAction: base + "/data.json", Email: s.Email, Name: s.Name, Lang: s.Lang,
		Status: h.cat.T(lang, "subscribers.status."+string(s.Status)), Errors: errs, Saved: saved}
	for _, l := range h.opts.Languages {
		d.Languages = append(d.Languages, langOption{Code: l, Label: languageName(l), Selected: l == s.Lang})
	}
	h.render(w, status, "manage", lang, h.cat.T(lang, "subscribers.manage.title"), d)
}

// Manage serves POST /manage/{token}: changes the reader's name and language.
func (h *Handler) Manage(w http.ResponseWriter, r *http.Request) {
	if err := decodeForm(w, r); err != nil {
		h.bodyError(w, r, err)
		return
	}
	s, _, ok := h.reader(w, r, subscribers.PurposeManage)
	if !ok {
		return
	}
	in := subscribeInput{Email: s.Email, Name: s.Name, Lang: s.Lang}
	if r.PostForm.Has("name") {
		in.Name = r.PostFormValue("name")
	}
	if r.PostForm.Has("lang") {
		in.Lang = r.PostFormValue("lang")
	}
	_, name, lang, err := h.validate(in, s.Lang)
	if err == nil {
		s, err = h.store.Update(r.Context(), s.UUID, name, lang)
	}
	var fe *subscribers.FieldError
	switch {
	case errors.As(err, &fe):
		h.renderManage(w, r, http.StatusBadRequest, s, map[string]string{fe.Field: h.fieldMessage(s.Lang, fe)}, false)
		return
	case errors.Is(err, subscribers.ErrNotFound):
		h.linkError(w, s.Lang, http.StatusGone, "gone")
		return
	case err != nil:
		h.internal(w, r, false, s.Lang, "manage", err)
		return
	}
	h.renderManage(w, r, http.StatusOK, s, nil, true)
}

// Data serves GET /manage/{token}/data.json: everything kept about the reader, as a download.
func (h *Handler) Data(w http.ResponseWriter, r *http.Request) {
	s, _, ok := h.reader(w, r, subscribers.PurposeManage)
	if !ok {
		return
	}
	v, err := h.store.DataExport(r.Context(), s.UUID)
	switch {
	case errors.Is(err, subscribers.ErrNotFound):
		h.linkError(w, s.Lang, http.StatusGone, "gone")
		return
	case err != nil:
		h.internal(w, r, false, s.Lang, "data export", err)
		return
	}
	w.Header().Set("Content-Disposition", `attachment; filename="newsletter-data.json"`)
	writeJSON(w, http.StatusOK, v)
}

// Erase serves POST /manage/{token}/erase: deletes the reader's personal data once they tick the box.
func (h *Handler) Erase(w http.ResponseWriter, r *http.Request) {
	if err := decodeForm(w, r); err != nil {
		h.bodyError(w, r, err)
		return
	}
	s, _, ok := h.reader(w, r, subscribers.PurposeManage)
	if !ok {
		return
	}
	if r.PostFormValue("confirm") != "yes" {
		h.renderManage(w, r, http.StatusBadRequest, s, map[string]string{"erase": h.cat.T(s.Lang, "subscribers.error.erase_confirm")}, false)
		return
	}
	err := h.store.Erase(r.Context(), s.UUID)
	switch {
	case errors.Is(err, subscribers.ErrNotFound):
		h.linkError(w, s.Lang, http.StatusGone, "gone")
		return
	case err != nil:
		h.internal(w, r, false, s.Lang, "erase", err)
		return
	}
	h.message(w, http.StatusOK, s.Lang, message{Title: h.cat.T(s.Lang, "subscribers.erased.title"), Text: h.cat.T(s.Lang, "subscribers.erased.text"), OK: true})
}

// --- signed links ---

// reader verifies the token in the path for purpose p and loads its reader. On failure it has
// answered: 404 for a forged, altered or wrong-purpose token, 410 for an expired one or a reader
// who was erased (the link was ours, but it is over).
func (h *Handler) reader(w http.ResponseWriter, r *http.Request, p subscribers.Purpose) (subscribers.Subscriber, time.Time, bool) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("X-Robots-Tag", "noindex")
	lang := h.pageLang("", r)
	uuid, issued, err := h.signer.Verify(p, r.PathValue("token"), h.opts.Now())
	switch {
	case errors.Is(err, subscribers.ErrExpired):
		h.linkError(w, lang, http.StatusGone, "expired")
		return subscribers.Subscriber{}, time.Time{}, false
	case err != nil:
		h.linkError(w, lang, http.StatusNotFound, "invalid")
		return subscribers.Subscriber{}, time.Time{}, false
	}
	s, err := h.store.ByUUID(r.Context(), uuid)
	switch {
	case errors.Is(err, subscribers.ErrNotFound):
		h.linkError(w, lang, http.StatusGone, "gone")
		return subscribers.Subscriber{}, time.Time{}, false
	case err != nil:
		h.internal(w, r, false, lang, "load reader", err)
		return subscribers.Subscriber{}, time.Time{}, false
	}
	if !h.hasLang(s.Lang) {
		s.Lang = lang
	}
	return s, issued, true
}

// linkError answers a signed link that cannot be used; kind is "invalid", "expired" or "gone".
func (h *Handler) linkError(w http.ResponseWriter, lang string, status int, kind string) {
	h.message(w, status, lang, message{Title: h.cat.T(lang, "subscribers.link."+kind+".title"), Text: h.cat.T(lang, "subscribers.link."+kind+".text"),
		Back: "/?lang=" + lang, BackText: h.cat.T(lang, "subscribers.back_to_form")})
}

// bodyError answers a token page's POST whose body could not be read; like every answer under a
// signed link it is never cached.
func (h *Handler) bodyError(w http.ResponseWriter, r *http.Request, err error) {
	w.Header().Set("Cache-Control", "no-store")
	lang := h.pageLang("", r)
	status, key := http.StatusBadRequest, "subscribers.error.malformed"
	switch {
	case errors.Is(err, errTooLarge):
		status, key = http.StatusRequestEntityTooLarge, "subscribers.error.too_large"
	case errors.Is(err, errMediaType):
		status, key = http.StatusUnsupportedMediaType, "subscribers.error.media_type"
	}
	h.requestError(w, r, false, lang, status, key)
}

// internal logs err (never shown) and answers a plain 500, or 503 when the database is away (the
// request may be tried again).
func (h *Handler) internal(w http.ResponseWriter, r *http.Request, wantJSON bool, lang, what string, err error) {
	h.log.Error("subscribers: "+what, "err", err)
	status := http.StatusInternalServerError
	if httpx.Unavailable(err) {
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "5")
	}
	if wantJSON {
		writeJSON(w, status, map[string]string{"error": h.cat.T(lang, "subscribers.error.internal")})
		return
	}
	h.message(w, status, lang, message{Title: h.cat.T(lang, "subscribers.error.title"), Text: h.cat.T(lang, "subscribers.error.internal")})
}

// --- rendering ---

// message is the data of page/message.html, the generic result and error page.
type message struct {
	Title, Text, Detail string
	Back, BackText      string
	OK                  bool
}

func (h *Handler) message(w http.ResponseWriter, status int, lang string, m message) {
	h.render(w, status, "message", lang, m.Title, m)
}

// render writes page name with status; the page is rendered fully before the status goes out, so a
// template error is a clean 500.
func (h *Handler) render(w http.ResponseWriter, status int, name, lang, title string, data any) {
	page, err := h.page(name, lang, title, data)
	h.writePage(w, status, name, page, err)
}

// page renders page name in full.
func (h *Handler) page(name, lang, title string, data any) ([]byte, error) {
	var buf bytes.Buffer
	err := h.pages.Render(&buf, name, templates.View{Lang: lang, Title: title, Publication: h.opts.Publication, Data: data})
	return buf.Bytes(), err
}

// writePage sends a rendered page with status, or a plain 500 if rendering failed.
func (h *Handler) writePage(w http.ResponseWriter, status int, name string, page []byte, err error) {
	if err != nil {
		h.log.Error("subscribers: render page", "page", name, "err", err)
		http.Error(w, "Internal error.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(page)
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

func truncate(s string, n int) string {
	if len(s) <= n {
		return strings.ToValidUTF8(s, "")
	}
	s = s[:n]
	for !utf8.ValidString(s) && len(s) > 0 {
		s = s[:len(s)-1]
	}
	return s
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
	p := cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)
	sch, err := p.Parse(spec)
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
