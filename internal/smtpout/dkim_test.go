package smtpout

import (
	"encoding/pem"
	"errors"
	"testing"
)

func TestNewDKIMSignerRejectsBadKeys(t *testing.T) {
	tests := []struct {
		name string
		pem  []byte
	}{
		{"not pem", []byte("hello")},
		{"public key", pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte{1, 2, 3}})},
		{"garbage pkcs8", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1, 2, 3}})},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := NewDKIMSigner("news.example", "s", tc.pem); !errors.Is(err, ErrBadKey) {
				t.Fatalf("err = %v, want ErrBadKey", err)
			}
		})
	}
}
