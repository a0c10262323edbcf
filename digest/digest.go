// Package digest turns the publication's articles into one weekly issue per language: it ingests
// the feeds, assembles the week, renders HTML and text, serves the editor pages and the archive,
// and sends each issue to every confirmed reader.
package digest

import (
	"errors"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/robfig/cron/v3"
)

// Errors of this package; handlers turn them into HTTP statuses in one place.
var (
	ErrNotFound   = errors.New("not found")
	ErrInvalid    = errors.New("invalid")
	ErrNoArticles = errors.New("no new articles")
	ErrConflict   = errors.New("conflict")
	// ErrRelay marks a message the SMTP relay did not take (or could not be reached for): a fault
	// of the mail setup, not of the request nor of the database.
	ErrRelay = errors.New("the mail relay did not take the message")
)

// MaxReason bounds a stored failure, pause or schedule reason, in bytes: one short line.
const MaxReason = 500

// Article is one story from a feed or an editor.
type Article struct {
	ID          int64     `db:"id"`
	Lang        string    `db:"lang"`
	GUID        string    `db:"guid"`
	Source      string    `db:"source"` // feed or editor
	FeedURL     string    `db:"feed_url"`
	Title       string    `db:"title"`
	Link        string    `db:"link"`
	Summary     string    `db:"summary"` // plain text
	Author      string    `db:"author"`
	Section     string    `db:"section"`
	ImageURL    string    `db:"image_url"`
	ImageAlt    string    `db:"image_alt"`
	PublishedAt time.Time `db:"published_at"`
	FirstSeenAt time.Time `db:"first_seen_at"`
	UpdatedAt   time.Time `db:"updated_at"`
	Pinned      bool      `db:"pinned"`
	Hidden      bool      `db:"hidden"`
	Position    *int      `db:"position"`
	// Baseline, Undated and Picked feed the window rule (window.go).
	Baseline bool `db:"baseline"`
	Undated  bool `db:"undated"`
	Picked   bool `db:"picked"`
}

// Issue statuses: draft -> approved -> sending <-> paused -> sent; or cancelled / skipped.
const (
	StatusDraft     = "draft"
	StatusApproved  = "approved"
	StatusSending   = "sending"
	StatusPaused    = "paused"
	StatusSent      = "sent"
	StatusCancelled = "cancelled"
	StatusSkipped   = "skipped"
)

// Issue is one digest for one language and one window of time.
type Issue struct {
	ID   int64  `db:"id"`
	Lang string `db:"lang"`
	// NewsletterID is the newsletter the issue belongs to (its language's digest), whose
	// subscribers it goes to.
	NewsletterID int64      `db:"newsletter_id"`
	WindowStart  time.Time  `db:"window_start"`
	WindowEnd    time.Time  `db:"window_end"`
	Status       string     `db:"status"`
	Subject      string     `db:"subject"`
	Preheader    string     `db:"preheader"`
	Note         string     `db:"note"`
	CreatedAt    time.Time  `db:"created_at"`
	ApprovedAt   *time.Time `db:"approved_at"`
	StartedAt    *time.Time `db:"started_at"`
	FinishedAt   *time.Time `db:"finished_at"`
	PauseReason  string     `db:"pause_reason"`
	ArchiveHTML  string     `db:"archive_html"`
	ArchiveText  string     `db:"archive_text"`
	// Markdown is an edition's text (nil: a digest, assembled from its window's articles).
	Markdown *string `db:"markdown"`
	// SendAt is when an approved edition is scheduled to go out (nil: when an editor sends it).
	SendAt *time.Time `db:"send_at"`
}

// IsEdition reports whether the issue is an edition written by editors rather than a digest.
func (i Issue) IsEdition() bool { return i.Markdown != nil }

// Store reads and writes the digest's tables: articles, issues and their articles, and the schedule's
// runs. Its methods live beside the feature that uses them (articles.go, assemble.go, progress.go,
// ...). The sub-packages keep the SQL of their own tables (feeds, the deliveries ledger, editor
// sessions) and reach the database through DB.
type Store struct {
	db    *sqlx.DB
	now   func() time.Time
	sched cron.Schedule  // the default digest schedule, for the window rule's period; nil: weekly
	loc   *time.Location // the zone of a digest's own schedule without CRON_TZ; nil: UTC
}

// DB is the database the Store works on, for the digest's sub-packages (feeds, send, web), which
// keep the SQL of their own tables beside their code.
func (s *Store) DB() *sqlx.DB { return s.db }

// Now is the Store's clock.
func (s *Store) Now() time.Time { return s.now() }

// NewStore returns a Store; now is the clock (time.Now in production, fixed in tests).
func NewStore(db *sqlx.DB, now func() time.Time) *Store {
	if now == nil {
		now = time.Now
	}
	return &Store{db: db, now: now}
}
