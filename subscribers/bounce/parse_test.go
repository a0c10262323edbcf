package bounce

import (
	"errors"
	"testing"
	"time"
)

const (
	testUnsubToken      = "AQtZfB5PakwumlE-j9e2wQAAAAAAAAAA-signed-unsubscribe-token"
	testIssueUnsubToken = "AQtZfB5PakwumlE-j9e2wQAAAAAAAAAJ-issue-9-unsubscribe-token"
)

func testParser() *Parser {
	return &Parser{
		Base:   testBase,
		Secret: testSecret,
		UnsubscribeToken: func(tok string) (string, int64, bool) {
			switch tok {
			case testUnsubToken:
				return testUUID, 0, true
			case testIssueUnsubToken:
				return testUUID, 9, true
			}
			return "", 0, false
		},
		Now: func() time.Time { return time.Date(2025, 5, 20, 0, 0, 0, 0, time.UTC) },
	}
}

func testVars(issue int64) map[string]string {
	return map[string]string{
		"RETURN_PATH":        Address(testBase, testSecret, testUUID, issue),
		"FORGED_RETURN_PATH": Address(testBase, []byte("not our secret"), testUUID, issue),
		"UNSUB_URL":          "https://news.example.org/unsubscribe/" + testUnsubToken,
	}
}

func TestParseReports(t *testing.T) {
	for _, c := range []struct {
		file    string
		want    Event
		wantErr error
	}{
		{file: "dsn_postfix_hard.eml", want: Event{
			Kind: Hard, SubscriberUUID: testUUID, IssueID: 7, Source: SourceIMAP,
			Reason:     "5.1.1 smtp; 550 5.1.1 <address>: Recipient address rejected: User unknown in virtual mailbox table",
			At:         time.Date(2025, 5, 12, 8, 14, 3, 0, time.UTC),
			ExternalID: "msgid:20250512081403.4C1D22A0B3@relay.news.example.org",
		}},
		// Delivered to the plain bounce address; the token is in the returned message's Return-Path.
		// The status part is base64, as RFC 3464 allows.
		{file: "dsn_expired_soft.eml", want: Event{
			Kind: Soft, SubscriberUUID: testUUID, IssueID: 7, Source: SourceIMAP,
			Reason:     "4.2.2 smtp;452 4.2.2 Mailbox full",
			At:         time.Date(2025, 5, 15, 8, 2, 44, 0, time.UTC),
			ExternalID: "msgid:dsn-77a1f0@gw.example.com",
		}},
		{file: "dsn_delayed.eml", wantErr: ErrIgnored},
		{file: "arf_abuse.eml", want: Event{
			Kind: Complaint, SubscriberUUID: testUUID, IssueID: 7, Source: SourceIMAP,
			Reason:     "feedback-type abuse ExampleMail-FBL/1.4",
			At:         time.Date(2025, 5, 13, 17, 40, 12, 0, time.UTC),
			ExternalID: "msgid:fbl.5b7f0e.2025-05-13@feedback.mail.example.com",
		}},
		// No Return-Path and no Original-Mail-From: our signed unsubscribe link names the reader;
		// the issue stays unknown.
		{file: "arf_unsubscribe_only.eml", want: Event{
			Kind: Complaint, SubscriberUUID: testUUID, IssueID: 0, Source: SourceIMAP,
			Reason:     "feedback-type abuse MailRuFBL/2.0",
			At:         time.Date(2025, 5, 14, 3, 11, 0, 0, time.UTC),
			ExternalID: "msgid:arf-20250514061100-8812@fbl.mail.example.ru",
		}},
		{file: "arf_not_spam.eml", wantErr: ErrIgnored},
		{file: "plain_qmail.eml", want: Event{
			Kind: Hard, SubscriberUUID: testUUID, IssueID: 7, Source: SourceIMAP,
			Reason:     "Remote host said: 550 5.1.1 <address>... No such user",
			At:         time.Date(2025, 5, 12, 8, 20, 31, 0, time.UTC),
			ExternalID: "msgid:20250512082031.4410.qmail@mx.oldhost.example",
		}},
		{file: "plain_said_only.eml", want: Event{
			Kind: Hard, SubscriberUUID: testUUID, IssueID: 7, Source: SourceIMAP,
			Reason:     "host mx.legacy.example [203.0.113.77]: 550 mailbox unavailable",
			At:         time.Date(2025, 5, 12, 8, 21, 0, 0, time.UTC),
			ExternalID: "msgid:E1uEx2q-0001aB-7Z@mail.legacy.example",
		}},
		// Names a reader's address, and a token signed with another secret: believed by nobody.
		{file: "forged_dsn.eml", wantErr: ErrUnidentified},
		{file: "autoreply.eml", wantErr: ErrIgnored},
		{file: "not_a_report.eml", wantErr: ErrUnknown},
	} {
		t.Run(c.file, func(t *testing.T) {
			got, err := testParser().Parse(fixture(t, c.file, testVars(7)))
			if c.wantErr != nil {
				if !errors.Is(err, c.wantErr) {
					t.Fatalf("Parse = %+v, %v; want %v", got, err, c.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got != c.want {
				t.Errorf("Parse =\n%+v\nwant\n%+v", got, c.want)
			}
		})
	}
}

func TestParseComplaintWithoutVerifier(t *testing.T) {
	p := testParser()
	p.UnsubscribeToken = nil
	if ev, err := p.Parse(fixture(t, "arf_unsubscribe_only.eml", testVars(1))); !errors.Is(err, ErrUnidentified) {
		t.Fatalf("Parse = %+v, %v; want ErrUnidentified", ev, err)
	}
}

// A complaint whose included copy carries the unsubscribe link of one issue is counted for that
// issue.
func TestParseComplaintIssueLink(t *testing.T) {
	vars := testVars(1)
	vars["UNSUB_URL"] = "https://news.example.org/unsubscribe/" + testIssueUnsubToken
	ev, err := testParser().Parse(fixture(t, "arf_unsubscribe_only.eml", vars))
	if err != nil || ev.Kind != Complaint || ev.SubscriberUUID != testUUID || ev.IssueID != 9 {
		t.Fatalf("Parse = %+v, %v; want a complaint about issue 9", ev, err)
	}
}

// A bounce delivered to a VERP address with a token from another secret, or for another base,
// names nobody, whatever its Final-Recipient says.
func TestParseBounceNeedsOurToken(t *testing.T) {
	for name, rp := range map[string]string{
		"OtherSecret": Address(testBase, []byte("not our secret"), testUUID, 7),
		"OtherBase":   Address("bounces@elsewhere.example", testSecret, testUUID, 7),
		"Base":        testBase,
	} {
		vars := testVars(7)
		vars["RETURN_PATH"] = rp
		if ev, err := testParser().Parse(fixture(t, "dsn_postfix_hard.eml", vars)); !errors.Is(err, ErrUnidentified) {
			t.Errorf("%s: Parse = %+v, %v; want ErrUnidentified", name, ev, err)
		}
	}
}

func TestParseGarbage(t *testing.T) {
	for name, raw := range map[string]string{
		"Empty":        "",
		"Binary":       "\x00\x01\x02\xff",
		"HeaderOnly":   "Subject: hi\r\n",
		"BadMultipart": "Content-Type: multipart/report; report-type=delivery-status; boundary=x\r\n\r\n--x\r\nContent-Type: message/delivery-status\r\n\r\nAction: failed\r\n",
	} {
		if ev, err := testParser().Parse([]byte(raw)); err == nil {
			t.Errorf("%s: Parse = %+v, want an error", name, ev)
		}
	}
}
