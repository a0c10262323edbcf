package digest

import (
	"context"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"net/textproto"
	"time"

	"github.com/wneessen/go-mail/smtp"
)

// Stages of an SMTP transaction, for telling the reader's fault from ours.
const (
	stageConnect = "connect" // dial, greeting, STARTTLS, AUTH
	stageMail    = "MAIL FROM"
	stageRcpt    = "RCPT TO"
	stageData    = "DATA"
	stageMessage = "message" // the reply after the message body
)

// sendError is a failed SMTP exchange: code is the server's reply code, 0 when there was none
// (timeout, dropped connection).
type sendError struct {
	stage string
	code  int
	err   error
}

func (e *sendError) Error() string {
	if e.code != 0 {
		return fmt.Sprintf("%s: %v", e.stage, e.err)
	}
	return fmt.Sprintf("%s: no reply: %v", e.stage, e.err)
}

func (e *sendError) Unwrap() error { return e.err }

func asSendError(err error) *sendError {
	var se *sendError
	if errors.As(err, &se) {
		return se
	}
	return nil
}

func newSendError(stage string, err error) *sendError {
	se := &sendError{stage: stage, err: err}
	var te *textproto.Error
	if errors.As(err, &te) {
		se.code = te.Code
	}
	return se
}

// smtpConn is one long-lived SMTP connection of a worker.
type smtpConn struct {
	dialer      smtpDialer
	timeout     time.Duration
	backoffBase time.Duration
	backoff     time.Duration // the next pause after a 421 or failed dial; grows until a success

	c *smtp.Client
}

// ensure dials when there is no open connection.
func (c *smtpConn) ensure(ctx context.Context) error {
	if c.c != nil {
		return nil
	}
	dctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	cl, err := c.dialer.DialToSMTPClientWithContext(dctx)
	if err != nil {
		return newSendError(stageConnect, err)
	}
	c.c = cl
	return nil
}

// send runs one transaction with pre-encoded bytes. beforeCommit runs after the body was written
// and before the final dot, the moment the server may accept the message: the worker waits there
// until its previous message is recorded sent, so at most one accepted message per connection is
// ever unrecorded. A broken connection is closed, to be redialled on the next message.
func (c *smtpConn) send(from, to string, msg []byte, beforeCommit func()) error {
	if err := c.c.UpdateDeadline(c.timeout); err != nil {
		c.drop()
		return newSendError(stageConnect, err)
	}
	if err := c.c.Mail(from); err != nil {
		return c.fail(stageMail, err)
	}
	if err := c.c.Rcpt(to); err != nil {
		return c.fail(stageRcpt, err)
	}
	w, err := c.c.Data()
	if err != nil {
		return c.fail(stageData, err)
	}
	if _, err := w.Write(msg); err != nil {
		c.drop()
		return newSendError(stageMessage, err)
	}
	beforeCommit()
	if err := w.Close(); err != nil {
		return c.fail(stageMessage, err)
	}
	c.backoff = 0
	return nil
}

// fail classifies err: a reply keeps the connection (reset for the next message) unless it is 421
// or the reset fails; no reply means the connection is gone.
func (c *smtpConn) fail(stage string, err error) error {
	se := newSendError(stage, err)
	if se.code == 0 || se.code == 421 {
		c.drop()
		return se
	}
	if err := c.c.Reset(); err != nil {
		c.drop()
	}
	return se
}

// pause waits before the next dial, longer each time in a row, with jitter.
func (c *smtpConn) pause(ctx context.Context, stop <-chan struct{}) {
	c.drop()
	if c.backoff == 0 {
		c.backoff = c.backoffBase
	} else {
		c.backoff = min(2*c.backoff, time.Minute)
	}
	sleep(ctx, stop, time.Duration(float64(c.backoff)*(0.5+mathrand.Float64())))
}

// drop closes the connection without a goodbye.
func (c *smtpConn) drop() {
	if c.c != nil {
		c.c.Close()
		c.c = nil
	}
}

// close says QUIT, briefly, and closes.
func (c *smtpConn) close() {
	if c.c == nil {
		return
	}
	c.c.UpdateDeadline(2 * time.Second)
	if err := c.c.Quit(); err != nil {
		c.c.Close()
	}
	c.c = nil
}
