package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"newsletter/internal/dovecottest"
	"newsletter/internal/smtptest"
	"newsletter/subscribers/bounce"
)

const (
	bounceBase     = "bounces@gazette.test"
	bouncePassword = "bounce pages password"
)

// bounceReader is one reader of the bounce tests: their address and uuid.
type bounceReader struct{ email, uuid string }

// seedBounceReaders adds confirmed English readers who confirmed a day ago (a report is believed
// only about mail after the reader's latest confirmation) and returns them by address.
func seedBounceReaders(t *testing.T, s *service, emails ...string) map[string]bounceReader {
	t.Helper()
	out := map[string]bounceReader{}
	for _, e := range emails {
		var uuid string
		if err := s.DB.Get(&uuid, `INSERT INTO subscribers (email, name, lang, status, confirmed_at)
			VALUES ($1, '', 'en', 'confirmed', now() - interval '1 day') RETURNING uuid::text`, e); err != nil {
			t.Fatal(err)
		}
		subscribeAll(t, s.DB)
		out[e] = bounceReader{e, uuid}
	}
	return out
}

// sendDigestNow runs `digest send --lang en --yes` against the service's settings and returns the
// issue it sent.
func sendDigestNow(t *testing.T, s *service) int64 {
	t.Helper()
	var out, errOut lockedBuffer
	app := &App{stdin: strings.NewReader(""), stdout: &out, stderr: &errOut, getenv: func(k string) string { return s.Env[k] }}
	if code := runApp(context.Background(), app, []string{"digest", "send", "--lang", "en", "--yes"}); code != exitOK {
		t.Fatalf("digest send exited %d:\n%s%s", code, out.String(), errOut.String())
	}
	var issue int64
	if err := s.DB.Get(&issue, `SELECT id FROM issues WHERE lang = 'en' AND status = 'sent' ORDER BY id DESC LIMIT 1`); err != nil {
		t.Fatal(err)
	}
	return issue
}

// digestTo returns the one message the SMTP server received for to.
func digestTo(t *testing.T, s *service, to string) smtptest.Message {
	t.Helper()
	msgs := s.SMTP.To(to)
	if len(msgs) != 1 {
		t.Fatalf("%d messages to %s, want 1", len(msgs), to)
	}
	return msgs[0]
}

// waitUntil polls cond until it holds; a minute is only the bound of a run that went wrong.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited a minute for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dsnFor is a delivery status notification, as Postfix writes one, for a copy sent from
// returnPath: delivered to that address, which names the reader (the Final-Recipient it quotes is
// never believed).
func dsnFor(returnPath, recipient string, at time.Time) []byte {
	return crlf(fmt.Sprintf(`Return-Path: <>
Delivered-To: %[1]s
Date: %[3]s
From: MAILER-DAEMON@relay.gazette.test (Mail Delivery System)
Subject: Undelivered Mail Returned to Sender
To: %[1]s
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="dsn-boundary"
Message-Id: <dsn.%[4]d@relay.gazette.test>

--dsn-boundary
Content-Type: text/plain; charset=us-ascii

<%[2]s>: host mx.example.net said: 550 5.1.1 <%[2]s>: User unknown

--dsn-boundary
Content-Type: message/delivery-status

Reporting-MTA: dns; relay.gazette.test

Final-Recipient: rfc822; %[2]s
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <%[2]s>: Recipient address rejected: User unknown

--dsn-boundary
Content-Type: text/rfc822-headers

From: The Test Gazette <digest@gazette.test>
To: <%[2]s>
Subject: This week

--dsn-boundary--
`, returnPath, recipient, at.Format(time.RFC1123Z), at.UnixNano()))
}

// arfFor is an RFC 5965 complaint report from a feedback loop about a copy sent from returnPath.
func arfFor(returnPath string, at time.Time) []byte {
	return crlf(fmt.Sprintf(`Date: %[2]s
From: Feedback Loop <fbl@feedback.example.com>
To: %[3]s
Subject: Complaint about a message from gazette.test
Message-ID: <arf.%[4]d@feedback.example.com>
MIME-Version: 1.0
Content-Type: multipart/report; report-type=feedback-report; boundary="arf-boundary"

--arf-boundary
Content-Type: text/plain; charset=us-ascii

This is an email abuse report.

--arf-boundary
Content-Type: message/feedback-report

Feedback-Type: abuse
User-Agent: ExampleFBL/1.0
Version: 1
Original-Mail-From: <%[1]s>
Original-Rcpt-To: <redacted@example.com>

--arf-boundary
Content-Type: text/rfc822-headers

From: The Test Gazette <digest@gazette.test>
To: redacted@example.com
Subject: This week

--arf-boundary--
`, returnPath, at.Format(time.RFC1123Z), bounceBase, at.UnixNano()))
}

func crlf(s string) []byte { return []byte(strings.ReplaceAll(s, "\n", "\r\n")) }

// readerState is a reader's status and events ("kind/source/effect/issue"), oldest first.
func readerState(t *testing.T, s *service, uuid string) (status string, events []string) {
	t.Helper()
	if err := s.DB.Get(&status, `SELECT status FROM subscribers WHERE uuid = $1`, uuid); err != nil {
		t.Fatal(err)
	}
	if err := s.DB.Select(&events, `SELECT e.kind || '/' || e.source || '/' || e.effect || '/' || coalesce(e.issue_id::text, '-')
		FROM reader_events e JOIN subscribers r ON r.id = e.subscriber_id WHERE r.uuid = $1 ORDER BY e.id`, uuid); err != nil {
		t.Fatal(err)
	}
	return status, events
}

// suppressed reports the reason of the address's suppression, "" when there is none. The hash is
// the store's: HMAC-SHA256 under the service secret of the lower-cased address.
func suppressed(t *testing.T, s *service, email string) string {
	t.Helper()
	h := hmac.New(sha256.New, []byte(e2eSecret))
	h.Write([]byte(strings.ToLower(email)))
	var reasons []string
	if err := s.DB.Select(&reasons, `SELECT reason FROM suppressions WHERE email_hash = $1`, h.Sum(nil)); err != nil {
		t.Fatal(err)
	}
	return strings.Join(reasons, ",")
}

// TestBounceMailboxEndToEnd runs serve with a bounce address and a private Dovecot as its mailbox:
// a digest goes out from each reader's VERP address; a bounce addressed to one reader's address as
// seen on the wire, a complaint report naming another's, and a forged bounce are delivered to the
// mailbox; the next pass bounces the first, unsubscribes the second as complained, both with a
// suppression and their event, and files the forgery for a human. A third reader leaves through
// the issue's one-click link. The issue's report and the archive count all of it for that issue.
func TestBounceMailboxEndToEnd(t *testing.T) {
	imap := dovecottest.Start(t, dovecottest.Options{})
	s := startService(t, map[string]string{
		"NEWSLETTER_BOUNCE_ADDRESS":       bounceBase,
		"NEWSLETTER_BOUNCE_IMAP_URL":      imap.URL("INBOX"),
		"NEWSLETTER_BOUNCE_IMAP_SCHEDULE": "@every 1s",
		"NEWSLETTER_ADMIN_PASSWORD":       bouncePassword,
		"NEWSLETTER_DEMO":                 "true",
	})
	const ann, bob, cara, dan = "ann@example.net", "bob@example.net", "cara@example.net", "dan@example.net"
	readers := seedBounceReaders(t, s, ann, bob, cara, dan)
	issue := sendDigestNow(t, s)

	wire := map[string]string{} // each reader's envelope sender, as the relay saw it
	for email, r := range readers {
		msg := digestTo(t, s, email)
		uuid, got, err := bounce.Parse(msg.From, bounceBase, []byte(e2eSecret))
		if err != nil || uuid != r.uuid || got != issue {
			t.Fatalf("envelope sender to %s: %q reads %q, issue %d, %v", email, msg.From, uuid, got, err)
		}
		wire[email] = msg.From
	}

	now := time.Now()
	imap.Append(t, "INBOX", dsnFor(wire[ann], ann, now))
	imap.Append(t, "INBOX", arfFor(wire[bob], now))
	// A bounce naming Dan, to a token signed with another secret: it must change nothing.
	imap.Append(t, "INBOX", dsnFor(bounce.Address(bounceBase, []byte("not the service secret, no"), readers[dan].uuid, issue), dan, now))

	// Cara leaves through the issue's List-Unsubscribe, one-click.
	lu := parseMail(t, digestTo(t, s, cara)).Get("List-Unsubscribe")
	link := strings.Trim(lu, "<>")
	if r := s.Do(t, "POST", link, "application/x-www-form-urlencoded", "List-Unsubscribe=One-Click"); r.Status != http.StatusOK {
		t.Fatalf("one-click unsubscribe: %d", r.Status)
	}

	waitUntil(t, "the mailbox read and filed", func() bool {
		return len(imap.Messages(t, "INBOX")) == 0 && len(imap.Messages(t, "Processed")) == 2 && len(imap.Messages(t, "Unhandled")) == 1
	})
	if u := imap.Messages(t, "Unhandled"); !u[0].Has(`\Flagged`) || !strings.Contains(string(u[0].Raw), dan) {
		t.Errorf("Unhandled holds %q flagged %v, want the forged bounce, flagged", u[0].Raw, u[0].Flags)
	}

	is := strconv.FormatInt(issue, 10)
	for _, c := range []struct {
		email, status, suppression string
		events                     []string
	}{
		{ann, "bounced", "bounced", []string{"hard/imap/bounced/" + is}},
		{bob, "complained", "complained", []string{"complaint/imap/complained/" + is}},
		{cara, "unsubscribed", "", []string{"unsubscribe/link/unsubscribed/" + is}},
		{dan, "confirmed", "", nil},
	} {
		status, events := readerState(t, s, readers[c.email].uuid)
		if status != c.status || !slices.Equal(events, c.events) {
			t.Errorf("%s: %s with events %q, want %s with %q", c.email, status, events, c.status, c.events)
		}
		if got := suppressed(t, s, c.email); got != c.suppression {
			t.Errorf("%s: suppression %q, want %q", c.email, got, c.suppression)
		}
	}
	var reason string
	if err := s.DB.Get(&reason, `SELECT e.reason FROM reader_events e JOIN subscribers r ON r.id = e.subscriber_id WHERE r.email = $1`, ann); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(reason, "5.1.1") || strings.Contains(reason, "@") {
		t.Errorf("bounce reason %q, want the status without the address", reason)
	}

	// The issue's figures: four delivered, one hard bounce, one complaint, one unsubscribe.
	cookie, _ := editorSession(t, s, bouncePassword)
	report := stripTags(s.Get(t, "/admin/issues/"+is, "Cookie", cookie).Body)
	for _, want := range []string{"Delivered 4", "Hard bounces 1", "Soft bounces 0", "Complaints 1", "Unsubscribed through this issue 1"} {
		if !strings.Contains(strings.Join(strings.Fields(report), " "), want) {
			t.Errorf("the issue report lacks %q:\n%s", want, report)
		}
	}
	archive := s.Get(t, "/archive")
	if !strings.Contains(archive.Body, "Delivered: 4 · unsubscribed through this issue: 1") || strings.Contains(archive.Body, "omplain") {
		t.Errorf("the archive's figures:\n%s", archive.Body)
	}

	// Each pass logged its counts, and no log line holds a reader's address or the mailbox's password.
	log := s.Log()
	// The three messages are appended one by one, so a pass may run between two of them: the
	// passes' counts add up to what was recorded.
	recorded := 0
	for _, m := range regexp.MustCompile(`bounce mailbox: pass.* recorded=(\d+)`).FindAllStringSubmatch(log, -1) {
		n, _ := strconv.Atoi(m[1])
		recorded += n
	}
	if recorded != 2 {
		t.Errorf("the passes logged %d recorded, want 2:\n%s", recorded, log)
	}
	for _, secret := range []string{dovecottest.Password, ann, bob, dan, url.QueryEscape(dovecottest.Password)} {
		if strings.Contains(log, secret) {
			t.Errorf("the log holds %q", secret)
		}
	}
}

// mailgunBody is a Mailgun "failed" event for envelope sender from, signed with key (a wrong key
// makes a bad signature), at now.
func mailgunBody(key, token, from, recipient string, now time.Time) string {
	ts := strconv.FormatInt(now.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(ts + token))
	return fmt.Sprintf(`{"signature": {"timestamp": %q, "token": %q, "signature": %q},
  "event-data": {"id": "ev-%s", "timestamp": %d.25, "event": "failed", "severity": "permanent", "reason": "bounce",
    "delivery-status": {"code": 550, "message": "5.1.1 The email account that you tried to reach does not exist: %s", "description": ""},
    "envelope": {"sender": %q, "targets": %q}, "recipient": %q}}`,
		ts, token, hex.EncodeToString(mac.Sum(nil)), token, now.Unix(), recipient, from, recipient, recipient)
}

// TestBounceWebhooks drives the webhooks through serve's routes: they exist only when their
// setting is set; a Mailgun event with a bad signature, or replayed, gets 401 and changes nothing;
// a signed one bounces the reader its VERP sender names, with the event and the suppression; an
// SNS message that does not verify gets 401. No session or form token is asked for, and the
// request log names the route, never the body.
func TestBounceWebhooks(t *testing.T) {
	plain := startService(t, nil)
	for _, path := range []string{"/webhooks/ses", "/webhooks/mailgun"} {
		if r := plain.Do(t, "POST", path, "application/json", "{}"); r.Status != http.StatusNotFound {
			t.Errorf("POST %s without its setting: %d, want 404", path, r.Status)
		}
	}

	const key, topic = "mailgun-test-signing-key", "arn:aws:sns:eu-west-1:123456789012:gazette-bounces"
	s := startService(t, map[string]string{
		"NEWSLETTER_BOUNCE_ADDRESS": bounceBase, "NEWSLETTER_MAILGUN_SIGNING_KEY": key, "NEWSLETTER_SES_TOPIC_ARN": topic,
	})
	const eve = "eve@example.net"
	r := seedBounceReaders(t, s, eve)[eve]
	from := bounce.Address(bounceBase, []byte(e2eSecret), r.uuid, 0)
	post := func(body string) int {
		t.Helper()
		return s.Do(t, "POST", "/webhooks/mailgun", "application/json", body).Status
	}
	unchanged := func(when string) {
		t.Helper()
		if status, events := readerState(t, s, r.uuid); status != "confirmed" || len(events) != 0 || suppressed(t, s, eve) != "" {
			t.Fatalf("%s: eve is %s with events %q", when, status, events)
		}
	}

	now := time.Now()
	if code := post(mailgunBody("not the signing key", "tok-forged-1", from, eve, now)); code != http.StatusUnauthorized {
		t.Errorf("a bad signature: %d, want 401", code)
	}
	unchanged("after a bad signature")
	if code := post(mailgunBody(key, "tok-stale-1", from, eve, now.Add(-time.Hour))); code != http.StatusUnauthorized {
		t.Errorf("a signature an hour old: %d, want 401", code)
	}
	unchanged("after a stale signature")

	body := mailgunBody(key, "tok-good-1", from, eve, now)
	if code := post(body); code != http.StatusOK {
		t.Fatalf("a signed event: %d, want 200", code)
	}
	status, events := readerState(t, s, r.uuid)
	if status != "bounced" || !slices.Equal(events, []string{"hard/mailgun/bounced/-"}) || suppressed(t, s, eve) != "bounced" {
		t.Errorf("after a signed bounce eve is %s with events %q, suppression %q", status, events, suppressed(t, s, eve))
	}
	if code := post(body); code != http.StatusUnauthorized {
		t.Errorf("the same request again: %d, want 401 (a replay)", code)
	}

	// SNS: another topic, and our topic with a certificate from anywhere but SNS, are refused
	// before anything is fetched or changed.
	for name, arn := range map[string]string{"other topic": "arn:aws:sns:eu-west-1:123456789012:other", "our topic": topic} {
		msg := fmt.Sprintf(`{"Type": "Notification", "MessageId": "m-1", "TopicArn": %q, "Message": "{}", "Timestamp": %q,
			"SignatureVersion": "2", "Signature": "AAAA", "SigningCertURL": "https://attacker.example/cert.pem"}`, arn, now.UTC().Format(time.RFC3339))
		if code := s.Do(t, "POST", "/webhooks/ses", "application/json", msg).Status; code != http.StatusUnauthorized {
			t.Errorf("SNS message for %s with a foreign certificate: %d, want 401", name, code)
		}
	}

	log := s.Log()
	if !strings.Contains(log, `route="POST /webhooks/mailgun"`) || !strings.Contains(log, `route="POST /webhooks/ses"`) {
		t.Errorf("the request log does not name the webhook routes:\n%s", log)
	}
	for _, secret := range []string{"tok-good-1", "tok-forged-1", key, eve, from} {
		if strings.Contains(log, secret) {
			t.Errorf("the log holds %q", secret)
		}
	}
}
