package web

import (
	"net/http"
	"strconv"

	"newsletter/internal/clientaddr"
	"newsletter/internal/textclean"
	"newsletter/subscribers"
)

// The manage page's toggles: a checkbox per newsletter offered to the reader (subscribers.Choices),
// ticked where they get it. The Save button carries newsletters_shown=1 (a button's value is sent
// with an implicit submission too) so a save from a page without toggles (an older page, a script
// setting the name) changes no subscription.

// newsletterOption is one toggle of page/manage.html.
type newsletterOption struct {
	ID                int64
	Name, Description string
	Active            bool
}

// maxToggles bounds the newsletter values one save may carry (far above any real list).
const maxToggles = 200

// newsletterOptions lists the reader's toggles, names and descriptions in lang.
func (h *Handler) newsletterOptions(r *http.Request, s subscribers.Subscriber, lang string) ([]newsletterOption, error) {
	cs, err := h.store.Choices(r.Context(), s.UUID)
	if err != nil {
		return nil, err
	}
	out := make([]newsletterOption, 0, len(cs))
	for _, c := range cs {
		out = append(out, newsletterOption{ID: c.ID, Name: c.Name(lang), Description: c.Descriptions.In(lang), Active: c.Active})
	}
	return out, nil
}

// manageInput reads a manage page save: name and lang already validated, the toggles when shown,
// and the consent that ticking one gives (kept like the form's: the address as
// NEWSLETTER_CONSENT_IP says, the user agent reduced by the store).
func (h *Handler) manageInput(r *http.Request, name, lang string) (subscribers.ManageInput, error) {
	in := subscribers.ManageInput{Name: name, Lang: lang, Choose: r.PostForm.Has("newsletters_shown")}
	if !in.Choose {
		return in, nil
	}
	vals := r.PostForm["newsletter"]
	if len(vals) > maxToggles {
		return in, &subscribers.FieldError{Field: "newsletters", Key: subscribers.KeyNewsletterUnknown}
	}
	for _, v := range vals {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id < 1 {
			return in, &subscribers.FieldError{Field: "newsletters", Key: subscribers.KeyNewsletterUnknown}
		}
		in.On = append(in.On, id)
	}
	in.Consent = subscribers.Consent{IP: h.consentIP(clientaddr.Of(r, h.opts.TrustProxy)), UserAgent: textclean.ClipBytes(r.UserAgent(), 512),
		Source: "manage", TextVersion: subscribers.ManageTextVersion}
	return in, nil
}

// leaveAll is the manage page's "leave everything": every newsletter left and the reader
// unsubscribed, as a link of no issue does.
func (h *Handler) leaveAll(w http.ResponseWriter, r *http.Request, s subscribers.Subscriber) {
	after, err := h.store.Unsubscribe(r.Context(), s.UUID)
	if err != nil {
		h.fail(w, r, s.Lang, "leave everything", err)
		return
	}
	if s.Status != subscribers.StatusUnsubscribed && after.Status == subscribers.StatusUnsubscribed {
		h.unsubscribes.Inc()
	}
	if !h.hasLang(after.Lang) {
		after.Lang = s.Lang
	}
	h.renderManageNotice(w, r, http.StatusOK, after, nil, false, "subscribers.manage.left_all")
}
