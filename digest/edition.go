package digest

import "time"

// MaxEditionMarkdown bounds an edition's Markdown, in bytes: a long investigation is a tenth of it,
// and what is rendered from it stays a size mail providers take.
const MaxEditionMarkdown = 200 * 1024

// MaxEditionSubject bounds an edition's subject, in characters, as an issue's.
const MaxEditionSubject = 200

// Edition is one email an editor writes in Markdown, in one language, for a newsletter of kind
// editions. So far it is only rendered (package render): nothing stores, schedules or sends one.
type Edition struct {
	ID   int64
	Lang string
	// Newsletter is the newsletter's name in Lang, for the masthead and the footer's reason; empty
	// names none.
	Newsletter string
	Subject    string
	Preheader  string // the inbox preview line; empty: the start of the text
	Markdown   string
	Date       time.Time // the day it is dated: when it is sent, or scheduled to be
}
