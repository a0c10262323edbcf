package web

import (
	"errors"
	"html/template"
	"net/http"
	"strconv"
	"strings"
	"time"

	"newsletter/editors"
)

// The editors' own pages: the one-time link that sets a password, and "my account" (name,
// password, TOTP, sessions). Each change to the password or TOTP ends every session of the editor
// (the store moves their epoch) and gives this browser a new one.

type adminSetupData struct {
	Token   string
	Email   string
	Purpose string // invite or reset
	Expires time.Time
	Error   string
	Done    bool
	MinLen  int
}

// linkFail answers a link that does not work (any more): 410, the same for unknown, used and
// expired, so the page tells nothing about other links.
func (e *Editor) linkFail(w http.ResponseWriter) {
	e.fail(w, http.StatusGone, "This link to set a password does not work (any more): each works once, for 72 hours. Ask an admin for a new one (newsletter editors reset ADDRESS).", "/admin/login")
}

// SetPasswordForm is GET /admin/setup/{token}: the page of an invitation or reset link.
func (e *Editor) SetPasswordForm(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	ed, link, err := e.accounts.LinkEditor(r.Context(), r.PathValue("token"))
	if errors.Is(err, editors.ErrLinkExpired) {
		e.linkFail(w)
		return
	}
	if err != nil {
		e.failErr(w, r, err, "/admin/login")
		return
	}
	e.render(w, http.StatusOK, "admin_setup", "Set your password", adminSetupData{Token: link.Token, Email: ed.Email, Purpose: link.Purpose,
		Expires: link.ExpiresAt, MinLen: editors.MinPasswordLen})
}

// SetPassword is POST /admin/setup/{token}: sets the password and spends the link. The token in
// the path is the only credential, so the form needs no other.
func (e *Editor) SetPassword(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	r.Body = http.MaxBytesReader(w, r.Body, adminFormLimit)
	if err := r.ParseForm(); err != nil {
		e.fail(w, http.StatusBadRequest, "The form could not be read.", "")
		return
	}
	token := r.PathValue("token")
	ed, link, err := e.accounts.LinkEditor(r.Context(), token)
	if errors.Is(err, editors.ErrLinkExpired) {
		e.linkFail(w)
		return
	}
	if err != nil {
		e.failErr(w, r, err, "/admin/login")
		return
	}
	d := adminSetupData{Token: token, Email: ed.Email, Purpose: link.Purpose, Expires: link.ExpiresAt, MinLen: editors.MinPasswordLen}
	password := r.PostForm.Get("password")
	if password != r.PostForm.Get("confirm") {
		d.Error = "The two passwords differ. Type the same one twice."
		e.render(w, http.StatusBadRequest, "admin_setup", "Set your password", d)
		return
	}
	if err := editors.CheckPassword(password); err != nil {
		d.Error = "Choose a password of at least " + strconv.Itoa(editors.MinPasswordLen) + " characters (and at most 256 bytes)."
		e.render(w, http.StatusBadRequest, "admin_setup", "Set your password", d)
		return
	}
	ed, err = e.accounts.UseLink(r.Context(), token, password)
	if errors.Is(err, editors.ErrLinkExpired) || errors.Is(err, editors.ErrNotFound) {
		e.linkFail(w)
		return
	}
	if err != nil {
		e.failErr(w, r, err, "/admin/login")
		return
	}
	if err := e.accounts.Audit(r.Context(), editors.AuditEntry{Editor: ed, IP: e.clientIP(r), Action: "account.password.set",
		Object: editorObject(ed.ID), Detail: "with a one-time " + link.Purpose + " link"}); err != nil {
		e.failErr(w, r, err, "/admin/login")
		return
	}
	e.render(w, http.StatusOK, "admin_setup", "Password set", adminSetupData{Email: ed.Email, Done: true})
}

func editorObject(id int64) string { return "editor " + strconv.FormatInt(id, 10) }

// sessionView is one session as the pages list it.
type sessionView struct {
	SID                 int64
	EndURL              string // where its End button posts
	Device, IP          string
	CreatedAt, LastSeen time.Time
	Current             bool
}

// sessionViews lists sessions for a page; endBase is the path their End buttons post under.
func sessionViews(list []editors.Session, current []byte, endBase string) []sessionView {
	out := make([]sessionView, 0, len(list))
	for _, s := range list {
		dev := s.Device
		if dev == "" {
			dev = "unknown browser"
		}
		out = append(out, sessionView{SID: s.SID, EndURL: endBase + strconv.FormatInt(s.SID, 10) + "/end", Device: dev, IP: s.IP, CreatedAt: s.CreatedAt, LastSeen: s.LastSeenAt,
			Current: string(s.Hash) == string(current)})
	}
	return out
}

type adminAccountData struct {
	adminCommon
	Editor       editors.Editor
	Sessions     []sessionView
	Error        string
	MinLen       int
	TOTPRequired bool // for this editor (an admin, with NEWSLETTER_ADMIN_TOTP=required)
}

// accountFlashes are the messages the account's actions leave for the page they redirect to.
var accountFlashes = map[string]string{
	"name":     "Name saved.",
	"password": "Password changed. Every other session of yours has ended.",
	"totp-on":  "Two-factor login is on. Every other session of yours has ended.",
	"totp-off": "Two-factor login is off. Every other session of yours has ended.",
	"ended":    "That session has ended.",
}

// Account is GET /admin/account: the editor's own name, password, TOTP and sessions.
func (e *Editor) Account(w http.ResponseWriter, r *http.Request) {
	e.accountPage(w, r, http.StatusOK, "")
}

func (e *Editor) accountPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	sess, _ := e.session(r)
	c := e.common(r, "account")
	c.Flash = accountFlashes[r.URL.Query().Get("done")]
	d := adminAccountData{adminCommon: c, Editor: sess.Editor, Error: msg, MinLen: editors.MinPasswordLen, TOTPRequired: e.totpRequiredFor(sess.Editor)}
	if !sess.Editor.Shared {
		list, err := e.accounts.Sessions(r.Context(), sess.Editor.ID)
		if err != nil {
			e.failErr(w, r, err, "/admin/")
			return
		}
		d.Sessions = sessionViews(list, sess.Hash, "/admin/account/sessions/")
	}
	e.render(w, status, "admin_account", "My account", d)
}

func (e *Editor) totpRequiredFor(ed editors.Editor) bool {
	return e.opts.AdminTOTPRequired && ed.Role == editors.Admin && !ed.Shared
}

// ownAccount is the session's editor; a shared-password session has no account to change, and
// gets 409.
func (e *Editor) ownAccount(w http.ResponseWriter, r *http.Request) (editors.Session, string, bool) {
	sess, cookie := e.session(r)
	if sess.Editor.Shared {
		e.fail(w, http.StatusConflict, "You are logged in with the shared password, which has no account. Make yourself one: newsletter editors add ADDRESS --role admin.", "/admin/account")
		return sess, cookie, false
	}
	return sess, cookie, true
}

// accountErr answers the store's refusals on the account pages: a wrong password or code is the
// editor's mistake (400), too many of them 429; anything else goes to the error table.
func (e *Editor) accountErr(w http.ResponseWriter, r *http.Request, err error, wrong string) {
	switch {
	case errors.Is(err, editors.ErrCredentials):
		e.accountPage(w, r, http.StatusBadRequest, wrong)
	case errors.Is(err, editors.ErrThrottled):
		w.Header().Set("Retry-After", strconv.Itoa(int(editors.LoginWindow/time.Second)))
		e.accountPage(w, r, http.StatusTooManyRequests, "Too many wrong passwords. Wait a few minutes, then try again.")
	case errors.Is(err, editors.ErrInvalid):
		e.accountPage(w, r, http.StatusBadRequest, "That was not accepted: "+strings.TrimPrefix(strings.TrimSuffix(err.Error(), ": invalid"), "editors: ")+".")
	default:
		e.failErr(w, r, err, "/admin/account")
	}
}

// renew gives this browser a new session for ed after a change that ended all of theirs.
func (e *Editor) renew(w http.ResponseWriter, r *http.Request, ed editors.Editor, cookie string) bool {
	next, err := e.accounts.Renew(r.Context(), ed, cookie, e.clientIP(r), e.device(r))
	if err != nil {
		e.failErr(w, r, err, "/admin/login")
		return false
	}
	http.SetCookie(w, sessionCookieFor(next, e.opts.SecureCookies))
	return true
}

// AccountName is POST /admin/account/name.
func (e *Editor) AccountName(w http.ResponseWriter, r *http.Request) {
	sess, _, ok := e.ownAccount(w, r)
	if !ok {
		return
	}
	name := strings.TrimSpace(r.PostForm.Get("name"))
	if editors.CheckName(name) != nil {
		e.accountPage(w, r, http.StatusBadRequest, "A name has at most 100 characters and no control characters.")
		return
	}
	if !e.record(w, r, "account.name", editorObject(sess.Editor.ID), "", "/admin/account") {
		return
	}
	if _, err := e.accounts.SetName(r.Context(), sess.Editor.ID, name); err != nil {
		e.accountErr(w, r, err, "")
		return
	}
	redirect(w, r, "/admin/account?done=name")
}

// AccountPassword is POST /admin/account/password: the current password, and the new one twice.
func (e *Editor) AccountPassword(w http.ResponseWriter, r *http.Request) {
	sess, cookie, ok := e.ownAccount(w, r)
	if !ok {
		return
	}
	next := r.PostForm.Get("new")
	if next != r.PostForm.Get("confirm") {
		e.accountPage(w, r, http.StatusBadRequest, "The two new passwords differ. Type the same one twice.")
		return
	}
	if editors.CheckPassword(next) != nil {
		e.accountPage(w, r, http.StatusBadRequest, "Choose a new password of at least "+strconv.Itoa(editors.MinPasswordLen)+" characters (and at most 256 bytes).")
		return
	}
	if !e.record(w, r, "account.password", editorObject(sess.Editor.ID), "every session ended", "/admin/account") {
		return
	}
	ed, err := e.accounts.ChangePassword(r.Context(), clientKey(r, e.opts.TrustProxy), sess.Editor.ID, r.PostForm.Get("current"), next)
	if err != nil {
		e.accountErr(w, r, err, "The current password is wrong.")
		return
	}
	if e.renew(w, r, ed, cookie) {
		redirect(w, r, "/admin/account?done=password")
	}
}

type adminTOTPData struct {
	adminCommon
	Editor   editors.Editor
	Setup    editors.TOTPSetup
	QR       template.URL // Setup.QRPNG, a data: URL we made, for the img's src
	Error    string
	Required bool // the editor is an admin who must switch it on first
}

// TOTPPage is GET /admin/account/totp: with TOTP off, a fresh secret (kept pending until a code
// of it is typed) as a QR code, the otpauth URI and the secret for typing in; with TOTP on, how to
// switch it off.
func (e *Editor) TOTPPage(w http.ResponseWriter, r *http.Request) {
	e.totpPage(w, r, http.StatusOK, "")
}

func (e *Editor) totpPage(w http.ResponseWriter, r *http.Request, status int, msg string) {
	sess, _, ok := e.ownAccount(w, r)
	if !ok {
		return
	}
	d := adminTOTPData{adminCommon: e.common(r, "account"), Editor: sess.Editor, Error: msg, Required: e.totpMissing(sess)}
	if !sess.Editor.TOTP {
		setup, err := e.accounts.PendingTOTP(r.Context(), sess.Editor.ID)
		if errors.Is(err, editors.ErrNotFound) {
			setup, err = e.accounts.BeginTOTP(r.Context(), sess.Editor.ID)
		}
		if err != nil {
			e.failErr(w, r, err, "/admin/account")
			return
		}
		d.Setup, d.QR = setup, template.URL(setup.QRPNG)
	}
	e.render(w, status, "admin_totp", "Two-factor login", d)
}

// TOTPOn is POST /admin/account/totp: a code of the pending secret switches TOTP on.
func (e *Editor) TOTPOn(w http.ResponseWriter, r *http.Request) {
	sess, cookie, ok := e.ownAccount(w, r)
	if !ok {
		return
	}
	if sess.Editor.TOTP {
		redirect(w, r, "/admin/account")
		return
	}
	ed, err := e.accounts.ConfirmTOTP(r.Context(), sess.Editor.ID, r.PostForm.Get("code"))
	switch {
	case errors.Is(err, editors.ErrCredentials):
		e.totpPage(w, r, http.StatusBadRequest, "That code does not match. Type the code your app shows now for this account.")
		return
	case errors.Is(err, editors.ErrInvalid):
		e.totpPage(w, r, http.StatusConflict, "The setup expired; scan the new code below.")
		return
	case err != nil:
		e.failErr(w, r, err, "/admin/account/totp")
		return
	}
	// Recorded once on: a wrong code changes nothing and is no action.
	if !e.recordAs(w, r, ed, "account.totp.on", editorObject(ed.ID), "every session ended") {
		return
	}
	if e.renew(w, r, ed, cookie) {
		redirect(w, r, "/admin/account?done=totp-on")
	}
}

// recordAs is record for an editor whose session the store has just ended (a change of their own
// credentials): the entry names the editor but no session.
func (e *Editor) recordAs(w http.ResponseWriter, r *http.Request, ed editors.Editor, action, object, detail string) bool {
	if err := e.accounts.Audit(r.Context(), editors.AuditEntry{Editor: ed, IP: e.clientIP(r), Action: action, Object: object, Detail: detail}); err != nil {
		e.failErr(w, r, err, "/admin/account")
		return false
	}
	return true
}

// TOTPOff is POST /admin/account/totp/off: the password switches TOTP off (not for an admin
// while NEWSLETTER_ADMIN_TOTP=required).
func (e *Editor) TOTPOff(w http.ResponseWriter, r *http.Request) {
	sess, cookie, ok := e.ownAccount(w, r)
	if !ok {
		return
	}
	if e.totpRequiredFor(sess.Editor) {
		e.accountPage(w, r, http.StatusConflict, "Admins need two-factor login here (NEWSLETTER_ADMIN_TOTP=required): it stays on.")
		return
	}
	if !sess.Editor.TOTP {
		redirect(w, r, "/admin/account")
		return
	}
	if !e.record(w, r, "account.totp.off", editorObject(sess.Editor.ID), "every session ended", "/admin/account") {
		return
	}
	ed, err := e.accounts.DisableTOTP(r.Context(), clientKey(r, e.opts.TrustProxy), sess.Editor.ID, r.PostForm.Get("password"))
	if err != nil {
		e.accountErr(w, r, err, "The password is wrong.")
		return
	}
	if e.renew(w, r, ed, cookie) {
		redirect(w, r, "/admin/account?done=totp-off")
	}
}

// sid is the path's {sid}, or 0.
func sid(r *http.Request) int64 {
	id, err := strconv.ParseInt(r.PathValue("sid"), 10, 64)
	if err != nil || id <= 0 {
		return 0
	}
	return id
}

// EndMySession is POST /admin/account/sessions/{sid}/end: ends one of the editor's sessions.
func (e *Editor) EndMySession(w http.ResponseWriter, r *http.Request) {
	sess, _, ok := e.ownAccount(w, r)
	if !ok {
		return
	}
	id := sid(r)
	if id == 0 {
		e.fail(w, http.StatusNotFound, "There is no such session.", "/admin/account")
		return
	}
	if !e.record(w, r, "session.end", editorObject(sess.Editor.ID), "session "+strconv.FormatInt(id, 10), "/admin/account") {
		return
	}
	if err := e.accounts.EndSessionByID(r.Context(), sess.Editor.ID, id); errors.Is(err, editors.ErrNotFound) {
		e.fail(w, http.StatusNotFound, "That session has ended already.", "/admin/account")
		return
	} else if err != nil {
		e.failErr(w, r, err, "/admin/account")
		return
	}
	if id == sess.SID {
		http.SetCookie(w, sessionCookieFor("", e.opts.SecureCookies))
		redirect(w, r, "/admin/login")
		return
	}
	redirect(w, r, "/admin/account?done=ended")
}

// LogoutEverywhere is POST /admin/account/logout-everywhere: every session of the editor ends,
// this one too.
func (e *Editor) LogoutEverywhere(w http.ResponseWriter, r *http.Request) {
	sess, _, ok := e.ownAccount(w, r)
	if !ok {
		return
	}
	if !e.record(w, r, "session.end_all", editorObject(sess.Editor.ID), "log out everywhere", "/admin/account") {
		return
	}
	if err := e.accounts.EndAllSessions(r.Context(), sess.Editor.ID); err != nil {
		e.failErr(w, r, err, "/admin/account")
		return
	}
	http.SetCookie(w, sessionCookieFor("", e.opts.SecureCookies))
	redirect(w, r, "/admin/login")
}
