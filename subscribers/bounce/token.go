package bounce

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// Errors of Parse.
var (
	// ErrNotVERP: the address is not base with a token in its local part.
	ErrNotVERP = errors.New("bounce: not a VERP address of the bounce address")
	// ErrBadToken: a token that we did not sign, or signed with another secret, or altered.
	ErrBadToken = errors.New("bounce: token does not verify")
)

// A token is lowercase base32 without padding (some MTAs lowercase local parts; base32 has no
// case to lose) of: version (1 byte) | the reader's uuid (16) | the issue id (unsigned varint,
// 1-3 bytes for the first two million issues) | the first 8 bytes of HMAC-SHA256 under the
// service secret over "bounce", a zero byte and what precedes. 45 characters for most issues, so
// "bounces+TOKEN" fits the 64 octets RFC 5321 allows a local part for a base local part of up to
// 18 characters. 64 bits of MAC are plenty where each guess costs an email and nothing can be
// checked offline. The purpose string keeps these MACs apart from the link tokens' (which use
// "confirm", "unsubscribe" and "manage" the same way).
const (
	tokenVersion = 1
	tokenMACLen  = 8
	tokenPurpose = "bounce"
)

// TokenLen is the most characters Address adds after "+" for an issue id below two million
// (2^21, three bytes of varint).
const TokenLen = 45

// MaxBaseLocal is the longest local part a bounce address may have, so that with "+" and the
// token it stays within the 64 octets RFC 5321 allows.
const MaxBaseLocal = 64 - 1 - TokenLen

// CheckBase reports whether base can be the bounce address (NEWSLETTER_BOUNCE_ADDRESS): a bare
// address (no name, no angle brackets), its local part a dot-atom of ASCII of at most
// MaxBaseLocal octets (a strict MTA refuses a longer VERP address, and SMTPUTF8 is not offered
// everywhere), its domain a host name with at least one dot (Postfix's reject_non_fqdn_sender).
func CheckBase(base string) error {
	local, domain, ok := splitAddr(base)
	if !ok {
		return errors.New("want a bare address such as bounces@news.example.org")
	}
	if len(local) > MaxBaseLocal {
		return fmt.Errorf("the local part %q is %d characters; at most %d leave room for the %d-character token", local, len(local), MaxBaseLocal, TokenLen)
	}
	if !dotAtom(local) {
		return fmt.Errorf("the local part %q must be letters, digits and !#$%%&'*+-/=?^_`{|}~, dots between them", local)
	}
	if !hostName(domain) {
		return fmt.Errorf("the domain %q is not a host name with a dot", domain)
	}
	return nil
}

// dotAtom reports whether s is an RFC 5322 dot-atom of ASCII.
func dotAtom(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' || strings.Contains(s, "..") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte(".!#$%&'*+-/=?^_`{|}~", c) >= 0) {
			return false
		}
	}
	return true
}

// hostName reports whether s is an ASCII host name of two labels or more.
func hostName(s string) bool {
	labels := strings.Split(s, ".")
	if len(s) > 253 || len(labels) < 2 {
		return false
	}
	for _, l := range labels {
		if l == "" || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return false
		}
		for i := 0; i < len(l); i++ {
			c := l[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-') {
				return false
			}
		}
	}
	return true
}

var tokenEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// Address is the VERP Return-Path for one reader's copy of one issue: base (e.g.
// bounces@news.example.org) with "+TOKEN" added to its local part. issueID 0 stands for mail that
// belongs to no issue (a confirmation email). It returns "" for an invalid base, uuid or issue id.
func Address(base string, secret []byte, subscriberUUID string, issueID int64) string {
	local, domain, ok := splitAddr(base)
	if !ok || issueID < 0 {
		return ""
	}
	id, ok := parseUUID(subscriberUUID)
	if !ok {
		return ""
	}
	b := make([]byte, 0, 1+16+binary.MaxVarintLen64+tokenMACLen)
	b = append(b, tokenVersion)
	b = append(b, id[:]...)
	b = binary.AppendUvarint(b, uint64(issueID))
	b = append(b, tokenMAC(secret, b)...)
	return local + "+" + tokenEncoding.EncodeToString(b) + "@" + domain
}

// Parse checks that addr is a VERP address made by Address for base under secret and returns the
// reader's uuid and the issue id. The local part and the domain compare without regard to case,
// and addr may come in angle brackets. ErrNotVERP when addr is not base with a token;
// ErrBadToken when the token is not one we signed.
func Parse(addr, base string, secret []byte) (subscriberUUID string, issueID int64, err error) {
	addr = strings.TrimSpace(addr)
	addr = strings.TrimSpace(strings.TrimSuffix(strings.TrimPrefix(addr, "<"), ">"))
	local, domain, ok := splitAddr(addr)
	bLocal, bDomain, bOK := splitAddr(base)
	if !ok || !bOK || !strings.EqualFold(domain, bDomain) {
		return "", 0, ErrNotVERP
	}
	prefix := bLocal + "+"
	if len(local) <= len(prefix) || !strings.EqualFold(local[:len(prefix)], prefix) {
		return "", 0, ErrNotVERP
	}
	token := strings.ToLower(local[len(prefix):])
	b, err := tokenEncoding.DecodeString(token)
	// Only the canonical spelling: base32's spare trailing bits would give one token several.
	if err != nil || tokenEncoding.EncodeToString(b) != token {
		return "", 0, fmt.Errorf("%w: not a token", ErrBadToken)
	}
	if len(b) < 1+16+1+tokenMACLen || b[0] != tokenVersion {
		return "", 0, fmt.Errorf("%w: not a token", ErrBadToken)
	}
	body, mac := b[:len(b)-tokenMACLen], b[len(b)-tokenMACLen:]
	if !hmac.Equal(mac, tokenMAC(secret, body)) {
		return "", 0, ErrBadToken
	}
	issue, n := binary.Uvarint(body[17:])
	if n <= 0 || 17+n != len(body) || issue > 1<<62 {
		return "", 0, fmt.Errorf("%w: bad issue", ErrBadToken)
	}
	return formatUUID(body[1:17]), int64(issue), nil
}

func tokenMAC(secret, body []byte) []byte {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(tokenPurpose))
	h.Write([]byte{0})
	h.Write(body)
	return h.Sum(nil)[:tokenMACLen]
}

// splitAddr splits a bare address at its last @; both parts must be there.
func splitAddr(addr string) (local, domain string, ok bool) {
	at := strings.LastIndexByte(addr, '@')
	if at <= 0 || at == len(addr)-1 || strings.ContainsAny(addr, " \t\r\n<>") {
		return "", "", false
	}
	return addr[:at], addr[at+1:], true
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
