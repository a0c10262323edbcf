package web

import (
	"context"
	"net/http"

	"newsletter/subscribers"
)

// confirmPage is the data of page/confirm.html.
type confirmPage struct {
	Action  string
	Cadence string
}

// ConfirmPage serves GET /confirm/{token}: a page with one button. It changes nothing, because mail
// scanners open links.
func (h *Handler) ConfirmPage(w http.ResponseWriter, r *http.Request) {
	s, l, ok := h.reader(w, r, subscribers.PurposeConfirm)
	if !ok {
		return
	}
	open, err := h.store.CanConfirm(r.Context(), s.UUID, l.issued)
	switch {
	case err != nil:
		h.fail(w, r, s.Lang, "confirm page", err)
	case !open && s.Status == subscribers.StatusConfirmed:
		// Answered already (a second visit): a confirmed reader's open request, asking for more
		// newsletters, gets the button below like anyone's.
		h.message(w, http.StatusOK, s.Lang, h.confirmedMessage(s.Lang))
	case open:
		h.render(w, http.StatusOK, "confirm", s.Lang, h.cat.T(s.Lang, "subscribers.confirm.title"), confirmPage{Action: r.URL.EscapedPath(), Cadence: h.cadence(s.Lang)})
	default: // left, bounced or complained since the request: this opt-in is over
		h.linkError(w, s.Lang, http.StatusGone, "expired")
	}
}

// Confirm serves POST /confirm/{token}: completes the opt-in; confirming twice is harmless.
func (h *Handler) Confirm(w http.ResponseWriter, r *http.Request) {
	h.click(w, r, oneClick{purpose: subscribers.PurposeConfirm, what: "confirm", done: subscribers.StatusConfirmed,
		act: func(ctx context.Context, s subscribers.Subscriber, l link) (subscribers.Subscriber, error) {
			return h.store.Confirm(ctx, s.UUID, l.issued)
		}, counter: h.confirmations, message: h.confirmedMessage})
}

func (h *Handler) confirmedMessage(lang string) message {
	return message{Title: h.cat.T(lang, "subscribers.confirmed.title"), Text: h.cat.T(lang, "subscribers.confirmed.text", h.cadence(lang)),
		Detail: h.cat.T(lang, "subscribers.confirmed.detail"), OK: true}
}
