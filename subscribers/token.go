package subscribers

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// Purpose says what a signed token may be used for; a token of one purpose never verifies as another.
type Purpose string

// The purposes of signed links.
const (
	PurposeConfirm     Purpose = "confirm"
	PurposeUnsubscribe Purpose = "unsubscribe"
	PurposeManage      Purpose = "manage"
	// PurposeIssueUnsubscribe is the unsubscribe link of one issue's copy: its token's 8-byte
	// time field carries the issue id instead of a time, so an unsubscription through it is
	// counted for that issue. Its own purpose keeps the two readings of the field apart.
	PurposeIssueUnsubscribe Purpose = "unsubscribe-issue"
	// PurposeNewsletterUnsubscribe is the unsubscribe link of an email of one newsletter that is
	// not an issue (its welcome): the time field carries the newsletter id.
	PurposeNewsletterUnsubscribe Purpose = "unsubscribe-newsletter"
)

// ConfirmTTL is how long a confirm link works.
const ConfirmTTL = 7 * 24 * time.Hour

// clockSkew is how far in the future an issued time may be (several processes, several clocks).
const clockSkew = 5 * time.Minute

// A token is base64url (no padding) of: version (1 byte) | uuid (16) | issued, Unix microseconds
// (8, big endian) | HMAC-SHA256 over purpose, a zero byte and those 25 bytes (32). Microseconds
// because Confirm compares the issued time with the reader's subscribed_at, kept to the microsecond.
const (
	tokenVersion = 1
	tokenBody    = 1 + 16 + 8
	tokenLen     = tokenBody + sha256.Size
)

var tokenEncoding = base64.RawURLEncoding.Strict()

// Signer makes and verifies the HMAC-signed tokens of confirm, unsubscribe and manage links.
type Signer struct {
	secret []byte
}

// NewSigner returns a Signer keyed by secret.
func NewSigner(secret []byte) *Signer {
	return &Signer{secret: append([]byte(nil), secret...)}
}

// Token signs (p, uuid, issued) into a URL-safe string. A uuid that is not a UUID yields "", which
// never verifies.
func (s *Signer) Token(p Purpose, uuid string, issued time.Time) string {
	id, ok := parseUUID(uuid)
	if !ok {
		return ""
	}
	b := make([]byte, tokenBody, tokenLen)
	b[0] = tokenVersion
	copy(b[1:17], id[:])
	binary.BigEndian.PutUint64(b[17:25], uint64(issued.UnixMicro()))
	b = append(b, s.mac(p, b)...)
	return tokenEncoding.EncodeToString(b)
}

// Verify checks token for purpose p and returns the reader's uuid and when the token was issued.
// ErrInvalid: not a token of ours for p. ErrExpired: a confirm token older than ConfirmTTL.
// Unsubscribe and manage tokens never expire.
func (s *Signer) Verify(p Purpose, token string, now time.Time) (uuid string, issued time.Time, err error) {
	if len(token) != tokenEncoding.EncodedLen(tokenLen) {
		return "", time.Time{}, fmt.Errorf("token: %w", ErrInvalid)
	}
	b, err := tokenEncoding.DecodeString(token)
	if err != nil || len(b) != tokenLen || b[0] != tokenVersion {
		return "", time.Time{}, fmt.Errorf("token: %w", ErrInvalid)
	}
	if !hmac.Equal(b[tokenBody:], s.mac(p, b[:tokenBody])) {
		return "", time.Time{}, fmt.Errorf("token: %w", ErrInvalid)
	}
	issued = time.UnixMicro(int64(binary.BigEndian.Uint64(b[17:25])))
	if p == PurposeConfirm {
		if issued.After(now.Add(clockSkew)) {
			return "", time.Time{}, fmt.Errorf("token: %w", ErrInvalid)
		}
		if now.Sub(issued) > ConfirmTTL {
			return "", time.Time{}, fmt.Errorf("token: %w", ErrExpired)
		}
	}
	return formatUUID(b[1:17]), issued, nil
}

func (s *Signer) mac(p Purpose, body []byte) []byte {
	h := hmac.New(sha256.New, s.secret)
	h.Write([]byte(p))
	h.Write([]byte{0})
	h.Write(body)
	return h.Sum(nil)
}

// LogTag names a client in the log without saying who it is: 8 hex characters of an HMAC under
// the service secret (its own purpose, so no token can be made of it). The same client gets the
// same tag, so repeated hits show, and without the secret nobody can run the IPv4 space through it.
func (s *Signer) LogTag(v string) string {
	return hex.EncodeToString(s.mac("log-tag", []byte(v))[:4])
}

// ConfirmURL is baseURL + "/confirm/" + a confirm token issued now.
func (s *Signer) ConfirmURL(baseURL, uuid string, now time.Time) string {
	return strings.TrimRight(baseURL, "/") + "/confirm/" + s.Token(PurposeConfirm, uuid, now)
}

// UnsubscribeURL is baseURL + "/unsubscribe/" + a token that never expires. The issued time is
// fixed, so a reader's link is the same in every email.
func (s *Signer) UnsubscribeURL(baseURL, uuid string) string {
	return strings.TrimRight(baseURL, "/") + "/unsubscribe/" + s.Token(PurposeUnsubscribe, uuid, time.UnixMicro(0))
}

// IssueUnsubscribeURL is baseURL + "/unsubscribe/" + a token that never expires and names the
// issue whose copy carries it (see PurposeIssueUnsubscribe); the same for a reader and an issue
// every time.
func (s *Signer) IssueUnsubscribeURL(baseURL, uuid string, issueID int64) string {
	return strings.TrimRight(baseURL, "/") + "/unsubscribe/" + s.Token(PurposeIssueUnsubscribe, uuid, time.UnixMicro(issueID))
}

// NewsletterUnsubscribeURL is baseURL + "/unsubscribe/" + a token that never expires and names
// newsletter newsletterID (see PurposeNewsletterUnsubscribe); the same for a reader and a
// newsletter every time.
func (s *Signer) NewsletterUnsubscribeURL(baseURL, uuid string, newsletterID int64) string {
	return strings.TrimRight(baseURL, "/") + "/unsubscribe/" + s.Token(PurposeNewsletterUnsubscribe, uuid, time.UnixMicro(newsletterID))
}

// UnsubscribeScope is what an unsubscribe link leaves: the newsletter of issue Issue, newsletter
// Newsletter, or (both 0) everything.
type UnsubscribeScope struct {
	Issue      int64
	Newsletter int64
}

// VerifyUnsubscribeScope checks the token of an unsubscribe link, of any kind, and returns the
// reader's uuid and what the link leaves: a reader's link of no issue (as UnsubscribeURL writes it
// and emails sent before links named their issue carry) has the zero scope. ErrInvalid for
// anything else, an id below 1 included.
func (s *Signer) VerifyUnsubscribeScope(token string) (uuid string, scope UnsubscribeScope, err error) {
	if uuid, _, err = s.Verify(PurposeUnsubscribe, token, time.Time{}); err == nil {
		return uuid, scope, nil
	}
	uuid, field, err := s.Verify(PurposeIssueUnsubscribe, token, time.Time{})
	id := &scope.Issue
	if err != nil {
		if uuid, field, err = s.Verify(PurposeNewsletterUnsubscribe, token, time.Time{}); err != nil {
			return "", UnsubscribeScope{}, err
		}
		id = &scope.Newsletter
	}
	if *id = field.UnixMicro(); *id < 1 {
		return "", UnsubscribeScope{}, fmt.Errorf("token: %w", ErrInvalid)
	}
	return uuid, scope, nil
}

// VerifyUnsubscribe is VerifyUnsubscribeScope for whoever only needs the issue (a complaint's
// attribution): a newsletter's link is one of no issue.
func (s *Signer) VerifyUnsubscribe(token string) (uuid string, issueID int64, err error) {
	uuid, scope, err := s.VerifyUnsubscribeScope(token)
	return uuid, scope.Issue, err
}

// ManageURL is baseURL + "/manage/" + a token that never expires (fixed issued time, as above).
func (s *Signer) ManageURL(baseURL, uuid string) string {
	return strings.TrimRight(baseURL, "/") + "/manage/" + s.Token(PurposeManage, uuid, time.UnixMicro(0))
}

// parseUUID reads the canonical 8-4-4-4-12 hex form, any case.
func parseUUID(s string) (id [16]byte, ok bool) {
	if len(s) != 36 || s[8] != '-' || s[13] != '-' || s[18] != '-' || s[23] != '-' {
		return id, false
	}
	h := s[0:8] + s[9:13] + s[14:18] + s[19:23] + s[24:36]
	if _, err := hex.Decode(id[:], []byte(h)); err != nil {
		return id, false
	}
	return id, true
}

func formatUUID(b []byte) string {
	h := hex.EncodeToString(b)
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
}
