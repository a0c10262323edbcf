package digest

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"newsletter/internal/testdb"
)

func TestAddArticle(t *testing.T) {
	ctx := context.Background()
	s := articleTestStore(t)
	pos := 1
	got, err := s.AddArticle(ctx, Article{
		Lang: "en", Title: "  Our <b>own</b> story &amp; more ", Summary: "<p>Written</p><p>by us.</p>",
		Link: "https://news.example.com/own", Section: "Editor's pick", ImageURL: "https://news.example.com/own.jpg",
		Position: &pos, Pinned: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(got.GUID, "editor:") || len(got.GUID) < len("editor:")+16 || got.Source != "editor" {
		t.Errorf("guid %q source %q", got.GUID, got.Source)
	}
	if got.Title != "Our own story & more" || got.Summary != "Written by us." || got.ImageAlt != got.Title {
		t.Errorf("cleaned fields: %+v", got)
	}
	if !got.PublishedAt.Equal(asmNow) || !got.FirstSeenAt.Equal(asmNow) || !got.Pinned || got.Position == nil || *got.Position != 1 {
		t.Errorf("times/pin/position: %+v", got)
	}
	again, err := s.ArticleByID(ctx, got.ID)
	if err != nil || again.Title != got.Title || !again.Pinned {
		t.Errorf("ArticleByID = %+v, %v", again, err)
	}
	other, err := s.AddArticle(ctx, Article{Lang: "en", Title: "Second"})
	if err != nil || other.GUID == got.GUID {
		t.Errorf("second article: %+v, %v", other, err)
	}

	bad := []struct {
		name string
		a    Article
	}{
		{"NoTitle", Article{Lang: "en", Title: " <b> </b> "}},
		{"NoLang", Article{Title: "T"}},
		{"ScriptLink", Article{Lang: "en", Title: "T", Link: "javascript:alert(1)"}},
		{"RelativeLink", Article{Lang: "en", Title: "T", Link: "/x"}},
		{"DataImage", Article{Lang: "en", Title: "T", ImageURL: "data:image/png;base64,AAAA"}},
		{"NegativePosition", Article{Lang: "en", Title: "T", Position: new(-1)}},
		{"LongSummary", Article{Lang: "en", Title: "T", Summary: strings.Repeat("x ", editorSummaryMaxRunes)}},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.AddArticle(ctx, tt.a); !errors.Is(err, ErrInvalid) {
				t.Errorf("err = %v, want ErrInvalid", err)
			}
		})
	}
}

func TestUpdateArticle(t *testing.T) {
	ctx := context.Background()
	s := articleTestStore(t)
	a, err := s.AddArticle(ctx, Article{Lang: "ru", Title: "Было", Summary: "старое"})
	if err != nil {
		t.Fatal(err)
	}
	a.Title, a.Summary, a.Link, a.Section = "Стало <i>так</i>", "новое", "https://news.example.com/ru/x", "Мир"
	a.ImageURL, a.ImageAlt = "https://news.example.com/ru/x.jpg", "Подпись"
	if err := s.UpdateArticle(ctx, a); err != nil {
		t.Fatal(err)
	}
	got, _ := s.ArticleByID(ctx, a.ID)
	if got.Title != "Стало так" || got.Summary != "новое" || got.Link != a.Link || got.Section != "Мир" || got.ImageURL != a.ImageURL || got.ImageAlt != "Подпись" {
		t.Errorf("after update: %+v", got)
	}
	if err := s.UpdateArticle(ctx, Article{ID: a.ID + 1000, Title: "x"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing article: err = %v, want ErrNotFound", err)
	}
	if err := s.UpdateArticle(ctx, Article{ID: a.ID, Title: "x", Link: "ftp://x"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("ftp link: err = %v, want ErrInvalid", err)
	}
	if _, err := s.ArticleByID(ctx, a.ID+1000); !errors.Is(err, ErrNotFound) {
		t.Errorf("ArticleByID(missing): err = %v, want ErrNotFound", err)
	}
}

func TestSetPinnedHiddenPosition(t *testing.T) {
	ctx := context.Background()
	s := articleTestStore(t)
	add := func(lang, title string) Article {
		a, err := s.AddArticle(ctx, Article{Lang: lang, Title: title})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	sent, a, b, ru := add("en", "In a sent issue"), add("en", "A"), add("en", "B"), add("ru", "Русская")
	// sent went out pinned in last week's issue: pinning this week's lead must not rewrite that.
	var issueID int64
	err := s.db.Get(&issueID, `INSERT INTO issues (newsletter_id, lang, window_start, window_end, status) VALUES ((SELECT id FROM newsletters WHERE slug = 'digest-en'), 'en', $1, $2, 'sent') RETURNING id`,
		asmNow.Add(-14*24*time.Hour), asmNow.Add(-7*24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.db.Exec(`INSERT INTO issue_articles (issue_id, article_id, position) VALUES ($1, $2, 0)`, issueID, sent.ID); err != nil {
		t.Fatal(err)
	}
	for _, id := range []int64{sent.ID, ru.ID, a.ID, b.ID} {
		if err := s.SetPinned(ctx, id, true); err != nil {
			t.Fatal(err)
		}
	}
	pinned := func(a Article) bool {
		got, err := s.ArticleByID(ctx, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		return got.Pinned
	}
	if !pinned(b) || pinned(a) || !pinned(sent) || !pinned(ru) {
		t.Errorf("pins: b %v (want true), a %v (false), sent %v (true), ru %v (true)", pinned(b), pinned(a), pinned(sent), pinned(ru))
	}
	if err := s.SetPinned(ctx, b.ID, false); err != nil || pinned(b) {
		t.Errorf("unpin: %v, still pinned %v", err, pinned(b))
	}

	if err := s.SetPinned(ctx, a.ID, true); err != nil {
		t.Fatal(err)
	}
	if err := s.SetHidden(ctx, a.ID, true); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.ArticleByID(ctx, a.ID); !got.Hidden || got.Pinned {
		t.Errorf("hidden: %+v, want hidden and no longer pinned", got)
	}
	if err := s.SetHidden(ctx, a.ID, false); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.ArticleByID(ctx, a.ID); got.Hidden {
		t.Errorf("shown again: %+v", got)
	}

	pos := 3
	if err := s.SetPosition(ctx, a.ID, &pos); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.ArticleByID(ctx, a.ID); got.Position == nil || *got.Position != 3 {
		t.Errorf("position: %v", got.Position)
	}
	if err := s.SetPosition(ctx, a.ID, nil); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.ArticleByID(ctx, a.ID); got.Position != nil {
		t.Errorf("position reset: %v", *got.Position)
	}

	missing := a.ID + 1000
	for name, err := range map[string]error{
		"SetPinned":   s.SetPinned(ctx, missing, true),
		"SetHidden":   s.SetHidden(ctx, missing, true),
		"SetPosition": s.SetPosition(ctx, missing, &pos),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s(missing): err = %v, want ErrNotFound", name, err)
		}
	}
	if err := s.SetPosition(ctx, a.ID, new(-2)); !errors.Is(err, ErrInvalid) {
		t.Errorf("negative position: err = %v, want ErrInvalid", err)
	}
}

func TestSeedDemo(t *testing.T) {
	ctx := context.Background()
	s := articleTestStore(t)
	n, err := s.SeedDemo(ctx, []string{"en", "ru", "de"})
	if err != nil {
		t.Fatal(err)
	}
	if want := len(demoArticles["en"]) + len(demoArticles["ru"]); n != want || n < 12 {
		t.Errorf("seeded %d, want %d", n, want)
	}
	for _, lang := range []string{"en", "ru"} {
		arts := articlesByGUID(t, s, lang)
		sections := map[string]bool{}
		for guid, a := range arts {
			if !strings.HasPrefix(guid, "demo:"+lang+":") {
				t.Errorf("guid %q does not say demo", guid)
			}
			if a.PublishedAt.After(asmNow) || a.PublishedAt.Before(asmNow.Add(-5*24*time.Hour)) {
				t.Errorf("%s published %v, want within the last days", guid, a.PublishedAt)
			}
			if a.Title == "" || a.Summary == "" || a.Section == "" {
				t.Errorf("%s incomplete: %+v", guid, a)
			}
			sections[a.Section] = true
		}
		if len(sections) < 3 {
			t.Errorf("%s: only sections %v", lang, sections)
		}
	}
	if _, ok := articlesByGUID(t, s, "en")["demo:en:keep-your-terrorists-close"]; !ok {
		t.Error("the sample article is not among the demo articles")
	}
	if n, err := s.SeedDemo(ctx, []string{"en", "ru"}); n != 0 || err != nil {
		t.Errorf("second seed: %d, %v; want 0", n, err)
	}
}

func articleTestStore(t *testing.T) *Store {
	t.Helper()
	return NewStore(testdb.New(t), func() time.Time { return asmNow })
}

func articlesByGUID(t *testing.T, s *Store, lang string) map[string]Article {
	t.Helper()
	var list []Article
	if err := s.db.Select(&list, `SELECT `+articleColumns+` FROM articles WHERE lang = $1`, lang); err != nil {
		t.Fatal(err)
	}
	m := map[string]Article{}
	for _, a := range list {
		m[a.GUID] = a
	}
	return m
}
