package bounce

import (
	"errors"
	"io"
	"net/http"
)

// defaultMaxBody bounds a webhook's body: an SNS message is at most 256 KB, and its JSON
// envelope escapes it once more.
const defaultMaxBody = 1 << 20

// readBody reads the whole body of a POST within max bytes; on failure it has answered (405, 413
// or 400) and returns false.
func readBody(w http.ResponseWriter, r *http.Request, max int64) ([]byte, bool) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		answer(w, http.StatusMethodNotAllowed)
		return nil, false
	}
	if max <= 0 {
		max = defaultMaxBody
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, max))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		answer(w, http.StatusRequestEntityTooLarge)
		return nil, false
	case err != nil:
		answer(w, http.StatusBadRequest)
		return nil, false
	}
	return body, true
}

// answer writes the status with its standard text and nothing else: no detail of why a
// signature failed reaches the caller.
func answer(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	io.WriteString(w, http.StatusText(status)+"\n")
}

// tokenFrom returns the reader and issue of the first of addrs that is one of our VERP addresses.
func tokenFrom(base string, secret []byte, addrs ...string) (uuid string, issue int64, ok bool) {
	if base == "" {
		return "", 0, false
	}
	for _, a := range addrs {
		for _, addr := range addresses(a) {
			if u, i, err := Parse(addr, base, secret); err == nil {
				return u, i, true
			}
		}
	}
	return "", 0, false
}
