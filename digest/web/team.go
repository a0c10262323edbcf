package web

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"newsletter/editors"
)

// The admins' pages about the editors: the list, an invitation (which shows its one-time link),
// and one editor's page (role, disable, enable, reset, delete, sessions). The link is shown to the
// admin, not emailed: it is a credential, and the admin passes it on by a channel they trust.

type adminEditorsData struct {
	adminCommon
	Editors []editors.Editor
	Roles   []editors.Role
	Error   string
	Email   string // the address typed, when an invitation failed
	Name    string
}

var teamFlashes = map[string]string{
	"role":     "Role changed. It applies from their next request.",
	"disabled": "Disabled: every session of theirs has ended, and neither their password nor a link works until they are enabled.",
	"enabled":  "Enabled: they can log in with their password again.",
	"deleted":  "Deleted. The audit log keeps what they did.",
	"ended":    "Their sessions have ended.",
}

// Editors is GET /admin/editors: every editor, and the invitation form.
func (e *Editor) Editors(w http.ResponseWriter, r *http.Request) {
	e.editorsPage(w, r, http.StatusOK, adminEditorsData{})
}

func (e *Editor) editorsPage(w http.ResponseWriter, r *http.Request, status int, d adminEditorsData) {
	list, err := e.accounts.List(r.Context())
	if err != nil {
		e.failErr(w, r, err, "/admin/")
		return
	}
	d.adminCommon = e.common(r, "editors")
	d.Flash = teamFlashes[r.URL.Query().Get("done")]
	d.Editors, d.Roles = list, editors.Roles
	e.render(w, status, "admin_editors", "Editors", d)
}

type adminLinkData struct {
	adminCommon
	Editor  editors.Editor
	Link    string
	Expires time.Time
	Purpose string
}

// linkURL is the link under NEWSLETTER_BASE_URL that sets the password.
func (e *Editor) linkURL(l editors.Link) string {
	return strings.TrimRight(e.opts.BaseURL, "/") + "/admin/setup/" + l.Token
}

// Invite is POST /admin/editors: adds an editor and shows the one-time link to set their password.
func (e *Editor) Invite(w http.ResponseWriter, r *http.Request) {
	email, name := strings.TrimSpace(r.PostForm.Get("email")), strings.TrimSpace(r.PostForm.Get("name"))
	role, err := editors.ParseRole(r.PostForm.Get("role"))
	d := adminEditorsData{Email: email, Name: name}
	norm, eerr := editors.NormalizeEmail(email)
	switch {
	case eerr != nil:
		d.Error = "That is not an email address."
	case err != nil:
		d.Error = "Choose a role: writer, publisher or admin."
	case editors.CheckName(name) != nil:
		d.Error = "A name has at most 100 characters and no control characters."
	}
	if d.Error != "" {
		e.editorsPage(w, r, http.StatusBadRequest, d)
		return
	}
	ed, link, err := e.accounts.Add(r.Context(), norm, name, role)
	if errors.Is(err, editors.ErrExists) {
		d.Error = "An editor with that address exists already. Reset them from their page for a new link."
		e.editorsPage(w, r, http.StatusConflict, d)
		return
	}
	if err != nil {
		e.failErr(w, r, err, "/admin/editors")
		return
	}
	// Recorded once added, as the id names it.
	if !e.record(w, r, "editor.add", editorObject(ed.ID), ed.Email+" as "+role.String()+"; a one-time link shown", "/admin/editors") {
		return
	}
	e.render(w, http.StatusOK, "admin_editor_link", "Invitation", adminLinkData{adminCommon: e.common(r, "editors"), Editor: ed,
		Link: e.linkURL(link), Expires: link.ExpiresAt, Purpose: link.Purpose})
}

// pathEditor is the editor of the path's {id}; on failure it has answered (404).
func (e *Editor) pathEditor(w http.ResponseWriter, r *http.Request) (editors.Editor, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err == nil && id > 0 {
		var ed editors.Editor
		if ed, err = e.accounts.Get(r.Context(), id); err == nil {
			return ed, true
		}
		if !errors.Is(err, editors.ErrNotFound) {
			e.failErr(w, r, err, "/admin/editors")
			return editors.Editor{}, false
		}
	}
	e.fail(w, http.StatusNotFound, "There is no such editor (any more).", "/admin/editors")
	return editors.Editor{}, false
}

type adminEditorData struct {
	adminCommon
	Editor   editors.Editor
	Roles    []editors.Role
	Sessions []sessionView
	Self     bool
	Error    string
}

// EditorPage is GET /admin/editors/{id}: one editor, their sessions, and what an admin can do.
func (e *Editor) EditorPage(w http.ResponseWriter, r *http.Request) {
	ed, ok := e.pathEditor(w, r)
	if ok {
		e.editorPage(w, r, http.StatusOK, ed, "")
	}
}

func (e *Editor) editorPage(w http.ResponseWriter, r *http.Request, status int, ed editors.Editor, msg string) {
	sess, _ := e.session(r)
	list, err := e.accounts.Sessions(r.Context(), ed.ID)
	if err != nil {
		e.failErr(w, r, err, "/admin/editors")
		return
	}
	c := e.common(r, "editors")
	c.Flash = teamFlashes[r.URL.Query().Get("done")]
	e.render(w, status, "admin_editor", "Editor "+ed.Email, adminEditorData{adminCommon: c, Editor: ed, Roles: editors.Roles,
		Sessions: sessionViews(list, sess.Hash, "/admin/editors/"+strconv.FormatInt(ed.ID, 10)+"/sessions/"), Self: !sess.Editor.Shared && sess.Editor.ID == ed.ID, Error: msg})
}

// editorActions are the POSTs of EditorAction; delete needs its box ticked.
var editorActions = []string{"role", "disable", "enable", "reset", "delete", "logout"}

// EditorAction is POST /admin/editors/{id}/{action}: role, disable, enable, reset (a new link;
// password and TOTP cleared), delete, logout (every session ends). Nothing leaves no enabled admin.
func (e *Editor) EditorAction(w http.ResponseWriter, r *http.Request) {
	action := r.PathValue("action")
	if !slices.Contains(editorActions, action) {
		e.fail(w, http.StatusNotFound, "There is no such action.", "/admin/editors")
		return
	}
	ed, ok := e.pathEditor(w, r)
	if !ok {
		return
	}
	ctx, back, object := r.Context(), "/admin/editors/"+strconv.FormatInt(ed.ID, 10), editorObject(ed.ID)
	var err error
	var done, detail string
	var role editors.Role
	switch action {
	case "role":
		if role, err = editors.ParseRole(r.PostForm.Get("role")); err != nil {
			e.editorPage(w, r, http.StatusBadRequest, ed, "Choose a role: writer, publisher or admin.")
			return
		}
		detail = ed.Role.String() + " to " + role.String()
	case "delete":
		if r.PostForm.Get("confirm") != "delete" {
			e.editorPage(w, r, http.StatusBadRequest, ed, "Tick the box to confirm the deletion, then press the button again.")
			return
		}
		detail = ed.Email + " (" + ed.Role.String() + ")"
	}
	if !e.record(w, r, "editor."+action, object, detail, back) {
		return
	}
	switch action {
	case "role":
		_, err = e.accounts.SetRole(ctx, ed.ID, role)
		done = "role"
	case "disable":
		_, err = e.accounts.Disable(ctx, ed.ID)
		done = "disabled"
	case "enable":
		_, err = e.accounts.Enable(ctx, ed.ID)
		done = "enabled"
	case "logout":
		err, done = e.accounts.EndAllSessions(ctx, ed.ID), "ended"
	case "delete":
		if _, err = e.accounts.Delete(ctx, ed.ID); err == nil {
			redirect(w, r, "/admin/editors?done=deleted")
			return
		}
	case "reset":
		var link editors.Link
		if ed, link, err = e.accounts.Reset(ctx, ed.ID); err == nil {
			e.render(w, http.StatusOK, "admin_editor_link", "Reset", adminLinkData{adminCommon: e.common(r, "editors"), Editor: ed,
				Link: e.linkURL(link), Expires: link.ExpiresAt, Purpose: link.Purpose})
			return
		}
	}
	if errors.Is(err, editors.ErrLastAdmin) {
		e.editorPage(w, r, http.StatusConflict, ed, "That would leave no enabled admin. Make another editor an admin first.")
		return
	}
	if err != nil {
		e.failErr(w, r, err, back)
		return
	}
	if sess, _ := e.session(r); !sess.Editor.Shared && sess.Editor.ID == ed.ID && (action == "disable" || action == "logout") {
		http.SetCookie(w, sessionCookieFor("", e.opts.SecureCookies))
		redirect(w, r, "/admin/login")
		return
	}
	redirect(w, r, back+"?done="+done)
}

// EndEditorSession is POST /admin/editors/{id}/sessions/{sid}/end: ends one session of an editor.
func (e *Editor) EndEditorSession(w http.ResponseWriter, r *http.Request) {
	ed, ok := e.pathEditor(w, r)
	if !ok {
		return
	}
	back, id := "/admin/editors/"+strconv.FormatInt(ed.ID, 10), sid(r)
	if id == 0 {
		e.fail(w, http.StatusNotFound, "There is no such session.", back)
		return
	}
	if !e.record(w, r, "editor.session.end", editorObject(ed.ID), "session "+strconv.FormatInt(id, 10), back) {
		return
	}
	if err := e.accounts.EndSessionByID(r.Context(), ed.ID, id); errors.Is(err, editors.ErrNotFound) {
		e.fail(w, http.StatusNotFound, "That session has ended already.", back)
		return
	} else if err != nil {
		e.failErr(w, r, err, back)
		return
	}
	redirect(w, r, back+"?done=ended")
}
