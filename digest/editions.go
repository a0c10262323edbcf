package digest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Editions are issues of an editions newsletter (migration 0021): written in Markdown rather than
// assembled from a window of articles, and sent, archived and counted as any issue.

// EditionText is what an editor writes of an edition.
type EditionText struct {
	Subject, Preheader, Markdown string
}

// clean checks and normalises the text: valid UTF-8, a one-line subject and preheader, the limits.
func (t EditionText) clean() (EditionText, error) {
	if strings.ContainsAny(t.Subject+t.Preheader, "\r\n") {
		return t, fmt.Errorf("edition: a line break in the subject or preheader: %w", ErrInvalid)
	}
	t.Subject = strings.Join(strings.Fields(t.Subject), " ")
	t.Preheader = strings.Join(strings.Fields(t.Preheader), " ")
	t.Markdown = strings.ReplaceAll(t.Markdown, "\r\n", "\n")
	switch {
	case !utf8.ValidString(t.Subject) || !utf8.ValidString(t.Preheader) || !utf8.ValidString(t.Markdown):
		return t, fmt.Errorf("edition: not UTF-8: %w", ErrInvalid)
	case t.Subject == "":
		return t, fmt.Errorf("edition: a subject is required: %w", ErrInvalid)
	case utf8.RuneCountInString(t.Subject) > MaxEditionSubject || utf8.RuneCountInString(t.Preheader) > MaxEditionSubject:
		return t, fmt.Errorf("edition: subject or preheader over %d characters: %w", MaxEditionSubject, ErrInvalid)
	case len(t.Markdown) > MaxEditionMarkdown:
		return t, fmt.Errorf("edition: text over %d KB: %w", MaxEditionMarkdown/1024, ErrInvalid)
	case strings.TrimSpace(t.Markdown) == "":
		return t, fmt.Errorf("edition: the text is empty: %w", ErrInvalid)
	}
	for _, r := range t.Subject + t.Preheader {
		if unicode.IsControl(r) || unicode.Is(unicode.Cf, r) && r != '\u200d' {
			return t, fmt.Errorf("edition: control character in the subject or preheader: %w", ErrInvalid)
		}
	}
	for _, r := range t.Markdown {
		if unicode.IsControl(r) && r != '\n' && r != '\t' {
			return t, fmt.Errorf("edition: control character in the text: %w", ErrInvalid)
		}
	}
	return t, nil
}

// CreateEdition stores a new draft edition of an editions newsletter in one of its languages.
func (s *Store) CreateEdition(ctx context.Context, newsletterID int64, lang string, t EditionText) (Issue, error) {
	t, err := t.clean()
	if err != nil {
		return Issue{}, err
	}
	var id int64
	err = s.db.GetContext(ctx, &id, `INSERT INTO issues (lang, newsletter_id, status, subject, preheader, markdown)
		SELECT $2, n.id, 'draft', $3, $4, $5 FROM newsletters n
		WHERE n.id = $1 AND n.kind = 'editions' AND $2 = ANY(n.langs) RETURNING id`, newsletterID, lang, t.Subject, t.Preheader, t.Markdown)
	if errors.Is(err, sql.ErrNoRows) {
		return Issue{}, fmt.Errorf("edition: no editions newsletter %d in %q: %w", newsletterID, lang, ErrInvalid)
	}
	if err != nil {
		return Issue{}, fmt.Errorf("edition: %w", err)
	}
	return issueByID(ctx, s.db, id)
}

// UpdateEdition replaces a draft or approved edition's text; an approved one goes back to draft
// (what was approved is not what will go) and loses its scheduled time.
func (s *Store) UpdateEdition(ctx context.Context, id int64, t EditionText) error {
	t, err := t.clean()
	if err != nil {
		return err
	}
	return s.changeIssue(ctx, id, `UPDATE issues SET subject = $2, preheader = $3, markdown = $4,
		status = 'draft', approved_at = NULL, send_at = NULL
		WHERE id = $1 AND markdown IS NOT NULL AND status IN ('draft', 'approved')`, t.Subject, t.Preheader, t.Markdown)
}

// ScheduleEdition sets when an approved edition goes out (EditionScheduler starts it then); at must
// be in the future. A zero at unschedules it.
func (s *Store) ScheduleEdition(ctx context.Context, id int64, at time.Time) error {
	if at.IsZero() {
		return s.changeIssue(ctx, id, `UPDATE issues SET send_at = NULL WHERE id = $1 AND markdown IS NOT NULL AND status IN ('draft', 'approved')`)
	}
	if !at.After(s.now()) {
		return fmt.Errorf("edition: the time to send is past: %w", ErrInvalid)
	}
	return s.changeIssue(ctx, id, `UPDATE issues SET send_at = $2, pause_reason = ''
		WHERE id = $1 AND markdown IS NOT NULL AND status = 'approved'`, at.UTC())
}

// Editions lists a newsletter's editions, newest first, without their archive copies.
func (s *Store) Editions(ctx context.Context, newsletterID int64) ([]Issue, error) {
	var out []Issue
	if err := s.db.SelectContext(ctx, &out, `SELECT `+issueColumns+` FROM issues
		WHERE newsletter_id = $1 AND markdown IS NOT NULL ORDER BY id DESC`, newsletterID); err != nil {
		return nil, fmt.Errorf("editions: %w", err)
	}
	return out, nil
}

// DueEditions are the approved editions whose time has come: those within maxLate of it start
// (the caller starts them), and those later than that (the service was down) are unscheduled with
// a reason, to wait for an editor, as a late digest run does.
func (s *Store) DueEditions(ctx context.Context, maxLate time.Duration) (due []int64, err error) {
	now := s.now().UTC()
	if _, err := s.db.ExecContext(ctx, `UPDATE issues SET send_at = NULL,
		pause_reason = 'its scheduled time (' || to_char(send_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI') || ' UTC) passed more than '
			|| $2 || ' ago (the service was probably down), so it was not sent automatically: an editor must send it or schedule it again'
		WHERE status = 'approved' AND send_at IS NOT NULL AND send_at < $1::timestamptz - $3 * interval '1 second'`,
		now, maxLate.String(), maxLate.Seconds()); err != nil {
		return nil, fmt.Errorf("due editions: %w", err)
	}
	if err := s.db.SelectContext(ctx, &due, `SELECT id FROM issues WHERE status = 'approved' AND send_at IS NOT NULL AND send_at <= $1
		ORDER BY send_at, id`, now); err != nil {
		return nil, fmt.Errorf("due editions: %w", err)
	}
	return due, nil
}
