package web

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"newsletter/editors"
	"newsletter/internal/clientaddr"
)

type adminLoginData struct {
	CSRF  string
	Error string
	Email string
	// Shared: NEWSLETTER_ADMIN_PASSWORD still logs in (no editor has a password yet).
	Shared bool
	// NoEditors: nobody can log in yet; the page says how to make the first admin.
	NoEditors bool
}

func (e *Editor) loginPage(w http.ResponseWriter, r *http.Request, status int, email, msg string) {
	// The login form's token is a random value mirrored in a short-lived cookie (double submit):
	// there is no session yet to tie it to, and another site can neither read nor set the cookie.
	token := newSessionID()
	http.SetCookie(w, &http.Cookie{Name: loginCSRFCookie, Value: token, Path: "/admin/login", MaxAge: 3600,
		HttpOnly: true, Secure: e.opts.SecureCookies, SameSite: http.SameSiteStrictMode})
	d := adminLoginData{CSRF: token, Error: msg, Email: email}
	if retired, err := e.accounts.SharedRetired(r.Context()); err == nil {
		d.Shared = e.accounts.HasSharedPassword() && !retired
		if !d.Shared && !retired {
			n, err := e.accounts.Count(r.Context())
			d.NoEditors = err == nil && n == 0
		}
	}
	e.render(w, status, "admin_login", "Editor login", d)
}

// clientIP is the client's address as the audit log and the sessions list keep it.
func (e *Editor) clientIP(r *http.Request) string { return clientaddr.Of(r, e.opts.TrustProxy) }

// device is the browser's family and major version, never the whole user agent.
func (e *Editor) device(r *http.Request) string {
	if e.opts.Device == nil {
		return ""
	}
	return e.opts.Device(r.UserAgent())
}

// LoginForm is GET /admin/login.
func (e *Editor) LoginForm(w http.ResponseWriter, r *http.Request) {
	if s, ok := e.cookieSession(r); ok && s.Stage == editors.StageFull {
		redirect(w, r, "/admin/")
		return
	}
	e.loginPage(w, r, http.StatusOK, "", "")
}

// cookieSession is the live session the request's cookie names, at any stage.
func (e *Editor) cookieSession(r *http.Request) (editors.Session, bool) {
	c, err := r.Cookie(sessionCookie)
	if err != nil {
		return editors.Session{}, false
	}
	s, err := e.accounts.Session(r.Context(), c.Value, e.clientIP(r))
	return s, err == nil
}

// loginForm reads a login POST and checks its double-submit token; on failure it has answered.
func (e *Editor) loginForm(w http.ResponseWriter, r *http.Request) bool {
	r.Body = http.MaxBytesReader(w, r.Body, adminFormLimit)
	if err := r.ParseForm(); err != nil {
		e.loginPage(w, r, http.StatusBadRequest, "", "The form could not be read; try again.")
		return false
	}
	c, err := r.Cookie(loginCSRFCookie)
	if err != nil || c.Value == "" || !csrfEqual(c.Value, r.PostForm.Get("csrf")) {
		e.loginPage(w, r, http.StatusForbidden, "", "The login form expired or came from elsewhere; it has been reloaded, try again.")
		return false
	}
	return true
}

// Login is POST /admin/login: the address and password (the throttle records the attempt before
// anything is compared), then a brand-new session: a full one, or one waiting for the TOTP code.
// An empty address with NEWSLETTER_ADMIN_PASSWORD logs in as the shared password while that is
// kept for compatibility.
func (e *Editor) Login(w http.ResponseWriter, r *http.Request) {
	if !e.loginForm(w, r) {
		return
	}
	ctx := r.Context()
	client, ip := clientKey(r, e.opts.TrustProxy), e.clientIP(r)
	typed := strings.TrimSpace(r.PostForm.Get("email"))
	password := r.PostForm.Get("password")
	trusted := int64(0)
	if c, err := r.Cookie(deviceCookie); err == nil {
		trusted = deviceEditor(e.opts.DeviceKey, c.Value)
	}
	var ed editors.Editor
	var err error
	if typed == "" && e.accounts.HasSharedPassword() {
		ed, err = e.accounts.SharedLogin(ctx, client, password, false)
	} else {
		var found int64
		ed, found, err = e.accounts.Login(ctx, client, typed, password, trusted)
		if errors.Is(err, editors.ErrCredentials) {
			failed := editors.AuditEntry{Actor: "unknown", IP: ip, Action: "login.failed", Detail: "no such account"}
			if found != 0 {
				email, _ := editors.NormalizeEmail(typed)
				failed = editors.AuditEntry{Editor: editors.Editor{ID: found, Email: email}, IP: ip, Action: "login.failed",
					Object: "editor " + strconv.FormatInt(found, 10), Detail: "wrong password, or the account is disabled or has no password yet"}
			}
			if aerr := e.accounts.Audit(ctx, failed); aerr != nil {
				e.failErr(w, r, aerr, "/admin/login")
				return
			}
		}
	}
	switch {
	case errors.Is(err, editors.ErrThrottled):
		w.Header().Set("Retry-After", strconv.Itoa(int(editors.LoginWindow/time.Second)))
		e.loginPage(w, r, http.StatusTooManyRequests, typed, "Too many failed logins. Wait a few minutes, then try again.")
		return
	case errors.Is(err, editors.ErrSharedRetired):
		e.loginPage(w, r, http.StatusForbidden, "", "The shared editor password no longer works: an editor account exists. Log in with your address and your own password.")
		return
	case errors.Is(err, editors.ErrCredentials):
		if typed == "" {
			if aerr := e.accounts.Audit(ctx, editors.AuditEntry{Actor: "unknown", IP: ip, Action: "login.failed", Detail: "shared password"}); aerr != nil {
				e.failErr(w, r, aerr, "/admin/login")
				return
			}
		}
		e.log.Warn("admin: failed login", "client", client)
		e.loginPage(w, r, http.StatusUnauthorized, typed, "Wrong address or password.")
		return
	case err != nil:
		e.failErr(w, r, err, "/admin/login")
		return
	}
	stage := editors.StageFull
	if ed.TOTP {
		stage = editors.StageCode
	}
	var old string
	if c, err := r.Cookie(sessionCookie); err == nil {
		old = c.Value
	}
	cookie, err := e.accounts.StartSession(ctx, ed, stage, old, ip, e.device(r))
	if err != nil {
		e.failErr(w, r, err, "/admin/login")
		return
	}
	http.SetCookie(w, sessionCookieFor(cookie, e.opts.SecureCookies))
	http.SetCookie(w, &http.Cookie{Name: loginCSRFCookie, Path: "/admin/login", MaxAge: -1, HttpOnly: true, Secure: e.opts.SecureCookies, SameSite: http.SameSiteStrictMode})
	if stage == editors.StageCode {
		redirect(w, r, "/admin/login/code")
		return
	}
	e.loggedIn(w, r, ed, cookie, trusted, "password")
}

// loggedIn records a login that is complete and sends the browser on.
func (e *Editor) loggedIn(w http.ResponseWriter, r *http.Request, ed editors.Editor, cookie string, trusted int64, how string) {
	entry := editors.AuditEntry{Editor: ed, Session: editors.HashCookie(cookie), IP: e.clientIP(r), Action: "login", Detail: how}
	if !ed.Shared {
		entry.Object = "editor " + strconv.FormatInt(ed.ID, 10)
	}
	if err := e.accounts.Audit(r.Context(), entry); err != nil {
		e.failErr(w, r, err, "/admin/login")
		return
	}
	if len(e.opts.DeviceKey) > 0 && !ed.Shared && trusted != ed.ID {
		http.SetCookie(w, &http.Cookie{Name: deviceCookie, Value: deviceToken(e.opts.DeviceKey, ed.ID), Path: "/admin/login",
			MaxAge: int(deviceMaxAge / time.Second), HttpOnly: true, Secure: e.opts.SecureCookies, SameSite: http.SameSiteStrictMode})
	}
	e.log.Info("admin: login", "editor", ed.ID)
	redirect(w, r, "/admin/")
}

type adminCodeData struct {
	CSRF  string
	Error string
}

// codeSession is the session waiting for its TOTP code; without one the browser goes back to the
// login page and false is returned.
func (e *Editor) codeSession(w http.ResponseWriter, r *http.Request) (editors.Session, string, bool) {
	c, err := r.Cookie(sessionCookie)
	if err == nil {
		s, err := e.accounts.Session(r.Context(), c.Value, e.clientIP(r))
		if err == nil && s.Stage == editors.StageCode {
			return s, c.Value, true
		}
		if err == nil {
			redirect(w, r, "/admin/")
			return editors.Session{}, "", false
		}
	}
	if r.Method == http.MethodPost {
		e.loginPage(w, r, http.StatusForbidden, "", "The login took too long or was not started here. Log in again.")
	} else {
		redirect(w, r, "/admin/login")
	}
	return editors.Session{}, "", false
}

// CodeForm is GET /admin/login/code: the second step for an editor with TOTP.
func (e *Editor) CodeForm(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if _, cookie, ok := e.codeSession(w, r); ok {
		e.render(w, http.StatusOK, "admin_login_code", "Editor login", adminCodeData{CSRF: csrfToken(cookie)})
	}
}

// Code is POST /admin/login/code: the TOTP code, under the same throttle as passwords; a code
// counts once. The waiting session is replaced by a full one.
func (e *Editor) Code(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	sess, cookie, ok := e.codeSession(w, r)
	if !ok {
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, adminFormLimit)
	if err := r.ParseForm(); err != nil || !csrfValid(cookie, r.PostForm.Get("csrf")) {
		e.render(w, http.StatusForbidden, "admin_login_code", "Editor login", adminCodeData{CSRF: csrfToken(cookie),
			Error: "The form's security token is missing or wrong. Try again."})
		return
	}
	ctx, client, ip := r.Context(), clientKey(r, e.opts.TrustProxy), e.clientIP(r)
	trusted := int64(0)
	if c, err := r.Cookie(deviceCookie); err == nil {
		trusted = deviceEditor(e.opts.DeviceKey, c.Value)
	}
	ed, err := e.accounts.LoginCode(ctx, client, sess, r.PostForm.Get("code"), trusted == sess.Editor.ID)
	switch {
	case errors.Is(err, editors.ErrThrottled):
		w.Header().Set("Retry-After", strconv.Itoa(int(editors.LoginWindow/time.Second)))
		e.render(w, http.StatusTooManyRequests, "admin_login_code", "Editor login", adminCodeData{CSRF: csrfToken(cookie),
			Error: "Too many failed attempts. Wait a few minutes, then try again."})
		return
	case errors.Is(err, editors.ErrCredentials):
		if aerr := e.accounts.Audit(ctx, editors.AuditEntry{Editor: sess.Editor, Session: sess.Hash, IP: ip, Action: "login.failed",
			Object: "editor " + strconv.FormatInt(sess.Editor.ID, 10), Detail: "wrong or used TOTP code"}); aerr != nil {
			e.failErr(w, r, aerr, "/admin/login")
			return
		}
		e.render(w, http.StatusUnauthorized, "admin_login_code", "Editor login", adminCodeData{CSRF: csrfToken(cookie),
			Error: "Wrong code, or one used already. Type the code your app shows now."})
		return
	case err != nil:
		e.failErr(w, r, err, "/admin/login")
		return
	}
	next, err := e.accounts.Renew(ctx, ed, cookie, ip, e.device(r))
	if err != nil {
		e.failErr(w, r, err, "/admin/login")
		return
	}
	http.SetCookie(w, sessionCookieFor(next, e.opts.SecureCookies))
	e.loggedIn(w, r, ed, next, trusted, "password and TOTP code")
}

// Logout is POST /admin/logout (behind Require, so it carries the form token).
func (e *Editor) Logout(w http.ResponseWriter, r *http.Request) {
	sess, cookie := e.session(r)
	if !e.record(w, r, "logout", e.selfObject(sess), "", "/admin/") {
		return
	}
	if err := e.accounts.EndSession(r.Context(), cookie); err != nil {
		e.failErr(w, r, err, "/admin/")
		return
	}
	http.SetCookie(w, sessionCookieFor("", e.opts.SecureCookies))
	redirect(w, r, "/admin/login")
}

type ctxSession struct {
	sess   editors.Session
	cookie string
}

// session is the request's session and its cookie, as Require found them.
func (e *Editor) session(r *http.Request) (editors.Session, string) {
	v, _ := r.Context().Value(sessionKey).(ctxSession)
	return v.sess, v.cookie
}

// selfObject names the session's own editor as an audit object ("" for the shared password).
func (e *Editor) selfObject(s editors.Session) string {
	if s.Editor.Shared {
		return ""
	}
	return "editor " + strconv.FormatInt(s.Editor.ID, 10)
}

// record writes what the request's editor does to the audit log, before it is done; on failure
// it has answered and nothing is done.
func (e *Editor) record(w http.ResponseWriter, r *http.Request, action, object, detail, back string) bool {
	return e.recordTarget(w, r, action, object, "", detail, back)
}

func (e *Editor) recordTarget(w http.ResponseWriter, r *http.Request, action, object, target, detail, back string) bool {
	sess, _ := e.session(r)
	err := e.accounts.Audit(r.Context(), editors.AuditEntry{Editor: sess.Editor, Session: sess.Hash, IP: e.clientIP(r),
		Action: action, Object: object, Target: target, Detail: detail})
	if err != nil {
		e.failErr(w, r, err, back)
		return false
	}
	return true
}

// totpSetupPath is where an admin without TOTP is sent when NEWSLETTER_ADMIN_TOTP=required.
const totpSetupPath = "/admin/account/totp"

// Require lets a request through only with a live, complete session whose editor's role allows
// need; a POST must also carry the session's form token. Without a session a GET goes to the login
// page and a POST gets 403; a role that does not allow need gets 403 either way. While
// NEWSLETTER_ADMIN_TOTP=required, an admin without TOTP reaches nothing but their account pages
// and the logout until they switch it on.
func (e *Editor) Require(need editors.Role, next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		c, err := r.Cookie(sessionCookie)
		var sess editors.Session
		if err == nil {
			sess, err = e.accounts.Session(r.Context(), c.Value, e.clientIP(r))
		}
		if err != nil {
			if !errors.Is(err, editors.ErrNoSession) && !errors.Is(err, http.ErrNoCookie) {
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
		if sess.Stage != editors.StageFull {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				redirect(w, r, "/admin/login/code")
				return
			}
			e.fail(w, http.StatusForbidden, "Your login is not complete: type the code from your authenticator app first.", "/admin/login/code")
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
		if !sess.Editor.Role.Allows(need) {
			e.fail(w, http.StatusForbidden, "Your role ("+sess.Editor.Role.String()+") does not allow this; it needs "+need.String()+
				". Ask an admin if you need it.", "/admin/")
			return
		}
		if e.totpMissing(sess) && !strings.HasPrefix(r.URL.Path, "/admin/account") && r.URL.Path != "/admin/logout" {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				redirect(w, r, totpSetupPath)
				return
			}
			e.fail(w, http.StatusForbidden, "Admins need two-factor login here: switch TOTP on for your account first.", totpSetupPath)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), sessionKey, ctxSession{sess, c.Value})))
	})
}

// totpMissing: TOTP is required for admins and this admin has none (the shared password has no
// account to set one on, and goes away anyway).
func (e *Editor) totpMissing(s editors.Session) bool {
	return e.opts.AdminTOTPRequired && s.Editor.Role == editors.Admin && !s.Editor.TOTP && !s.Editor.Shared
}
