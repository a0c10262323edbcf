// Package subscribers keeps the reader list: addresses, opt-in, consent, confirmation emails.
package subscribers

import (
	"errors"
	"net/mail"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Sentinel errors; callers test them with errors.Is.
var (
	ErrNotFound = errors.New("subscribers: not found")
	ErrInvalid  = errors.New("subscribers: invalid")
	// ErrExpired: a token too old, or superseded by a later opt-in or by the reader leaving.
	ErrExpired = errors.New("subscribers: expired")
)

// Status is where a reader stands.
type Status string

// The statuses a reader moves through.
const (
	StatusPending      Status = "pending"
	StatusConfirmed    Status = "confirmed"
	StatusUnsubscribed Status = "unsubscribed"
	StatusBounced      Status = "bounced"
	StatusComplained   Status = "complained"
)

// Valid reports whether s is one of the known statuses.
func (s Status) Valid() bool {
	switch s {
	case StatusPending, StatusConfirmed, StatusUnsubscribed, StatusBounced, StatusComplained:
		return true
	}
	return false
}

// Subscriber is one reader.
type Subscriber struct {
	ID             int64      `db:"id" json:"-"`
	UUID           string     `db:"uuid" json:"-"`
	Email          string     `db:"email" json:"email"`
	Name           string     `db:"name" json:"name"`
	Lang           string     `db:"lang" json:"lang"`
	Status         Status     `db:"status" json:"status"`
	CreatedAt      time.Time  `db:"created_at" json:"created_at"`
	UpdatedAt      time.Time  `db:"updated_at" json:"updated_at"`
	SubscribedAt   time.Time  `db:"subscribed_at" json:"subscribed_at"`
	ConfirmedAt    *time.Time `db:"confirmed_at" json:"confirmed_at"`
	UnsubscribedAt *time.Time `db:"unsubscribed_at" json:"unsubscribed_at"`
	BouncedAt      *time.Time `db:"bounced_at" json:"bounced_at"`
	ComplainedAt   *time.Time `db:"complained_at" json:"complained_at"`
}

// FieldError is a validation error naming the form field ("email", "name", "lang") and a message key.
type FieldError struct {
	Field, Key string
}

func (e *FieldError) Error() string { return "invalid " + e.Field + ": " + e.Key }

// Is makes errors.Is(err, ErrInvalid) true for every FieldError.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// Message keys of the field errors (translated in templates/i18n/subscribers.*.json; a key
// without a translation falls back to "subscribers.error.FIELD").
const (
	KeyControl       = "subscribers.error.control"
	KeyEmailRequired = "subscribers.error.email_required"
	KeyEmailInvalid  = "subscribers.error.email"
	KeyEmailTooLong  = "subscribers.error.email_too_long"
	KeyNameTooLong   = "subscribers.error.name_too_long"
	KeyNameInvalid   = "subscribers.error.name"
	KeyLangInvalid   = "subscribers.error.lang"
)

// Limits on what a reader may type.
const (
	MaxEmailLen = 254 // characters, as the issue and the schema count them
	MaxNameLen  = 100 // characters
	maxLocalLen = 64  // octets (RFC 5321)
)

// NormalizeEmail trims s, lower-cases its domain and validates it. Both parts are put in Unicode
// NFC so that one address typed two ways is stored once. An internationalised domain is kept as
// typed (lower-cased), not converted to punycode. The local part keeps its case: only its
// comparison is case-insensitive (the unique index on lower(email)).
func NormalizeEmail(s string) (string, error) {
	// CR, LF and NUL are refused anywhere, even where trimming would hide them: they are header
	// injection attempts, not typos.
	if strings.ContainsAny(s, "\r\n\x00") {
		return "", &FieldError{"email", KeyControl}
	}
	if len(s) > 4*MaxEmailLen+64 {
		return "", &FieldError{"email", KeyEmailTooLong}
	}
	if !utf8.ValidString(s) {
		return "", &FieldError{"email", KeyEmailInvalid}
	}
	s = norm.NFC.String(strings.TrimSpace(s))
	if s == "" {
		return "", &FieldError{"email", KeyEmailRequired}
	}
	if utf8.RuneCountInString(s) > MaxEmailLen {
		return "", &FieldError{"email", KeyEmailTooLong}
	}
	at := strings.LastIndexByte(s, '@')
	if at < 0 {
		return "", &FieldError{"email", KeyEmailInvalid}
	}
	local, domain := s[:at], strings.ToLower(s[at+1:])
	// Lower-casing may change the NFC form of some scripts; normalise again.
	domain = norm.NFC.String(domain)
	if !validLocal(local) || !validDomain(domain) {
		return "", &FieldError{"email", KeyEmailInvalid}
	}
	addr := local + "@" + domain
	if utf8.RuneCountInString(addr) > MaxEmailLen {
		return "", &FieldError{"email", KeyEmailTooLong}
	}
	// The mail library parses every recipient with net/mail: accept nothing it would refuse, or
	// the confirmation could never be sent.
	if a, err := mail.ParseAddress(addr); err != nil || a.Address != addr {
		return "", &FieldError{"email", KeyEmailInvalid}
	}
	return addr, nil
}

// validLocal accepts a dot-atom local part (RFC 5322 atext, plus UTF-8 letters per RFC 6531).
// Quoted local parts are refused: legal, but in practice only seen in attacks.
func validLocal(s string) bool {
	if s == "" || len(s) > maxLocalLen || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for _, r := range s {
		switch {
		case r < utf8.RuneSelf:
			if !isAtext(byte(r)) && r != '.' {
				return false
			}
		case !unicode.IsLetter(r) && !unicode.IsDigit(r) && !unicode.Is(unicode.Mn, r) && !unicode.Is(unicode.Mc, r):
			return false
		}
	}
	return true
}

func isAtext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// validDomain accepts a host name of at least two labels (letters, digits, hyphens, or Unicode
// letters of an IDN), each 1-63 octets, not starting or ending with a hyphen, with a TLD that is
// not all digits. Address literals ([1.2.3.4]) are refused.
func validDomain(s string) bool {
	if len(s) > 253 {
		return false
	}
	labels := strings.Split(s, ".")
	if len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for _, r := range l {
			switch {
			case r == '-', 'a' <= r && r <= 'z', '0' <= r && r <= '9':
			case r >= utf8.RuneSelf && (unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.Is(unicode.Mn, r) || unicode.Is(unicode.Mc, r)):
			default:
				return false
			}
		}
	}
	tld := labels[len(labels)-1]
	return strings.Trim(tld, "0123456789") != ""
}

// ValidateName trims s and checks it: at most 100 characters, no control characters, no
// bidirectional overrides (which could make the name display as something else). NFC as above.
func ValidateName(s string) (string, error) {
	if strings.ContainsAny(s, "\r\n\x00") {
		return "", &FieldError{"name", KeyControl}
	}
	if !utf8.ValidString(s) {
		return "", &FieldError{"name", KeyNameInvalid}
	}
	if len(s) > 4*MaxNameLen+64 {
		return "", &FieldError{"name", KeyNameTooLong}
	}
	s = norm.NFC.String(strings.TrimSpace(s))
	if utf8.RuneCountInString(s) > MaxNameLen {
		return "", &FieldError{"name", KeyNameTooLong}
	}
	for _, r := range s {
		if unicode.IsControl(r) || isBidiControl(r) || r == utf8.RuneError {
			return "", &FieldError{"name", KeyNameInvalid}
		}
	}
	return s, nil
}

func isBidiControl(r rune) bool {
	return (r >= '\u202a' && r <= '\u202e') || (r >= '\u2066' && r <= '\u2069') || r == '\u200e' || r == '\u200f' || r == '\u061c'
}

// validLang accepts a language code shape ("en", "ru", "pt-br"); which languages are on offer is
// the caller's business (handler options, ImportOptions.Languages).
func validLang(s string) bool {
	if len(s) < 2 || len(s) > 12 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z') && !(i >= 2 && (c == '-' || '0' <= c && c <= '9' || 'A' <= c && c <= 'Z')) {
			return false
		}
	}
	return true
}
