package web

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"

	"newsletter/editors"
	"newsletter/internal/clientaddr"
)

// Cookie names of the editor pages.
const (
	sessionCookie   = "newsletter_admin"
	loginCSRFCookie = "newsletter_admin_login"
	deviceCookie    = "newsletter_admin_device"
	deviceMaxAge    = 90 * 24 * time.Hour
)

// newSessionID returns a fresh random value (32 bytes), for the login form's token.
func newSessionID() string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand: " + err.Error()) // never fails on supported platforms
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// csrfToken is the session's form token: an HMAC of a fixed label keyed by the session id. It is
// the same for the whole session, needs no storage, and does not reveal the id.
func csrfToken(sessionID string) string {
	m := hmac.New(sha256.New, []byte(sessionID))
	m.Write([]byte("newsletter admin csrf"))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// csrfValid compares a submitted token with the session's, in constant time.
func csrfValid(sessionID, got string) bool {
	want := csrfToken(sessionID)
	return subtle.ConstantTimeCompare([]byte(want), []byte(got)) == 1
}

// csrfEqual compares the login form's token with its cookie, in constant time.
func csrfEqual(cookie, form string) bool {
	return cookie != "" && subtle.ConstantTimeCompare([]byte(cookie), []byte(form)) == 1
}

// clientKey names the client for the login throttle: its address (the proxy's X-Forwarded-For
// entry when trustProxy), IPv6 grouped by /64. Behind a proxy without trustProxy every client
// shares the proxy's address, so the per-client limit then acts as a second global one.
func clientKey(r *http.Request, trustProxy bool) string {
	return clientaddr.Key(clientaddr.Of(r, trustProxy))
}

// deviceToken is the value of the device cookie a browser gets at a successful login: a random id,
// the editor's id and an HMAC of both under key, so only this service can have issued it. It holds
// no session and grants nothing but an exemption from that account's and the global login limits
// (editors.Store.Login): guesses from elsewhere cannot lock the editor's own browser out.
func deviceToken(key []byte, editorID int64) string {
	id := make([]byte, 16)
	rand.Read(id)
	return base64.RawURLEncoding.EncodeToString(id) + "." + strconv.FormatInt(editorID, 10) + "." + deviceMAC(key, id, editorID)
}

func deviceMAC(key, id []byte, editorID int64) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("newsletter editor device v2\x00"))
	m.Write(id)
	m.Write([]byte(strconv.FormatInt(editorID, 10)))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// deviceEditor returns the editor a device cookie this service issued names (with key; none
// without), or 0.
func deviceEditor(key []byte, token string) int64 {
	if len(key) == 0 || len(token) > 200 {
		return 0
	}
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return 0
	}
	id, err := base64.RawURLEncoding.DecodeString(parts[0])
	editorID, err2 := strconv.ParseInt(parts[1], 10, 64)
	if err != nil || err2 != nil || len(id) != 16 || editorID <= 0 {
		return 0
	}
	if !hmac.Equal([]byte(parts[2]), []byte(deviceMAC(key, id, editorID))) {
		return 0
	}
	return editorID
}

// sessionCookieFor builds the session cookie; an empty value (with MaxAge -1) removes it.
func sessionCookieFor(value string, secure bool) *http.Cookie {
	c := &http.Cookie{
		Name:     sessionCookie,
		Value:    value,
		Path:     "/admin",
		HttpOnly: true,
		Secure:   secure,
		SameSite: http.SameSiteLaxMode,
	}
	if value == "" {
		c.MaxAge = -1
	} else {
		c.MaxAge = int(editors.SessionMax / time.Second)
	}
	return c
}
