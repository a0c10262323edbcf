package bounce

import (
	"context"
	"crypto/tls"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"

	"newsletter/internal/dovecottest"
)

// memRecorder keeps the events it is given, deduplicated as the real recorder is, and fails
// while fail is set.
type memRecorder struct {
	mu     sync.Mutex
	events []Event
	calls  int
	fail   error
}

func (r *memRecorder) RecordEvents(_ context.Context, events []Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.fail != nil {
		return r.fail
	}
	for _, e := range events {
		if !slices.ContainsFunc(r.events, func(x Event) bool { return x.Source == e.Source && x.ExternalID == e.ExternalID }) {
			r.events = append(r.events, e)
		}
	}
	return nil
}

func intake(t *testing.T, s *dovecottest.Server, rec Recorder) *IMAPIntake {
	t.Helper()
	cfg, err := ParseIMAPURL(s.URL("INBOX"))
	if err != nil {
		t.Fatal(err)
	}
	return &IMAPIntake{Config: cfg, Parser: testParser(), Recorder: rec, Batch: 3}
}

func subjects(msgs []dovecottest.Message) []string {
	var out []string
	for _, m := range msgs {
		for line := range strings.Lines(string(m.Raw)) {
			if strings.HasPrefix(line, "Message-I") {
				out = append(out, strings.TrimSpace(line[strings.IndexByte(line, ':')+1:]))
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

// Real reports appended to a real Dovecot mailbox: one Poll records the events, files the
// reports in Processed and what it cannot use, flagged, in Unhandled; nothing stays, nothing is
// lost, and a second Poll finds nothing.
func TestIMAPIntake(t *testing.T) {
	s := dovecottest.Start(t, dovecottest.Options{})
	vars := testVars(7)
	files := map[string]string{
		"dsn_postfix_hard.eml":     "Processed",
		"dsn_expired_soft.eml":     "Processed",
		"arf_abuse.eml":            "Processed",
		"arf_unsubscribe_only.eml": "Processed",
		"plain_qmail.eml":          "Processed",
		"dsn_delayed.eml":          "Processed",
		"autoreply.eml":            "Processed",
		"forged_dsn.eml":           "Unhandled",
		"not_a_report.eml":         "Unhandled",
	}
	want := map[string][]string{}
	for _, f := range slices.Sorted(maps.Keys(files)) {
		raw := fixture(t, f, vars)
		s.Append(t, "INBOX", raw)
		want[files[f]] = append(want[files[f]], subjects([]dovecottest.Message{{Raw: raw}})...)
	}
	// The same report delivered twice is filed twice and recorded once.
	s.Append(t, "INBOX", fixture(t, "dsn_postfix_hard.eml", vars))
	want["Processed"] = append(want["Processed"], "<20250512081403.4C1D22A0B3@relay.news.example.org>")

	rec := &memRecorder{}
	res, err := intake(t, s, rec).Poll(context.Background())
	if err != nil {
		t.Fatalf("Poll: %v", err)
	}
	if res != (PollResult{Recorded: 6, Ignored: 2, Unhandled: 2}) {
		t.Errorf("Poll = %+v", res)
	}
	if got := s.Messages(t, "INBOX"); len(got) != 0 {
		t.Errorf("INBOX still holds %d messages", len(got))
	}
	for folder, w := range want {
		slices.Sort(w)
		msgs := s.Messages(t, folder)
		if got := subjects(msgs); !slices.Equal(got, w) {
			t.Errorf("%s holds\n%q\nwant\n%q", folder, got, w)
		}
		for _, m := range msgs {
			if m.Has(`\Flagged`) != (folder == "Unhandled") {
				t.Errorf("%s: message %d flags %q", folder, m.UID, m.Flags)
			}
			if m.Has(`\Seen`) {
				t.Errorf("%s: message %d was marked seen", folder, m.UID)
			}
		}
	}

	kinds := map[string]Kind{}
	for _, e := range rec.events {
		if e.SubscriberUUID != testUUID || e.Source != SourceIMAP {
			t.Errorf("event %+v", e)
		}
		kinds[e.ExternalID] = e.Kind
	}
	wantKinds := map[string]Kind{
		"msgid:20250512081403.4C1D22A0B3@relay.news.example.org": Hard,
		"msgid:dsn-77a1f0@gw.example.com":                        Soft,
		"msgid:fbl.5b7f0e.2025-05-13@feedback.mail.example.com":  Complaint,
		"msgid:arf-20250514061100-8812@fbl.mail.example.ru":      Complaint,
		"msgid:20250512082031.4410.qmail@mx.oldhost.example":     Hard,
	}
	if len(kinds) != len(wantKinds) {
		t.Errorf("events %v, want %v", kinds, wantKinds)
	}
	for id, k := range wantKinds {
		if kinds[id] != k {
			t.Errorf("event %s: kind %q, want %q", id, kinds[id], k)
		}
	}

	// Nothing left: a second pass does nothing, and records nothing.
	calls := rec.calls
	if res, err := intake(t, s, rec).Poll(context.Background()); err != nil || res != (PollResult{}) {
		t.Errorf("second Poll = %+v, %v", res, err)
	}
	if rec.calls != calls {
		t.Errorf("the second Poll called the recorder")
	}
}

// When the events cannot be recorded (the database is away), their reports stay in the mailbox
// for the next Poll; what needs no recording still moves.
func TestIMAPIntakeRecorderDown(t *testing.T) {
	s := dovecottest.Start(t, dovecottest.Options{})
	vars := testVars(3)
	s.Append(t, "INBOX", fixture(t, "dsn_postfix_hard.eml", vars))
	s.Append(t, "INBOX", fixture(t, "autoreply.eml", vars))
	s.Append(t, "INBOX", fixture(t, "not_a_report.eml", vars))

	rec := &memRecorder{fail: errors.New("database unavailable")}
	res, err := intake(t, s, rec).Poll(context.Background())
	if err == nil || !strings.Contains(err.Error(), "database unavailable") {
		t.Fatalf("Poll = %+v, %v; want the recorder's error", res, err)
	}
	if got := subjects(s.Messages(t, "INBOX")); !slices.Equal(got, []string{"<20250512081403.4C1D22A0B3@relay.news.example.org>"}) {
		t.Errorf("INBOX holds %q, want the bounce alone", got)
	}
	if n := len(s.Messages(t, "Processed")) + len(s.Messages(t, "Unhandled")); n != 2 {
		t.Errorf("%d messages filed, want 2", n)
	}

	rec.fail = nil
	res, err = intake(t, s, rec).Poll(context.Background())
	if err != nil || res != (PollResult{Recorded: 1}) {
		t.Fatalf("Poll after recovery = %+v, %v", res, err)
	}
	if len(rec.events) != 1 || rec.events[0].IssueID != 3 || rec.events[0].Kind != Hard {
		t.Errorf("events %+v", rec.events)
	}
	if got := s.Messages(t, "INBOX"); len(got) != 0 {
		t.Errorf("INBOX still holds %d messages", len(got))
	}
}

// Over STARTTLS, which imap:// insists on: the intake trusts the server's certificate only
// through its TLS configuration.
func TestIMAPIntakeSTARTTLS(t *testing.T) {
	s := dovecottest.Start(t, dovecottest.Options{TLS: true})
	s.Append(t, "INBOX", fixture(t, "arf_abuse.eml", testVars(9)))
	rec := &memRecorder{}
	in := intake(t, s, rec)
	if in.Config.Security != "starttls" {
		t.Fatalf("security %q", in.Config.Security)
	}
	if _, err := in.Poll(context.Background()); err == nil {
		t.Fatal("Poll trusted an unknown certificate")
	}
	in.TLSConfig = &tls.Config{RootCAs: s.CertPool(), ServerName: dovecottest.Hostname}
	res, err := in.Poll(context.Background())
	if err != nil || res != (PollResult{Recorded: 1}) {
		t.Fatalf("Poll = %+v, %v", res, err)
	}
	if len(rec.events) != 1 || rec.events[0].Kind != Complaint || rec.events[0].IssueID != 9 {
		t.Errorf("events %+v", rec.events)
	}
}

func TestIMAPIntakeWrongPassword(t *testing.T) {
	s := dovecottest.Start(t, dovecottest.Options{})
	in := intake(t, s, &memRecorder{})
	in.Config.Password = "wrong"
	if _, err := in.Poll(context.Background()); err == nil || strings.Contains(err.Error(), "wrong") {
		t.Fatalf("Poll = %v; want a login error that does not repeat the password", err)
	}
}

func TestParseIMAPURL(t *testing.T) {
	for _, c := range []struct {
		url  string
		want IMAPConfig
		err  bool
	}{
		{url: "imaps://bounces%40news.example.org:p%40ss@imap.example.org/Bounces?processed=Done&unhandled=Look",
			want: IMAPConfig{Addr: "imap.example.org:993", Security: "tls", Username: "bounces@news.example.org", Password: "p@ss", Mailbox: "Bounces", Processed: "Done", Unhandled: "Look"}},
		{url: "imap://u:p@imap.example.org",
			want: IMAPConfig{Addr: "imap.example.org:143", Security: "starttls", Username: "u", Password: "p", Mailbox: "INBOX", Processed: "Processed", Unhandled: "Unhandled"}},
		{url: "imap://u:p@127.0.0.1:1143/INBOX?tls=none",
			want: IMAPConfig{Addr: "127.0.0.1:1143", Security: "none", Username: "u", Password: "p", Mailbox: "INBOX", Processed: "Processed", Unhandled: "Unhandled"}},
		{url: "imap://u:p@[::1]:1143?tls=required",
			want: IMAPConfig{Addr: "[::1]:1143", Security: "starttls", Username: "u", Password: "p", Mailbox: "INBOX", Processed: "Processed", Unhandled: "Unhandled"}},
		{url: "pop3://u:p@host", err: true},
		{url: "imap://host", err: true},
		{url: "imap://u:p@", err: true},
		{url: "imaps://u:p@host?tls=none", err: true},
		{url: "imap://u:p@host?tls=maybe", err: true},
		{url: "imap://u:p@host?procesed=x", err: true},
		{url: "imap://u:p@host/Processed", err: true},
		{url: "imap://u:secret@host:bad port", err: true},
	} {
		got, err := ParseIMAPURL(c.url)
		if (err != nil) != c.err || (!c.err && got != c.want) {
			t.Errorf("ParseIMAPURL(%q) = %+v, %v", c.url, got, err)
		}
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("ParseIMAPURL(%q): the error shows the password: %v", c.url, err)
		}
	}
}
