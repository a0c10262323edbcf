package web

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
)

// maxBody caps every form or JSON body the reader-facing endpoints accept.
const maxBody = 64 << 10

// honeypotField is the form field people never see; a bot that fills it is answered as if
// accepted and nothing is stored.
const honeypotField = "website"

// Request errors that are not about one field; each maps to its own status in requestStatus.
var (
	errTooLarge  = errors.New("request body too large")
	errMediaType = errors.New("unsupported content type")
	errMalformed = errors.New("malformed request body")
)

// subscribeInput is what a subscribe request carries, from a form or from JSON.
type subscribeInput struct {
	Email    string `json:"email"`
	Name     string `json:"name"`
	Lang     string `json:"lang"`
	Honeypot string `json:"website"`
	JSON     bool   `json:"-"`
	// Chose: the request chose newsletters (the form's choice field, or JSON's "newsletters"),
	// Newsletters their slugs; without a choice it asks for the digest of its language.
	Chose       bool     `json:"-"`
	Newsletters []string `json:"-"`
}

// choiceField marks a form that offers newsletters, so nothing ticked is told from an older form:
// the submit button's name (a field of its own would be an input without a label).
const choiceField = "newsletters_offered"

// decodeSubscribe reads a form-encoded, multipart or JSON body, at most maxBody bytes. Unknown
// fields are ignored in both forms: the publication's own site may send more than we read.
func decodeSubscribe(w http.ResponseWriter, r *http.Request) (subscribeInput, error) {
	var in subscribeInput
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		return in, errMediaType
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	switch mt {
	case "application/json":
		in.JSON = true
		dec := json.NewDecoder(r.Body)
		var raw map[string]json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return in, bodyError(err)
		}
		if _, err := dec.Token(); !errors.Is(err, io.EOF) {
			if err != nil {
				return in, bodyError(err)
			}
			return in, errMalformed // a second value after the object
		}
		for key, dst := range map[string]*string{"email": &in.Email, "name": &in.Name, "lang": &in.Lang, honeypotField: &in.Honeypot} {
			v, ok := raw[key]
			if !ok || string(v) == "null" {
				continue
			}
			if err := json.Unmarshal(v, dst); err != nil {
				return in, errMalformed // a number or object where a string belongs
			}
		}
		if v, ok := raw["newsletters"]; ok && string(v) != "null" {
			in.Chose = true
			if err := json.Unmarshal(v, &in.Newsletters); err != nil {
				return in, errMalformed // not an array of strings
			}
		}
	case "application/x-www-form-urlencoded", "multipart/form-data":
		var err error
		if mt == "multipart/form-data" {
			err = r.ParseMultipartForm(maxBody)
		} else {
			err = r.ParseForm()
		}
		if err != nil {
			return in, bodyError(err)
		}
		in.Email, in.Name, in.Lang, in.Honeypot = r.PostFormValue("email"), r.PostFormValue("name"), r.PostFormValue("lang"), r.PostFormValue(honeypotField)
		if _, ok := r.PostForm[choiceField]; ok {
			in.Chose, in.Newsletters = true, r.PostForm["newsletter"]
		}
	default:
		return in, errMediaType
	}
	return in, nil
}

// decodeForm parses a small urlencoded or multipart form posted to a token page.
func decodeForm(w http.ResponseWriter, r *http.Request) error {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	var err error
	switch mt {
	case "multipart/form-data":
		err = r.ParseMultipartForm(maxBody)
	case "application/x-www-form-urlencoded":
		err = r.ParseForm()
	default:
		return errMediaType
	}
	if err != nil {
		return bodyError(err)
	}
	return nil
}

// drainBody reads and discards at most maxBody bytes, so a one-click POST with any small body is
// accepted and an oversized one is refused.
func drainBody(w http.ResponseWriter, r *http.Request) error {
	if r.Body == nil {
		return nil
	}
	_, err := io.Copy(io.Discard, http.MaxBytesReader(w, r.Body, maxBody))
	if err != nil {
		return bodyError(err)
	}
	return nil
}

func bodyError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return errTooLarge
	}
	return errMalformed
}

// requestStatus is the status and message key of a request that is wrong as a whole.
func requestStatus(err error) (status int, key string) {
	switch {
	case errors.Is(err, errTooLarge):
		return http.StatusRequestEntityTooLarge, "subscribers.error.too_large"
	case errors.Is(err, errMediaType):
		return http.StatusUnsupportedMediaType, "subscribers.error.media_type"
	}
	return http.StatusBadRequest, "subscribers.error.malformed"
}
