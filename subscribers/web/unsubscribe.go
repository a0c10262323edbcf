package web

import (
	"context"
	"net/http"

	"newsletter/subscribers"
)

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
// Through one issue's link the departure is counted for that issue.
func (h *Handler) Unsubscribe(w http.ResponseWriter, r *http.Request) {
	h.click(w, r, oneClick{purpose: subscribers.PurposeUnsubscribe, what: "unsubscribe", done: subscribers.StatusUnsubscribed,
		act: func(ctx context.Context, s subscribers.Subscriber, l link) (subscribers.Subscriber, error) {
			return h.store.UnsubscribeFrom(ctx, s.UUID, l.issue)
		}, counter: h.unsubscribes, message: h.unsubscribedMessage})
}

func (h *Handler) unsubscribedMessage(lang string) message {
	return message{Title: h.cat.T(lang, "subscribers.unsubscribed.title"), Text: h.cat.T(lang, "subscribers.unsubscribed.text"),
		Back: "/?lang=" + lang, BackText: h.cat.T(lang, "subscribers.unsubscribed.again"), OK: true}
}
