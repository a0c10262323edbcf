// Package smtpout is the sending side of SMTP that every outgoing message takes, digests and
// confirmations alike: one long-lived connection's transactions, written the way the strictest
// servers want them (RFC 5321 paths in angle brackets), pipelined where the server allows (RFC 2920,
// with BDAT from RFC 3030 or with DATA), replies told apart by the stage they answer, and DKIM
// signing of the final bytes.
package smtpout

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/textproto"
	"strings"
	"time"

	"github.com/wneessen/go-mail/smtp"
	"golang.org/x/net/idna"
)

// Stage is the point of a transaction an error belongs to.
type Stage string

const (
	StageConnect Stage = "connect" // dial, greeting, STARTTLS, AUTH
	StageMail    Stage = "MAIL FROM"
	StageRcpt    Stage = "RCPT TO"
	StageData    Stage = "DATA"
	StageMessage Stage = "message" // the reply after the message body
)

// Error is a failed SMTP exchange. Code is the server's reply code, 0 when there was none
// (timeout, dropped connection). Local marks a refusal made here, before the server was asked
// (an address this relay cannot carry): it says nothing about the reader's mailbox.
type Error struct {
	Stage Stage
	Code  int
	Local bool
	Err   error
}

func (e *Error) Error() string {
	if e.Code != 0 {
		return fmt.Sprintf("%s: %v", e.Stage, e.Err)
	}
	return fmt.Sprintf("%s: no reply: %v", e.Stage, e.Err)
}

func (e *Error) Unwrap() error { return e.Err }

// Permanent reports a 5xx: trying the same again will fail the same way.
func (e *Error) Permanent() bool { return e.Code >= 500 }

// Refused reports a permanent refusal of the recipient or of the message: the reader's address is
// bad, not our setup. A 5xx to the connection or to MAIL FROM is ours to fix (login, sender).
func (e *Error) Refused() bool {
	return e.Permanent() && !e.Local && (e.Stage == StageRcpt || e.Stage == StageData || e.Stage == StageMessage)
}

// AsError returns the *Error in err's chain, or nil.
func AsError(err error) *Error {
	var se *Error
	if errors.As(err, &se) {
		return se
	}
	return nil
}

func newError(stage Stage, err error) *Error {
	se := &Error{Stage: stage, Err: err}
	var te *textproto.Error
	if errors.As(err, &te) {
		se.Code = te.Code
	}
	return se
}

// Dialer opens one SMTP connection, greeted, with STARTTLS and AUTH done (*mail.Client is one).
type Dialer interface {
	DialToSMTPClientWithContext(ctx context.Context) (*smtp.Client, error)
}

// Envelope is one transaction's sender and recipient.
type Envelope struct{ From, To string }

// Conn is one long-lived SMTP connection. Not safe for concurrent use.
type Conn struct {
	Dialer     Dialer
	Timeout    time.Duration // dialling; and one whole message on the connection
	Reconnect  Policy        // the pauses after a 421 or a failed dial (zero fields: Reconnect's)
	NoChunking bool          // use DATA even when the server offers CHUNKING (tests)

	c      *smtp.Client
	pauses int // pauses in a row, for the next one's length; 0 after a success
	// ahead is the envelope written behind the previous message (after its final dot with DATA,
	// after its chunk with BDAT), whose replies are still unread.
	ahead *Envelope
}

// Ensure dials when there is no open connection.
func (c *Conn) Ensure(ctx context.Context) error {
	if c.c != nil {
		return nil
	}
	dctx, cancel := context.WithTimeout(ctx, c.Timeout)
	defer cancel()
	cl, err := c.Dialer.DialToSMTPClientWithContext(dctx)
	if err != nil {
		return newError(StageConnect, err)
	}
	c.c = cl
	return nil
}

// Send runs one transaction for msg, a whole message with CRLF line ends. beforeCommit runs after
// every byte but the last was written and before the server can accept the message: a caller that
// must record a previous message first waits there, so at most one accepted message per
// connection is ever unrecorded. next, when not nil, may be asked (once, at that moment) for the
// envelope of the message the caller will send next on this connection: it then goes out behind
// this message (its final dot, or its BDAT chunk), saving a round trip (RFC 2920 allows the message
// content to be the first "command" of a group); the caller must then pass that envelope to its
// next Send.
// A connection in an unknown state is closed, to be redialled by the next Ensure.
func (c *Conn) Send(env Envelope, msg []byte, beforeCommit func(), next func() (Envelope, bool)) error {
	if c.c == nil {
		return newError(StageConnect, errors.New("not connected"))
	}
	if len(msg) < 2 || !bytes.HasSuffix(msg, []byte("\r\n")) {
		c.Abandon()
		return &Error{Stage: StageMessage, Local: true, Err: errors.New("message does not end with CRLF")}
	}
	if err := c.c.UpdateDeadline(c.Timeout); err != nil {
		c.Drop()
		return newError(StageConnect, err)
	}
	mailCmd, rcptCmd, err := c.envelope(env)
	if err != nil {
		c.Abandon()
		return err
	}
	pipelining, _ := c.c.Extension("PIPELINING")
	if chunking, _ := c.c.Extension("CHUNKING"); pipelining && chunking && !c.NoChunking {
		return c.sendBDAT(env, mailCmd, rcptCmd, msg, beforeCommit, next)
	}
	return c.sendDATA(env, mailCmd, rcptCmd, pipelining, msg, beforeCommit, next)
}

// envelope returns the MAIL and RCPT commands for env. Without SMTPUTF8 an internationalised
// domain goes as its A-label; a non-ASCII local part cannot go at all (RFC 6531's 5.6.7).
func (c *Conn) envelope(env Envelope) (mailCmd, rcptCmd string, err error) {
	if strings.ContainsAny(env.From+env.To, "\r\n<>\x00") {
		return "", "", &Error{Stage: StageRcpt, Code: 501, Local: true, Err: errors.New("address with a line break or an angle bracket")}
	}
	from, to := env.From, env.To
	params := ""
	if !isASCII(from + to) {
		if ok, _ := c.c.Extension("SMTPUTF8"); ok {
			// The headers then carry the address in UTF-8 too: 8-bit content (RFC 6531).
			params = " SMTPUTF8"
			if ok, _ := c.c.Extension("8BITMIME"); ok {
				params = " BODY=8BITMIME SMTPUTF8"
			}
		} else {
			if from, err = asciiAddress(from); err != nil {
				return "", "", &Error{Stage: StageMail, Code: 553, Local: true, Err: err}
			}
			if to, err = asciiAddress(to); err != nil {
				return "", "", &Error{Stage: StageRcpt, Code: 553, Local: true, Err: err}
			}
		}
	}
	return "MAIL FROM:<" + from + ">" + params + "\r\n", "RCPT TO:<" + to + ">\r\n", nil
}

// asciiAddress writes addr's domain as an A-label, or fails when the local part is not ASCII.
func asciiAddress(addr string) (string, error) {
	at := strings.LastIndexByte(addr, '@')
	if at < 0 || !isASCII(addr[:at]) {
		return "", errors.New("5.6.7 the address needs SMTPUTF8, which the relay does not offer")
	}
	domain, err := idna.Lookup.ToASCII(addr[at+1:])
	if err != nil {
		return "", fmt.Errorf("5.1.2 bad domain: %v", err)
	}
	return addr[:at+1] + domain, nil
}

func isASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			return false
		}
	}
	return true
}

// sendBDAT sends MAIL and RCPT, then the message as one BDAT LAST chunk: the bytes as they are,
// with no dot-stuffing on either side. The next message's MAIL and RCPT go out behind the chunk,
// so once a connection is going each message costs one round trip. MAIL and RCPT never share a
// group with the chunk they announce: a server that answers them while the chunk is still
// arriving writes its reply to the chunk behind unacknowledged bytes, and one that does not turn
// off Nagle's algorithm (Postfix) then holds that reply until our delayed ACK, 40 ms a message.
func (c *Conn) sendBDAT(env Envelope, mailCmd, rcptCmd string, msg []byte, beforeCommit func(), next func() (Envelope, bool)) error {
	w := c.c.Text.W
	switch {
	case c.ahead != nil && *c.ahead == env:
		c.ahead = nil // written behind the previous chunk: only the replies are left to read
	case c.ahead != nil:
		c.Drop()
		return &Error{Stage: StageMail, Local: true, Err: errors.New("the next envelope announced on this connection was not sent")}
	default:
		_, err := w.WriteString(mailCmd + rcptCmd)
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			c.Drop()
			return newError(StageMail, err)
		}
	}
	if err := c.readReplies([]reply{{250, StageMail}, {25, StageRcpt}}); err != nil {
		return err
	}
	_, err := fmt.Fprintf(w, "BDAT %d LAST\r\n", len(msg))
	if err == nil {
		_, err = w.Write(msg[:len(msg)-1])
	}
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		c.Drop()
		return newError(StageMessage, err)
	}
	beforeCommit()
	err = w.WriteByte(msg[len(msg)-1])
	if err == nil {
		err = c.writeAhead(next, false)
	}
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		c.Drop()
		return newError(StageMessage, err)
	}
	if err := c.readReplies([]reply{{250, StageMessage}}); err != nil {
		return err
	}
	c.pauses = 0
	return nil
}

// writeAhead writes the envelope of the caller's next message, when next offers one, behind the
// current message (with DATA when data is set), and remembers it for that message's Send.
func (c *Conn) writeAhead(next func() (Envelope, bool), data bool) error {
	if next == nil {
		return nil
	}
	n, ok := next()
	if !ok {
		return nil
	}
	nm, nr, err := c.envelope(n)
	if err != nil {
		return nil // the next Send reports it: nothing was written for it
	}
	cmds := nm + nr
	if data {
		cmds += "DATA\r\n"
	}
	if _, err := c.c.Text.W.WriteString(cmds); err != nil {
		return err
	}
	c.ahead = &n
	return nil
}

// sendDATA runs MAIL, RCPT and DATA (in one group when the server pipelines, else one by one),
// then the dot-stuffed message.
func (c *Conn) sendDATA(env Envelope, mailCmd, rcptCmd string, pipelining bool, msg []byte, beforeCommit func(), next func() (Envelope, bool)) error {
	w := c.c.Text.W
	replies := []reply{{250, StageMail}, {25, StageRcpt}, {354, StageData}}
	switch {
	case c.ahead != nil && *c.ahead == env:
		// Written with the previous message's end: only the replies are left to read.
		c.ahead = nil
		if err := c.readReplies(replies); err != nil {
			return err
		}
	case c.ahead != nil:
		// The caller did not send what it announced; the server waits in DATA for a message.
		c.Drop()
		return &Error{Stage: StageData, Local: true, Err: errors.New("the next envelope announced on this connection was not sent")}
	case pipelining:
		_, err := w.WriteString(mailCmd + rcptCmd + "DATA\r\n")
		if err == nil {
			err = w.Flush()
		}
		if err != nil {
			c.Drop()
			return newError(StageMail, err)
		}
		if err := c.readReplies(replies); err != nil {
			return err
		}
	default:
		for i, cmd := range []string{mailCmd, rcptCmd, "DATA\r\n"} {
			_, err := w.WriteString(cmd)
			if err == nil {
				err = w.Flush()
			}
			if err != nil {
				c.Drop()
				return newError(replies[i].stage, err)
			}
			if err := c.readReplies(replies[i : i+1]); err != nil {
				return err
			}
		}
	}
	// The message's own last CRLF ends the data together with "." CRLF.
	if err := writeDotStuffed(w, msg[:len(msg)-2]); err != nil {
		c.Drop()
		return newError(StageMessage, err)
	}
	beforeCommit()
	_, err := w.WriteString("\r\n.\r\n")
	if err == nil && pipelining {
		err = c.writeAhead(next, true)
	}
	if err == nil {
		err = w.Flush()
	}
	if err != nil {
		c.Drop()
		return newError(StageMessage, err)
	}
	if err := c.readReplies([]reply{{250, StageMessage}}); err != nil {
		return err
	}
	c.pauses = 0
	return nil
}

// reply is an expected reply: code (25 takes 250 to 259) to a command of stage.
type reply struct {
	code  int
	stage Stage
}

// readReplies reads one reply for each of want, in order, and settles the connection after a
// failure (see failed); it returns the first failure. Once the connection breaks nothing more is
// read. A 354 after a failure (a server that opened DATA with no recipient) is closed with an empty
// message, which goes to nobody.
func (c *Conn) readReplies(want []reply) error {
	var first *Error
	for _, r := range want {
		code, _, err := c.c.Text.ReadResponse(r.code)
		if err == nil && first != nil && code == 354 {
			if _, err = c.c.Text.W.WriteString(".\r\n"); err == nil {
				if err = c.c.Text.W.Flush(); err == nil {
					_, _, err = c.c.Text.ReadResponse(250)
				}
			}
			if err != nil && newError(r.stage, err).Code == 0 {
				return c.failed(first, true)
			}
			continue
		}
		if err == nil {
			continue
		}
		se := newError(r.stage, err)
		if first == nil {
			first = se
		}
		if se.Code == 0 {
			return c.failed(first, true)
		}
	}
	if first == nil {
		return nil
	}
	return c.failed(first, false)
}

// failed settles the connection after a failed transaction: a broken one or a 421 is closed;
// otherwise RSET readies it for the next message (closed when that fails too).
func (c *Conn) failed(se *Error, broken bool) error {
	if broken || se.Code == 421 {
		c.Drop()
		return se
	}
	if c.ahead != nil {
		// This was the reply to a final dot, which ends the transaction whatever it says, and the
		// next envelope is already on its way: no RSET.
		return se
	}
	if err := c.c.Reset(); err != nil {
		c.Drop()
	}
	return se
}

// Abandon settles a connection whose caller gives up on the envelope it announced (or a message it
// could not send): a server waiting in DATA cannot be brought back, so the connection closes.
func (c *Conn) Abandon() {
	if c.ahead != nil {
		c.Drop()
	}
}

// Pause closes the connection and waits before the next dial, longer each time in a row (the
// Reconnect policy); it returns early when ctx ends or stop closes.
func (c *Conn) Pause(ctx context.Context, stop <-chan struct{}) {
	c.Drop()
	c.pauses++
	t := time.NewTimer(c.Reconnect.Fill(Reconnect).Delay(c.pauses))
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	case <-stop:
	}
}

// Drop closes the connection without a goodbye.
func (c *Conn) Drop() {
	c.ahead = nil
	if c.c != nil {
		c.c.Close()
		c.c = nil
	}
}

// Close says QUIT, briefly, and closes. With an envelope written ahead the server is in DATA and
// would take QUIT as message text, so the connection is only dropped.
func (c *Conn) Close() {
	if c.c == nil {
		return
	}
	if c.ahead != nil {
		c.Drop()
		return
	}
	c.c.UpdateDeadline(2 * time.Second)
	if err := c.c.Quit(); err != nil {
		c.c.Close()
	}
	c.c = nil
}

// writeDotStuffed writes msg with every line that starts with "." given a second one (RFC 5321
// section 4.5.2), with a fast search rather than textproto's byte-by-byte DotWriter. msg uses CRLF
// line ends throughout.
func writeDotStuffed(w *bufio.Writer, msg []byte) error {
	if len(msg) > 0 && msg[0] == '.' {
		if err := w.WriteByte('.'); err != nil {
			return err
		}
	}
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
