package web

import (
	"context"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"newsletter/digest"
	"newsletter/internal/textclean"
)

type adminArticleData struct {
	adminCommon
	Lang    string
	Article digest.Article
	Error   string
}

// NewArticleForm is GET /admin/digest/{lang}/articles/new.
func (e *Editor) NewArticleForm(w http.ResponseWriter, r *http.Request) {
	lang, ok := e.lang(w, r)
	if !ok {
		return
	}
	e.render(w, http.StatusOK, "admin_article", "Add an article", adminArticleData{adminCommon: e.common(r, lang), Lang: lang})
}

// AddArticle is POST /admin/digest/{lang}/articles.
func (e *Editor) AddArticle(w http.ResponseWriter, r *http.Request) {
	lang, ok := e.lang(w, r)
	if !ok {
		return
	}
	art, msg := articleFromForm(r)
	art.Lang = lang
	if msg != "" {
		e.render(w, http.StatusBadRequest, "admin_article", "Add an article", adminArticleData{adminCommon: e.common(r, lang), Lang: lang, Article: art, Error: msg})
		return
	}
	art.Source = "editor"
	added, err := e.store.AddArticle(r.Context(), art)
	if err != nil {
		e.failErr(w, r, err, "/admin/digest/"+lang+"/articles/new")
		return
	}
	// Recorded once added, as the id names it; the title says what it was.
	if !e.record(w, r, "article.add", articleObject(added.ID), textclean.ClipBytes(art.Title, 200), "/admin/digest/"+lang) {
		return
	}
	redirect(w, r, "/admin/digest/"+lang+"?done=added")
}

// article is the article of the path's {id} (see loadByID).
func (e *Editor) article(w http.ResponseWriter, r *http.Request) (digest.Article, bool) {
	return loadByID(e, w, r, "article", e.store.ArticleByID)
}

// articleLocked reports why art can no longer change: it belongs to an issue that has left the
// draft stage (approved, sending, sent...), whose content must stay what was approved or sent.
func (e *Editor) articleLocked(ctx context.Context, art digest.Article) (string, error) {
	id, status, err := e.store.ArticleIssue(ctx, art.ID)
	if err != nil || id == 0 || status == digest.StatusDraft {
		return "", err
	}
	return fmt.Sprintf("This article is part of issue #%d, which is %s: it can no longer change.", id, status), nil
}

// EditArticleForm is GET /admin/articles/{id}/edit.
func (e *Editor) EditArticleForm(w http.ResponseWriter, r *http.Request) {
	art, ok := e.article(w, r)
	if !ok {
		return
	}
	e.render(w, http.StatusOK, "admin_article", "Edit article", adminArticleData{adminCommon: e.common(r, art.Lang), Lang: art.Lang, Article: art})
}

// EditArticle is POST /admin/articles/{id}.
func (e *Editor) EditArticle(w http.ResponseWriter, r *http.Request) {
	old, ok := e.article(w, r)
	if !ok {
		return
	}
	if msg, err := e.articleLocked(r.Context(), old); err != nil || msg != "" {
		if err != nil {
			e.failErr(w, r, err, "/admin/digest/"+old.Lang)
			return
		}
		e.fail(w, http.StatusConflict, msg, "/admin/digest/"+old.Lang)
		return
	}
	art, msg := articleFromForm(r)
	art.ID, art.Lang = old.ID, old.Lang
	if msg != "" {
		e.render(w, http.StatusBadRequest, "admin_article", "Edit article", adminArticleData{adminCommon: e.common(r, old.Lang), Lang: old.Lang, Article: art, Error: msg})
		return
	}
	if !e.record(w, r, "article.edit", articleObject(art.ID), textclean.ClipBytes(art.Title, 200), "/admin/digest/"+old.Lang) {
		return
	}
	if err := e.store.UpdateArticle(r.Context(), art); err != nil {
		e.failErr(w, r, err, "/admin/articles/"+strconv.FormatInt(old.ID, 10)+"/edit")
		return
	}
	redirect(w, r, "/admin/digest/"+old.Lang+"?done=saved")
}

// articleFromForm reads and checks the article form; msg is "" when it is fine.
func articleFromForm(r *http.Request) (art digest.Article, msg string) {
	f := func(k string) string { return strings.TrimSpace(r.PostForm.Get(k)) }
	art = digest.Article{Title: f("title"), Link: f("link"), Summary: strings.ReplaceAll(f("summary"), "\r\n", "\n"),
		Section: f("section"), ImageURL: f("image_url"), ImageAlt: f("image_alt")}
	switch {
	case art.Title == "":
		return art, "Give the article a title."
	case !webURL(art.Link):
		return art, "The link must be a full http:// or https:// address."
	case art.ImageURL != "" && !webURL(art.ImageURL):
		return art, "The image URL must be a full http:// or https:// address."
	}
	for _, c := range []struct {
		field, v  string
		max       int
		multiline bool
	}{{"Title", art.Title, 300, false}, {"Link", art.Link, 2000, false}, {"Summary", art.Summary, 2000, true},
		{"Section", art.Section, 100, false}, {"Image URL", art.ImageURL, 2000, false}, {"Image description", art.ImageAlt, 300, false}} {
		if m := checkText(c.field, c.v, c.max, c.multiline); m != "" {
			return art, m
		}
	}
	return art, ""
}

func webURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.User == nil
}

// articleActions are the POSTs of ArticleAction.
var articleActions = []string{"pin", "unpin", "hide", "unhide", "up", "down", "pick"}

func articleObject(id int64) string { return "article " + strconv.FormatInt(id, 10) }

// ArticleAction is POST /admin/articles/{id}/{action}: pin, unpin, hide, unhide, up, down, pick.
func (e *Editor) ArticleAction(w http.ResponseWriter, r *http.Request) {
	art, ok := e.article(w, r)
	if !ok {
		return
	}
	ctx := r.Context()
	back := "/admin/digest/" + art.Lang
	if msg, err := e.articleLocked(ctx, art); err != nil || msg != "" {
		if err != nil {
			e.failErr(w, r, err, back)
			return
		}
		e.fail(w, http.StatusConflict, msg, back)
		return
	}
	action := r.PathValue("action")
	if !slices.Contains(articleActions, action) {
		e.fail(w, http.StatusNotFound, "There is no such action.", back)
		return
	}
	if !e.record(w, r, "article."+action, articleObject(art.ID), "", back) {
		return
	}
	var err error
	var done string
	switch action {
	case "pin":
		err, done = e.store.SetPinned(ctx, art.ID, true), "pinned"
	case "unpin":
		err, done = e.store.SetPinned(ctx, art.ID, false), "unpinned"
	case "hide":
		err, done = e.store.SetHidden(ctx, art.ID, true), "hidden"
	case "unhide":
		err, done = e.store.SetHidden(ctx, art.ID, false), "unhidden"
	case "pick":
		err, done = e.store.PickArticle(ctx, art.ID), "picked"
	case "up":
		err, done = e.move(ctx, art, -1), "moved"
	case "down":
		err, done = e.move(ctx, art, +1), "moved"
	default:
		e.fail(w, http.StatusNotFound, "There is no such action.", back)
		return
	}
	if err != nil {
		e.failErr(w, r, err, back)
		return
	}
	redirect(w, r, back+"?done="+done)
}
