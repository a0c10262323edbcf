package textclean

import (
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// AddressMark replaces a reader's address in stored texts and logs.
const AddressMark = "<address>"

// AddressScrubber takes one reader's address out of texts that servers wrote (SMTP replies quote the
// recipient, in any case, with the domain as punycode or Unicode, sometimes URL-encoded or only
// the local part). Spellings are matched without regard to case and only as whole tokens, so
// "ann" leaves "annual" alone.
type AddressScrubber struct {
	full  []*regexp.Regexp // the address in its spellings
	local []*regexp.Regexp // the local part, and its base before a "+tag"
}

// minLocalScrub is the shortest local part scrubbed on its own: shorter ones are more often a
// word of the server's text than the reader's name.
const minLocalScrub = 3

// NewAddressScrubber returns the scrubber of email (as stored: the domain lower-cased).
func NewAddressScrubber(email string) *AddressScrubber {
	at := strings.LastIndexByte(email, '@')
	if at <= 0 {
		return &AddressScrubber{full: []*regexp.Regexp{literalRe(email)}}
	}
	local, domain := email[:at], email[at+1:]
	domains := []string{domain}
	if a, err := idna.Lookup.ToASCII(domain); err == nil {
		domains = append(domains, a)
	}
	if u, err := idna.Display.ToUnicode(domain); err == nil {
		domains = append(domains, u)
	}
	var sc AddressScrubber
	seen := map[string]bool{}
	for _, d := range domains {
		for _, sep := range []string{"@", "%40"} {
			if v := strings.ToLower(local + sep + d); !seen[v] {
				seen[v] = true
				sc.full = append(sc.full, literalRe(local+sep+d))
			}
		}
	}
	locals := []string{local}
	if base, _, tagged := strings.Cut(local, "+"); tagged {
		locals = append(locals, base)
	}
	for _, l := range locals {
		if utf8.RuneCountInString(l) >= minLocalScrub {
			sc.local = append(sc.local, literalRe(l))
		}
	}
	return &sc
}

func literalRe(s string) *regexp.Regexp { return regexp.MustCompile(`(?i)` + regexp.QuoteMeta(s)) }

// Address scrubs the whole address only: for texts that are not the reader's own (an issue's
// pause reason), where the local part alone may well be someone else's word.
func (sc *AddressScrubber) Address(s string) string {
	for _, re := range sc.full {
		s = replaceTokens(re, s)
	}
	return strings.ReplaceAll(s, "<"+AddressMark+">", AddressMark)
}

// All scrubs the address and its local part: for texts about this reader.
func (sc *AddressScrubber) All(s string) string {
	s = sc.Address(s)
	for _, re := range sc.local {
		s = replaceTokens(re, s)
	}
	return s
}

// replaceTokens replaces the matches of re that stand as a token of an address (nothing that
// could continue an address on either side).
func replaceTokens(re *regexp.Regexp, s string) string {
	matches := re.FindAllStringIndex(s, -1)
	if matches == nil {
		return s
	}
	var b strings.Builder
	last := 0
	for _, m := range matches {
		before, _ := utf8.DecodeLastRuneInString(s[:m[0]])
		after, _ := utf8.DecodeRuneInString(s[m[1]:])
		if (m[0] > 0 && addressRune(before)) || (m[1] < len(s) && addressRune(after)) {
			continue
		}
		b.WriteString(s[last:m[0]])
		b.WriteString(AddressMark)
		last = m[1]
	}
	b.WriteString(s[last:])
	return b.String()
}

// addressRune reports a character that may continue an address's local part or domain.
func addressRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.IsMark(r) || strings.ContainsRune(".-_+%", r)
}
