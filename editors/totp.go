package editors

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"image/png"
	"strings"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"github.com/pquerna/otp/totp"
)

// TOTP as authenticator apps expect it (RFC 6238 with SHA-1, 6 digits, 30 s): other parameters
// are ignored by several popular apps, which then show wrong codes.
const (
	totpPeriod = 30
	totpSkew   = 1 // one step either side: a phone clock a little off, a code typed as it changed
)

// TOTPSetup is what an editor needs to add the account to an authenticator app.
type TOTPSetup struct {
	Secret string // base32, for typing in by hand
	URL    string // otpauth://, what the QR code holds
	QRPNG  string // the QR code as a data: URL of a PNG
}

// newTOTPSetup makes a fresh secret for account under issuer.
func newTOTPSetup(issuer, account string) (TOTPSetup, error) {
	key, err := totp.Generate(totp.GenerateOpts{Issuer: issuer, AccountName: account, Period: totpPeriod, SecretSize: 20})
	if err != nil {
		return TOTPSetup{}, fmt.Errorf("editors: totp: %w", err)
	}
	return setupFor(key)
}

func setupFor(key *otp.Key) (TOTPSetup, error) {
	img, err := key.Image(240, 240)
	if err != nil {
		return TOTPSetup{}, fmt.Errorf("editors: totp image: %w", err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return TOTPSetup{}, fmt.Errorf("editors: totp image: %w", err)
	}
	return TOTPSetup{Secret: key.Secret(), URL: key.URL(), QRPNG: "data:image/png;base64," + base64.StdEncoding.EncodeToString(buf.Bytes())}, nil
}

// otpKey rebuilds the key of a stored secret (base32), for showing its QR code again.
func otpKey(issuer, account, secret string) (*otp.Key, error) {
	raw, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(secret)
	if err != nil {
		return nil, fmt.Errorf("editors: totp secret: %w", err)
	}
	key, err := totp.Generate(totp.GenerateOpts{Issuer: issuer, AccountName: account, Period: totpPeriod, Secret: raw})
	if err != nil {
		return nil, fmt.Errorf("editors: totp: %w", err)
	}
	return key, nil
}

// totpStep returns the time step whose code code is, within the skew around now, or false.
func totpStep(secret, code string, now time.Time) (int64, bool) {
	code = strings.ReplaceAll(strings.TrimSpace(code), " ", "")
	if len(code) != 6 {
		return 0, false
	}
	for _, c := range code {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	step := now.Unix() / totpPeriod
	for d := int64(-totpSkew); d <= totpSkew; d++ {
		ok, err := hotp.ValidateCustom(code, uint64(step+d), secret, hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
		if err == nil && ok {
			return step + d, true
		}
	}
	return 0, false
}

// TOTPCode is the code of secret at t (tests, and the command line's checks).
func TOTPCode(secret string, t time.Time) string {
	code, _ := totp.GenerateCodeCustom(secret, t, totp.ValidateOpts{Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	return code
}

// sealer keeps TOTP secrets encrypted at rest (AES-256-GCM), under a key derived from the service
// secret and bound to the editor's id: a copy of the table alone does not give the codes, as long
// as the service secret is kept outside the database (NEWSLETTER_SECRET).
type sealer struct{ aead cipher.AEAD }

func newSealer(secret []byte) sealer {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("newsletter editors totp seal v1"))
	block, err := aes.NewCipher(m.Sum(nil))
	if err != nil {
		panic(err) // a 32-byte key always makes a cipher
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	return sealer{aead}
}

func (s sealer) seal(editorID int64, plain string) []byte {
	nonce := make([]byte, s.aead.NonceSize())
	rand.Read(nonce)
	return s.aead.Seal(nonce, nonce, []byte(plain), idBytes(editorID))
}

func (s sealer) open(editorID int64, sealed []byte) (string, error) {
	n := s.aead.NonceSize()
	if len(sealed) < n {
		return "", errors.New("editors: sealed totp secret too short")
	}
	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], idBytes(editorID))
	if err != nil {
		return "", errors.New("editors: the totp secret does not open (was NEWSLETTER_SECRET changed?)")
	}
	return string(plain), nil
}

func idBytes(id int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(id)) }
