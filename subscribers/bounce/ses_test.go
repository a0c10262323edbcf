package bounce

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

const (
	testTopic   = "arn:aws:sns:us-east-1:123456789012:newsletter-ses-feedback"
	testSNSHost = "sns.us-east-1.amazonaws.com"
	testCertURL = "https://" + testSNSHost + "/SimpleNotificationService-0000000000000000000000.pem"
)

// fakeSNS stands in for Amazon's side: a CA of the test's own, an https server answering for the
// SNS host (certificate and subscription confirmation), and the key SNS signs with. The handler
// under test reaches it through an HTTP client that trusts the test CA and dials the server
// whatever the host, so the real fetch path (https, TLS verification, the host check) runs.
type fakeSNS struct {
	key        *rsa.PrivateKey
	certPEM    []byte
	server     *httptest.Server
	client     *http.Client
	certFetch  atomic.Int32
	confirmed  atomic.Int32
	confirmURL string
}

func newFakeSNS(t *testing.T) *fakeSNS {
	t.Helper()
	caKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "bounce test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	issue := func(tmpl *x509.Certificate, pub any) []byte {
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
		if err != nil {
			t.Fatal(err)
		}
		return der
	}
	f := &fakeSNS{}
	// The signing certificate, as SNS serves it: the leaf alone.
	if f.key, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	signDER := issue(&x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "sns.amazonaws.com"}, DNSNames: []string{"sns.amazonaws.com"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
	}, &f.key.PublicKey)
	f.certPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: signDER})
	// The https server's certificate, for the SNS host.
	tlsKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tlsDER := issue(&x509.Certificate{
		SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: testSNSHost}, DNSNames: []string{testSNSHost},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, &tlsKey.PublicKey)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /SimpleNotificationService-0000000000000000000000.pem", func(w http.ResponseWriter, r *http.Request) {
		f.certFetch.Add(1)
		w.Write(f.certPEM)
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("Action") == "ConfirmSubscription" && r.URL.Query().Get("TopicArn") == testTopic {
			f.confirmed.Add(1)
			w.Write([]byte("<ConfirmSubscriptionResponse/>"))
			return
		}
		http.Error(w, "bad request", http.StatusBadRequest)
	})
	f.server = httptest.NewUnstartedServer(mux)
	f.server.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{tlsDER}, PrivateKey: tlsKey}}}
	f.server.StartTLS()
	t.Cleanup(f.server.Close)
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	addr := f.server.Listener.Addr().String()
	f.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots},
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
	}}
	f.confirmURL = "https://" + testSNSHost + "/?Action=ConfirmSubscription&TopicArn=" + testTopic + "&Token=2336412f37fb687f5d51e6e2425c464d"
	return f
}

// snsMsg is an SNS message as posted, built field by field from Amazon's documentation.
type snsMsg map[string]any

// sign signs m the way SNS does: the fields named in the documentation for the message's type,
// each as "Name\nvalue\n", in that order; version 1 with SHA1withRSA, 2 with SHA256withRSA.
func (f *fakeSNS) sign(t *testing.T, m snsMsg, version string) snsMsg {
	t.Helper()
	fields := []string{"Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"}
	if m["Type"] != "Notification" {
		fields = []string{"Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"}
	}
	var s strings.Builder
	for _, k := range fields {
		if v, ok := m[k]; ok {
			s.WriteString(k + "\n" + v.(string) + "\n")
		}
	}
	var sig []byte
	var err error
	if version == "1" {
		sum := sha1.Sum([]byte(s.String()))
		sig, err = rsa.SignPKCS1v15(rand.Reader, f.key, crypto.SHA1, sum[:])
	} else {
		sum := sha256.Sum256([]byte(s.String()))
		sig, err = rsa.SignPKCS1v15(rand.Reader, f.key, crypto.SHA256, sum[:])
	}
	if err != nil {
		t.Fatal(err)
	}
	m["SignatureVersion"] = version
	m["Signature"] = base64.StdEncoding.EncodeToString(sig)
	if _, ok := m["SigningCertURL"]; !ok {
		m["SigningCertURL"] = testCertURL
	}
	return m
}

func notification(t *testing.T, file, source string) snsMsg {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	return snsMsg{
		"Type":           "Notification",
		"MessageId":      "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
		"TopicArn":       testTopic,
		"Message":        strings.ReplaceAll(string(b), "${SOURCE}", source),
		"Timestamp":      "2025-05-12T08:14:04.123Z",
		"UnsubscribeURL": "https://" + testSNSHost + "/?Action=Unsubscribe&SubscriptionArn=" + testTopic + ":c9135db0",
	}
}

type sesFixture struct {
	sns     *fakeSNS
	rec     *memRecorder
	handler *SESHandler
	url     string
}

func newSESFixture(t *testing.T) *sesFixture {
	f := &sesFixture{sns: newFakeSNS(t), rec: &memRecorder{}}
	f.handler = &SESHandler{TopicARN: testTopic, Base: testBase, Secret: testSecret, Recorder: f.rec, Client: f.sns.client}
	srv := httptest.NewServer(f.handler)
	t.Cleanup(srv.Close)
	f.url = srv.URL + "/webhooks/ses"
	return f
}

// post sends the message as SNS does (text/plain JSON, the message type header) and returns the
// status.
func (f *sesFixture) post(t *testing.T, m snsMsg) int {
	t.Helper()
	body, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return f.postRaw(t, body, m["Type"].(string))
}

func (f *sesFixture) postRaw(t *testing.T, body []byte, typ string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, f.url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "text/plain; charset=UTF-8")
	if typ != "" {
		req.Header.Set("X-Amz-Sns-Message-Type", typ)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestSESNotifications(t *testing.T) {
	f := newSESFixture(t)
	verp := Address(testBase, testSecret, testUUID, 7)
	for _, c := range []struct {
		name, file, source, version string
		want                        []Event
	}{
		{"PermanentV1", "ses_bounce_permanent.json", verp, "1", []Event{{
			Kind: Hard, SubscriberUUID: testUUID, IssueID: 7, Source: SourceSES,
			Reason:     "5.1.1 smtp; 550 5.1.1 <address>: Recipient address rejected: User unknown",
			At:         time.Date(2025, 5, 12, 8, 14, 3, 512e6, time.UTC),
			ExternalID: "0100018f6c2a7e1b-6a4c1d2e-3b5f-4a7c-9e8d-1f2a3b4c5d6e-000000",
		}}},
		{"TransientV2EventPublishing", "ses_bounce_transient.json", verp, "2", []Event{{
			Kind: Soft, SubscriberUUID: testUUID, IssueID: 7, Source: SourceSES,
			Reason:     "4.2.2 smtp; 452 4.2.2 Mailbox full",
			At:         time.Date(2025, 5, 15, 8, 2, 44, 0, time.UTC),
			ExternalID: "0100018f7d3b8f2c-7b5d2e3f-4c6a-5b8d-af9e-2a3b4c5d6e7f-000000",
		}}},
		// Sent without VERP: the address SES reports, vouched for by the signature, names the reader.
		{"ComplaintWithoutToken", "ses_complaint.json", "digest@news.example.org", "2", []Event{{
			Kind: Complaint, Email: "dave@mail.example.com", Source: SourceSES,
			Reason:     "feedback-type abuse ExampleMail-FBL/1.4",
			At:         time.Date(2025, 5, 13, 17, 40, 12, 0, time.UTC),
			ExternalID: "0100018f8e4c9a3d-8c6e3f4a-5d7b-6c9e-b0af-3b4c5d6e7f8a-000000",
		}}},
		// A token signed with another secret is no token: the address names the reader.
		{"ForgedToken", "ses_complaint.json", Address(testBase, []byte("other"), testUUID, 7), "1", []Event{{
			Kind: Complaint, Email: "dave@mail.example.com", Source: SourceSES,
			Reason:     "feedback-type abuse ExampleMail-FBL/1.4",
			At:         time.Date(2025, 5, 13, 17, 40, 12, 0, time.UTC),
			ExternalID: "0100018f8e4c9a3d-8c6e3f4a-5d7b-6c9e-b0af-3b4c5d6e7f8a-000000",
		}}},
		{"Delivery", "ses_delivery.json", verp, "2", nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			f.rec.events = nil
			if got := f.post(t, f.sns.sign(t, notification(t, c.file, c.source), c.version)); got != http.StatusOK {
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
	// One certificate fetch served every message.
	if n := f.sns.certFetch.Load(); n != 1 {
		t.Errorf("certificate fetched %d times, want 1", n)
	}
}

// Every way a message can fail to prove it comes from SNS for our topic: 401, nothing recorded,
// and no certificate fetched from anywhere but an SNS host.
func TestSESRefusesForgeries(t *testing.T) {
	f := newSESFixture(t)
	verp := Address(testBase, testSecret, testUUID, 7)
	good := func() snsMsg { return f.sns.sign(t, notification(t, "ses_bounce_permanent.json", verp), "2") }
	otherKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		msg    func() snsMsg
		status int
	}{
		{"AlteredMessage", func() snsMsg {
			m := good()
			m["Message"] = strings.Replace(m["Message"].(string), "Permanent", "Transient", 1)
			return m
		}, http.StatusUnauthorized},
		{"AlteredTimestamp", func() snsMsg { m := good(); m["Timestamp"] = "2025-05-12T08:14:05.000Z"; return m }, http.StatusUnauthorized},
		{"SubjectAdded", func() snsMsg { m := good(); m["Subject"] = "added"; return m }, http.StatusUnauthorized},
		{"OtherKey", func() snsMsg {
			saved := f.sns.key
			f.sns.key = otherKey
			defer func() { f.sns.key = saved }()
			return good()
		}, http.StatusUnauthorized},
		{"NoSignature", func() snsMsg { m := good(); delete(m, "Signature"); return m }, http.StatusUnauthorized},
		{"SignatureNotBase64", func() snsMsg { m := good(); m["Signature"] = "%%%"; return m }, http.StatusUnauthorized},
		{"Version3", func() snsMsg { m := good(); m["SignatureVersion"] = "3"; return m }, http.StatusUnauthorized},
		{"OtherTopic", func() snsMsg {
			m := notification(t, "ses_bounce_permanent.json", verp)
			m["TopicArn"] = "arn:aws:sns:us-east-1:999999999999:someone-else"
			return f.sns.sign(t, m, "2")
		}, http.StatusUnauthorized},
		{"CertOverHTTP", func() snsMsg {
			m := notification(t, "ses_bounce_permanent.json", verp)
			m["SigningCertURL"] = "http://" + testSNSHost + "/SimpleNotificationService-0000000000000000000000.pem"
			return f.sns.sign(t, m, "2")
		}, http.StatusUnauthorized},
		{"CertOnOtherHost", func() snsMsg {
			m := notification(t, "ses_bounce_permanent.json", verp)
			m["SigningCertURL"] = "https://sns.us-east-1.amazonaws.com.evil.example/cert.pem"
			return f.sns.sign(t, m, "2")
		}, http.StatusUnauthorized},
		{"CertOnS3", func() snsMsg {
			m := notification(t, "ses_bounce_permanent.json", verp)
			m["SigningCertURL"] = "https://s3.amazonaws.com/evil/cert.pem"
			return f.sns.sign(t, m, "2")
		}, http.StatusUnauthorized},
		{"CertWithCredentials", func() snsMsg {
			m := notification(t, "ses_bounce_permanent.json", verp)
			m["SigningCertURL"] = "https://user:pw@" + testSNSHost + "/SimpleNotificationService-0000000000000000000000.pem"
			return f.sns.sign(t, m, "2")
		}, http.StatusUnauthorized},
		{"CertNotPEM", func() snsMsg {
			m := notification(t, "ses_bounce_permanent.json", verp)
			m["SigningCertURL"] = "https://" + testSNSHost + "/index.html"
			return f.sns.sign(t, m, "2")
		}, http.StatusUnauthorized},
		{"TypeChanged", func() snsMsg { m := good(); m["Type"] = "SubscriptionConfirmation"; return m }, http.StatusUnauthorized},
	} {
		t.Run(c.name, func(t *testing.T) {
			f.rec.events = nil
			if got := f.post(t, c.msg()); got != c.status {
				t.Errorf("status %d, want %d", got, c.status)
			}
			if len(f.rec.events) != 0 {
				t.Errorf("recorded %+v", f.rec.events)
			}
		})
	}
	if n := f.sns.certFetch.Load(); n > 1 {
		t.Errorf("certificate fetched %d times", n)
	}
	if n := f.sns.confirmed.Load(); n != 0 {
		t.Errorf("a subscription was confirmed")
	}
}

func TestSESSubscriptionConfirmation(t *testing.T) {
	f := newSESFixture(t)
	conf := func(topic, subscribeURL string) snsMsg {
		return f.sns.sign(t, snsMsg{
			"Type":         "SubscriptionConfirmation",
			"MessageId":    "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
			"Token":        "2336412f37fb687f5d51e6e2425c464d",
			"TopicArn":     topic,
			"Message":      "You have chosen to subscribe to the topic " + topic + ".\nTo confirm the subscription, visit the SubscribeURL included in this message.",
			"SubscribeURL": subscribeURL,
			"Timestamp":    "2025-05-01T10:00:00.000Z",
		}, "1")
	}
	// Someone else's topic is never confirmed, even with a valid signature.
	if got := f.post(t, conf("arn:aws:sns:us-east-1:999999999999:other", f.sns.confirmURL)); got != http.StatusUnauthorized {
		t.Errorf("other topic: status %d", got)
	}
	// A SubscribeURL off the SNS hosts is not fetched.
	if got := f.post(t, conf(testTopic, "https://evil.example/?Action=ConfirmSubscription")); got != http.StatusBadGateway {
		t.Errorf("foreign SubscribeURL: status %d", got)
	}
	if n := f.sns.confirmed.Load(); n != 0 {
		t.Fatalf("confirmed %d times before the real one", n)
	}
	if got := f.post(t, conf(testTopic, f.sns.confirmURL)); got != http.StatusOK {
		t.Errorf("status %d", got)
	}
	if n := f.sns.confirmed.Load(); n != 1 {
		t.Errorf("confirmed %d times, want 1", n)
	}
	unsub := f.sns.sign(t, snsMsg{
		"Type": "UnsubscribeConfirmation", "MessageId": "47138184-6831-46b8-8f7c-afc488602d7d",
		"Token": "2336412f37fb687f", "TopicArn": testTopic, "Message": "You have unsubscribed.",
		"SubscribeURL": f.sns.confirmURL, "Timestamp": "2025-05-02T10:00:00.000Z",
	}, "2")
	if got := f.post(t, unsub); got != http.StatusOK {
		t.Errorf("unsubscribe confirmation: status %d", got)
	}
	if n := f.sns.confirmed.Load(); n != 1 {
		t.Errorf("an unsubscribe confirmation resubscribed")
	}
}

func TestSESBadRequests(t *testing.T) {
	f := newSESFixture(t)
	if got := f.postRaw(t, []byte("{not json"), ""); got != http.StatusBadRequest {
		t.Errorf("bad JSON: status %d", got)
	}
	if got := f.postRaw(t, []byte(`{"Type":"Notification"}`), ""); got != http.StatusBadRequest {
		t.Errorf("no MessageId: status %d", got)
	}
	big := bytes.Repeat([]byte("x"), defaultMaxBody+1)
	if got := f.postRaw(t, big, ""); got != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized: status %d", got)
	}
	resp, err := http.Get(f.url)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET: status %d", resp.StatusCode)
	}
	// Signed, for our topic, but not an SES notification: accepted and ignored, so SNS stops.
	m := notification(t, "ses_delivery.json", "")
	m["Message"] = "Successfully validated SNS topic for Amazon SES event publishing."
	if got := f.post(t, f.sns.sign(t, m, "2")); got != http.StatusOK || len(f.rec.events) != 0 {
		t.Errorf("test message: status %d, events %+v", got, f.rec.events)
	}
}

// While the events cannot be recorded, SNS is told to try again (503); its retry then records.
func TestSESRecorderDown(t *testing.T) {
	f := newSESFixture(t)
	m := f.sns.sign(t, notification(t, "ses_bounce_permanent.json", Address(testBase, testSecret, testUUID, 7)), "2")
	f.rec.fail = errors.New("database unavailable")
	if got := f.post(t, m); got != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", got)
	}
	f.rec.fail = nil
	if got := f.post(t, m); got != http.StatusOK || len(f.rec.events) != 1 {
		t.Errorf("retry: status %d, events %+v", got, f.rec.events)
	}
}

// Concurrent notifications share the certificate cache safely (go test -race).
func TestSESConcurrent(t *testing.T) {
	f := newSESFixture(t)
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		m := notification(t, "ses_bounce_permanent.json", Address(testBase, testSecret, testUUID, int64(i)))
		m = f.sns.sign(t, m, "2")
		go func() {
			defer wg.Done()
			body, _ := json.Marshal(m)
			resp, err := http.Post(f.url, "text/plain", bytes.NewReader(body))
			if err != nil {
				t.Error(err)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				t.Errorf("status %d", resp.StatusCode)
			}
		}()
	}
	wg.Wait()
}
