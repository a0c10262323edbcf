package editors

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"unicode/utf8"

	"golang.org/x/crypto/argon2"
)

// Password rules: long enough to resist guessing without a throttle, short enough that hashing
// stays bounded.
const (
	MinPasswordLen = 12  // characters
	MaxPasswordLen = 256 // bytes
)

// hashParams are argon2id's costs: OWASP's first choice (46 MiB, one pass, one lane), about
// 50 ms on one core. They are written into each hash, so raising them later keeps old hashes
// readable (and a login rehashes them).
type hashParams struct {
	memory  uint32 // KiB
	time    uint32
	threads uint8
}

var defaultParams = hashParams{memory: 46 * 1024, time: 1, threads: 1}

// hashSlots bounds the hashes computed at once, so a burst of logins cannot take memory without
// limit (each takes hashParams.memory).
var hashSlots = make(chan struct{}, max(2, runtime.NumCPU()))

// CheckPassword refuses a password that is too short or too long.
func CheckPassword(p string) error {
	if utf8.RuneCountInString(p) < MinPasswordLen {
		return fmt.Errorf("editors: password: at least %d characters: %w", MinPasswordLen, ErrInvalid)
	}
	if len(p) > MaxPasswordLen || !utf8.ValidString(p) {
		return fmt.Errorf("editors: password: at most %d bytes of text: %w", MaxPasswordLen, ErrInvalid)
	}
	return nil
}

// hashPassword returns the PHC string of password under fresh salt.
func hashPassword(password string) string {
	salt := make([]byte, 16)
	rand.Read(salt)
	p := defaultParams
	return encodeHash(p, salt, derive(password, salt, p, 32))
}

func derive(password string, salt []byte, p hashParams, keyLen uint32) []byte {
	hashSlots <- struct{}{}
	defer func() { <-hashSlots }()
	return argon2.IDKey([]byte(password), salt, p.time, p.memory, p.threads, keyLen)
}

func encodeHash(p hashParams, salt, key []byte) string {
	b64 := base64.RawStdEncoding
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, p.memory, p.time, p.threads, b64.EncodeToString(salt), b64.EncodeToString(key))
}

// verifyPassword reports whether password matches the PHC string encoded, and whether the hash
// was made with other costs than today's (so it should be made again).
func verifyPassword(encoded, password string) (ok, stale bool) {
	p, salt, key, err := decodeHash(encoded)
	if err != nil || len(password) > MaxPasswordLen {
		return false, false
	}
	got := derive(password, salt, p, uint32(len(key)))
	return subtle.ConstantTimeCompare(got, key) == 1, p != defaultParams
}

func decodeHash(s string) (p hashParams, salt, key []byte, err error) {
	parts := strings.Split(s, "$")
	if len(parts) != 6 || parts[1] != "argon2id" || parts[2] != fmt.Sprintf("v=%d", argon2.Version) {
		return p, nil, nil, fmt.Errorf("editors: not an argon2id hash: %w", ErrInvalid)
	}
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &p.memory, &p.time, &p.threads); err != nil ||
		p.memory < 8*1024 || p.memory > 1024*1024 || p.time < 1 || p.time > 10 || p.threads < 1 || p.threads > 8 {
		return p, nil, nil, fmt.Errorf("editors: argon2id costs: %w", ErrInvalid)
	}
	if salt, err = base64.RawStdEncoding.DecodeString(parts[4]); err != nil || len(salt) < 8 {
		return p, nil, nil, fmt.Errorf("editors: argon2id salt: %w", ErrInvalid)
	}
	if key, err = base64.RawStdEncoding.DecodeString(parts[5]); err != nil || len(key) < 16 || len(key) > 64 {
		return p, nil, nil, fmt.Errorf("editors: argon2id key: %w", ErrInvalid)
	}
	return p, salt, key, nil
}

// dummyHash is compared against when no account matches, so an unknown address costs as much
// time as a wrong password and the answer's timing does not tell which it was.
// It is made on first use, so commands that log nobody in do not pay for it.
var dummyHash = sync.OnceValue(func() string { return hashPassword("no account has this password; it only spends the time") })
