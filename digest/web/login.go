package web

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"
)

type adminLoginData struct {
	CSRF     string
	Error    string
	Disabled bool
}

func (e *Editor) loginPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	// The login form's token is a random value mirrored in a short-lived cookie (double submit):
	// there is no session yet to tie it to, and another site can neither read nor set the cookie.
	token := newSessionID()
	http.SetCookie(w, &http.Cookie{Name: loginCSRFCookie, Value: token, Path: "/admin/login", MaxAge: 3600,
		HttpOnly: true, Secure: e.opts.SecureCookies, SameSite: http.SameSiteStrictMode})
	e.render(w, status, "admin_login", "Editor login", adminLoginData{CSRF: token, Error: msg, Disabled: e.opts.Password == ""})
}

// LoginForm is GET /admin/login.
func (e *Editor) LoginForm(w http.ResponseWriter, r *http.Request) {
	if c, err := r.Cookie(sessionCookie); err == nil && e.sessions.check(r.Context(), c.Value) == nil {
		redirect(w, r, "/admin/")
		return
	}
	e.loginPage(w, r, http.StatusOK, "")
}

// Login is POST /admin/login: throttle, compare, then a brand-new session.
func (e *Editor) Login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, adminFormLimit)
	if err := r.ParseForm(); err != nil {
		e.loginPage(w, r, http.StatusBadRequest, "The form could not be read; try again.")
		return
	}
	c, err := r.Cookie(loginCSRFCookie)
	if err != nil || c.Value == "" || !csrfEqual(c.Value, r.PostForm.Get("csrf")) {
		e.loginPage(w, r, http.StatusForbidden, "The login form expired or came from elsewhere; it has been reloaded, try again.")
		return
	}
	if e.opts.Password == "" {
		e.loginPage(w, r, http.StatusForbidden, "Editor login is switched off: no editor password is set.")
		return
	}
	client := clientKey(r, e.opts.TrustProxy)
	known := false
	if c, err := r.Cookie(deviceCookie); err == nil {
		known = deviceValid(e.opts.DeviceKey, c.Value)
	}
	if err := e.sessions.throttled(r.Context(), client, known); err != nil {
		if errors.Is(err, errLoginThrottled) {
			w.Header().Set("Retry-After", strconv.Itoa(int(loginWindow/time.Second)))
			e.loginPage(w, r, http.StatusTooManyRequests, "Too many failed logins. Wait a few minutes, then try again.")
			return
		}
		e.failErr(w, r, err, "/admin/login")
		return
	}
	if !passwordMatches(e.opts.Password, r.PostForm.Get("password")) {
		if err := e.sessions.failed(r.Context(), client); err != nil {
			e.failErr(w, r, err, "/admin/login")
			return
		}
		e.log.Warn("admin: failed login", "client", client)
		e.loginPage(w, r, http.StatusUnauthorized, "Wrong password.")
		return
	}
	var old string
	if c, err := r.Cookie(sessionCookie); err == nil {
		old = c.Value
	}
	id, err := e.sessions.create(r.Context(), old)
	if err != nil {
		e.failErr(w, r, err, "/admin/login")
		return
	}
	http.SetCookie(w, sessionCookieFor(id, e.opts.SecureCookies))
	if len(e.opts.DeviceKey) > 0 && !known {
		http.SetCookie(w, &http.Cookie{Name: deviceCookie, Value: deviceToken(e.opts.DeviceKey), Path: "/admin/login",
			MaxAge: int(deviceMaxAge / time.Second), HttpOnly: true, Secure: e.opts.SecureCookies, SameSite: http.SameSiteStrictMode})
	}
	http.SetCookie(w, &http.Cookie{Name: loginCSRFCookie, Path: "/admin/login", MaxAge: -1, HttpOnly: true, Secure: e.opts.SecureCookies, SameSite: http.SameSiteStrictMode})
	e.log.Info("admin: login", "client", client)
	redirect(w, r, "/admin/")
}

// Logout is POST /admin/logout (behind RequireEditor, so it carries the form token).
func (e *Editor) Logout(w http.ResponseWriter, r *http.Request) {
	id, _ := r.Context().Value(sessionIDKey).(string)
	if err := e.sessions.end(r.Context(), id); err != nil {
		e.failErr(w, r, err, "/admin/")
		return
	}
	http.SetCookie(w, sessionCookieFor("", e.opts.SecureCookies))
	redirect(w, r, "/admin/login")
}

// RequireEditor lets a request through only with a live session; a POST must also carry the
// session's form token. Without a session a GET goes to the login page and a POST gets 403.
func (e *Editor) RequireEditor(next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		c, err := r.Cookie(sessionCookie)
		if err == nil {
			err = e.sessions.check(r.Context(), c.Value)
		}
		if err != nil {
			if !errors.Is(err, errNoSession) && !errors.Is(err, http.ErrNoCookie) {
				e.failErr(w, r, err, "")
				return
			}
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				redirect(w, r, "/admin/login")
				return
			}
			e.fail(w, http.StatusForbidden, "Your editor session has ended. Log in again, then repeat what you did.", "/admin/login")
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, adminFormLimit)
			if err := r.ParseForm(); err != nil {
				var tooBig *http.MaxBytesError
				if errors.As(err, &tooBig) {
					e.fail(w, http.StatusRequestEntityTooLarge, "The form is too large.", "")
					return
				}
				e.fail(w, http.StatusBadRequest, "The form could not be read.", "")
				return
			}
			if !csrfValid(c.Value, r.PostForm.Get("csrf")) {
				e.fail(w, http.StatusForbidden, "The form's security token is missing or wrong. Reload the page and try again.", "")
				return
			}
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), sessionIDKey, c.Value)))
	})
}
