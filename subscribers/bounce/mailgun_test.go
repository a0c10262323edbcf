package bounce

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

var testSigningKey = []byte("key-3ax6xnjp29jd6fds4gc373sgvjxteol0")

type mailgunFixture struct {
	rec     *memRecorder
	handler *MailgunHandler
	url     string
	now     time.Time
}

func newMailgunFixture(t *testing.T) *mailgunFixture {
	f := &mailgunFixture{rec: &memRecorder{}, now: time.Unix(1747037700, 0)}
	f.handler = &MailgunHandler{SigningKey: testSigningKey, Base: testBase, Secret: testSecret, Recorder: f.rec,
		Now: func() time.Time { return f.now }}
	srv := httptest.NewServer(f.handler)
	t.Cleanup(srv.Close)
	f.url = srv.URL + "/webhooks/mailgun"
	return f
}

// payload fills a Mailgun fixture, signed as Mailgun documents it: HMAC-SHA256 under the signing
// key over the timestamp and the token concatenated, in hex.
func payload(t *testing.T, file string, key []byte, ts time.Time, token string, vars map[string]string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	stamp := strconv.FormatInt(ts.Unix(), 10)
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(stamp + token))
	s := strings.NewReplacer("${TIMESTAMP}", stamp, "${TOKEN}", token, "${SIGNATURE}", hex.EncodeToString(mac.Sum(nil))).Replace(string(b))
	for k, v := range vars {
		s = strings.ReplaceAll(s, "${"+k+"}", v)
	}
	return []byte(s)
}

func newToken(t *testing.T) string {
	b := make([]byte, 25)
	rand.Read(b)
	return hex.EncodeToString(b) // 50 characters, as Mailgun's
}

func (f *mailgunFixture) post(t *testing.T, body []byte) int {
	t.Helper()
	resp, err := http.Post(f.url, "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestMailgunEvents(t *testing.T) {
	f := newMailgunFixture(t)
	verp := Address(testBase, testSecret, testUUID, 7)
	for _, c := range []struct {
		name, file string
		vars       map[string]string
		want       []Event
	}{
		{"PermanentFailure", "mailgun_failed_permanent.json", map[string]string{"SENDER": verp}, []Event{{
			Kind: Hard, SubscriberUUID: testUUID, IssueID: 7, Source: SourceMailgun,
			Reason:     "550 5.1.1 The email account that you tried to reach does not exist: <address> bounce",
			At:         time.Date(2025, 5, 12, 8, 14, 3, 512e6, time.UTC),
			ExternalID: "G9Bn5sl1TC6nu79C8C0bwg/1747037643",
		}}},
		// Sent without VERP: the recipient Mailgun names, vouched for by the signature.
		{"ComplaintWithoutToken", "mailgun_complained.json", map[string]string{"SENDER": "digest@news.example.org"}, []Event{{
			Kind: Complaint, Email: "dave@mail.example.com", Source: SourceMailgun,
			Reason:     "complaint",
			At:         time.Date(2025, 5, 13, 17, 40, 12, 0, time.UTC),
			ExternalID: "-Agny091SquKnsrW2NEKUA/1747158012",
		}}},
		// Mailgun still retrying: nothing yet.
		{"TemporaryFailure", "mailgun_failed_temporary.json", map[string]string{"SENDER": verp, "REASON": "generic"}, nil},
		// Mailgun gave up after retrying a 4xx: a soft bounce.
		{"GaveUp", "mailgun_failed_temporary.json", map[string]string{"SENDER": verp, "REASON": "old"}, []Event{{
			Kind: Soft, SubscriberUUID: testUUID, IssueID: 7, Source: SourceMailgun,
			Reason:     "452 4.2.2 The email account that you tried to reach is over quota. old",
			At:         time.Date(2025, 5, 12, 8, 20, 0, 0, time.UTC),
			ExternalID: "Fs7-5t81S2ms-_PPWmq9SA/1747038000",
		}}},
	} {
		t.Run(c.name, func(t *testing.T) {
			f.rec.events = nil
			if got := f.post(t, payload(t, c.file, testSigningKey, f.now, newToken(t), c.vars)); got != http.StatusOK {
				t.Fatalf("status %d", got)
			}
			if len(f.rec.events) != len(c.want) {
				t.Fatalf("events %+v, want %+v", f.rec.events, c.want)
			}
			for i := range c.want {
				if f.rec.events[i] != c.want[i] {
					t.Errorf("event\n%+v\nwant\n%+v", f.rec.events[i], c.want[i])
				}
			}
		})
	}
}

func TestMailgunRefusals(t *testing.T) {
	f := newMailgunFixture(t)
	vars := map[string]string{"SENDER": Address(testBase, testSecret, testUUID, 7)}
	file := "mailgun_failed_permanent.json"
	for _, c := range []struct {
		name   string
		body   func() []byte
		status int
	}{
		{"OtherKey", func() []byte { return payload(t, file, []byte("another key"), f.now, newToken(t), vars) }, http.StatusUnauthorized},
		{"AlteredToken", func() []byte {
			b := payload(t, file, testSigningKey, f.now, "a"+newToken(t)[1:], vars)
			return bytes.Replace(b, []byte(`"token": "a`), []byte(`"token": "b`), 1)
		}, http.StatusUnauthorized},
		{"AlteredTimestamp", func() []byte {
			stamp := strconv.FormatInt(f.now.Unix(), 10)
			b := payload(t, file, testSigningKey, f.now, newToken(t), vars)
			return bytes.Replace(b, []byte(`"timestamp": "`+stamp), []byte(`"timestamp": "`+strconv.FormatInt(f.now.Unix()+1, 10)), 1)
		}, http.StatusUnauthorized},
		{"NoSignature", func() []byte {
			b := payload(t, file, testSigningKey, f.now, newToken(t), vars)
			i := bytes.Index(b, []byte(`"signature": "`)) + len(`"signature": "`)
			j := bytes.IndexByte(b[i:], '"')
			return append(b[:i:i], b[i+j:]...)
		}, http.StatusUnauthorized},
		{"Stale", func() []byte { return payload(t, file, testSigningKey, f.now.Add(-11*time.Minute), newToken(t), vars) }, http.StatusUnauthorized},
		{"FromTheFuture", func() []byte { return payload(t, file, testSigningKey, f.now.Add(11*time.Minute), newToken(t), vars) }, http.StatusUnauthorized},
		{"BadJSON", func() []byte { return []byte(`{"signature": `) }, http.StatusBadRequest},
		{"NoEventData", func() []byte { return []byte(`{"signature": {"timestamp": "1", "token": "t", "signature": "00"}}`) }, http.StatusBadRequest},
		{"Oversized", func() []byte { return bytes.Repeat([]byte(" "), defaultMaxBody+1) }, http.StatusRequestEntityTooLarge},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := f.post(t, c.body()); got != c.status {
				t.Errorf("status %d, want %d", got, c.status)
			}
			if len(f.rec.events) != 0 || f.rec.calls != 0 {
				t.Errorf("recorded %+v", f.rec.events)
			}
		})
	}
	// Within the window is fine.
	if got := f.post(t, payload(t, file, testSigningKey, f.now.Add(-9*time.Minute), newToken(t), vars)); got != http.StatusOK {
		t.Errorf("9 minutes old: status %d", got)
	}
}

// A replayed request is refused; Mailgun's retry of one that failed here is not a replay.
func TestMailgunReplay(t *testing.T) {
	f := newMailgunFixture(t)
	body := payload(t, "mailgun_failed_permanent.json", testSigningKey, f.now, newToken(t),
		map[string]string{"SENDER": Address(testBase, testSecret, testUUID, 7)})

	f.rec.fail = errors.New("database unavailable")
	if got := f.post(t, body); got != http.StatusServiceUnavailable {
		t.Fatalf("status %d, want 503", got)
	}
	f.rec.fail = nil
	if got := f.post(t, body); got != http.StatusOK {
		t.Fatalf("retry: status %d", got)
	}
	calls := f.rec.calls
	if got := f.post(t, body); got != http.StatusUnauthorized {
		t.Errorf("replay: status %d, want 401", got)
	}
	if f.rec.calls != calls || len(f.rec.events) != 1 {
		t.Errorf("the replay reached the recorder: %d calls, events %+v", f.rec.calls, f.rec.events)
	}
	// Once the window has passed, the token is forgotten and the timestamp refuses it instead.
	f.now = f.now.Add(11 * time.Minute)
	if got := f.post(t, body); got != http.StatusUnauthorized {
		t.Errorf("late replay: status %d, want 401", got)
	}
}

func TestMailgunWithoutKeyRefusesAll(t *testing.T) {
	f := newMailgunFixture(t)
	f.handler.SigningKey = nil
	mac := hmac.New(sha256.New, nil)
	ts := strconv.FormatInt(f.now.Unix(), 10)
	mac.Write([]byte(ts + "tok"))
	body := `{"signature": {"timestamp": "` + ts + `", "token": "tok", "signature": "` + hex.EncodeToString(mac.Sum(nil)) + `"}, "event-data": {"event": "complained", "recipient": "a@example.org"}}`
	if got := f.post(t, []byte(body)); got != http.StatusUnauthorized {
		t.Errorf("status %d, want 401", got)
	}
}
