package web

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"newsletter/digest"
	"newsletter/digest/render"
	"newsletter/editors"
	"newsletter/internal/httpx"
	"newsletter/templates"
)

// EditorOptions are the plain settings of the editor pages, and the two functions of the sending
// engine they call (cmd wires them to the Sender).
type EditorOptions struct {
	Publication     string
	Languages       []string // the languages of the digest, in the order of the navigation
	MaxArticles     int
	BaseURL         string // NEWSLETTER_BASE_URL: the one-time links to set a password are under it
	RequireApproval bool   // scheduled sends wait for an editor's approval
	// DigestSchedule is NEWSLETTER_DIGEST_SCHEDULE, which a digest without its own follows;
	// Timezone (NEWSLETTER_TIMEZONE) is its zone without CRON_TZ and the zone of the times shown.
	DigestSchedule string
	Timezone       *time.Location
	SecureCookies  bool // editor cookies get Secure (the service runs behind https)
	TrustProxy     bool // the login throttle keys clients by the proxy's X-Forwarded-For entry
	// DeviceKey signs the cookie an editor's browser gets at login, which exempts it from its
	// account's and the global login limits (nil: no such cookie).
	DeviceKey []byte
	// AdminTOTPRequired: an admin without TOTP must switch it on before anything else
	// (NEWSLETTER_ADMIN_TOTP=required).
	AdminTOTPRequired bool
	// Device reduces a user agent to what the sessions list shows ("Firefox 128"); nil: nothing.
	Device func(userAgent string) string
	// TestSend sends issue issueID once to the address to ("send a test"); nil: not offered.
	TestSend func(ctx context.Context, issueID int64, to string) error
	// StartSend starts sending an approved issue now ("send now") and returns how many readers it
	// queued; nil: not offered.
	StartSend func(ctx context.Context, issueID int64) (int, error)
	// Readers is the reader list behind the readers' pages (readers.go); nil: not offered.
	Readers ReaderList
}

// Editor serves the editor pages; its methods are the endpoints, registered one by one in
// cmd/newsletter's route table. It keeps no state between requests (sessions and the login
// throttle are in PostgreSQL), so any number of serve processes can answer the same editor.
type Editor struct {
	store    *digest.Store
	accounts *editors.Store
	renderer *render.Renderer
	pages    *templates.Pages
	opts     EditorOptions
	log      *slog.Logger
}

// NewEditor returns the editor pages over store; accounts holds the editors, their sessions and
// the audit log; renderer draws the previews.
func NewEditor(store *digest.Store, accounts *editors.Store, renderer *render.Renderer, pages *templates.Pages, opts EditorOptions, log *slog.Logger) *Editor {
	if len(opts.Languages) == 0 {
		opts.Languages = []string{"en"}
	}
	if opts.MaxArticles <= 0 {
		opts.MaxArticles = digest.DefaultMaxArticles
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Editor{store: store, accounts: accounts, renderer: renderer, pages: pages, opts: opts, log: log}
}

const (
	// adminFormLimit bounds an editor form: a welcome's Markdown (as an edition's) and room for
	// the rest of the form.
	adminFormLimit = digest.MaxEditionMarkdown + 64<<10
	// allArticles asks Content for every article of an issue, including those past the maximum
	// ("and N more"), so the editor can order all of them.
	allArticles = 10000
)

type ctxKey int

const sessionKey ctxKey = iota

// adminCommon is what every editor page carries: the form token, the navigation, and what the
// editor's role lets them see (the server checks each route again: Require).
type adminCommon struct {
	CSRF   string
	Langs  []string
	Active string // the language whose digest is open, "" for the overview
	Flash  string
	Me     string // the editor's name or address
	// CanPublish: approve, send now, pause, resume, cancel. CanAdmin: readers, editors, audit log.
	CanPublish, CanAdmin bool
	// SharedBanner: logged in with NEWSLETTER_ADMIN_PASSWORD; every page says how to move on.
	SharedBanner bool
}

// flashes are the messages an action leaves for the page it redirects to (by key, so no request
// can put text of its own on the page).
var flashes = map[string]string{
	"text":      "Subject and note saved.",
	"approved":  "Approved: the scheduled send will take this issue.",
	"test":      "Test sent.",
	"pinned":    "Pinned as the lead story.",
	"unpinned":  "Unpinned.",
	"hidden":    "Hidden from the digest.",
	"unhidden":  "Back in the digest.",
	"moved":     "Order changed.",
	"added":     "Article added.",
	"picked":    "Added to the coming digest.",
	"saved":     "Article saved.",
	"paused":    "Sending paused.",
	"resumed":   "Sending resumed.",
	"cancelled": "Issue cancelled.",
	"started":   "Sending started.",
}

func (e *Editor) common(r *http.Request, active string) adminCommon {
	sess, cookie := e.session(r)
	role := sess.Editor.Role
	return adminCommon{CSRF: csrfToken(cookie), Langs: e.opts.Languages, Active: active, Flash: flashes[r.URL.Query().Get("done")],
		Me: sess.Editor.Display(), CanPublish: role.Allows(editors.Publisher), CanAdmin: role.Allows(editors.Admin),
		SharedBanner: sess.Editor.Shared}
}

// render writes an editor page with status; editor pages are never cached.
func (e *Editor) render(w http.ResponseWriter, status int, name, title string, data any) {
	w.Header().Set("Cache-Control", "no-store")
	page, err := e.pages.Page(name, templates.View{Lang: "en", Title: title, Publication: e.opts.Publication, Data: data})
	httpx.Page(w, e.log.With("page", name), status, page, err)
}

// loadByID loads the issue or article (what) that the path's {id} names. On failure it has
// answered: 404 for an id that is not one, else what the error table says of the store's error.
func loadByID[T any](e *Editor, w http.ResponseWriter, r *http.Request, what string, load func(context.Context, int64) (T, error)) (T, bool) {
	var zero T
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err != nil || id <= 0 {
		e.fail(w, http.StatusNotFound, "There is no such "+what+".", "/admin/")
		return zero, false
	}
	v, err := load(r.Context(), id)
	if err != nil {
		e.failErr(w, r, err, "/admin/")
		return zero, false
	}
	return v, true
}

func redirect(w http.ResponseWriter, r *http.Request, to string) {
	http.Redirect(w, r, to, http.StatusSeeOther)
}
