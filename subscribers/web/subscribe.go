package web

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"

	"newsletter/internal/clientaddr"
	"newsletter/internal/httpx"
	"newsletter/internal/textclean"
	"newsletter/subscribers"
)

// subscribePage is the data of page/subscribe.html.
type subscribePage struct {
	Email, Name, Lang string
	Languages         []langOption
	Errors            map[string]string // field -> message
	Cadence           string
	Honeypot          string // the honeypot field's name
	Switch            []langOption
	// Offers are the newsletters to choose from; none: the form asks for the language's digest.
	Offers      []offerOption
	ChoiceField string
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
	d := subscribePage{Email: in.Email, Name: in.Name, Lang: form, Errors: errs, Cadence: h.cadence(lang), Honeypot: honeypotField, ChoiceField: choiceField}
	if list, err := h.formNewsletters(r.Context()); err != nil {
		h.log.Error("subscribe page: newsletters", "err", err)
	} else if len(list) > 1 {
		// One newsletter needs no choice: the form stays as it was.
		d.Offers = offerOptions(list, lang, in)
	}
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
	if ok, retry := h.limiter.allow(ip, h.opts.Now()); !ok {
		h.requests.WithLabelValues("rate_limited").Inc()
		w.Header().Set("Retry-After", strconv.Itoa(max(1, int(math.Ceil(retry.Seconds())))))
		h.requestError(w, r, wantJSON, lang, http.StatusTooManyRequests, "subscribers.error.rate_limited")
		return
	}
	in, err := decodeSubscribe(w, r)
	if err != nil {
		h.requests.WithLabelValues("invalid").Inc()
		status, key := requestStatus(err)
		h.requestError(w, r, wantJSON, lang, status, key)
		return
	}
	if h.hasLang(in.Lang) {
		lang = in.Lang
	}
	if in.Honeypot != "" {
		h.requests.WithLabelValues("honeypot").Inc()
		h.log.Info("subscribe: honeypot filled", "client", h.signer.LogTag(ip)) // no IP in the log
		h.accepted(w, wantJSON, lang)
		return
	}
	email, name, formLang, ferr := h.validate(in, lang)
	var chosen []int64
	if ferr == nil {
		chosen, ferr = h.chosenNewsletters(r.Context(), in)
	}
	if ferr == nil {
		source := "form"
		if in.JSON {
			source = "api"
		}
		ferr = h.store.Subscribe(r.Context(), email, name, formLang, subscribers.Consent{IP: h.consentIP(ip), UserAgent: textclean.ClipBytes(r.UserAgent(), 512),
			Source: source, TextVersion: ConsentTextVersion, Newsletters: chosen})
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
		httpx.Page(w, h.log, http.StatusOK, page.([]byte), nil)
		return
	}
	m := message{Title: h.cat.T(lang, "subscribers.accepted.title"), Text: h.cat.T(lang, "subscribers.accepted.text"),
		Detail: h.cat.T(lang, "subscribers.accepted.detail"), OK: true}
	page, err := h.page("message", lang, m.Title, m)
	if err == nil { // a failed render is not kept: the next request tries again
		h.acceptedPages.Store(lang, page)
	}
	httpx.Page(w, h.log.With("page", "message"), http.StatusOK, page, err)
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

// consentIP is what the consent record keeps of the client's address (HandlerOptions.ConsentIP):
// enough to show where a request came from, no more than the publisher chose to keep.
func (h *Handler) consentIP(ip string) string {
	switch h.opts.ConsentIP {
	case "full":
		return ip
	case "none":
		return ""
	default:
		return clientaddr.Truncate(ip)
	}
}
