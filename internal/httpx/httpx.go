// Package httpx holds what the web layers (the reader pages, the editor pages, the archive) share:
// telling a database that is away from a request that is wrong, and writing a rendered page.
package httpx

import (
	"context"
	"database/sql/driver"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"

	"github.com/lib/pq"
)

// Unavailable reports whether err means the database could not be reached or is restarting, not
// that the request or the code is wrong: such a request may succeed if tried again (503).
func Unavailable(err error) bool {
	if err == nil {
		return false
	}
	var pqErr *pq.Error
	if errors.As(err, &pqErr) {
		switch pqErr.Code.Class() {
		case "08", // connection exception
			"53", // insufficient resources (too many connections)
			"57": // operator intervention: shutting down, starting up
			return true
		}
		return false
	}
	var netErr net.Error
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.DeadlineExceeded) || errors.As(err, &netErr)
}

// RetryAfter is the Retry-After of a 503 for a database that is away, in seconds: a restart or a
// failover takes about that long.
const RetryAfter = "5"

// Page writes an HTML page rendered in full (templates.Pages.Page) with status. A page that failed
// to render (err) is logged and answered with a plain 500 instead: never half a page.
func Page(w http.ResponseWriter, log *slog.Logger, status int, page []byte, err error) {
	if err != nil {
		log.Error("render page", "err", err)
		http.Error(w, "Internal error.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	w.Write(page)
}
