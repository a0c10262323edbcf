package web

import (
	"errors"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"newsletter/digest"
	"newsletter/digest/render"
	"newsletter/newsletters"
)

// The newsletters' pages (/admin/newsletters): the list, a new editions newsletter, one
// newsletter's names, descriptions, form flags and welcome texts, and a digest's schedule.
// Writers see them; publishers and admins change them (the route table's roles). Newsletters are
// never deleted: their issues, archive and readers' consents name them.

// runsShown is how many past runs the schedule page lists.
const runsShown = 20

var newsletterFlashes = map[string]string{
	"created":  "Newsletter created.",
	"saved":    "Saved.",
	"welcome":  "Welcome saved.",
	"schedule": "Schedule saved. Every serve process takes it within a minute.",
	"skip":     "The next run will be skipped: it is recorded, nothing is sent, and its articles wait for the run after it.",
	"unskip":   "The skip is undone: the next run goes out as scheduled.",
}

// newsletterRow is one row of the list.
type newsletterRow struct {
	N       newsletters.Newsletter
	Name    string
	Readers int
}

type adminNewslettersData struct {
	adminCommon
	Rows  []newsletterRow
	Langs []string // the configured languages, for the form
	Error string
	Form  newsletterForm
}

// newsletterForm is what the create and edit forms hold, re-shown after an error.
type newsletterForm struct {
	Slug                string
	Langs               map[string]bool
	Names, Descriptions map[string]string
	OnForm, DefaultOn   bool
}

func (e *Editor) tz() *time.Location {
	if e.opts.Timezone == nil {
		return time.UTC
	}
	return e.opts.Timezone
}

// Newsletters is GET /admin/newsletters.
func (e *Editor) Newsletters(w http.ResponseWriter, r *http.Request) {
	e.newslettersPage(w, r, http.StatusOK, adminNewslettersData{Form: newsletterForm{OnForm: true, DefaultOn: false}})
}

func (e *Editor) newslettersPage(w http.ResponseWriter, r *http.Request, status int, d adminNewslettersData) {
	ctx := r.Context()
	list, err := newsletters.List(ctx, e.store.DB())
	if err != nil {
		e.failErr(w, r, err, "/admin/")
		return
	}
	readers, err := newsletters.ActiveReaders(ctx, e.store.DB())
	if err != nil {
		e.failErr(w, r, err, "/admin/")
		return
	}
	for _, n := range list {
		d.Rows = append(d.Rows, newsletterRow{N: n, Name: n.Name("en"), Readers: readers[n.ID]})
	}
	d.adminCommon = e.common(r, "newsletters")
	d.Flash = newsletterFlashes[r.URL.Query().Get("done")]
	d.Langs = e.opts.Languages
	e.render(w, status, "admin_newsletters", "Newsletters", d)
}

// readFields reads the names, descriptions and flags of the create and edit forms, one field per
// configured language (name_en, description_en, ...).
func (e *Editor) readFields(r *http.Request) (newsletters.Fields, newsletterForm) {
	f := newsletters.Fields{Names: newsletters.Texts{}, Descriptions: newsletters.Texts{},
		OnForm: r.PostForm.Get("on_form") != "", DefaultOn: r.PostForm.Get("default_on") != ""}
	form := newsletterForm{Names: map[string]string{}, Descriptions: map[string]string{}, Langs: map[string]bool{},
		OnForm: f.OnForm, DefaultOn: f.DefaultOn, Slug: strings.TrimSpace(r.PostForm.Get("slug"))}
	for _, l := range e.opts.Languages {
		f.Names[l], f.Descriptions[l] = r.PostForm.Get("name_"+l), r.PostForm.Get("description_"+l)
		form.Names[l], form.Descriptions[l] = f.Names[l], f.Descriptions[l]
	}
	for _, l := range r.PostForm["langs"] {
		form.Langs[l] = true
	}
	return f, form
}

// newsletterError is the message of a store error the editor can fix, "" for any other.
func newsletterError(err error) string {
	switch {
	case errors.Is(err, newsletters.ErrSlugTaken):
		return "Another newsletter has that slug already: choose another."
	case errors.Is(err, newsletters.ErrInvalid):
		s := strings.TrimSuffix(err.Error(), ": "+newsletters.ErrInvalid.Error())
		return strings.ToUpper(s[:1]) + s[1:] + "."
	}
	return ""
}

// CreateNewsletter is POST /admin/newsletters: a new editions newsletter.
func (e *Editor) CreateNewsletter(w http.ResponseWriter, r *http.Request) {
	f, form := e.readFields(r)
	var langs []string
	for _, l := range r.PostForm["langs"] {
		if !slices.Contains(langs, l) {
			langs = append(langs, l)
		}
	}
	n, err := newsletters.CreateEditions(r.Context(), e.store.DB(), form.Slug, langs, e.opts.Languages, f)
	if msg := newsletterError(err); msg != "" {
		status := http.StatusBadRequest
		if errors.Is(err, newsletters.ErrSlugTaken) {
			status = http.StatusConflict
		}
		e.newslettersPage(w, r, status, adminNewslettersData{Error: msg, Form: form})
		return
	}
	if err != nil {
		e.failErr(w, r, err, "/admin/newsletters")
		return
	}
	if !e.record(w, r, "newsletter.create", newsletterObject(n.ID), "editions "+strconv.Quote(n.Slug)+" in "+strings.Join(n.Langs, ","), "/admin/newsletters") {
		return
	}
	redirect(w, r, "/admin/newsletters/"+strconv.FormatInt(n.ID, 10)+"?done=created")
}

func newsletterObject(id int64) string { return "newsletter " + strconv.FormatInt(id, 10) }

// pathNewsletter is the newsletter of the path's {id}; on failure it has answered (404).
func (e *Editor) pathNewsletter(w http.ResponseWriter, r *http.Request) (newsletters.Newsletter, bool) {
	id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
	if err == nil && id > 0 {
		n, err := newsletters.Get(r.Context(), e.store.DB(), id)
		if err == nil {
			return n, true
		}
		if !errors.Is(err, newsletters.ErrNotFound) {
			e.failErr(w, r, err, "/admin/newsletters")
			return newsletters.Newsletter{}, false
		}
	}
	e.fail(w, http.StatusNotFound, "There is no such newsletter.", "/admin/newsletters")
	return newsletters.Newsletter{}, false
}

// welcomeView is one language's welcome on the newsletter page.
type welcomeView struct {
	Lang             string
	Subject, Body    string
	Saved            bool // a welcome is stored in this language (the preview shows it)
	Error            string
	MaxSubject, MaxK int
}

type adminNewsletterData struct {
	adminCommon
	N        newsletters.Newsletter
	Name     string
	Readers  int
	Langs    []string
	Form     newsletterForm
	Error    string
	Welcomes []welcomeView
}

// NewsletterPage is GET /admin/newsletters/{id}.
func (e *Editor) NewsletterPage(w http.ResponseWriter, r *http.Request) {
	if n, ok := e.pathNewsletter(w, r); ok {
		e.newsletterPage(w, r, http.StatusOK, n, nil, "", nil)
	}
}

// newsletterPage shows n; form (nil: n's own values) and msg re-show a refused edit, welcome (with
// its Error) a refused welcome.
func (e *Editor) newsletterPage(w http.ResponseWriter, r *http.Request, status int, n newsletters.Newsletter, form *newsletterForm, msg string, welcome *welcomeView) {
	readers, err := newsletters.ActiveReaders(r.Context(), e.store.DB())
	if err != nil {
		e.failErr(w, r, err, "/admin/newsletters")
		return
	}
	d := adminNewsletterData{adminCommon: e.common(r, "newsletters"), N: n, Name: n.Name("en"), Readers: readers[n.ID],
		Langs: e.opts.Languages, Error: msg}
	d.Flash = newsletterFlashes[r.URL.Query().Get("done")]
	if form != nil {
		d.Form = *form
	} else {
		d.Form = newsletterForm{Names: n.Names, Descriptions: n.Descriptions, OnForm: n.OnForm, DefaultOn: n.DefaultOn}
	}
	for _, l := range n.Langs {
		wv := welcomeView{Lang: l, Subject: n.Welcome[l].Subject, Body: n.Welcome[l].Markdown, MaxSubject: digest.MaxEditionSubject, MaxK: digest.MaxEditionMarkdown / 1024}
		_, wv.Saved = n.Welcome[l]
		if welcome != nil && welcome.Lang == l {
			wv.Subject, wv.Body, wv.Error = welcome.Subject, welcome.Body, welcome.Error
		}
		d.Welcomes = append(d.Welcomes, wv)
	}
	e.render(w, status, "admin_newsletter", n.Name("en"), d)
}

// EditNewsletter is POST /admin/newsletters/{id}: names, descriptions, on the form, ticked.
func (e *Editor) EditNewsletter(w http.ResponseWriter, r *http.Request) {
	n, ok := e.pathNewsletter(w, r)
	if !ok {
		return
	}
	f, form := e.readFields(r)
	err := newsletters.UpdateFields(r.Context(), e.store.DB(), n.ID, e.opts.Languages, f)
	if msg := newsletterError(err); msg != "" {
		e.newsletterPage(w, r, http.StatusBadRequest, n, &form, msg, nil)
		return
	}
	if err != nil {
		e.failErr(w, r, err, "/admin/newsletters")
		return
	}
	detail := "names and descriptions; on the form " + strconv.FormatBool(f.OnForm) + ", ticked " + strconv.FormatBool(f.DefaultOn)
	if !e.record(w, r, "newsletter.edit", newsletterObject(n.ID), detail, "/admin/newsletters") {
		return
	}
	redirect(w, r, "/admin/newsletters/"+strconv.FormatInt(n.ID, 10)+"?done=saved")
}

// welcomeEdition is a welcome as the edition it is rendered as.
func (e *Editor) welcomeEdition(n newsletters.Newsletter, lang string, wel newsletters.Welcome) digest.Edition {
	return digest.Edition{Lang: lang, Newsletter: n.Name(lang), Subject: wel.Subject, Markdown: wel.Markdown, Date: e.store.Now()}
}

// checkWelcome is what is wrong with a welcome ("" when nothing): both empty is none; else a
// subject of one line within the limit, Markdown within the limit, and an edition that renders.
func (e *Editor) checkWelcome(n newsletters.Newsletter, lang string, wel newsletters.Welcome) string {
	if wel.Subject == "" && wel.Markdown == "" {
		return ""
	}
	switch {
	case strings.ContainsAny(wel.Subject, "\r\n"):
		return "The subject is one line: no line breaks."
	case utf8.RuneCountInString(wel.Subject) > digest.MaxEditionSubject:
		return "The subject has more than " + strconv.Itoa(digest.MaxEditionSubject) + " characters."
	case wel.Subject == "":
		return "Give the welcome a subject (or empty both fields for no welcome in this language)."
	case len(wel.Markdown) > digest.MaxEditionMarkdown:
		return "The text is longer than " + strconv.Itoa(digest.MaxEditionMarkdown/1024) + " KB."
	case strings.TrimSpace(wel.Markdown) == "":
		return "Write the welcome's text (or empty both fields for no welcome in this language)."
	}
	if err := newsletters.CheckLine("subject", wel.Subject, digest.MaxEditionSubject); err != nil {
		return newsletterError(err)
	}
	if !utf8.ValidString(wel.Markdown) {
		return "The text is not valid UTF-8."
	}
	if _, err := e.renderer.RenderEdition(e.welcomeEdition(n, lang, wel), render.Recipient{}); err != nil {
		if errors.Is(err, digest.ErrInvalid) {
			return "The welcome cannot be rendered: " + conflictText(err) + "."
		}
		return "The welcome cannot be rendered."
	}
	return ""
}

// pathWelcomeLang is the newsletter and the path's {lang}, one of its languages; on failure it
// has answered (404).
func (e *Editor) pathWelcomeLang(w http.ResponseWriter, r *http.Request) (newsletters.Newsletter, string, bool) {
	n, ok := e.pathNewsletter(w, r)
	if !ok {
		return n, "", false
	}
	lang := r.PathValue("lang")
	if !slices.Contains(n.Langs, lang) {
		e.fail(w, http.StatusNotFound, "This newsletter is not written in that language.", "/admin/newsletters/"+strconv.FormatInt(n.ID, 10))
		return n, "", false
	}
	return n, lang, true
}

// SaveWelcome is POST /admin/newsletters/{id}/welcome/{lang}.
func (e *Editor) SaveWelcome(w http.ResponseWriter, r *http.Request) {
	n, lang, ok := e.pathWelcomeLang(w, r)
	if !ok {
		return
	}
	// Browsers send a textarea's line breaks as CRLF: kept as LF.
	wel := newsletters.Welcome{Subject: strings.TrimSpace(r.PostForm.Get("subject")),
		Markdown: strings.ReplaceAll(strings.TrimRight(r.PostForm.Get("markdown"), " \r\n\t"), "\r\n", "\n")}
	if msg := e.checkWelcome(n, lang, wel); msg != "" {
		e.newsletterPage(w, r, http.StatusBadRequest, n, nil, "", &welcomeView{Lang: lang, Subject: wel.Subject, Body: wel.Markdown, Error: msg})
		return
	}
	if err := newsletters.SetWelcome(r.Context(), e.store.DB(), n.ID, lang, wel); err != nil {
		e.failErr(w, r, err, "/admin/newsletters")
		return
	}
	detail := lang + ": none"
	if wel.Subject != "" {
		detail = lang + ": subject " + strconv.Quote(wel.Subject) + ", " + strconv.Itoa(len(wel.Markdown)) + " bytes of Markdown"
	}
	if !e.record(w, r, "newsletter.welcome", newsletterObject(n.ID), detail, "/admin/newsletters") {
		return
	}
	redirect(w, r, "/admin/newsletters/"+strconv.FormatInt(n.ID, 10)+"?done=welcome#welcome-"+lang)
}

// WelcomePreview is GET /admin/newsletters/{id}/welcome/{lang}/preview.html: the saved welcome
// rendered as an edition (render.RenderEdition) for a reader, for the page's frame (the issue
// preview's policy).
func (e *Editor) WelcomePreview(w http.ResponseWriter, r *http.Request) {
	n, lang, ok := e.pathWelcomeLang(w, r)
	if !ok {
		return
	}
	wel, ok := n.Welcome[lang]
	if !ok {
		e.fail(w, http.StatusNotFound, "There is no welcome in that language.", "")
		return
	}
	// As a reader gets it: with the footer's manage and unsubscribe links, which here lead nowhere
	// real (a reader's links are signed for them when it is sent).
	base := strings.TrimRight(e.opts.BaseURL, "/")
	out, err := e.renderer.RenderEdition(e.welcomeEdition(n, lang, wel), render.Recipient{
		UnsubscribeURL: base + "/unsubscribe/preview", ManageURL: base + "/manage/preview"})
	if err != nil {
		e.failErr(w, r, err, "")
		return
	}
	writePreview(w, out.HTML)
}
