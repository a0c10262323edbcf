package subscribers

import (
	"errors"
	"time"
)

// Purpose says what a signed token may be used for; a token of one purpose never verifies as another.
type Purpose string

// The purposes of signed links.
const (
	PurposeConfirm     Purpose = "confirm"
	PurposeUnsubscribe Purpose = "unsubscribe"
	PurposeManage      Purpose = "manage"
)

// Signer makes and verifies the HMAC-signed tokens of confirm, unsubscribe and manage links.
type Signer struct {
	secret []byte
}

// NewSigner returns a Signer keyed by secret.
func NewSigner(secret []byte) *Signer {
	return &Signer{secret: append([]byte(nil), secret...)}
}

// Token signs (p, uuid, issued) into a URL-safe string.
func (s *Signer) Token(p Purpose, uuid string, issued time.Time) string {
	return ""
}

// Verify checks token for purpose p and returns the reader's uuid and when the token was issued.
func (s *Signer) Verify(p Purpose, token string, now time.Time) (uuid string, issued time.Time, err error) {
	return "", time.Time{}, errors.New("todo")
}

// ConfirmURL is baseURL + "/confirm/" + a confirm token issued now.
func (s *Signer) ConfirmURL(baseURL, uuid string, now time.Time) string {
	return ""
}

// UnsubscribeURL is baseURL + "/unsubscribe/" + a token that never expires.
func (s *Signer) UnsubscribeURL(baseURL, uuid string) string {
	return ""
}

// ManageURL is baseURL + "/manage/" + a token that never expires.
func (s *Signer) ManageURL(baseURL, uuid string) string {
	return ""
}
