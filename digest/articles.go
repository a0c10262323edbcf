package digest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jmoiron/sqlx"

	"newsletter/internal/textclean"
)

// articleColumns lists every column of an Article, for SELECT and RETURNING.
const articleColumns = `id, lang, guid, source, feed_url, title, link, summary, author, section,
	image_url, image_alt, published_at, first_seen_at, updated_at, pinned, hidden, position,
	baseline, undated, picked`

// editorSummaryMaxRunes bounds an editor's summary; it is shown whole, not cut like a feed's.
const editorSummaryMaxRunes = 2000

// cleanEditorArticle validates and normalises the fields an editor sets: plain-text title, summary,
// section and alt text; http(s) links and images only.
func cleanEditorArticle(a Article) (Article, error) {
	a.Lang = strings.TrimSpace(a.Lang)
	a.Title = textclean.PlainTitle(a.Title, textclean.TitleMaxRunes)
	a.Summary = strings.Join(textclean.PlainLines(a.Summary), " ")
	a.Section = textclean.PlainTitle(a.Section, 100)
	a.Author = textclean.PlainTitle(a.Author, 200)
	a.ImageAlt = textclean.PlainTitle(a.ImageAlt, 300)
	switch {
	case a.Title == "":
		return a, fmt.Errorf("%w: title is required", ErrInvalid)
	case utf8.RuneCountInString(a.Summary) > editorSummaryMaxRunes:
		return a, fmt.Errorf("%w: summary longer than %d characters", ErrInvalid, editorSummaryMaxRunes)
	}
	var err error
	if a.Link, err = editorURL(a.Link, "link"); err != nil {
		return a, err
	}
	if a.ImageURL, err = editorURL(a.ImageURL, "image"); err != nil {
		return a, err
	}
	if a.ImageURL == "" {
		a.ImageAlt = ""
	} else if a.ImageAlt == "" {
		a.ImageAlt = a.Title
	}
	return a, nil
}

// editorURL accepts "" or an absolute http(s) URL.
func editorURL(raw, field string) (string, error) {
	raw = strings.TrimSpace(raw)
	if raw == "" {
		return "", nil
	}
	if u, err := url.Parse(raw); err != nil || !u.IsAbs() {
		return "", fmt.Errorf("%w: %s must be an http or https address", ErrInvalid, field)
	}
	link := textclean.CanonicalLink(nil, raw)
	if link == "" {
		return "", fmt.Errorf("%w: %s must be an http or https address", ErrInvalid, field)
	}
	return link, nil
}

// AddArticle stores an editor's own article (source "editor") and returns it as stored. A zero
// PublishedAt means now; Pinned unpins the language's other unsent articles. It is picked: it
// joins the coming issue whatever its date.
func (s *Store) AddArticle(ctx context.Context, a Article) (Article, error) {
	a, err := cleanEditorArticle(a)
	if err != nil {
		return Article{}, err
	}
	if a.Lang == "" {
		return Article{}, fmt.Errorf("%w: language is required", ErrInvalid)
	}
	if a.Position != nil && *a.Position < 0 {
		return Article{}, fmt.Errorf("%w: position must not be negative", ErrInvalid)
	}
	b := make([]byte, 12)
	rand.Read(b)
	now := s.now()
	if a.PublishedAt.IsZero() {
		a.PublishedAt = now
	}
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return Article{}, fmt.Errorf("add article: %w", err)
	}
	defer tx.Rollback()
	var out Article
	err = tx.GetContext(ctx, &out, `
		INSERT INTO articles (lang, guid, source, title, link, summary, author, section, image_url,
			image_alt, published_at, first_seen_at, updated_at, hidden, position, picked)
		VALUES ($1, $2, 'editor', $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13, true)
		RETURNING `+articleColumns,
		a.Lang, "editor:"+hex.EncodeToString(b), a.Title, a.Link, a.Summary, a.Author, a.Section,
		a.ImageURL, a.ImageAlt, a.PublishedAt.UTC(), now, a.Hidden, a.Position)
	if err != nil {
		return Article{}, fmt.Errorf("add article: %w", err)
	}
	if a.Pinned && !a.Hidden {
		if err := setPinnedTx(ctx, tx, out.ID, out.Lang, true); err != nil {
			return Article{}, err
		}
		out.Pinned = true
	}
	if err := tx.Commit(); err != nil {
		return Article{}, fmt.Errorf("add article: %w", err)
	}
	return out, nil
}

// UpdateArticle saves an editor's changes to title, summary, link, section and image. The article
// becomes the editor's (source "editor"), so a later change in its feed no longer overwrites it.
func (s *Store) UpdateArticle(ctx context.Context, a Article) error {
	a, err := cleanEditorArticle(a)
	if err != nil {
		return err
	}
	res, err := s.db.ExecContext(ctx, `
		UPDATE articles SET title = $2, summary = $3, link = $4, section = $5, image_url = $6,
			image_alt = $7, source = 'editor', updated_at = $8
		WHERE id = $1`,
		a.ID, a.Title, a.Summary, a.Link, a.Section, a.ImageURL, a.ImageAlt, s.now())
	if err != nil {
		return fmt.Errorf("update article: %w", err)
	}
	return oneArticleRow(res, a.ID)
}

// ArticleByID returns one article.
func (s *Store) ArticleByID(ctx context.Context, id int64) (Article, error) {
	var a Article
	err := s.db.GetContext(ctx, &a, `SELECT `+articleColumns+` FROM articles WHERE id = $1`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return a, fmt.Errorf("article %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return a, fmt.Errorf("article %d: %w", id, err)
	}
	return a, nil
}

// SetPinned pins or unpins an article. Pinning makes it the lead of its language's coming issue
// (it is picked, so the window rule does not leave it out) and unpins the other unsent articles of
// that language; a hidden article is shown again.
func (s *Store) SetPinned(ctx context.Context, id int64, pinned bool) error {
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("pin article: %w", err)
	}
	defer tx.Rollback()
	var lang string
	err = tx.GetContext(ctx, &lang, `SELECT lang FROM articles WHERE id = $1`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return fmt.Errorf("article %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("pin article: %w", err)
	}
	if err := setPinnedTx(ctx, tx, id, lang, pinned); err != nil {
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("pin article: %w", err)
	}
	return nil
}

// setPinnedTx sets the pin. An advisory lock per language serialises pinning, so two editors
// pinning at once still leave one pinned article. Articles of an issue that has gone out (or is
// going) keep their pin: it is part of that issue's history.
func setPinnedTx(ctx context.Context, tx *sqlx.Tx, id int64, lang string, pinned bool) error {
	if pinned {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('digest.pin.' || $1, 0))`, lang); err != nil {
			return fmt.Errorf("pin article: %w", err)
		}
		_, err := tx.ExecContext(ctx, `
			UPDATE articles a SET pinned = false
			WHERE a.lang = $1 AND a.pinned AND a.id <> $2
				AND NOT EXISTS (
					SELECT 1 FROM issue_articles ia JOIN issues i ON i.id = ia.issue_id
					WHERE ia.article_id = a.id AND i.status NOT IN ('draft', 'approved'))`, lang, id)
		if err != nil {
			return fmt.Errorf("pin article: %w", err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE articles SET pinned = $2, hidden = hidden AND NOT $2, picked = picked OR $2
		WHERE id = $1`, id, pinned); err != nil {
		return fmt.Errorf("pin article: %w", err)
	}
	return nil
}

// PickArticle puts an article the window rule leaves out (a feed's baseline, a late arrival that
// is too old) into its language's coming issue by an editor's choice. An article already in an
// issue stays where it is.
func (s *Store) PickArticle(ctx context.Context, id int64) error {
	res, err := s.db.ExecContext(ctx, `UPDATE articles SET picked = true, hidden = false WHERE id = $1`, id)
	if err != nil {
		return fmt.Errorf("pick article: %w", err)
	}
	return oneArticleRow(res, id)
}

// SetHidden hides an article from the coming issue, or shows it again. Hiding also unpins it.
func (s *Store) SetHidden(ctx context.Context, id int64, hidden bool) error {
	res, err := s.db.ExecContext(ctx, `UPDATE articles SET hidden = $2, pinned = pinned AND NOT $2 WHERE id = $1`, id, hidden)
	if err != nil {
		return fmt.Errorf("hide article: %w", err)
	}
	return oneArticleRow(res, id)
}

// SetPosition sets the editor's order of an article in the coming issue; nil restores the default.
func (s *Store) SetPosition(ctx context.Context, id int64, pos *int) error {
	if pos != nil && *pos < 0 {
		return fmt.Errorf("%w: position must not be negative", ErrInvalid)
	}
	res, err := s.db.ExecContext(ctx, `UPDATE articles SET position = $2 WHERE id = $1`, id, pos)
	if err != nil {
		return fmt.Errorf("position article: %w", err)
	}
	return oneArticleRow(res, id)
}

func oneArticleRow(res sql.Result, id int64) error {
	n, err := res.RowsAffected()
	if err != nil {
		return fmt.Errorf("article %d: %w", id, err)
	}
	if n == 0 {
		return fmt.Errorf("article %d: %w", id, ErrNotFound)
	}
	return nil
}

// HiddenArticles lists the language's hidden articles that the coming issue would otherwise carry
// (in no issue, admitted by the window rule), newest first, so an editor can bring one back.
func (s *Store) HiddenArticles(ctx context.Context, lang string) ([]Article, error) {
	return s.outsideIssue(ctx, lang, "a.hidden AND ", 200)
}

// EarlierArticles lists the language's newest articles that the window rule leaves out (a feed's
// baseline, late arrivals that are too old), so an editor can pick one by hand.
func (s *Store) EarlierArticles(ctx context.Context, lang string) ([]Article, error) {
	return s.outsideIssue(ctx, lang, "NOT a.hidden AND NOT ", 30)
}

// outsideIssue lists articles of lang in no issue for which filter, followed by the window rule
// of the coming issue, holds; newest first.
func (s *Store) outsideIssue(ctx context.Context, lang, filter string, limit int) ([]Article, error) {
	w, err := s.comingWindow(ctx, s.db, lang, s.now().UTC())
	if err != nil {
		return nil, fmt.Errorf("digest: articles: %w", err)
	}
	rule, args := w.admits("a", 3)
	var out []Article
	err = s.db.SelectContext(ctx, &out, `SELECT `+articleColumns+` FROM articles a
		WHERE a.lang = $1 AND `+filter+rule+`
		  AND NOT EXISTS (SELECT 1 FROM issue_articles ia WHERE ia.article_id = a.id)
		ORDER BY a.published_at DESC, a.id DESC LIMIT $2`, append([]any{lang, limit}, args...)...)
	if err != nil {
		return nil, fmt.Errorf("digest: articles: %w", err)
	}
	return out, nil
}

// ArticleIssue returns the issue an article belongs to, with its status; zero values when it is
// in none.
func (s *Store) ArticleIssue(ctx context.Context, articleID int64) (issueID int64, status string, err error) {
	var st struct {
		ID     int64  `db:"id"`
		Status string `db:"status"`
	}
	err = s.db.GetContext(ctx, &st, `SELECT i.id, i.status FROM issue_articles ia JOIN issues i ON i.id = ia.issue_id
		WHERE ia.article_id = $1`, articleID)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, "", nil
	}
	if err != nil {
		return 0, "", fmt.Errorf("digest: article's issue: %w", err)
	}
	return st.ID, st.Status, nil
}

// UpsertFeedArticle inserts a feed's article a, within the feed's transaction tx, or updates the stored article when something changed. Editors'
// pinned/hidden/position are never touched, and an article an editor edited (source 'editor')
// keeps the editor's text. A missing date keeps the stored one. baseline marks a new article as
// part of its feed's baseline; a stored one keeps its mark. (xmax = 0) tells an insert from an
// update; no row back means nothing changed.
func UpsertFeedArticle(ctx context.Context, tx *sqlx.Tx, a Article, date *time.Time, now time.Time, baseline bool) (inserted, changed bool, err error) {
	err = tx.QueryRowContext(ctx, `
		INSERT INTO articles (lang, guid, source, feed_url, title, link, summary, author, section,
			image_url, image_alt, published_at, first_seen_at, updated_at, baseline, undated)
		VALUES ($1, $2, 'feed', $3, $4, $5, $6, $7, $8, $9, $10, COALESCE($11::timestamptz, $12::timestamptz), $12, $12,
			$13, $11::timestamptz IS NULL)
		ON CONFLICT (lang, guid) DO UPDATE SET
			feed_url = EXCLUDED.feed_url, title = EXCLUDED.title, link = EXCLUDED.link,
			summary = EXCLUDED.summary, author = EXCLUDED.author, section = EXCLUDED.section,
			image_url = EXCLUDED.image_url, image_alt = EXCLUDED.image_alt,
			published_at = COALESCE($11::timestamptz, articles.published_at),
			undated = articles.undated AND $11::timestamptz IS NULL, updated_at = $12
		WHERE articles.source = 'feed'
			AND (articles.title, articles.link, articles.summary, articles.author, articles.section,
				articles.image_url, articles.image_alt, articles.published_at)
			IS DISTINCT FROM (EXCLUDED.title, EXCLUDED.link, EXCLUDED.summary, EXCLUDED.author,
				EXCLUDED.section, EXCLUDED.image_url, EXCLUDED.image_alt, COALESCE($11::timestamptz, articles.published_at))
		RETURNING (xmax = 0)`,
		a.Lang, a.GUID, a.FeedURL, a.Title, a.Link, a.Summary, a.Author, a.Section,
		a.ImageURL, a.ImageAlt, date, now, baseline).Scan(&inserted)
	if errors.Is(err, sql.ErrNoRows) {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("store article: %w", err)
	}
	return inserted, !inserted, nil
}
