package textclean

import (
	"strings"
	"unicode/utf8"
)

// ClipBytes returns s as valid UTF-8 (invalid bytes dropped) of at most n bytes, cut before a rune
// rather than inside one: the form of every bounded text column and header value.
func ClipBytes(s string, n int) string {
	s = strings.ToValidUTF8(s, "")
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}

// ClipLine is s on one line (every run of whitespace one space) clipped to n bytes, as ClipBytes:
// a failure reason or error for a log, a ledger row or the editor pages.
func ClipLine(s string, n int) string {
	return ClipBytes(strings.Join(strings.Fields(strings.ToValidUTF8(s, "")), " "), n)
}
