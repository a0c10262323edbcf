package httpx

import (
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"testing"

	"github.com/lib/pq"
)

func TestUnavailable(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"nil", nil, false},
		{"connection refused", fmt.Errorf("subscribe: %w", &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}), true},
		{"bad connection", fmt.Errorf("subscribe: consent: %w", driver.ErrBadConn), true},
		{"closed mid-reply", fmt.Errorf("subscribe: %w", io.ErrUnexpectedEOF), true},
		{"shutting down", fmt.Errorf("subscribe: %w", &pq.Error{Code: "57P01"}), true},
		{"starting up", fmt.Errorf("subscribe: %w", &pq.Error{Code: "57P03"}), true},
		{"too many connections", &pq.Error{Code: "53300"}, true},
		{"connection failure", &pq.Error{Code: "08006"}, true},
		{"unique violation is a bug, not an outage", fmt.Errorf("subscribe: %w", &pq.Error{Code: "23505"}), false},
		{"syntax error", &pq.Error{Code: "42601"}, false},
		{"plain error", errors.New("template exploded"), false},
		{"not found", errors.New("subscribers: not found"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Unavailable(tt.err); got != tt.want {
				t.Fatalf("Unavailable(%v) = %v, want %v", tt.err, got, tt.want)
			}
		})
	}
}
