package digest

import (
	"context"
	"fmt"
	"time"
)

// demoArticle is one piece of demonstration content; Age is how long before seeding it was
// published.
type demoArticle struct {
	Slug, Title, Summary, Section, Author string
	Age                                   time.Duration
}

// demoArticles is what a fresh machine shows in the digest preview: the English sample article and
// a few others per language, spread over the last days. Links point at example.com.
var demoArticles = map[string][]demoArticle{
	"en": {
		{"keep-your-terrorists-close", "Keep your terrorists close: Why Russia treats some Islamic fundamentalists as friends and others as enemies",
			"Kremlin propagandist Margarita Simonyan has publicly endorsed the actions of a Russian security officer who cut off the ear of a detained suspect following the Mar. 22 Crocus City Hall terrorist attack outside of Moscow. “This isn't Norway,” she said while highlighting the fact that her country does not follow a European standard in the treatment of suspected criminals.",
			"Analysis", "Editorial team", 5 * time.Hour},
		{"ruble-wages", "Real wages fall for the fourth month as inflation stays above 9%",
			"Economists expect no relief before spring: the central bank's rate rises have yet to reach shop prices, and regional budgets are cutting public-sector bonuses.",
			"Economy", "Demo economics desk", 26 * time.Hour},
		{"sanctions-tracker", "Sanctions tracker: what changed this week",
			"Three new packages, two delistings and one court ruling: a short guide to the week's sanctions news and what it means for trade.",
			"Economy", "Demo economics desk", 40 * time.Hour},
		{"arctic-shipping", "Arctic shipping season runs three weeks longer than ever recorded",
			"Ships sailed the Northern Sea Route until late November this year. Scientists link the longer season to warming in the Arctic.",
			"Climate", "Demo science desk", 52 * time.Hour},
		{"village-library", "Volunteers rebuild a village library, book by book",
			"After the roof collapsed, the villagers collected eleven thousand books in a year. The library reopens on Saturday.",
			"Society", "Demo reporter", 70 * time.Hour},
		{"banned-theatre", "Inside the archive of a banned theatre",
			"Costumes, scripts and letters from a company closed in 2023, kept in a flat by its former stage manager.",
			"Culture", "Demo culture desk", 90 * time.Hour},
	},
	"ru": {
		{"kreml-i-taliban", "Кремль и «Талибан»: почему Москва выбирает одних радикалов в союзники, а других — во враги",
			"Российская пропаганда называет одни исламистские группировки «партнёрами», а другие — «террористами». Разбираемся, по какому принципу Кремль делит их на своих и чужих и что Москва получает от этой дружбы.",
			"Политика", "Редакция", 4 * time.Hour},
		{"zarplaty", "Реальные зарплаты снижаются четвёртый месяц подряд",
			"Экономисты не ждут улучшений до весны: повышение ставки пока не дошло до цен в магазинах, а регионы урезают премии бюджетникам.",
			"Экономика", "Демо-редакция", 28 * time.Hour},
		{"sevmorput", "Северный морской путь: лёд отступает, суда идут",
			"Навигация по Северному морскому пути в этом году продлилась на три недели дольше обычного. Учёные связывают это с потеплением в Арктике.",
			"Мир", "Демо-редакция", 45 * time.Hour},
		{"uchitelya", "Учителя из Бурятии: «Мы учим детей думать»",
			"В сельской школе под Улан-Удэ двенадцать учеников и три учителя. Как здесь готовят к экзаменам и почему сюда едут работать выпускники вузов.",
			"Общество", "Демо-корреспондент", 60 * time.Hour},
		{"vystavka-knig", "Выставка запрещённых книг открылась в Риге",
			"Более двухсот изданий, изъятых из российских библиотек за последние три года, собраны в одном зале.",
			"Культура", "Демо-редакция", 80 * time.Hour},
		{"dolgaya-doroga", "Долгая дорога домой: как жители прифронтовых сёл возвращаются в свои дома",
			"Репортаж из трёх сёл, где люди восстанавливают школы и больницы и заново учатся жить рядом с войной.",
			"Общество", "Демо-корреспондент", 100 * time.Hour},
	},
}

// SeedDemo inserts demonstration articles for langs when there are no articles at all, so the
// digest preview works on a fresh machine. Their guids start with "demo:". It returns how many it
// inserted: 0 once any article exists.
func (s *Store) SeedDemo(ctx context.Context, langs []string) (int, error) {
	tx, err := s.db.BeginTxx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("seed demo: %w", err)
	}
	defer tx.Rollback()
	// Two processes starting together must not both seed.
	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('digest.demo', 0))`); err != nil {
		return 0, fmt.Errorf("seed demo: %w", err)
	}
	var exists bool
	if err := tx.GetContext(ctx, &exists, `SELECT EXISTS (SELECT 1 FROM articles)`); err != nil {
		return 0, fmt.Errorf("seed demo: %w", err)
	}
	if exists {
		return 0, nil
	}
	now := s.now()
	n := 0
	for _, lang := range langs {
		for _, d := range demoArticles[lang] {
			_, err := tx.ExecContext(ctx, `
				INSERT INTO articles (lang, guid, source, title, link, summary, author, section,
					published_at, first_seen_at, updated_at)
				VALUES ($1, $2, 'editor', $3, $4, $5, $6, $7, $8, $9, $9)
				ON CONFLICT (lang, guid) DO NOTHING`,
				lang, "demo:"+lang+":"+d.Slug, d.Title, "https://example.com/demo/"+lang+"/"+d.Slug,
				d.Summary, d.Author, d.Section, now.Add(-d.Age).UTC(), now)
			if err != nil {
				return 0, fmt.Errorf("seed demo: %w", err)
			}
			n++
		}
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("seed demo: %w", err)
	}
	return n, nil
}
