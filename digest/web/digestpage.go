package web

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"newsletter/digest"
	"newsletter/digest/render"
)

type articleRow struct {
	Article                     digest.Article
	Num                         int
	First, Last, Lead, Overflow bool
}

type adminDigestData struct {
	adminCommon
	Lang        string
	Issue       *digest.Issue
	Editable    bool
	Subject     string // as it goes out
	AutoSubject string // the generated one, when the editor sets none
	Preheader   string
	// RequireApproval: the scheduled send waits for approval (else it takes the draft as it is).
	RequireApproval bool
	// CanSendNow: the issue is approved and this service can start it ("send now").
	CanSendNow bool
	Readers    int // confirmed readers of the language: who "send now" reaches
	Text       string
	Articles   []articleRow
	More       int
	Hidden     []digest.Article
	Earlier    []digest.Article // left out by the window rule; an editor may pick one
	TestTo     string
}

func (e *Editor) lang(w http.ResponseWriter, r *http.Request) (string, bool) {
	lang := r.PathValue("lang")
	if !slices.Contains(e.opts.Languages, lang) {
		e.fail(w, http.StatusNotFound, "There is no digest in that language.", "/admin/")
		return "", false
	}
	return lang, true
}

// coming returns the language's unsent issue, assembling (refreshing) it while it is a draft, so
// the page always shows what would go out now; an approved, sending or paused issue stays as it
// is. nil when there are no new articles.
func (e *Editor) coming(ctx context.Context, lang string) (*digest.Issue, error) {
	is, err := e.store.Assemble(ctx, lang, e.opts.MaxArticles)
	if errors.Is(err, digest.ErrNoArticles) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &is, nil
}

// Digest is GET /admin/digest/{lang}: the coming issue as readers will get it, and its controls.
func (e *Editor) Digest(w http.ResponseWriter, r *http.Request) {
	lang, ok := e.lang(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	d := adminDigestData{adminCommon: e.common(r, lang), Lang: lang, TestTo: r.URL.Query().Get("to"), RequireApproval: e.opts.RequireApproval}
	// A test goes to the editor's own address unless they choose another (a writer cannot).
	if sess, _ := e.session(r); d.TestTo == "" || !d.CanPublish {
		d.TestTo = sess.Editor.Email
	}
	is, err := e.coming(ctx, lang)
	if err != nil {
		e.failErr(w, r, err, "/admin/")
		return
	}
	if is != nil {
		d.Issue = is
		d.Editable = is.Status == digest.StatusDraft
		if is.Status == digest.StatusApproved && e.opts.StartSend != nil {
			d.CanSendNow = true
			if d.Readers, err = e.store.ConfirmedReaders(ctx, lang); err != nil {
				e.failErr(w, r, err, "/admin/")
				return
			}
		}
		c, err := e.store.Content(ctx, is.ID, e.opts.MaxArticles)
		if err != nil {
			e.failErr(w, r, err, "/admin/")
			return
		}
		out, err := e.renderer.Render(c, render.Recipient{})
		if err != nil {
			e.failErr(w, r, err, "/admin/")
			return
		}
		d.Subject, d.Preheader, d.Text, d.More = out.Subject, out.Preheader, out.Text, c.More
		auto := c
		auto.Issue.Subject = ""
		d.AutoSubject = e.renderer.Subject(auto)
		rows, err := e.rows(ctx, c)
		if err != nil {
			e.failErr(w, r, err, "/admin/")
			return
		}
		for i, row := range rows {
			d.Articles = append(d.Articles, articleRow{Article: row.Article, Num: i + 1, First: i == 0, Last: i == len(rows)-1,
				Lead: row.block == "lead", Overflow: strings.HasPrefix(row.block, "more:")})
		}
		// A pinned lead always leads: nothing can move above it, and it cannot move down.
		if len(d.Articles) > 0 && d.Articles[0].Article.Pinned {
			d.Articles[0].Last = true
			if len(d.Articles) > 1 {
				d.Articles[1].First = true
			}
		}
	}
	if d.Hidden, err = e.store.HiddenArticles(ctx, lang); err != nil {
		e.failErr(w, r, err, "/admin/")
		return
	}
	if d.Earlier, err = e.store.EarlierArticles(ctx, lang); err != nil {
		e.failErr(w, r, err, "/admin/")
		return
	}
	e.render(w, http.StatusOK, "admin_digest", "Digest "+lang, d)
}

// issueRowItem is one article of the coming issue as the editor sees it, with the block it belongs
// to in the email: "lead", "section:NAME", or "more:ID" for each article past the maximum.
type issueRowItem struct {
	digest.Article
	block string
}

// rows lists the issue's articles in reading order: those shown (c, arranged with the real
// maximum) as the email has them, then the ones counted in "and N more", in their ranking.
func (e *Editor) rows(ctx context.Context, c digest.IssueContent) ([]issueRowItem, error) {
	var out []issueRowItem
	shown := map[int64]bool{}
	if c.Lead != nil {
		out = append(out, issueRowItem{*c.Lead, "lead"})
		shown[c.Lead.ID] = true
	}
	for _, s := range c.Sections {
		for _, art := range s.Articles {
			out = append(out, issueRowItem{art, "section:" + s.Name})
			shown[art.ID] = true
		}
	}
	if c.More == 0 {
		return out, nil
	}
	all, err := e.store.Content(ctx, c.Issue.ID, allArticles)
	if err != nil {
		return nil, err
	}
	for _, art := range all.Articles() {
		if !shown[art.ID] {
			out = append(out, issueRowItem{art, "more:" + strconv.FormatInt(art.ID, 10)})
		}
	}
	return out, nil
}

// move moves art one place up (by -1) or down (+1) in the coming issue and saves the new order
// as every article's position. The email groups articles by section, so a move across a
// section's edge moves the whole section past its neighbour; a move into or out of the lead
// slot swaps the lead (never past a pinned one, which always leads).
func (e *Editor) move(ctx context.Context, art digest.Article, by int) error {
	is, err := e.coming(ctx, art.Lang)
	if err != nil {
		return err
	}
	if is == nil || is.Status != digest.StatusDraft {
		return fmt.Errorf("only a draft can be reordered: %w", digest.ErrConflict)
	}
	c, err := e.store.Content(ctx, is.ID, e.opts.MaxArticles)
	if err != nil {
		return err
	}
	list, err := e.rows(ctx, c)
	if err != nil {
		return err
	}
	list = moveRow(list, art.ID, by)
	if list == nil {
		return fmt.Errorf("the article is not in the coming issue, or a pinned article leads: %w", digest.ErrConflict)
	}
	for k, x := range list {
		pos := k + 1
		if err := e.store.SetPosition(ctx, x.ID, &pos); err != nil {
			return err
		}
	}
	return nil
}

// moveRow returns list with article id moved by one place as move describes; list unchanged at
// either end, nil when the move is not possible (unknown article, or past a pinned lead).
func moveRow(list []issueRowItem, id int64, by int) []issueRowItem {
	i := slices.IndexFunc(list, func(x issueRowItem) bool { return x.ID == id })
	if i < 0 {
		return nil
	}
	j := i + by
	if j < 0 || j >= len(list) {
		return list
	}
	list = slices.Clone(list)
	bi, bj := list[i].block, list[j].block
	switch {
	case bi == "lead" || bj == "lead":
		if list[0].Pinned {
			return nil
		}
		list[i], list[j] = list[j], list[i]
	case bi == bj, strings.HasPrefix(bi, "more:"), strings.HasPrefix(bj, "more:"):
		list[i], list[j] = list[j], list[i]
	default:
		// Swap the two adjacent section blocks.
		lo, hi := min(i, j), max(i, j) // lo ends one block, hi starts the next
		start := lo
		for start > 0 && list[start-1].block == list[lo].block {
			start--
		}
		end := hi
		for end+1 < len(list) && list[end+1].block == list[hi].block {
			end++
		}
		swapped := append(slices.Clone(list[hi:end+1]), list[start:hi]...)
		copy(list[start:end+1], swapped)
	}
	return list
}
