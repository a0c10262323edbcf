package web

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"net/url"
	"time"

	"newsletter/newsletters"
	"newsletter/subscribers"
)

// unsubscribePage is the data of page/unsubscribe.html. Through an issue's link it is about that
// issue's newsletter (Newsletter its name in the reader's language): Done once they have left it,
// Others while they still get another, with the "leave everything" button and the manage link.
type unsubscribePage struct {
	Action     string
	Email      string
	Newsletter string
	Done       bool
	Last       bool
	Others     bool
	ManageURL  string
}

// UnsubscribePage serves GET /unsubscribe/{token}: a page with one button (two through an issue's
// link while the reader gets other newsletters too).
func (h *Handler) UnsubscribePage(w http.ResponseWriter, r *http.Request) {
	s, l, ok := h.reader(w, r, subscribers.PurposeUnsubscribe)
	if !ok {
		return
	}
	if s.Status == subscribers.StatusUnsubscribed {
		h.message(w, http.StatusOK, s.Lang, h.unsubscribedMessage(s.Lang))
		return
	}
	d := unsubscribePage{Action: r.URL.EscapedPath(), Email: maskEmail(s.Email), ManageURL: h.manageLink(s.UUID)}
	title := h.cat.T(s.Lang, "subscribers.unsubscribe.title")
	if l.issue > 0 || l.newsletter > 0 {
		var n newsletters.Newsletter
		var active bool
		var err error
		if l.issue > 0 {
			n, active, err = h.store.IssueNewsletter(r.Context(), s.ID, l.issue)
		} else {
			n, active, err = h.store.NewsletterOf(r.Context(), s.ID, l.newsletter)
		}
		switch {
		case errors.Is(err, subscribers.ErrNotFound):
			// An issue or newsletter no longer there: the link leaves everything, as one of no issue.
		case err != nil:
			h.fail(w, r, s.Lang, "unsubscribe", err)
			return
		default:
			d.Newsletter, d.Done = n.Name(s.Lang), !active
			others := h.store.ActiveCount(r.Context(), s.ID)
			if active {
				others-- // this newsletter is not one of the others
			}
			d.Others = others > 0
			if d.Done {
				title = h.cat.T(s.Lang, "subscribers.unsubscribe.left_title", d.Newsletter)
			} else {
				title = h.cat.T(s.Lang, "subscribers.unsubscribe.newsletter_title", d.Newsletter)
			}
		}
	}
	h.render(w, http.StatusOK, "unsubscribe", s.Lang, title, d)
}

// Unsubscribe serves POST /unsubscribe/{token}, from the page's buttons or as an RFC 8058 one-click
// request (body "List-Unsubscribe=One-Click"): the signed token is the only authority needed.
// Through one issue's link the reader leaves that issue's newsletter only, and the departure is
// counted for that issue; through a welcome's, that welcome's newsletter. The page's "leave
// everything" button (scope=all) leaves every one, as does a link of no issue.
func (h *Handler) Unsubscribe(w http.ResponseWriter, r *http.Request) {
	all, err := readScope(w, r)
	if err != nil {
		h.bodyError(w, r, err)
		return
	}
	s, l, ok := h.reader(w, r, subscribers.PurposeUnsubscribe)
	if !ok {
		return
	}
	var after subscribers.Subscriber
	var d subscribers.Departure
	if all {
		after, err = h.store.Unsubscribe(r.Context(), s.UUID)
	} else if l.newsletter > 0 {
		after, d, err = h.store.LeaveNewsletter(r.Context(), s.UUID, l.newsletter)
	} else {
		after, d, err = h.store.LeaveIssue(r.Context(), s.UUID, l.issue)
	}
	if err != nil {
		h.fail(w, r, s.Lang, "unsubscribe", err)
		return
	}
	if s.Status != subscribers.StatusUnsubscribed && after.Status == subscribers.StatusUnsubscribed {
		h.unsubscribes.Inc()
	}
	if d.Newsletter.ID == 0 {
		h.message(w, http.StatusOK, s.Lang, h.unsubscribedMessage(s.Lang))
		return
	}
	name := d.Newsletter.Name(s.Lang)
	page := unsubscribePage{Action: r.URL.EscapedPath(), Email: maskEmail(s.Email), Newsletter: name, Done: true,
		Last: d.Left && after.Status == subscribers.StatusUnsubscribed, Others: d.Remaining > 0, ManageURL: h.manageLink(s.UUID)}
	h.render(w, http.StatusOK, "unsubscribe", s.Lang, h.cat.T(s.Lang, "subscribers.unsubscribe.left_title", name), page)
}

// readScope reads the POST body (any small one, RFC 8058's included) and reports whether it is the
// page's "leave everything" form (scope=all).
func readScope(w http.ResponseWriter, r *http.Request) (bool, error) {
	if r.Body == nil {
		return false, nil
	}
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return false, bodyError(err)
	}
	if mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type")); mt != "application/x-www-form-urlencoded" {
		return false, nil
	}
	q, err := url.ParseQuery(string(b))
	if err != nil {
		return false, nil // a one-click body from an odd client: still a one-click
	}
	return q.Get("scope") == "all", nil
}

// manageLink is the reader's manage page, as a path (the page is on this host).
func (h *Handler) manageLink(uuid string) string {
	return "/manage/" + h.signer.Token(subscribers.PurposeManage, uuid, time.UnixMicro(0))
}

func (h *Handler) unsubscribedMessage(lang string) message {
	return message{Title: h.cat.T(lang, "subscribers.unsubscribed.title"), Text: h.cat.T(lang, "subscribers.unsubscribed.text"),
		Back: "/?lang=" + lang, BackText: h.cat.T(lang, "subscribers.unsubscribed.again"), OK: true}
}
