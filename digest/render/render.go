// Package render turns an issue into the subject, HTML and plain text of its email, for one
// reader or for nobody (archive, preview). The sender renders once with the slot marks in the
// reader's places and fills each reader's values into the encoded message.
package render

import (
	"bytes"
	"fmt"
	htmltemplate "html/template"
	"io/fs"
	"net/url"
	"strconv"
	"strings"
	texttemplate "text/template"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/vanng822/go-premailer/premailer"

	"newsletter/digest"
	"newsletter/internal/textclean"
	"newsletter/templates"
)

// TextWidth is where the plain-text part wraps (runes, not bytes).
const TextWidth = 72

// Recipient is the reader an email is rendered for. The zero value renders the copy without any
// reader's data (archive and preview): the footer then invites to subscribe instead.
type Recipient struct {
	Name           string
	Email          string // never printed: the rendered body must not depend on it
	UnsubscribeURL string
	ManageURL      string
}

// Rendered is one digest email, ready to be put in a message.
type Rendered struct {
	Subject   string
	Preheader string
	HTML      string
	Text      string
}

// Options are the publication's values every digest carries.
type Options struct {
	BaseURL       string // this service's public root: archive ("view in browser") and subscribe links
	SiteURL       string // the publication's site: "and N more this week"; default BaseURL
	Publication   string
	PostalAddress string
	From          string
}

// Renderer turns an issue into the HTML and text of its email. Its templates are parsed once; one
// Renderer serves any number of goroutines.
type Renderer struct {
	html, editionHTML *htmltemplate.Template
	text, editionText *texttemplate.Template
	cat               *templates.Catalog
	opts              Options
}

// NewRenderer parses the digest's and the edition's templates from fsys: email/digest.html and
// email/edition.html, each with email/frame.html (the shared header and footer), and the same for
// .txt.
func NewRenderer(fsys fs.FS, cat *templates.Catalog, opts Options) (*Renderer, error) {
	opts.BaseURL = strings.TrimRight(opts.BaseURL, "/")
	opts.SiteURL = strings.TrimRight(opts.SiteURL, "/")
	if opts.SiteURL == "" {
		opts.SiteURL = opts.BaseURL
	}
	r := &Renderer{cat: cat, opts: opts}
	htmlFuncs := templates.Funcs(cat)
	// html/template drops comments, so Outlook's conditional "ghost table" comes from here.
	htmlFuncs["msoOpen"] = func() htmltemplate.HTML {
		return `<!--[if mso]><table role="presentation" width="600" align="center" cellpadding="0" cellspacing="0" border="0"><tr><td><![endif]-->`
	}
	htmlFuncs["msoClose"] = func() htmltemplate.HTML { return `<!--[if mso]></td></tr></table><![endif]-->` }
	textFuncs := texttemplate.FuncMap{"t": cat.T, "n": cat.N, "wrap": wrapText, "upper": strings.ToUpper,
		"withRef": withRef, "rule": rule, "inc": func(i int) int { return i + 1 }}
	var err error
	for _, set := range []struct {
		name string
		html **htmltemplate.Template
		text **texttemplate.Template
	}{{"digest", &r.html, &r.text}, {"edition", &r.editionHTML, &r.editionText}} {
		if *set.html, err = parseHTML(fsys, set.name+".html", htmlFuncs); err != nil {
			return nil, fmt.Errorf("%s templates: %w", set.name, err)
		}
		if *set.text, err = parseText(fsys, set.name+".txt", textFuncs); err != nil {
			return nil, fmt.Errorf("%s templates: %w", set.name, err)
		}
	}
	return r, nil
}

// parseHTML parses email/frame.html, then email/name, as the template name.
func parseHTML(fsys fs.FS, name string, funcs htmltemplate.FuncMap) (*htmltemplate.Template, error) {
	t := htmltemplate.New(name).Funcs(funcs)
	frame, err := fs.ReadFile(fsys, "email/frame.html")
	if err != nil {
		return nil, err
	}
	if _, err := t.New("frame.html").Parse(string(frame)); err != nil {
		return nil, err
	}
	src, err := fs.ReadFile(fsys, "email/"+name)
	if err != nil {
		return nil, err
	}
	return t.Parse(string(src))
}

// parseText parses email/frame.txt, then email/name, as the template name.
func parseText(fsys fs.FS, name string, funcs texttemplate.FuncMap) (*texttemplate.Template, error) {
	t := texttemplate.New(name).Funcs(funcs)
	frame, err := fs.ReadFile(fsys, "email/frame.txt")
	if err != nil {
		return nil, err
	}
	if _, err := t.New("frame.txt").Parse(string(frame)); err != nil {
		return nil, err
	}
	src, err := fs.ReadFile(fsys, "email/"+name)
	if err != nil {
		return nil, err
	}
	return t.Parse(string(src))
}

// frameView is what the shared header and footer (email/frame.html and frame.txt) show. Everything
// is prepared here: links are checked, dates localised, text folded, so the templates only lay it
// out.
type frameView struct {
	Lang          string
	Publication   string
	Subject       string
	Preheader     string
	Kicker        string // the masthead's line before the date: "Weekly digest", a newsletter's name
	Date          string // the issue's date, localised
	Teaser        string // the top line beside "view in browser", the first text an inbox shows
	ViewURL       string // the archive copy ("view in browser")
	ViewRef       int
	Recipient     Recipient
	Archive       bool   // the copy without a reader: subscribe link instead of manage/unsubscribe
	Why           string // why the reader gets this email, or what the archive copy is
	SubscribeURL  string
	SubscribeRef  int
	ManageRef     int
	UnsubRef      int
	PostalAddress string
	Links         []string // the text part's numbered references, [1] first
}

// emailView is what both digest templates receive.
type emailView struct {
	frameView
	Note     []string
	Lead     *articleView
	Sections []sectionView
	More     string // "And N more stories this week", empty when none
	MoreURL  string
	MoreRef  int
}

type sectionView struct {
	Name     string
	Articles []articleView
}

type articleView struct {
	Title    string
	URL      string // empty when the feed's link is not http(s)
	Ref      int    // the text part's reference number, 0 without a link
	Summary  string
	Author   string
	Section  string
	Date     string
	ImageURL string
	ImageAlt string
}

// Render renders the issue for one reader, or for nobody with the zero Recipient. CSS is inlined
// here, once per call. The recipient's strings appear verbatim in the output and nothing else of
// the reader does, so a sender can render once with marker values and substitute per reader.
func (r *Renderer) Render(c digest.IssueContent, rcpt Recipient) (Rendered, error) {
	if c.Lead == nil {
		return Rendered{}, digest.ErrNoArticles
	}
	v := r.view(c, rcpt)
	var buf bytes.Buffer
	if err := r.html.Execute(&buf, v); err != nil {
		return Rendered{}, fmt.Errorf("render html: %w", err)
	}
	pm, err := premailer.NewPremailerFromBytes(buf.Bytes(), premailer.NewOptions(premailer.WithKeepBangImportant(true)))
	if err != nil {
		return Rendered{}, fmt.Errorf("render html: inline css: %w", err)
	}
	html, err := pm.Transform()
	if err != nil {
		return Rendered{}, fmt.Errorf("render html: inline css: %w", err)
	}
	buf.Reset()
	if err := r.text.Execute(&buf, v); err != nil {
		return Rendered{}, fmt.Errorf("render text: %w", err)
	}
	return Rendered{Subject: v.Subject, Preheader: v.Preheader, HTML: html, Text: tidyText(buf.String())}, nil
}

func (r *Renderer) view(c digest.IssueContent, rcpt Recipient) emailView {
	lang := c.Issue.Lang
	if lang == "" {
		lang = c.Lead.Lang
	}
	v := emailView{frameView: r.frame(lang, rcpt)}
	v.Subject = r.Subject(c)
	v.Preheader = r.preheader(c)
	v.Kicker = r.cat.T(lang, "digest.weekly")
	v.Date = FormatDate(lang, issueDate(c))
	if len(c.Sections) > 0 {
		v.Teaser = v.Preheader
	}
	v.Why = r.cat.T(lang, "digest.why", r.opts.Publication)
	if v.Archive {
		v.Why = r.cat.T(lang, "digest.why_archive", r.opts.Publication)
	}
	if c.Issue.ID != 0 {
		v.ViewURL = r.opts.BaseURL + "/archive/" + strconv.FormatInt(c.Issue.ID, 10)
	}
	for _, p := range strings.Split(strings.TrimSpace(c.Issue.Note), "\n\n") {
		if p = oneLine(p); p != "" {
			v.Note = append(v.Note, p)
		}
	}
	ref := func(u string) int {
		if u == "" {
			return 0
		}
		v.Links = append(v.Links, u)
		return len(v.Links)
	}
	lead := r.article(lang, *c.Lead)
	lead.Ref = ref(lead.URL)
	v.Lead = &lead
	for _, s := range c.Sections {
		sv := sectionView{Name: oneLine(s.Name)}
		if sv.Name == "" {
			sv.Name = r.cat.T(lang, "digest.more_stories")
		}
		for _, a := range s.Articles {
			av := r.article(lang, a)
			av.Ref = ref(av.URL)
			sv.Articles = append(sv.Articles, av)
		}
		v.Sections = append(v.Sections, sv)
	}
	if c.More > 0 {
		v.More = r.cat.N(lang, "digest.more_this_week", c.More)
		v.MoreURL = safeURL(c.MoreURL)
		if v.MoreURL == "" {
			v.MoreURL = r.opts.SiteURL
		}
		v.MoreRef = ref(v.MoreURL)
	}
	v.frameRefs()
	return v
}

// frame is the header's and footer's view for a reader (or for nobody) in lang, without the
// email's own subject, date, kicker and reason.
func (r *Renderer) frame(lang string, rcpt Recipient) frameView {
	return frameView{
		Lang:          lang,
		Publication:   r.opts.Publication,
		Recipient:     rcpt,
		Archive:       rcpt.UnsubscribeURL == "" && rcpt.ManageURL == "",
		SubscribeURL:  r.opts.BaseURL + "/",
		PostalAddress: oneLine(r.opts.PostalAddress),
	}
}

// frameRefs numbers the header's and footer's links after the body's: "view in browser", then
// subscribe (archive copy) or manage and unsubscribe.
func (v *frameView) frameRefs() {
	ref := func(u string) int {
		if u == "" {
			return 0
		}
		v.Links = append(v.Links, u)
		return len(v.Links)
	}
	v.ViewRef = ref(v.ViewURL)
	if v.Archive {
		v.SubscribeRef = ref(v.SubscribeURL)
	} else {
		// The recipient's links go in verbatim (not re-encoded), so marker values survive.
		v.ManageRef = ref(v.Recipient.ManageURL)
		v.UnsubRef = ref(v.Recipient.UnsubscribeURL)
	}
}

func (r *Renderer) article(lang string, a digest.Article) articleView {
	av := articleView{
		Title:   oneLine(a.Title),
		URL:     safeURL(a.Link),
		Summary: oneLine(a.Summary),
		Author:  oneLine(a.Author),
		Section: oneLine(a.Section),
	}
	if av.Title == "" {
		av.Title = r.cat.T(lang, "digest.untitled")
	}
	if !a.PublishedAt.IsZero() {
		av.Date = FormatDate(lang, a.PublishedAt)
	}
	if av.ImageURL = safeURL(a.ImageURL); av.ImageURL != "" {
		av.ImageAlt = oneLine(a.ImageAlt)
		if av.ImageAlt == "" {
			av.ImageAlt = av.Title
		}
	}
	return av
}

// Subject is the issue's subject line: the editor's when set, else the localised template.
func (r *Renderer) Subject(c digest.IssueContent) string {
	if s := oneLine(c.Issue.Subject); s != "" {
		return s
	}
	if c.Lead == nil {
		return r.opts.Publication
	}
	lang := c.Issue.Lang
	title := oneLine(c.Lead.Title)
	if others := c.Total - 1; others > 0 {
		return r.cat.T(lang, "digest.subject", title, r.cat.N(lang, "digest.subject_more", others))
	}
	return r.cat.T(lang, "digest.subject_one", title)
}

// preheader is the inbox preview line: the next headlines after the lead.
func (r *Renderer) preheader(c digest.IssueContent) string {
	var titles []string
	for _, s := range c.Sections {
		for _, a := range s.Articles {
			if t := oneLine(a.Title); t != "" && len(titles) < 3 {
				titles = append(titles, t)
			}
		}
	}
	if len(titles) == 0 {
		return truncateRunes(oneLine(c.Lead.Summary), 140)
	}
	return truncateRunes(r.cat.T(c.Issue.Lang, "digest.preheader", strings.Join(titles, " · ")), 140)
}

// issueDate is the day an issue is dated: the end of its window.
func issueDate(c digest.IssueContent) time.Time {
	if !c.Issue.WindowEnd.IsZero() {
		return c.Issue.WindowEnd
	}
	return c.Lead.PublishedAt
}

// slotMark begins every marker value a sender renders with and then replaces, in the encoded
// message, by each reader's own name and links (see Render). In content it would let a feed carry
// a reader's manage link or name wherever it likes, say into the query of an image on its own host
// that the reader's mail client loads. So content never keeps it: text has it broken up
// (breakSlotMarks), links holding it are dropped (safeURL).
const slotMark = "xnlslot"

// The slot marks: a sender renders the issue once with these in place of the reader's data (Marked),
// MIME-encodes it, and fills each reader's values into the encoded bytes. Render guarantees that
// recipient strings appear verbatim in its output, and content never holds slotMark, which begins
// every one of them.
const (
	MarkName   = "XNLSLOTNAMEX"
	MarkUnsub  = "http://slot.invalid/XNLSLOTUNSUBX"
	MarkManage = "http://slot.invalid/XNLSLOTMANAGEX"
	MarkRcpt   = "xnlslotrcpt@slot.invalid"
)

// Marked is the Recipient of the slot marks, with the name mark when named.
func Marked(named bool) Recipient {
	r := Recipient{Email: MarkRcpt, UnsubscribeURL: MarkUnsub, ManageURL: MarkManage}
	if named {
		r.Name = MarkName
	}
	return r
}

// hasSlotMark reports whether s holds slotMark in any ASCII case; it returns s lower-cased too.
func hasSlotMark(s string) (bool, []byte) {
	lower := []byte(s)
	for i, c := range lower {
		if 'A' <= c && c <= 'Z' {
			lower[i] = c + 'a' - 'A'
		}
	}
	return bytes.Contains(lower, []byte(slotMark)), lower
}

// breakSlotMarks puts a space inside every slotMark in s ("XNL SLOT").
func breakSlotMarks(s string) string {
	found, lower := hasSlotMark(s)
	if !found {
		return s
	}
	var b strings.Builder
	for {
		i := bytes.Index(lower, []byte(slotMark))
		if i < 0 {
			b.WriteString(s)
			return b.String()
		}
		b.WriteString(s[:i+3])
		b.WriteByte(' ')
		s, lower = s[i+3:], lower[i+3:]
	}
}

// safeURL returns u when it is an absolute http or https URL, else "" (the link is dropped).
func safeURL(u string) string {
	u = strings.TrimSpace(u)
	if u == "" || strings.ContainsFunc(u, func(r rune) bool { return unicode.IsControl(r) || unicode.IsSpace(r) }) {
		return ""
	}
	if found, _ := hasSlotMark(u); found {
		return ""
	}
	p, err := url.Parse(u)
	if err != nil || p.Host == "" || p.User != nil || !textclean.URLHost(p) {
		return ""
	}
	if s := strings.ToLower(p.Scheme); s != "http" && s != "https" {
		return ""
	}
	return u
}

// oneLine folds all whitespace (newlines included) to single spaces, drops control characters and
// breaks up marker values (breakSlotMarks).
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == utf8.RuneError || unicode.IsControl(r) && !unicode.IsSpace(r) {
			return -1
		}
		return r
	}, s)
	return breakSlotMarks(strings.Join(strings.Fields(s), " "))
}

func truncateRunes(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	rs := []rune(s)[:n-1]
	cut := string(rs)
	if i := strings.LastIndexByte(cut, ' '); i > n/2 {
		cut = cut[:i]
	}
	return strings.TrimRight(cut, " ,.;:—-") + "…"
}

var monthsGenitive = map[string][12]string{
	"ru": {"января", "февраля", "марта", "апреля", "мая", "июня", "июля", "августа", "сентября", "октября", "ноября", "декабря"},
}

// FormatDate writes a day in the language's long form: "25 November 2026", "25 ноября 2026".
// Days are UTC, the zone the digest schedule runs in.
func FormatDate(lang string, t time.Time) string {
	t = t.UTC()
	if months, ok := monthsGenitive[lang]; ok {
		return fmt.Sprintf("%d %s %d", t.Day(), months[t.Month()-1], t.Year())
	}
	return t.Format("2 January 2006")
}

// wrapText wraps s to TextWidth runes: the first line starts with first, the others with indent.
// Words longer than a line (URLs) stay whole.
func wrapText(first, indent, s string) string {
	var b strings.Builder
	b.WriteString(first)
	col := utf8.RuneCountInString(first)
	start := col
	for _, w := range strings.Fields(s) {
		n := utf8.RuneCountInString(w)
		if col > start && col+1+n > TextWidth {
			b.WriteString("\n")
			b.WriteString(indent)
			col = utf8.RuneCountInString(indent)
			start = col
		} else if col > start {
			b.WriteByte(' ')
			col++
		}
		b.WriteString(w)
		col += n
	}
	return b.String()
}

// withRef appends the reference mark " [n]" to s; n 0 means no link.
func withRef(s string, n int) string {
	if n == 0 {
		return s
	}
	return s + " [" + strconv.Itoa(n) + "]"
}

// rule underlines s: as many dashes as s has runes, at most a line.
func rule(s string) string { return strings.Repeat("-", min(TextWidth, utf8.RuneCountInString(s))) }

// tidyText trims trailing spaces, collapses runs of blank lines and ends the text with one newline.
func tidyText(s string) string {
	lines := strings.Split(strings.ReplaceAll(s, "\r\n", "\n"), "\n")
	out := make([]string, 0, len(lines))
	blank := true
	for _, l := range lines {
		l = strings.TrimRight(l, " \t")
		if l == "" {
			if blank {
				continue
			}
			blank = true
		} else {
			blank = false
		}
		out = append(out, l)
	}
	return strings.TrimRight(strings.Join(out, "\n"), "\n") + "\n"
}
