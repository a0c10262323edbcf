package digest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"

	"newsletter/internal/testdb"
)

// asmNow is the fixed clock of the assembly and render tests: Wednesday 25 November 2026, 08:00 UTC.
var asmNow = time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)

// asmClock is a settable clock for one test.
type asmClock struct{ t time.Time }

func (c *asmClock) now() time.Time { return c.t }

// asmInsert stores an article as the ingester would, filling what a test leaves out.
func asmInsert(t testing.TB, db *sqlx.DB, a Article) Article {
	t.Helper()
	if a.Lang == "" {
		a.Lang = "en"
	}
	if a.GUID == "" {
		a.GUID = fmt.Sprintf("guid-%s-%d", a.Title, time.Now().UnixNano())
	}
	if a.Source == "" {
		a.Source = "feed"
	}
	if a.FirstSeenAt.IsZero() {
		a.FirstSeenAt = a.PublishedAt
	}
	a.UpdatedAt = a.FirstSeenAt
	q, args, err := sqlx.Named(`INSERT INTO articles (lang, guid, source, feed_url, title, link, summary,
		author, section, image_url, image_alt, published_at, first_seen_at, updated_at, pinned, hidden, position)
		VALUES (:lang, :guid, :source, :feed_url, :title, :link, :summary, :author, :section, :image_url, :image_alt,
		:published_at, :first_seen_at, :updated_at, :pinned, :hidden, :position) RETURNING id`, a)
	if err == nil {
		err = db.GetContext(context.Background(), &a.ID, db.Rebind(q), args...)
	}
	if err != nil {
		t.Fatalf("insert article %q: %v", a.Title, err)
	}
	return a
}

func asmIssueArticles(t *testing.T, db *sqlx.DB, issueID int64) []string {
	t.Helper()
	var titles []string
	if err := db.Select(&titles, `SELECT a.title FROM articles a JOIN issue_articles ia ON ia.article_id = a.id
		WHERE ia.issue_id = $1 ORDER BY a.title`, issueID); err != nil {
		t.Fatal(err)
	}
	return titles
}

func TestAssembleWindows(t *testing.T) {
	ctx := context.Background()
	db := testdb.New(t)
	clock := &asmClock{t: asmNow}
	s := NewStore(db, clock.now)
	day := 24 * time.Hour

	if _, err := s.Assemble(ctx, "en", 0); !errors.Is(err, ErrNoArticles) {
		t.Fatalf("empty database: got %v, want ErrNoArticles", err)
	}

	asmInsert(t, db, Article{Title: "old", PublishedAt: asmNow.Add(-8 * day)})
	asmInsert(t, db, Article{Title: "late arrival", PublishedAt: asmNow.Add(-9 * day), FirstSeenAt: asmNow.Add(-1 * day)})
	asmInsert(t, db, Article{Title: "this week", PublishedAt: asmNow.Add(-2 * day)})
	asmInsert(t, db, Article{Title: "hidden", PublishedAt: asmNow.Add(-2 * day), Hidden: true})
	asmInsert(t, db, Article{Title: "russian", Lang: "ru", PublishedAt: asmNow.Add(-2 * day)})
	asmInsert(t, db, Article{Title: "future", PublishedAt: asmNow.Add(time.Hour)})

	first, err := s.Assemble(ctx, "en", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !first.WindowStart.Equal(asmNow.Add(-7*day)) || !first.WindowEnd.Equal(asmNow) || first.Status != StatusDraft {
		t.Errorf("first issue: window %v..%v status %s, want the last 7 days, draft", first.WindowStart, first.WindowEnd, first.Status)
	}
	// The first window takes only what was published within one period (7 days without a
	// schedule): the late arrival, published 9 days ago, needs an editor.
	if got, want := asmIssueArticles(t, db, first.ID), []string{"this week"}; !slices.Equal(got, want) {
		t.Errorf("first issue articles = %q, want %q", got, want)
	}

	// Russian has its own window and its own issue.
	ru, err := s.Assemble(ctx, "ru", 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := asmIssueArticles(t, db, ru.ID), []string{"russian"}; !slices.Equal(got, want) {
		t.Errorf("ru articles = %q, want %q", got, want)
	}

	// Re-assembling the draft moves its end and takes what arrived meanwhile; a first window
	// moves its start too, as it is one period before the issue.
	clock.t = asmNow.Add(2 * time.Hour)
	asmInsert(t, db, Article{Title: "an hour later", PublishedAt: asmNow.Add(time.Hour)})
	again, err := s.Assemble(ctx, "en", 0)
	if err != nil {
		t.Fatal(err)
	}
	if again.ID != first.ID || !again.WindowEnd.Equal(clock.t) || !again.WindowStart.Equal(clock.t.Add(-7*day)) {
		t.Errorf("re-assembled draft: id %d window %v..%v, want id %d window %v..%v", again.ID, again.WindowStart, again.WindowEnd, first.ID, clock.t.Add(-7*day), clock.t)
	}
	if got, want := asmIssueArticles(t, db, first.ID), []string{"an hour later", "future", "this week"}; !slices.Equal(got, want) {
		t.Errorf("re-assembled articles = %q, want %q", got, want)
	}

	// An approved issue is not recomputed.
	if err := s.Approve(ctx, first.ID); err != nil {
		t.Fatal(err)
	}
	clock.t = asmNow.Add(3 * time.Hour)
	asmInsert(t, db, Article{Title: "after approval", PublishedAt: clock.t.Add(-time.Minute)})
	approved, err := s.Assemble(ctx, "en", 0)
	if err != nil || approved.ID != first.ID || approved.Status != StatusApproved || !approved.WindowEnd.Equal(again.WindowEnd) {
		t.Fatalf("assemble with an approved issue: %+v, %v; want it unchanged", approved, err)
	}

	// Once sent, the next window starts where it ended: the article after approval goes next.
	if _, err := db.Exec(`UPDATE issues SET status = 'sent', started_at = $2, finished_at = $2 WHERE id = $1`, first.ID, clock.t); err != nil {
		t.Fatal(err)
	}
	clock.t = asmNow.Add(7 * day)
	second, err := s.Assemble(ctx, "en", 0)
	if err != nil {
		t.Fatal(err)
	}
	if !second.WindowStart.Equal(again.WindowEnd) || second.ID == first.ID {
		t.Errorf("second issue window starts %v, want %v", second.WindowStart, again.WindowEnd)
	}
	if got, want := asmIssueArticles(t, db, second.ID), []string{"after approval"}; !slices.Equal(got, want) {
		t.Errorf("second issue articles = %q, want %q", got, want)
	}

	// A skipped issue gives its articles to the next one.
	if _, err := db.Exec(`UPDATE issues SET status = 'skipped' WHERE id = $1`, second.ID); err != nil {
		t.Fatal(err)
	}
	clock.t = asmNow.Add(14 * day)
	third, err := s.Assemble(ctx, "en", 0)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := asmIssueArticles(t, db, third.ID), []string{"after approval"}; !slices.Equal(got, want) {
		t.Errorf("after a skipped issue: articles = %q, want %q", got, want)
	}
	if got := asmIssueArticles(t, db, second.ID); len(got) != 0 {
		t.Errorf("skipped issue still holds %q", got)
	}

	// Nothing new since the last sent issue: no issue, and an emptied draft goes away.
	if _, err := db.Exec(`UPDATE issues SET status = 'sent', started_at = $2 WHERE id = $1`, third.ID, clock.t); err != nil {
		t.Fatal(err)
	}
	clock.t = asmNow.Add(15 * day)
	if _, err := s.Assemble(ctx, "en", 0); !errors.Is(err, ErrNoArticles) {
		t.Errorf("no new articles: got %v, want ErrNoArticles", err)
	}
	lone := asmInsert(t, db, Article{Title: "lone", PublishedAt: clock.t.Add(-time.Hour)})
	draft, err := s.Assemble(ctx, "en", 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SetHiddenForTest(ctx, lone.ID); err != nil {
		t.Fatal(err)
	}
	clock.t = clock.t.Add(time.Minute)
	if _, err := s.Assemble(ctx, "en", 0); !errors.Is(err, ErrNoArticles) {
		t.Errorf("every article hidden: got %v, want ErrNoArticles", err)
	}
	if _, err := s.IssueByID(ctx, draft.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("emptied draft: got %v, want it deleted", err)
	}

	// No article is in two issues (the schema insists; check the data too).
	var dup int
	if err := db.Get(&dup, `SELECT count(*) FROM (SELECT article_id FROM issue_articles GROUP BY 1 HAVING count(*) > 1) d`); err != nil || dup != 0 {
		t.Errorf("articles in two issues: %d (%v)", dup, err)
	}
}

// SetHiddenForTest hides an article without depending on the ingest side's SetHidden.
func (s *Store) SetHiddenForTest(ctx context.Context, id int64) error {
	_, err := s.db.ExecContext(ctx, `UPDATE articles SET hidden = true WHERE id = $1`, id)
	return err
}

func TestAssembleConcurrent(t *testing.T) {
	ctx := context.Background()
	db := testdb.New(t)
	s := NewStore(db, func() time.Time { return asmNow })
	asmInsert(t, db, Article{Title: "one", PublishedAt: asmNow.Add(-time.Hour)})
	ids := make(chan int64, 4)
	errs := make(chan error, 4)
	for range 4 {
		go func() {
			iss, err := s.Assemble(ctx, "en", 0)
			ids <- iss.ID
			errs <- err
		}()
	}
	seen := map[int64]bool{}
	for range 4 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
		seen[<-ids] = true
	}
	if len(seen) != 1 {
		t.Errorf("concurrent assembly made %d issues, want 1", len(seen))
	}
}

func TestArrange(t *testing.T) {
	at := func(h int) time.Time { return asmNow.Add(-time.Duration(h) * time.Hour) }
	pos := func(n int) *int { return &n }
	arts := func(list ...Article) []Article {
		for i := range list {
			list[i].ID = int64(i + 1)
		}
		return list
	}
	type layout struct {
		lead     string
		sections []string // "Section: a, b"
		more     int
	}
	describe := func(c IssueContent) layout {
		l := layout{lead: c.Lead.Title, more: c.More}
		for _, s := range c.Sections {
			line := s.Name + ":"
			for i, a := range s.Articles {
				if i > 0 {
					line += ","
				}
				line += " " + a.Title
			}
			l.sections = append(l.sections, line)
		}
		return l
	}
	tests := []struct {
		name string
		arts []Article
		max  int
		want layout
	}{
		{
			name: "NewestLeadsSectionsByNewest",
			arts: arts(
				Article{Title: "w1", Section: "World", PublishedAt: at(5)},
				Article{Title: "e1", Section: "Economy", PublishedAt: at(2)},
				Article{Title: "w2", Section: "World", PublishedAt: at(1)},
				Article{Title: "lead", Section: "World", PublishedAt: at(0)},
				Article{Title: "x", PublishedAt: at(0).Add(-time.Minute)},
				Article{Title: "e2", Section: "Economy", PublishedAt: at(9)},
			),
			want: layout{lead: "lead", sections: []string{"World: w2, w1", "Economy: e1, e2", ": x"}},
		},
		{
			name: "PinnedLeads",
			arts: arts(
				Article{Title: "new", Section: "A", PublishedAt: at(0)},
				Article{Title: "pinned", Section: "A", PublishedAt: at(50), Pinned: true},
			),
			want: layout{lead: "pinned", sections: []string{"A: new"}},
		},
		{
			name: "PositionsOverride",
			arts: arts(
				Article{Title: "a1", Section: "A", PublishedAt: at(0)},
				Article{Title: "a2", Section: "A", PublishedAt: at(1)},
				Article{Title: "b1", Section: "B", PublishedAt: at(2), Position: pos(2)},
				Article{Title: "b2", Section: "B", PublishedAt: at(3), Position: pos(1)},
			),
			want: layout{lead: "b2", sections: []string{"B: b1", "A: a1, a2"}},
		},
		{
			name: "MaxCountsTheRest",
			arts: arts(
				Article{Title: "1", Section: "A", PublishedAt: at(1)},
				Article{Title: "2", Section: "B", PublishedAt: at(2)},
				Article{Title: "3", Section: "A", PublishedAt: at(3)},
				Article{Title: "4", Section: "B", PublishedAt: at(4)},
				Article{Title: "5", PublishedAt: at(5)},
			),
			max:  3,
			want: layout{lead: "1", sections: []string{"B: 2", "A: 3"}, more: 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := describe(Arrange(tt.arts, tt.max))
			if got.lead != tt.want.lead || !slices.Equal(got.sections, tt.want.sections) || got.more != tt.want.more {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestIssueTextAndApprove(t *testing.T) {
	ctx := context.Background()
	db := testdb.New(t)
	s := NewStore(db, func() time.Time { return asmNow })
	asmInsert(t, db, Article{Title: "one", PublishedAt: asmNow.Add(-time.Hour)})
	iss, err := s.Assemble(ctx, "en", 0)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		id      int64
		subject string
		want    error
	}{
		{"OK", iss.ID, "  A  subject ", nil},
		{"ErrTooLong", iss.ID, string(make([]rune, 201)), ErrInvalid},
		{"ErrUnknown", iss.ID + 100, "x", ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.UpdateIssueText(ctx, tt.id, tt.subject, "note"); !errors.Is(err, tt.want) {
				t.Errorf("got %v, want %v", err, tt.want)
			}
		})
	}
	got, _ := s.IssueByID(ctx, iss.ID)
	if got.Subject != "A subject" || got.Note != "note" {
		t.Errorf("stored subject %q note %q", got.Subject, got.Note)
	}
	if err := s.Approve(ctx, iss.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Approve(ctx, iss.ID); err != nil {
		t.Errorf("approving twice: %v", err)
	}
	if _, err := db.Exec(`UPDATE issues SET status = 'sent' WHERE id = $1`, iss.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateIssueText(ctx, iss.ID, "late", ""); !errors.Is(err, ErrConflict) {
		t.Errorf("editing a sent issue: got %v, want ErrConflict", err)
	}
	if err := s.Approve(ctx, iss.ID); !errors.Is(err, ErrConflict) {
		t.Errorf("approving a sent issue: got %v, want ErrConflict", err)
	}
}

// TestSaveArchiveKeepsTheCopySent: once an issue is sending, a second start (the schedule and an
// editor's "send now" at once, say) does not replace the copy it went out with.
func TestSaveArchiveKeepsTheCopySent(t *testing.T) {
	ctx := context.Background()
	db := testdb.New(t)
	s := NewStore(db, nil)
	seedArticles(t, db, "en", 2)
	iss, err := s.Assemble(ctx, "en", 0)
	if err != nil {
		t.Fatal(err)
	}
	id := iss.ID
	if err := s.SaveArchive(ctx, id, "As sent", "", "<p>as sent</p>", "as sent"); err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`UPDATE issues SET status = 'sending', started_at = now() WHERE id = $1`, id); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveArchive(ctx, id, "Changed", "", "<p>changed later</p>", "changed later"); err != nil {
		t.Fatalf("second save of a sending issue: %v, want nil (kept)", err)
	}
	got, err := s.IssueByID(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if got.ArchiveHTML != "<p>as sent</p>" || got.Subject != "As sent" {
		t.Errorf("archive copy %q, subject %q: replaced after sending began", got.ArchiveHTML, got.Subject)
	}
	if err := s.SaveArchive(ctx, 999999, "", "", "", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown issue: %v, want ErrNotFound", err)
	}
}
