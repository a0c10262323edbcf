package web

import (
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"newsletter/internal/textclean"
)

// The readers' pages: the list in figures, one reader found by their exact address, and what an
// editor may do for that reader. There is deliberately no page listing readers. Every lookup and
// every action is written to the audit log before anything is shown or changed, so none goes
// unrecorded (an action that then fails leaves the record of an attempt).

// ReaderList is the reader list as the readers' pages use it. cmd adapts subscribers.Store to it
// (digest/web does not import subscribers). A reader nobody has is ErrNoReader.
type ReaderList interface {
	// Summary returns the list's figures with the changes of the last weeks (the current one included).
	Summary(ctx context.Context, weeks int) (ReaderSummary, error)
	// Find returns the uuid of the reader with exactly that address; ErrNotAnAddress for one that
	// is not an address.
	Find(ctx context.Context, email string) (uuid string, err error)
	Reader(ctx context.Context, uuid string) (Reader, error)
	Unsubscribe(ctx context.Context, uuid string) error
	Erase(ctx context.Context, uuid string) error
	// Resend queues a confirmation email for the reader's open request; ErrReaderChanged when the
	// consent rules allow none now.
	Resend(ctx context.Context, uuid string) error
	SetLang(ctx context.Context, uuid, lang string) error
}

// Errors of a ReaderList that the pages answer with a 4xx.
var (
	ErrNoReader      = errors.New("web: no such reader")
	ErrNotAnAddress  = errors.New("web: not an email address")
	ErrReaderChanged = errors.New("web: the reader changed meanwhile")
)

// ReaderSummary is the list in figures.
type ReaderSummary struct {
	Counts       []ReaderCount
	Weeks        []WeekFigures // oldest first, the current week last
	Suppressions []ReasonCount
}

// ReaderCount is how many readers have one status and language.
type ReaderCount struct {
	Status, Lang string
	N            int
}

// WeekFigures are one week's changes to the list; Start is its Monday, 00:00 UTC.
type WeekFigures struct {
	Start                                        time.Time
	Confirmed, Unsubscribed, Bounced, Complained int
}

// ReasonCount is how many suppressed addresses have one reason.
type ReasonCount struct {
	Reason string
	N      int
}

// Reader is what the editors see of one reader.
type Reader struct {
	UUID, Email, Name, Lang, Status string
	CreatedAt                       time.Time
	ConfirmedAt, UnsubscribedAt     *time.Time
	BouncedAt, ComplainedAt         *time.Time
	BounceReason                    string
	Consents                        []ReaderConsent
	Deliveries                      []ReaderDelivery
	Events                          []ReaderEvent
	Subscriptions                   []ReaderSubscription
	Audit                           []ReaderAudit
	// NoResend says why no confirmation email may go now, as one of the resend* codes; "" when
	// one may. ResendAfter is when one may, for resendThrottled.
	NoResend    string
	ResendAfter time.Time
}

// ReaderConsent is one request to subscribe: consent once confirmed, else open or lapsed.
type ReaderConsent struct {
	CreatedAt                          time.Time
	ConfirmedAt                        *time.Time
	Open                               bool
	Source, IP, UserAgent, TextVersion string
	AskedName, AskedLang               string // what the request asked for; "": as stored
	// For the import that added the reader (ImportID set): who ran it, the file's SHA-256 (hex)
	// and how many rows it had.
	ImportID               int64
	ImportedBy, FileSHA256 string
	ImportRows             int
}

// ReaderSubscription is one newsletter the reader has: active, or left (LeftAt). RestsOn says
// what started it: "form", "api" or "manage" (a consent of theirs), "import #N", or "".
// Editors see subscriptions but never turn one on: only the reader's own consent does that.
type ReaderSubscription struct {
	Slug, Name, State string
	Since             time.Time
	LeftAt            *time.Time
	RestsOn           string
}

// ReaderDelivery is the sending ledger's row for the reader and one issue.
type ReaderDelivery struct {
	IssueID           int64
	IssueLang, Status string
	Attempts          int
	SentAt            *time.Time
	LastError         string
}

// ReaderEvent is one bounce or complaint report about the reader.
type ReaderEvent struct {
	At                           time.Time
	Kind, Source, Reason, Effect string
	IssueID                      int64 // 0: none
}

// ReaderAudit is one audit log entry about the reader.
type ReaderAudit struct {
	At                    time.Time
	Actor, Action, Detail string
}

// The codes of Reader.NoResend.
const (
	resendConfirmed = "confirmed"
	resendBounced   = "bounced"
	resendNoRequest = "no-request"
	resendQueued    = "queued"
	resendThrottled = "throttled"
)

// readerWeeks is how many weeks the chart shows, the current one included: a quarter.
const readerWeeks = 12

// readerStatuses are the statuses in the order of the counts table.
var readerStatuses = []string{"pending", "confirmed", "unsubscribed", "bounced", "complained"}

// readerFlashes are the messages the readers' actions leave for the page they redirect to.
var readerFlashes = map[string]string{
	"unsubscribed": "Unsubscribed: no more digests go to this reader.",
	"erased":       "Erased: the reader's data is gone; the address is kept only as a keyed hash, so no import adds it back.",
	"resent":       "A new confirmation email is on its way.",
	"lang":         "Language changed.",
}

// readerActions are the POSTs of a reader's page; unsubscribe and erase need their confirm step.
var readerActions = []string{"unsubscribe", "erase", "resend", "lang"}

func (e *Editor) readersCommon(r *http.Request) adminCommon {
	c := e.common(r, "readers")
	c.Flash = readerFlashes[r.URL.Query().Get("done")]
	return c
}

// readers answers 404 when the pages are not wired (no reader list), and returns the list.
func (e *Editor) readers(w http.ResponseWriter) (ReaderList, bool) {
	if e.opts.Readers == nil {
		e.fail(w, http.StatusNotFound, "The readers' pages are not available here.", "/admin/")
		return nil, false
	}
	return e.opts.Readers, true
}

// audit records what the editor of the request does to a reader (target: their uuid, "" for a
// lookup that found nobody), before it is shown or done; on failure it has answered.
func (e *Editor) audit(w http.ResponseWriter, r *http.Request, action, target, detail, back string) bool {
	object := ""
	if target != "" {
		object = "reader " + target
	}
	return e.recordTarget(w, r, "reader."+action, object, target, detail, back)
}

type adminReadersData struct {
	adminCommon
	Counts      countsTable
	Chart       chartView
	Suppressed  int
	Suppression []ReasonCount
	Lookup      string // the address typed, when the lookup failed
	LookupError string
}

// countsTable is readers by status (rows) and language (columns).
type countsTable struct {
	Langs  []string
	Rows   []countsRow
	Totals []int
	Total  int
}

type countsRow struct {
	Status string
	ByLang []int
	Total  int
}

// Readers is GET /admin/readers: the list in figures, the weekly chart and the lookup form.
func (e *Editor) Readers(w http.ResponseWriter, r *http.Request) {
	e.readersPage(w, r, http.StatusOK, "", "")
}

func (e *Editor) readersPage(w http.ResponseWriter, r *http.Request, status int, lookup, lookupErr string) {
	rl, ok := e.readers(w)
	if !ok {
		return
	}
	sum, err := rl.Summary(r.Context(), readerWeeks)
	if err != nil {
		e.failErr(w, r, err, "/admin/")
		return
	}
	d := adminReadersData{adminCommon: e.readersCommon(r), Counts: e.counts(sum.Counts), Chart: weeklyChart(sum.Weeks),
		Suppression: sum.Suppressions, Lookup: lookup, LookupError: lookupErr}
	for _, s := range sum.Suppressions {
		d.Suppressed += s.N
	}
	e.render(w, status, "admin_readers", "Readers", d)
}

// counts lays the counts out: the configured languages first, then any other a reader has.
func (e *Editor) counts(cs []ReaderCount) countsTable {
	t := countsTable{Langs: slices.Clone(e.opts.Languages)}
	for _, c := range cs {
		if !slices.Contains(t.Langs, c.Lang) {
			t.Langs = append(t.Langs, c.Lang)
		}
	}
	slices.Sort(t.Langs[len(e.opts.Languages):])
	t.Totals = make([]int, len(t.Langs))
	for _, st := range readerStatuses {
		row := countsRow{Status: st, ByLang: make([]int, len(t.Langs))}
		for _, c := range cs {
			if c.Status == st {
				i := slices.Index(t.Langs, c.Lang)
				row.ByLang[i] += c.N
				row.Total += c.N
				t.Totals[i] += c.N
			}
		}
		t.Total += row.Total
		t.Rows = append(t.Rows, row)
	}
	return t
}

// ReaderLookup is POST /admin/readers/lookup: the reader with exactly the address of the form.
// The address comes in a POST body, so it stays out of URLs, histories and request logs; the
// reader's page is named by their uuid.
func (e *Editor) ReaderLookup(w http.ResponseWriter, r *http.Request) {
	rl, ok := e.readers(w)
	if !ok {
		return
	}
	typed := r.PostForm.Get("email")
	uuid, err := rl.Find(r.Context(), typed)
	shown := textclean.ClipBytes(strings.TrimSpace(typed), 320)
	switch {
	case errors.Is(err, ErrNotAnAddress):
		if e.audit(w, r, "lookup", "", "not an address", "/admin/readers") {
			e.readersPage(w, r, http.StatusBadRequest, shown, "That is not an email address. Type the reader's whole address, such as ann@example.org.")
		}
	case errors.Is(err, ErrNoReader):
		if e.audit(w, r, "lookup", "", "no reader", "/admin/readers") {
			e.readersPage(w, r, http.StatusNotFound, shown, "No reader has that address. Only an exact address finds a reader.")
		}
	case err != nil:
		e.failErr(w, r, err, "/admin/readers")
	default:
		if e.audit(w, r, "lookup", uuid, "found", "/admin/readers") {
			redirect(w, r, "/admin/readers/"+uuid)
		}
	}
}

// reader loads the reader of the path's {uuid}; on failure it has answered (404 for nobody).
func (e *Editor) reader(w http.ResponseWriter, r *http.Request) (ReaderList, Reader, bool) {
	rl, ok := e.readers(w)
	if !ok {
		return nil, Reader{}, false
	}
	rd, err := rl.Reader(r.Context(), r.PathValue("uuid"))
	if err != nil {
		e.failErr(w, r, err, "/admin/readers")
		return nil, Reader{}, false
	}
	return rl, rd, true
}

type adminReaderData struct {
	adminCommon
	R              Reader
	CanUnsubscribe bool
	ResendWhy      string // why no confirmation may go now; "" when one may
}

// ReaderPage is GET /admin/readers/{uuid}: the reader's status, language, consent, deliveries,
// reports and the editors' actions on them.
func (e *Editor) ReaderPage(w http.ResponseWriter, r *http.Request) {
	_, rd, ok := e.reader(w, r)
	if !ok || !e.audit(w, r, "view", rd.UUID, "", "/admin/readers") {
		return
	}
	d := adminReaderData{adminCommon: e.readersCommon(r), R: rd, CanUnsubscribe: onList(rd), ResendWhy: resendWhy(rd)}
	e.render(w, http.StatusOK, "admin_reader", "Reader", d)
}

// onList: the reader is pending or confirmed, so unsubscribing changes something.
func onList(rd Reader) bool { return rd.Status == "pending" || rd.Status == "confirmed" }

// resendWhy puts Reader.NoResend in the editors' words.
func resendWhy(rd Reader) string {
	switch rd.NoResend {
	case "":
		return ""
	case resendConfirmed:
		return "The reader has confirmed already: there is nothing to confirm."
	case resendBounced:
		return "The address refused mail for good (bounced): no confirmation goes to it."
	case resendNoRequest:
		return "There is no open request to confirm. Only the reader can ask to subscribe (on the subscribe page); an editor cannot give consent for them."
	case resendQueued:
		return "A confirmation email is waiting to be sent already."
	case resendThrottled:
		return "A confirmation email went less than 10 minutes ago; another may go after " + rd.ResendAfter.UTC().Format("15:04 UTC") + "."
	}
	return "The consent rules allow no confirmation email now."
}

type adminReaderConfirmData struct {
	adminCommon
	R      Reader
	Action string // unsubscribe or erase
	Error  string
}

// ReaderConfirm is GET /admin/readers/{uuid}/{action}: the confirm step of unsubscribe and erase.
func (e *Editor) ReaderConfirm(w http.ResponseWriter, r *http.Request) {
	action := r.PathValue("action")
	if action != "unsubscribe" && action != "erase" {
		e.fail(w, http.StatusNotFound, "There is no such page.", "/admin/readers")
		return
	}
	_, rd, ok := e.reader(w, r)
	if !ok {
		return
	}
	if action == "unsubscribe" && !onList(rd) {
		e.notOnList(w, rd)
		return
	}
	if e.audit(w, r, "view", rd.UUID, "before "+action, "/admin/readers/"+rd.UUID) {
		e.confirmPage(w, r, http.StatusOK, rd, action, "")
	}
}

// notOnList answers an unsubscribe of a reader who is off the list already.
func (e *Editor) notOnList(w http.ResponseWriter, rd Reader) {
	e.fail(w, http.StatusConflict, "This reader is "+rd.Status+", not on the list: there is nothing to unsubscribe.", "/admin/readers/"+rd.UUID)
}

func (e *Editor) confirmPage(w http.ResponseWriter, r *http.Request, status int, rd Reader, action, msg string) {
	title := "Unsubscribe a reader"
	if action == "erase" {
		title = "Erase a reader"
	}
	e.render(w, status, "admin_reader_confirm", title, adminReaderConfirmData{adminCommon: e.readersCommon(r), R: rd, Action: action, Error: msg})
}

// ReaderAction is POST /admin/readers/{uuid}/{action}: unsubscribe and erase (each with its
// confirm step ticked), resend the confirmation, and change the language.
func (e *Editor) ReaderAction(w http.ResponseWriter, r *http.Request) {
	action := r.PathValue("action")
	if !slices.Contains(readerActions, action) {
		e.fail(w, http.StatusNotFound, "There is no such action.", "/admin/readers")
		return
	}
	rl, rd, ok := e.reader(w, r)
	if !ok {
		return
	}
	ctx, back := r.Context(), "/admin/readers/"+rd.UUID
	// The confirm step names its action, so a tick meant for one action never confirms another.
	if (action == "unsubscribe" || action == "erase") && r.PostForm.Get("confirm") != action {
		e.confirmPage(w, r, http.StatusBadRequest, rd, action, "Tick the box to confirm, then press the button again.")
		return
	}
	var err error
	done := ""
	switch action {
	case "unsubscribe":
		if !onList(rd) {
			e.notOnList(w, rd)
			return
		}
		if !e.audit(w, r, "unsubscribe", rd.UUID, "was "+rd.Status, back) {
			return
		}
		err, done = rl.Unsubscribe(ctx, rd.UUID), back+"?done=unsubscribed"
	case "erase":
		if !e.audit(w, r, "erase", rd.UUID, "was "+rd.Status, back) {
			return
		}
		err, done = rl.Erase(ctx, rd.UUID), "/admin/readers?done=erased"
	case "resend":
		if why := resendWhy(rd); why != "" {
			e.fail(w, http.StatusConflict, why, back)
			return
		}
		if !e.audit(w, r, "resend", rd.UUID, "", back) {
			return
		}
		err, done = rl.Resend(ctx, rd.UUID), back+"?done=resent"
	case "lang":
		lang := r.PostForm.Get("lang")
		if !slices.Contains(e.opts.Languages, lang) {
			e.fail(w, http.StatusBadRequest, "Choose one of the languages: "+strings.Join(e.opts.Languages, ", ")+".", back)
			return
		}
		if !e.audit(w, r, "language", rd.UUID, rd.Lang+" to "+lang, back) {
			return
		}
		err, done = rl.SetLang(ctx, rd.UUID, lang), back+"?done=lang"
	}
	if err != nil {
		e.failErr(w, r, err, back)
		return
	}
	redirect(w, r, done)
}
