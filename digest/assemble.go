package digest

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/jmoiron/sqlx"
)

// DefaultMaxArticles is how many articles a digest shows when the caller passes 0.
const DefaultMaxArticles = 12

// MaxArticlesLimit is the most a digest's own max_articles may be (the column's check).
const MaxArticlesLimit = 100

// Limits of what editors may write into an issue.
const (
	maxSubjectRunes = 200
	maxNoteRunes    = 2000
)

// IssueContent is an issue arranged for rendering: the lead story, the other shown articles grouped
// by section, and how many more the issue holds beyond the limit.
type IssueContent struct {
	Issue    Issue
	Lead     *Article
	Sections []Section
	// More counts the issue's articles that are not shown ("and N more this week").
	More int
	// MoreURL is where "and N more" links to; empty means the renderer's SiteURL.
	MoreURL string
	// Total is every visible article of the issue, shown or not.
	Total int
}

// Section is a group of articles under one heading; Name "" is the "more stories" group.
type Section struct {
	Name     string
	Articles []Article
}

// Articles returns the shown articles in reading order, the lead first.
func (c IssueContent) Articles() []Article {
	var out []Article
	if c.Lead != nil {
		out = append(out, *c.Lead)
	}
	for _, s := range c.Sections {
		out = append(out, s.Articles...)
	}
	return out
}

// issueColumns are the issues columns without the archive copy, for lists.
// An edition has no window: its window reads as its creation time (IsEdition tells them apart).
const issueColumns = `id, lang, newsletter_id, coalesce(window_start, created_at) AS window_start,
	coalesce(window_end, created_at) AS window_end, status, subject, preheader, note, created_at,
	approved_at, started_at, finished_at, pause_reason, markdown, send_at`

// Assemble creates or refreshes the coming issue of lang for the window ending now and returns it;
// which articles it takes is the window rule (issueWindow.admits). A draft is refreshed
// (window_end moves to now, articles recomputed); an approved issue, or one that is sending or
// paused, is returned as it is. ErrNoArticles when the window holds none.
func (s *Store) Assemble(ctx context.Context, lang string, maxArticles int) (Issue, error) {
	if lang == "" {
		return Issue{}, fmt.Errorf("assemble: no language: %w", ErrInvalid)
	}
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return Issue{}, fmt.Errorf("assemble: %w", err)
	}
	defer tx.Rollback()
	iss, err := s.assemble(ctx, tx, lang)
	if errors.Is(err, ErrNoArticles) {
		// Keep the removal of a draft left without articles.
		if cerr := tx.Commit(); cerr != nil {
			return Issue{}, fmt.Errorf("assemble: %w", cerr)
		}
		return Issue{}, err
	}
	if err != nil {
		return Issue{}, err
	}
	if err := tx.Commit(); err != nil {
		return Issue{}, fmt.Errorf("assemble: %w", err)
	}
	return iss, nil
}

func (s *Store) assemble(ctx context.Context, tx *sqlx.Tx, lang string) (Issue, error) {
	// One assembler per language at a time (serve's schedule, the CLI and the editor pages may race).
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('newsletter.digest.assemble'), hashtext($1))`, lang); err != nil {
		return Issue{}, fmt.Errorf("assemble: lock: %w", err)
	}
	now := s.now().UTC()

	var cur Issue
	err := tx.GetContext(ctx, &cur, `SELECT `+issueColumns+` FROM issues
		WHERE lang = $1 AND markdown IS NULL AND status IN ('draft', 'approved', 'sending', 'paused')
		ORDER BY id DESC LIMIT 1 FOR UPDATE`, lang)
	switch {
	case err == nil && cur.Status != StatusDraft:
		return cur, nil
	case err != nil && !errors.Is(err, sql.ErrNoRows):
		return Issue{}, fmt.Errorf("assemble: current issue: %w", err)
	}
	draft := err == nil

	// The window starts where the last issue that left the draft stage ended, so no article falls
	// between two windows. Cancelled and skipped issues count: their articles are released to
	// this one below. A first window moves with each refresh: it is one period before the issue.
	w, err := s.comingWindow(ctx, tx, lang, now)
	if err != nil {
		return Issue{}, fmt.Errorf("assemble: %w", err)
	}
	start := w.start
	if !now.After(start) {
		return Issue{}, ErrNoArticles
	}

	// Articles of issues that never went out (skipped, or cancelled before sending) go into this one.
	var released []int64
	if err := tx.SelectContext(ctx, &released, `DELETE FROM issue_articles ia USING issues i
		WHERE ia.issue_id = i.id AND i.lang = $1 AND i.markdown IS NULL AND i.status IN ('cancelled', 'skipped') AND i.started_at IS NULL
		RETURNING ia.article_id`, lang); err != nil {
		return Issue{}, fmt.Errorf("assemble: release articles: %w", err)
	}

	// The window rule, plus the ones just released, and in a later window the articles already
	// in this draft (released ones sit outside its window). A first window keeps only what the
	// rule admits now, as its start has moved.
	rule, args := w.admits("a", 4)
	kept := ""
	if !w.first {
		kept = `OR EXISTS (SELECT 1 FROM issue_articles ia WHERE ia.article_id = a.id AND ia.issue_id = $2)`
	}
	var ids []int64
	if err := tx.SelectContext(ctx, &ids, `SELECT a.id FROM articles a
		WHERE a.lang = $1 AND NOT a.hidden
		  AND NOT EXISTS (SELECT 1 FROM issue_articles ia WHERE ia.article_id = a.id AND ia.issue_id <> $2)
		  AND (`+rule+` OR a.id = ANY($3::bigint[]) `+kept+`)
		ORDER BY a.published_at DESC, a.id DESC`, append([]any{lang, cur.ID, int64Array(released)}, args...)...); err != nil {
		return Issue{}, fmt.Errorf("assemble: articles: %w", err)
	}
	if len(ids) == 0 {
		if draft {
			if _, err := tx.ExecContext(ctx, `DELETE FROM issues WHERE id = $1`, cur.ID); err != nil {
				return Issue{}, fmt.Errorf("assemble: drop empty draft: %w", err)
			}
		}
		return Issue{}, ErrNoArticles
	}

	if draft {
		if _, err := tx.ExecContext(ctx, `UPDATE issues SET window_start = $2, window_end = $3 WHERE id = $1`, cur.ID, start, now); err != nil {
			return Issue{}, fmt.Errorf("assemble: move window: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `DELETE FROM issue_articles WHERE issue_id = $1`, cur.ID); err != nil {
			return Issue{}, fmt.Errorf("assemble: clear articles: %w", err)
		}
	} else {
		// The issue belongs to its language's digest, whose subscribers it goes to.
		err := tx.GetContext(ctx, &cur.ID, `INSERT INTO issues (lang, window_start, window_end, status, created_at, newsletter_id)
			SELECT $1, $2, $3, 'draft', $3, id FROM newsletters WHERE kind = 'digest' AND lang = $1 RETURNING id`, lang, start, now)
		if errors.Is(err, sql.ErrNoRows) {
			return Issue{}, fmt.Errorf("assemble: no digest newsletter for language %q", lang)
		}
		if err != nil {
			return Issue{}, fmt.Errorf("assemble: new issue: %w", err)
		}
	}
	// issue_articles.position keeps the order of assembly (newest first); the reading order is
	// computed by Content from the articles' current pin, position and section.
	if _, err := tx.ExecContext(ctx, `INSERT INTO issue_articles (issue_id, article_id, position)
		SELECT $1, id, ord FROM unnest($2::bigint[]) WITH ORDINALITY AS t(id, ord)`, cur.ID, int64Array(ids)); err != nil {
		return Issue{}, fmt.Errorf("assemble: add articles: %w", err)
	}
	return issueByID(ctx, tx, cur.ID)
}

// int64Array formats ids as a PostgreSQL array literal (lib/pq's Int64Array, without importing it here).
func int64Array(ids []int64) string {
	var b strings.Builder
	b.WriteByte('{')
	for i, id := range ids {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "%d", id)
	}
	b.WriteByte('}')
	return b.String()
}

// Content returns the issue arranged for rendering with at most maxArticles shown (0: the default).
// maxArticles is the setting: the issue's digest's own most articles (newsletters.max_articles)
// replaces it, except where a caller asks for more than any digest may show (every article, for
// the editor's list). ErrNotFound for an unknown issue; ErrNoArticles when every article of it is
// hidden.
func (s *Store) Content(ctx context.Context, issueID int64, maxArticles int) (IssueContent, error) {
	iss, err := issueByID(ctx, s.db, issueID)
	if err != nil {
		return IssueContent{}, err
	}
	if maxArticles <= MaxArticlesLimit {
		var own sql.NullInt64
		if err := s.db.GetContext(ctx, &own, `SELECT max_articles FROM newsletters WHERE id = $1`, iss.NewsletterID); err != nil {
			return IssueContent{}, fmt.Errorf("content: %w", err)
		}
		if own.Valid {
			maxArticles = int(own.Int64)
		}
	}
	var arts []Article
	if err := s.db.SelectContext(ctx, &arts, `SELECT a.* FROM articles a
		JOIN issue_articles ia ON ia.article_id = a.id
		WHERE ia.issue_id = $1 AND NOT a.hidden`, issueID); err != nil {
		return IssueContent{}, fmt.Errorf("content: %w", err)
	}
	if len(arts) == 0 {
		return IssueContent{}, ErrNoArticles
	}
	c := Arrange(arts, maxArticles)
	c.Issue = iss
	return c, nil
}

// Arrange orders articles for reading. The default order is: the lead (the pinned article, else
// the newest), then sections ordered by their newest article with newest first inside, and the
// articles without a section last. An editor's explicit position overrides it: positioned articles
// come first in position order (the first leads unless one is pinned), and sections follow in the
// order their first article appears. The first maxArticles of that order are shown; the rest are
// counted in More.
func Arrange(arts []Article, maxArticles int) IssueContent {
	if maxArticles <= 0 {
		maxArticles = DefaultMaxArticles
	}
	order := slices.Clone(arts)
	slices.SortStableFunc(order, func(a, b Article) int {
		switch {
		case a.Pinned != b.Pinned:
			if a.Pinned {
				return -1
			}
			return 1
		case a.Position != nil && b.Position != nil && *a.Position != *b.Position:
			return cmp.Compare(*a.Position, *b.Position)
		case a.Position != nil && b.Position == nil:
			return -1
		case a.Position == nil && b.Position != nil:
			return 1
		}
		if c := b.PublishedAt.Compare(a.PublishedAt); c != 0 {
			return c
		}
		return cmp.Compare(b.ID, a.ID)
	})

	c := IssueContent{Total: len(order)}
	if len(order) == 0 {
		return c
	}
	shown := order[:min(maxArticles, len(order))]
	c.More = len(order) - len(shown)
	lead := shown[0]
	c.Lead = &lead
	index := map[string]int{}
	var none []Article
	for _, a := range shown[1:] {
		name := strings.TrimSpace(a.Section)
		if name == "" {
			none = append(none, a)
			continue
		}
		i, ok := index[name]
		if !ok {
			i = len(c.Sections)
			index[name] = i
			c.Sections = append(c.Sections, Section{Name: name})
		}
		c.Sections[i].Articles = append(c.Sections[i].Articles, a)
	}
	if len(none) > 0 {
		c.Sections = append(c.Sections, Section{Articles: none})
	}
	return c
}

type getter interface {
	GetContext(ctx context.Context, dest any, query string, args ...any) error
}

func issueByID(ctx context.Context, q getter, id int64) (Issue, error) {
	var iss Issue
	err := q.GetContext(ctx, &iss, `SELECT `+issueColumns+`, archive_html, archive_text FROM issues WHERE id = $1`, id)
	if errors.Is(err, sql.ErrNoRows) {
		return Issue{}, fmt.Errorf("issue %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return Issue{}, fmt.Errorf("issue %d: %w", id, err)
	}
	return iss, nil
}

// IssueByID returns one issue with its archive copy. ErrNotFound when there is none.
func (s *Store) IssueByID(ctx context.Context, id int64) (Issue, error) {
	return issueByID(ctx, s.db, id)
}

// Issues lists issues newest first, without their archive copies; lang "" lists every language.
func (s *Store) Issues(ctx context.Context, lang string) ([]Issue, error) {
	var out []Issue
	err := s.db.SelectContext(ctx, &out, `SELECT `+issueColumns+` FROM issues
		WHERE $1 = '' OR lang = $1 ORDER BY window_end DESC, id DESC`, lang)
	if err != nil {
		return nil, fmt.Errorf("issues: %w", err)
	}
	return out, nil
}

// SentIssues lists the issues of the public archive (sent), newest first, without their copies;
// lang "" lists every language.
func (s *Store) SentIssues(ctx context.Context, lang string) ([]Issue, error) {
	var out []Issue
	err := s.db.SelectContext(ctx, &out, `SELECT `+issueColumns+` FROM issues
		WHERE status = 'sent' AND ($1 = '' OR lang = $1)
		ORDER BY coalesce(window_end, started_at, created_at) DESC, id DESC`, lang)
	if err != nil {
		return nil, fmt.Errorf("sent issues: %w", err)
	}
	return out, nil
}

// UpdateIssueText sets the editor's subject and note; an empty subject means the generated one.
// Only a draft or approved issue can change (ErrConflict otherwise).
func (s *Store) UpdateIssueText(ctx context.Context, id int64, subject, note string) error {
	subject = strings.Join(strings.Fields(subject), " ")
	note = strings.TrimSpace(strings.ReplaceAll(note, "\r\n", "\n"))
	switch {
	case !utf8.ValidString(subject) || !utf8.ValidString(note):
		return fmt.Errorf("issue text: not UTF-8: %w", ErrInvalid)
	case utf8.RuneCountInString(subject) > maxSubjectRunes:
		return fmt.Errorf("issue text: subject longer than %d characters: %w", maxSubjectRunes, ErrInvalid)
	case utf8.RuneCountInString(note) > maxNoteRunes:
		return fmt.Errorf("issue text: note longer than %d characters: %w", maxNoteRunes, ErrInvalid)
	case strings.ContainsFunc(subject, unicode.IsControl):
		return fmt.Errorf("issue text: control character in subject: %w", ErrInvalid)
	case strings.ContainsFunc(note, func(r rune) bool { return unicode.IsControl(r) && r != '\n' && r != '\t' }):
		return fmt.Errorf("issue text: control character in note: %w", ErrInvalid)
	}
	return s.changeIssue(ctx, id, `UPDATE issues SET subject = $2, note = $3
		WHERE id = $1 AND status IN ('draft', 'approved')`, subject, note)
}

// Approve marks a draft approved for sending; approving an approved issue again changes nothing.
func (s *Store) Approve(ctx context.Context, id int64) error {
	return s.changeIssue(ctx, id, `UPDATE issues SET status = 'approved', approved_at = COALESCE(approved_at, $2)
		WHERE id = $1 AND status IN ('draft', 'approved')`, s.now().UTC())
}

// SaveArchive keeps the issue's copy without reader data (html and text rendered for nobody),
// shown at /archive/{id}; the sender calls it when the issue starts sending. The rendered subject
// and preheader are kept too, so the archive lists what went out. Only an issue that has not started
// takes a copy: one already sending (a second start) keeps the copy it went out with.
func (s *Store) SaveArchive(ctx context.Context, id int64, subject, preheader, html, text string) error {
	res, err := s.db.ExecContext(ctx, `UPDATE issues SET archive_html = $2, archive_text = $3,
		subject = CASE WHEN subject = '' THEN $4 ELSE subject END, preheader = $5
		WHERE id = $1 AND status IN ('draft', 'approved')`,
		id, html, text, subject, preheader)
	if err != nil {
		return fmt.Errorf("save archive: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		var exists bool
		if err := s.db.GetContext(ctx, &exists, `SELECT EXISTS (SELECT 1 FROM issues WHERE id = $1)`, id); err != nil {
			return fmt.Errorf("save archive: %w", err)
		}
		if !exists {
			return fmt.Errorf("save archive: issue %d: %w", id, ErrNotFound)
		}
	}
	return nil
}

// changeIssue runs an UPDATE guarded by status; no row changed means unknown (ErrNotFound) or in
// the wrong state (ErrConflict).
func (s *Store) changeIssue(ctx context.Context, id int64, query string, args ...any) error {
	res, err := s.db.ExecContext(ctx, query, append([]any{id}, args...)...)
	if err != nil {
		return fmt.Errorf("issue %d: %w", id, err)
	}
	if n, _ := res.RowsAffected(); n > 0 {
		return nil
	}
	if _, err := issueByID(ctx, s.db, id); err != nil {
		return err
	}
	return fmt.Errorf("issue %d: not a draft: %w", id, ErrConflict)
}
