package smtpout

import (
	mathrand "math/rand/v2"
	"time"
)

// The retry policy of every outgoing message: how long a failure that may pass waits, how often
// a message is tried, how a failed connection backs off, and which failures are final. The digest
// engine and the confirmation mailer both take it from here, so a change is one edit.

// Policy is how something that failed for now is tried again: First after the first failure,
// doubled after each further one up to Max, every wait jittered to 50-150% so that retries spread
// out; Attempts tries in all before a failure is final (0: never final, it waits as long as it
// takes).
type Policy struct {
	First, Max time.Duration
	Attempts   int
}

var (
	// DigestRetry is a reader's copy of an issue (NEWSLETTER_SEND_MAX_ATTEMPTS sets Attempts).
	DigestRetry = Policy{First: time.Minute, Max: time.Hour, Attempts: 5}
	// ConfirmRetry is a confirmation email: never final, as an accepted subscription must never
	// lose its email; short waits, as the reader is waiting for it.
	ConfirmRetry = Policy{First: 5 * time.Second, Max: 5 * time.Minute}
	// Reconnect is a connection after a failed dial or a 421, before it is dialled again.
	Reconnect = Policy{First: 2 * time.Second, Max: time.Minute}
)

// Fill returns p with each zero field taken from def.
func (p Policy) Fill(def Policy) Policy {
	if p.First <= 0 {
		p.First = def.First
	}
	if p.Max <= 0 {
		p.Max = def.Max
	}
	p.Max = max(p.Max, p.First)
	if p.Attempts <= 0 {
		p.Attempts = def.Attempts
	}
	return p
}

// Delay is the wait after the nth failure in a row (n from 1), jittered.
func (p Policy) Delay(n int) time.Duration {
	return time.Duration(float64(p.nominal(n)) * (0.5 + mathrand.Float64()))
}

// nominal is Delay without the jitter: First doubled n-1 times, at most Max.
func (p Policy) nominal(n int) time.Duration {
	d := p.First
	for i := 1; i < n && d < p.Max; i++ {
		d *= 2
	}
	return min(d, p.Max)
}

// Final reports whether a failure after n tries in all is final.
func (p Policy) Final(n int) bool { return p.Attempts > 0 && n >= p.Attempts }

// Verdict is what a failed delivery means for the message and its recipient.
type Verdict int

const (
	// Retry: a 4xx, a timeout, a dropped connection; it may pass, so try again later.
	Retry Verdict = iota
	// Refused: the recipient's address was refused for good (a 5xx to RCPT or to the message).
	Refused
	// Undeliverable: this relay cannot carry the address (refused here, see Error.Local); the
	// message fails, but the address may be fine elsewhere.
	Undeliverable
	// Setup: our connection, login or sender was refused for good; nothing goes until it is fixed.
	Setup
)

// Classify tells what err, from Ensure or Send, means.
func Classify(err error) Verdict {
	se := AsError(err)
	switch {
	case se == nil || !se.Permanent():
		return Retry
	case se.Refused():
		return Refused
	case se.Local && se.Stage != StageMail:
		return Undeliverable
	default:
		return Setup
	}
}

// PauseAfter reports whether a connection pauses (Conn.Pause, by the Reconnect policy) after err
// from Send: the server said it is closing (421). A failed Ensure always pauses.
func PauseAfter(err error) bool {
	se := AsError(err)
	return se != nil && se.Code == 421
}
