package digest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	mathrand "math/rand/v2"
	"net/textproto"
	"strings"
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
	noChunking  bool          // use DATA even when the server offers CHUNKING (tests)

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
	if c.pipelined() && len(msg) > 0 {
		return c.sendPipelined(from, to, msg, beforeCommit)
	}
	if strings.ContainsAny(from+to, "\r\n<>") {
		return newSendError(stageRcpt, &textproto.Error{Code: 501, Msg: "address with line break or angle bracket"})
	}
	// go-mail's Mail and Rcpt write their argument as given: RFC 5321 wants the path in brackets.
	if err := c.c.Mail("<" + from + ">"); err != nil {
		return c.fail(stageMail, err)
	}
	if err := c.c.Rcpt("<" + to + ">"); err != nil {
		return c.fail(stageRcpt, err)
	}
	w, err := c.c.Data()
	if err != nil {
		return c.fail(stageData, err)
	}
	// The bytes go straight to the connection's buffered writer, dot-stuffed here with a fast
	// search rather than byte by byte in textproto's DotWriter; w.Close then ends the data with
	// CRLF "." CRLF, so the message's own last CRLF is left for it to write.
	if err := writeDotStuffed(c.c.Text.W, bytes.TrimSuffix(msg, []byte("\r\n"))); err != nil {
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

// pipelined reports whether the server takes MAIL, RCPT and BDAT in one go (RFC 2920, 3030).
func (c *smtpConn) pipelined() bool {
	if c.noChunking {
		return false
	}
	p, _ := c.c.Extension("PIPELINING")
	ch, _ := c.c.Extension("CHUNKING")
	return p && ch
}

// sendPipelined sends MAIL, RCPT and the message as one BDAT LAST chunk without waiting between
// them: one round trip per message, and raw bytes with no dot-stuffing on either side. The last
// byte is held back until beforeCommit returns, since the server cannot accept the message before
// it has every byte. The replies are read in order and the first failure names the stage.
func (c *smtpConn) sendPipelined(from, to string, msg []byte, beforeCommit func()) error {
	if strings.ContainsAny(from+to, "\r\n<>") {
		return newSendError(stageRcpt, &textproto.Error{Code: 501, Msg: "address with line break or angle bracket"})
	}
	params := ""
	if ok, _ := c.c.Extension("SMTPUTF8"); ok && !isASCIIPrintable(from+to) {
		params = " SMTPUTF8"
	}
	t := c.c.Text
	mailID, rcptID, bdatID := t.Next(), t.Next(), t.Next()
	var err error
	write := func(id uint, f func()) {
		t.StartRequest(id)
		if err == nil {
			f()
		}
		t.EndRequest(id)
	}
	write(mailID, func() { _, err = fmt.Fprintf(t.W, "MAIL FROM:<%s>%s\r\n", from, params) })
	write(rcptID, func() { _, err = fmt.Fprintf(t.W, "RCPT TO:<%s>\r\n", to) })
	write(bdatID, func() {
		if _, err = fmt.Fprintf(t.W, "BDAT %d LAST\r\n", len(msg)); err == nil {
			if _, err = t.W.Write(msg[:len(msg)-1]); err == nil {
				err = t.W.Flush()
			}
		}
	})
	if err != nil {
		c.drop()
		return newSendError(stageMail, err)
	}
	beforeCommit()
	if err = t.W.WriteByte(msg[len(msg)-1]); err == nil {
		err = t.W.Flush()
	}
	if err != nil {
		c.drop()
		return newSendError(stageMessage, err)
	}
	var first *sendError
	broken := false
	for _, r := range []struct {
		id    uint
		code  int
		stage string
	}{{mailID, 250, stageMail}, {rcptID, 25, stageRcpt}, {bdatID, 250, stageMessage}} {
		t.StartResponse(r.id)
		var rerr error
		if !broken {
			_, _, rerr = t.ReadResponse(r.code)
		}
		t.EndResponse(r.id)
		if rerr == nil {
			continue
		}
		se := newSendError(r.stage, rerr)
		broken = broken || se.code == 0
		if first == nil {
			first = se
		}
	}
	switch {
	case first == nil:
		c.backoff = 0
		return nil
	case broken || first.code == 421:
		c.drop()
	default:
		if err := c.c.Reset(); err != nil {
			c.drop()
		}
	}
	return first
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

// writeDotStuffed writes msg with every line that starts with "." given a second one (RFC 5321
// section 4.5.2). msg uses CRLF line ends throughout.
func writeDotStuffed(w *bufio.Writer, msg []byte) error {
	for {
		i := bytes.Index(msg, []byte("\n."))
		if i < 0 {
			_, err := w.Write(msg)
			return err
		}
		if _, err := w.Write(msg[:i+2]); err != nil {
			return err
		}
		if err := w.WriteByte('.'); err != nil {
			return err
		}
		msg = msg[i+2:]
	}
}
