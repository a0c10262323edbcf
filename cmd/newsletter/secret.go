package main

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"strings"
)

// minSecretBytes is the least randomness NEWSLETTER_SECRET must carry: anyone holding one signed
// link can guess the key offline, so it must be out of reach of any search.
const minSecretBytes = 32

var errWeakSecret = errors.New("want at least 32 random bytes, written as 64 or more hex characters or 43 or more base64 characters (openssl rand -hex 32 makes one)")

// checkSecret refuses a configured secret that does not carry minSecretBytes random bytes: it must
// decode as hex or base64 to at least that many bytes, and the bytes must not be a visible pattern
// (few distinct values, a repeated block, a steady sequence), which random bytes never are. The
// key itself stays the string as written, so a deployment whose secret passes keeps its links.
// The error never quotes the value.
func checkSecret(v string) error {
	b := decodeSecret(v)
	if len(b) < minSecretBytes {
		return errWeakSecret
	}
	if patterned(b) {
		return errors.New("the value is a pattern, not random bytes; make one with openssl rand -hex 32")
	}
	return nil
}

// decodeSecret reads v as hex when it has hex digits only (4 bits a character, even where base64
// would read it too), else as base64 (6 bits).
func decodeSecret(v string) []byte {
	if strings.Trim(v, "0123456789abcdefABCDEF") == "" {
		b, _ := hex.DecodeString(v)
		return b
	}
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(v); err == nil {
			return b
		}
	}
	return nil
}

// patterned reports bytes that no random source gives in practice: fewer than 16 distinct values
// or steps between neighbours (32 random bytes have about 30 of each; fewer than 16 happens once
// in 10^15), or a block repeated end to end.
func patterned(b []byte) bool {
	var seen, steps [256]bool
	nSeen, nSteps := 0, 0
	for i, c := range b {
		if !seen[c] {
			seen[c] = true
			nSeen++
		}
		if i > 0 {
			if d := c - b[i-1]; !steps[d] {
				steps[d] = true
				nSteps++
			}
		}
	}
	if nSeen < 16 || nSteps < 16 {
		return true
	}
	for p := 1; p <= len(b)/2; p++ {
		repeats := true
		for i := p; i < len(b) && repeats; i++ {
			repeats = b[i] == b[i-p]
		}
		if repeats {
			return true
		}
	}
	return false
}
