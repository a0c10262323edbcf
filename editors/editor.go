// Package editors keeps the people who run the editor pages: their accounts (an address, a name, a
// role, an argon2id password and optional TOTP), the one-time links that set a password, their
// sessions, the login throttle, and the audit log of what they and the command line did.
package editors

import (
	"errors"
	"fmt"
	"net/mail"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Role is what an editor may do; each role may do everything the roles below it may.
type Role int

// The roles, weakest first.
const (
	// Writer edits articles, subject and note, previews, and sends a test to their own address.
	Writer Role = iota + 1
	// Publisher also approves, sends now, pauses, resumes and cancels.
	Publisher
	// Admin also has the readers' pages, erasure, the editors and the audit log.
	Admin
)

// Roles lists every role, weakest first.
var Roles = []Role{Writer, Publisher, Admin}

func (r Role) String() string {
	switch r {
	case Writer:
		return "writer"
	case Publisher:
		return "publisher"
	case Admin:
		return "admin"
	}
	return "none"
}

// Allows reports whether an editor with role r may do what needs role need.
func (r Role) Allows(need Role) bool { return need >= Writer && r >= need }

// ParseRole reads "writer", "publisher" or "admin".
func ParseRole(s string) (Role, error) {
	for _, r := range Roles {
		if s == r.String() {
			return r, nil
		}
	}
	return 0, fmt.Errorf("editors: role %q: want writer, publisher or admin: %w", s, ErrInvalid)
}

// Errors of the store; the editor pages turn them into statuses in one table.
var (
	ErrNotFound    = errors.New("no such editor")
	ErrExists      = errors.New("an editor with that address exists already")
	ErrInvalid     = errors.New("invalid")
	ErrLinkExpired = errors.New("the link is not valid (any more)")
	// ErrCredentials is a wrong password or code, an unknown address, or a disabled account: the
	// login says the same in each case.
	ErrCredentials = errors.New("wrong address, password or code")
	ErrThrottled   = errors.New("too many attempts; wait a few minutes")
	ErrNoSession   = errors.New("no valid editor session")
	// ErrLastAdmin refuses what would leave no enabled admin.
	ErrLastAdmin = errors.New("the last admin cannot be disabled, demoted or deleted")
	// ErrSharedRetired refuses the shared password once an editor has a password of their own.
	ErrSharedRetired = errors.New("the shared editor password no longer works: editors log in with their own accounts")
)

// Editor is one account, as the pages and the command line show it.
type Editor struct {
	ID                int64
	Email             string
	Name              string
	Role              Role
	HasPassword       bool // false: invited or reset, waiting for the link to be used
	TOTP              bool // TOTP is switched on
	CreatedAt         time.Time
	PasswordChangedAt *time.Time
	LastLoginAt       *time.Time
	DisabledAt        *time.Time
	// Shared: no account, the shared password of NEWSLETTER_ADMIN_PASSWORD (kept for one release
	// for compatibility); it acts as an admin named SharedName.
	Shared bool

	epoch int // the session epoch when the editor was read: a session started from it dies with it
}

// State is "active", "invited" (no password yet) or "disabled".
func (e Editor) State() string {
	switch {
	case e.DisabledAt != nil:
		return "disabled"
	case !e.HasPassword:
		return "invited"
	}
	return "active"
}

// Label names the editor in the audit log and on pages: the address, which is unique.
func (e Editor) Label() string {
	if e.Shared {
		return SharedName
	}
	return e.Email
}

// Display is the name to greet the editor by: the display name, else the address.
func (e Editor) Display() string {
	if e.Name != "" {
		return e.Name
	}
	return e.Label()
}

// NormalizeEmail returns the address lower-cased and trimmed, or ErrInvalid for anything that is
// not one plain address.
func NormalizeEmail(s string) (string, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	if len(s) < 3 || len(s) > 254 || strings.ContainsAny(s, " \t\r\n\x00<>,;\"") {
		return "", fmt.Errorf("editors: address: %w", ErrInvalid)
	}
	a, err := mail.ParseAddress(s)
	if err != nil || a.Address != s {
		return "", fmt.Errorf("editors: address: %w", ErrInvalid)
	}
	return s, nil
}

// CheckName refuses a display name that is too long or carries control or bidi characters.
func CheckName(s string) error {
	if utf8.RuneCountInString(s) > 100 || !utf8.ValidString(s) {
		return fmt.Errorf("editors: name: %w", ErrInvalid)
	}
	for _, c := range s {
		if unicode.IsControl(c) || unicode.Is(unicode.Bidi_Control, c) {
			return fmt.Errorf("editors: name: %w", ErrInvalid)
		}
	}
	return nil
}
