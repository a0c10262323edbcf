package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"

	"newsletter/internal/pgdb"
	"newsletter/internal/testdb"
	"newsletter/migrations"
)

func TestCheckSecret(t *testing.T) {
	random := make([]byte, 32)
	rand.Read(random)
	block := make([]byte, 16)
	rand.Read(block)
	sequence := make([]byte, 32)
	for i := range sequence {
		sequence[i] = byte(7 * i)
	}
	for _, c := range []struct {
		name, v string
		ok      bool
	}{
		{"Hex64", hex.EncodeToString(random), true},
		{"HexUpper", strings.ToUpper(hex.EncodeToString(random)), true},
		{"Base64Raw43", base64.RawStdEncoding.EncodeToString(random), true},
		{"Base64Padded44", base64.StdEncoding.EncodeToString(random), true},
		{"Base64URL", base64.RawURLEncoding.EncodeToString(append(random, 0xfb, 0xff)), true},
		{"Old16Chars", "0123456789abcdef", false},
		{"Words", "end-to-end-test-secret-0123456789", false},
		{"Hex63", hex.EncodeToString(random)[:63], false},
		{"Hex62", hex.EncodeToString(random[:31]), false},
		{"Base64Of31Bytes", base64.RawStdEncoding.EncodeToString(random[:31]), false},
		{"RepeatedChar", strings.Repeat("a", 64), false},
		{"Zeros", strings.Repeat("0", 128), false},
		{"RepeatedHexDigits", strings.Repeat("0123456789abcdef", 4), false},
		{"Sequence", hex.EncodeToString(sequence), false},
		{"RepeatedBlock", hex.EncodeToString(append(block, block...)), false},
		{"RepeatedBase64", strings.Repeat("A", 43), false},
		{"Spaces", " " + hex.EncodeToString(random), false},
		{"Empty", "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := checkSecret(c.v)
			if (err == nil) != c.ok {
				t.Fatalf("checkSecret = %v, want ok %v", err, c.ok)
			}
		})
	}
}

// A weak NEWSLETTER_SECRET stops every command at start with one line naming the setting and
// the rule, never the value.
func TestWeakSecretRefusedAtStart(t *testing.T) {
	const weak = "end-to-end-test-secret-0123456789"
	env := map[string]string{"NEWSLETTER_DATABASE_URL": "postgres://postgres@127.0.0.1:1/none?sslmode=disable", "NEWSLETTER_SECRET": weak}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"migrate"}, func(k string) string { return env[k] }, strings.NewReader(""), &stdout, &stderr)
	line := stderr.String()
	if code != exitFailure || strings.Count(line, "\n") != 1 || !strings.Contains(line, "NEWSLETTER_SECRET") || !strings.Contains(line, "32 random bytes") {
		t.Fatalf("exit %d, stderr %q; want exit 1 and one line naming NEWSLETTER_SECRET and the rule", code, line)
	}
	if strings.Contains(line, weak) || strings.Contains(line, "0123456789") {
		t.Errorf("the error shows the value: %q", line)
	}
	if _, err := LoadConfig(envMap(map[string]string{"NEWSLETTER_SECRET": e2eSecret})); err != nil {
		t.Errorf("the tests' own secret is refused: %v", err)
	}
}

// The secret generated when none is set carries 32 random bytes, and every start reads the same.
func TestGeneratedSecret(t *testing.T) {
	ctx := context.Background()
	db, err := pgdb.Open(ctx, testdb.URL(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := migrations.Apply(ctx, db.DB, nil); err != nil {
		t.Fatal(err)
	}
	a, err := loadSecret(ctx, db, "")
	if err != nil || len(a) != minSecretBytes || patterned(a) {
		t.Fatalf("generated secret: %d bytes, %v", len(a), err)
	}
	b, err := loadSecret(ctx, db, "")
	if err != nil || !bytes.Equal(a, b) {
		t.Fatalf("second start read another secret (%v)", err)
	}
	var stored string
	db.Get(&stored, `SELECT value FROM settings WHERE key = 'secret'`)
	if len(stored) != 2*minSecretBytes || checkSecret(stored) != nil {
		t.Errorf("stored secret has %d characters or fails the check a configured one must pass", len(stored))
	}
	if _, err := db.Exec(`UPDATE settings SET value = 'abcd' WHERE key = 'secret'`); err != nil {
		t.Fatal(err)
	}
	if _, err := loadSecret(ctx, db, ""); err == nil {
		t.Error("a stored secret of 2 bytes was used")
	}
}
