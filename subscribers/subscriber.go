// Package subscribers keeps the reader list: addresses, opt-in, consent, confirmation emails.
package subscribers

import (
	"errors"
	"time"
)

// Sentinel errors; callers test them with errors.Is.
var (
	ErrNotFound = errors.New("subscribers: not found")
	ErrInvalid  = errors.New("subscribers: invalid")
	// ErrExpired: a token too old, or superseded by a later opt-in or by the reader leaving.
	ErrExpired = errors.New("subscribers: expired")
)

// Status is where a reader stands.
type Status string

// The statuses a reader moves through.
const (
	StatusPending      Status = "pending"
	StatusConfirmed    Status = "confirmed"
	StatusUnsubscribed Status = "unsubscribed"
	StatusBounced      Status = "bounced"
	StatusComplained   Status = "complained"
)

// Subscriber is one reader.
type Subscriber struct {
	ID             int64      `db:"id" json:"-"`
	UUID           string     `db:"uuid" json:"-"`
	Email          string     `db:"email" json:"email"`
	Name           string     `db:"name" json:"name"`
	Lang           string     `db:"lang" json:"lang"`
	Status         Status     `db:"status" json:"status"`
	CreatedAt      time.Time  `db:"created_at" json:"created_at"`
	UpdatedAt      time.Time  `db:"updated_at" json:"updated_at"`
	SubscribedAt   time.Time  `db:"subscribed_at" json:"subscribed_at"`
	ConfirmedAt    *time.Time `db:"confirmed_at" json:"confirmed_at"`
	UnsubscribedAt *time.Time `db:"unsubscribed_at" json:"unsubscribed_at"`
	BouncedAt      *time.Time `db:"bounced_at" json:"bounced_at"`
	ComplainedAt   *time.Time `db:"complained_at" json:"complained_at"`
}

// FieldError is a validation error naming the form field ("email", "name", "lang") and a message key.
type FieldError struct {
	Field, Key string
}

func (e *FieldError) Error() string { return "invalid " + e.Field + ": " + e.Key }

// Is makes errors.Is(err, ErrInvalid) true for every FieldError.
func (e *FieldError) Is(target error) bool { return target == ErrInvalid }

// NormalizeEmail trims s, lower-cases its domain and validates it.
func NormalizeEmail(s string) (string, error) {
	return "", errors.New("todo")
}

// ValidateName trims s and checks its length and characters.
func ValidateName(s string) (string, error) {
	return "", errors.New("todo")
}
