package web

import (
	"errors"
	"net/http"
	"strings"

	"newsletter/digest"
	"newsletter/editors"
	"newsletter/internal/httpx"
)

// errorStatus is the one table from an error to what the editor pages and the archive answer: the
// status and a message in our own words, never an error's own text (which may hold SQL or a
// driver's message). A database that is away is a 503 with Retry-After on every page: the request
// may work in a moment, and nothing about it is wrong.
func errorStatus(err error) (status int, msg string) {
	switch {
	case errors.Is(err, digest.ErrNotFound):
		return http.StatusNotFound, "That issue or article does not exist (any more)."
	case errors.Is(err, digest.ErrConflict):
		return http.StatusConflict, "That cannot be done in the issue's present state: " + conflictText(err)
	case errors.Is(err, digest.ErrInvalid):
		return http.StatusBadRequest, "That was not accepted: " + conflictText(err)
	case errors.Is(err, digest.ErrNoArticles):
		return http.StatusConflict, "There are no new articles for this language."
	case errors.Is(err, ErrNoReader):
		return http.StatusNotFound, "There is no such reader (any more)."
	case errors.Is(err, ErrReaderChanged):
		return http.StatusConflict, "The reader changed in the meantime. Reload their page and try again."
	case errors.Is(err, editors.ErrNotFound):
		return http.StatusNotFound, "That editor does not exist (any more)."
	case errors.Is(err, editors.ErrInvalid):
		return http.StatusBadRequest, "That was not accepted: check the form and try again."
	case errors.Is(err, editors.ErrLastAdmin):
		return http.StatusConflict, "That would leave no enabled admin. Make another editor an admin first."
	case errors.Is(err, editors.ErrThrottled):
		return http.StatusTooManyRequests, "Too many attempts. Wait a few minutes, then try again."
	case errors.Is(err, editors.ErrLinkExpired):
		return http.StatusGone, "That link does not work (any more)."
	case errors.Is(err, editors.ErrCredentials):
		return http.StatusBadRequest, "Wrong password or code."
	case errors.Is(err, digest.ErrRelay):
		return http.StatusBadGateway, "The mail server did not take the message. Check NEWSLETTER_SMTP_URL and the log."
	case httpx.Unavailable(err):
		return http.StatusServiceUnavailable, "The database is not answering just now. Try again in a moment."
	}
	return http.StatusInternalServerError, "Internal error. It has been logged."
}

// statusOf looks err up in errorStatus, logs what is not the request's fault and sets Retry-After
// on a 503.
func statusOf(w http.ResponseWriter, r *http.Request, log interface{ Error(string, ...any) }, err error) (int, string) {
	status, msg := errorStatus(err)
	if status >= 500 {
		log.Error("digest page", "route", r.Pattern, "err", err)
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", httpx.RetryAfter)
	}
	return status, msg
}

// conflictText is the human part of a sentinel-wrapped error ("issue 7: not a draft: conflict" ->
// "issue 7: not a draft"; "invalid: title is required" -> "title is required"): our own wording,
// never a driver's, as only errors wrapping our sentinels come here.
func conflictText(err error) string {
	s := strings.TrimPrefix(err.Error(), "digest: ")
	for _, sentinel := range []error{digest.ErrConflict, digest.ErrInvalid, digest.ErrNotFound, digest.ErrNoArticles} {
		s = strings.TrimSuffix(s, ": "+sentinel.Error())
		s = strings.TrimPrefix(s, sentinel.Error()+": ")
	}
	return s
}

type adminErrorData struct {
	Heading, Message, Back string
}

// fail answers an editor page with a clear message for status, never with an error's own text.
func (e *Editor) fail(w http.ResponseWriter, status int, msg, back string) {
	heading := http.StatusText(status)
	e.render(w, status, "admin_error", heading, adminErrorData{Heading: heading, Message: msg, Back: back})
}

// failErr answers an editor page with what errorStatus says of err.
func (e *Editor) failErr(w http.ResponseWriter, r *http.Request, err error, back string) {
	status, msg := statusOf(w, r, e.log, err)
	e.fail(w, status, msg, back)
}

// fail answers an archive request with what errorStatus says of err, as plain text: the archive's
// own pages are for readers, and the status is what a cache or a feed reader acts on.
func (h *Archive) fail(w http.ResponseWriter, r *http.Request, err error) {
	status, _ := statusOf(w, r, h.log, err)
	switch status {
	case http.StatusInternalServerError:
		http.Error(w, "Internal error.", status)
	case http.StatusServiceUnavailable:
		http.Error(w, "The archive is not available just now. Try again in a moment.", status)
	default:
		http.Error(w, http.StatusText(status)+".", status)
	}
}
