package web

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"newsletter/internal/httpx"
	"newsletter/subscribers"
)

// link is what a verified token says besides its reader.
type link struct {
	issued time.Time // when a confirm token was issued
	issue  int64     // the issue an unsubscribe link belongs to; 0 for a link of no issue
	// newsletter is the newsletter an unsubscribe link of no issue leaves (a welcome's); 0 for
	// a link that leaves everything.
	newsletter int64
}

// reader verifies the token in the path for purpose p and loads its reader. On failure it has
// answered: 404 for a forged, altered or wrong-purpose token, 410 for an expired one or a reader
// who was erased (the link was ours, but it is over). An unsubscribe link may be a reader's link
// of no issue, one issue's or one newsletter's (subscribers.Signer.VerifyUnsubscribeScope).
func (h *Handler) reader(w http.ResponseWriter, r *http.Request, p subscribers.Purpose) (subscribers.Subscriber, link, bool) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	w.Header().Set("X-Robots-Tag", "noindex")
	lang := h.pageLang("", r)
	var uuid string
	var l link
	var err error
	if p == subscribers.PurposeUnsubscribe {
		var scope subscribers.UnsubscribeScope
		uuid, scope, err = h.signer.VerifyUnsubscribeScope(r.PathValue("token"))
		l.issue, l.newsletter = scope.Issue, scope.Newsletter
	} else {
		uuid, l.issued, err = h.signer.Verify(p, r.PathValue("token"), h.opts.Now())
	}
	switch {
	case errors.Is(err, subscribers.ErrExpired):
		h.linkError(w, lang, http.StatusGone, "expired")
		return subscribers.Subscriber{}, link{}, false
	case err != nil:
		h.linkError(w, lang, http.StatusNotFound, "invalid")
		return subscribers.Subscriber{}, link{}, false
	}
	s, err := h.store.ByUUID(r.Context(), uuid)
	if err != nil {
		h.fail(w, r, lang, "load reader", err)
		return subscribers.Subscriber{}, link{}, false
	}
	if !h.hasLang(s.Lang) {
		s.Lang = lang
	}
	return s, l, true
}

// fail answers a page behind a signed link whose store call failed, by the one table of the reader
// pages: a link that is over is 410 (expired, or its reader erased), anything else is internal's
// (503 while the database is away, else 500).
func (h *Handler) fail(w http.ResponseWriter, r *http.Request, lang, what string, err error) {
	switch {
	case errors.Is(err, subscribers.ErrExpired):
		h.linkError(w, lang, http.StatusGone, "expired")
	case errors.Is(err, subscribers.ErrNotFound):
		h.linkError(w, lang, http.StatusGone, "gone")
	default:
		h.internal(w, r, false, lang, what, err)
	}
}

// oneClick is the POST of a link whose page has one button, confirm and unsubscribe: the link's
// purpose, what it does to the reader, the status that means it is done (counted when the reader
// reaches it) and the page that says so.
type oneClick struct {
	purpose subscribers.Purpose
	what    string
	act     func(ctx context.Context, s subscribers.Subscriber, l link) (subscribers.Subscriber, error)
	done    subscribers.Status
	counter prometheus.Counter
	message func(lang string) message
}

// click serves c: it reads the body (any small one, RFC 8058's included), checks the token, acts,
// and shows the result; doing it twice is harmless.
func (h *Handler) click(w http.ResponseWriter, r *http.Request, c oneClick) {
	if err := drainBody(w, r); err != nil {
		h.bodyError(w, r, err)
		return
	}
	s, l, ok := h.reader(w, r, c.purpose)
	if !ok {
		return
	}
	after, err := c.act(r.Context(), s, l)
	if err != nil {
		h.fail(w, r, s.Lang, c.what, err)
		return
	}
	if s.Status != c.done && after.Status == c.done {
		c.counter.Inc()
	}
	lang := s.Lang
	if h.hasLang(after.Lang) {
		lang = after.Lang // confirming may take the language the reader asked for
	}
	h.message(w, http.StatusOK, lang, c.message(lang))
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
	status, key := requestStatus(err)
	h.requestError(w, r, false, lang, status, key)
}

// internal logs err (never shown) and answers a plain 500, or 503 when the database is away (the
// request may be tried again).
func (h *Handler) internal(w http.ResponseWriter, r *http.Request, wantJSON bool, lang, what string, err error) {
	h.log.Error("subscribers: "+what, "err", err)
	status := http.StatusInternalServerError
	if httpx.Unavailable(err) {
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", httpx.RetryAfter)
	}
	if wantJSON {
		writeJSON(w, status, map[string]string{"error": h.cat.T(lang, "subscribers.error.internal")})
		return
	}
	h.message(w, status, lang, message{Title: h.cat.T(lang, "subscribers.error.title"), Text: h.cat.T(lang, "subscribers.error.internal")})
}
