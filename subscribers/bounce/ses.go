package bounce

import (
	"context"
	"crypto"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

// SESHandler receives Amazon SES bounce and complaint notifications through an SNS topic's
// HTTPS subscription. Every message's SNS signature is verified (SignatureVersion 1,
// SHA1withRSA, and 2, SHA256withRSA) with the certificate at its SigningCertURL, which must be an
// https URL on an sns.<region>.amazonaws.com host; the certificate is trusted because TLS to that
// host is (Amazon serves it without its chain). Only the configured topic is accepted. A
// SubscriptionConfirmation for that topic is confirmed by fetching its SubscribeURL (on the same
// kind of host).
//
// Answers: 200 done (also for notifications that call for nothing); 400 not an SNS message;
// 401 bad signature, certificate URL or topic (nothing changes); 405 not a POST; 413 body too
// large; 502 the subscription could not be confirmed; 503 the certificate could not be fetched
// or the events not recorded (SNS tries again).
type SESHandler struct {
	// TopicARN is the one topic accepted (NEWSLETTER_SES_TOPIC_ARN).
	TopicARN string
	// Base and Secret read the VERP token in the notification's mail.source (the envelope
	// sender, our Return-Path), which names the reader and the issue.
	Base   string
	Secret []byte
	// Recorder receives the events.
	Recorder Recorder
	// Client fetches signing certificates and confirms subscriptions (nil: a client with a
	// 10-second timeout). Tests give one that trusts their own CA.
	Client *http.Client
	// Log notes confirmations and refusals (nil: none).
	Log *slog.Logger
	// MaxBody bounds a request body (default 1 MiB).
	MaxBody int64

	mu    sync.Mutex
	certs map[string]*rsa.PublicKey // by SigningCertURL
}

// snsMessage is the JSON body SNS posts.
type snsMessage struct {
	Type             string  `json:"Type"`
	MessageID        string  `json:"MessageId"`
	Token            string  `json:"Token"`
	TopicArn         string  `json:"TopicArn"`
	Subject          *string `json:"Subject"`
	Message          string  `json:"Message"`
	Timestamp        string  `json:"Timestamp"`
	SignatureVersion string  `json:"SignatureVersion"`
	Signature        string  `json:"Signature"`
	SigningCertURL   string  `json:"SigningCertURL"`
	SubscribeURL     string  `json:"SubscribeURL"`
}

// snsHost is the host a SigningCertURL or SubscribeURL must have.
var snsHost = regexp.MustCompile(`^sns\.[a-z0-9-]+\.amazonaws\.com$`)

// errSignature covers every way a message fails to prove it comes from SNS.
var errSignature = errors.New("sns: signature does not verify")

func (h *SESHandler) log() *slog.Logger {
	if h.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Log
}

func (h *SESHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r, h.MaxBody)
	if !ok {
		return
	}
	var m snsMessage
	if err := json.Unmarshal(body, &m); err != nil || m.Type == "" || m.MessageID == "" {
		answer(w, http.StatusBadRequest)
		return
	}
	if t := r.Header.Get("X-Amz-Sns-Message-Type"); t != "" && t != m.Type {
		answer(w, http.StatusBadRequest)
		return
	}
	// The topic first: a message for another topic needs no certificate fetched to be refused.
	if h.TopicARN == "" || m.TopicArn != h.TopicARN {
		h.log().Warn("SES webhook: message for another topic refused", "type", m.Type)
		answer(w, http.StatusUnauthorized)
		return
	}
	if err := h.verify(r.Context(), &m); err != nil {
		if errors.Is(err, errSignature) {
			h.log().Warn("SES webhook: bad signature", "type", m.Type, "err", err)
			answer(w, http.StatusUnauthorized)
		} else {
			h.log().Error("SES webhook: signing certificate", "err", err)
			answer(w, http.StatusServiceUnavailable)
		}
		return
	}
	switch m.Type {
	case "SubscriptionConfirmation":
		if err := h.confirm(r.Context(), m.SubscribeURL); err != nil {
			h.log().Error("SES webhook: confirming the subscription", "err", err)
			answer(w, http.StatusBadGateway)
			return
		}
		h.log().Info("SES webhook: subscription confirmed", "topic", m.TopicArn)
	case "UnsubscribeConfirmation":
		h.log().Warn("SES webhook: the topic unsubscribed this endpoint", "topic", m.TopicArn)
	case "Notification":
		events, err := h.events(&m)
		if err != nil {
			// Signed by SNS but not an SES notification (a test message): nothing to retry.
			h.log().Info("SES webhook: notification ignored", "why", err)
			break
		}
		if len(events) > 0 {
			if err := h.Recorder.RecordEvents(r.Context(), events); err != nil {
				h.log().Error("SES webhook: recording events", "err", err)
				answer(w, http.StatusServiceUnavailable)
				return
			}
		}
	default:
		answer(w, http.StatusBadRequest)
		return
	}
	answer(w, http.StatusOK)
}

// stringToSign is what SNS signs: the named fields as "Name\nvalue\n", in this order.
func (m *snsMessage) stringToSign() string {
	var b strings.Builder
	add := func(k, v string) { b.WriteString(k + "\n" + v + "\n") }
	add("Message", m.Message)
	add("MessageId", m.MessageID)
	if m.Type == "Notification" {
		if m.Subject != nil {
			add("Subject", *m.Subject)
		}
	} else {
		add("SubscribeURL", m.SubscribeURL)
	}
	add("Timestamp", m.Timestamp)
	if m.Type != "Notification" {
		add("Token", m.Token)
	}
	add("TopicArn", m.TopicArn)
	add("Type", m.Type)
	return b.String()
}

// verify checks the message's signature with the certificate its SigningCertURL names.
func (h *SESHandler) verify(ctx context.Context, m *snsMessage) error {
	var hash crypto.Hash
	var digest []byte
	s := m.stringToSign()
	switch m.SignatureVersion {
	case "1":
		sum := sha1.Sum([]byte(s))
		hash, digest = crypto.SHA1, sum[:]
	case "2":
		sum := sha256.Sum256([]byte(s))
		hash, digest = crypto.SHA256, sum[:]
	default:
		return fmt.Errorf("%w: signature version %q", errSignature, m.SignatureVersion)
	}
	sig, err := base64.StdEncoding.DecodeString(m.Signature)
	if err != nil || len(sig) == 0 {
		return fmt.Errorf("%w: signature not base64", errSignature)
	}
	if !snsURL(m.SigningCertURL) || !strings.HasSuffix(strings.ToLower(mustURL(m.SigningCertURL).Path), ".pem") {
		return fmt.Errorf("%w: certificate URL not on an SNS host", errSignature)
	}
	key, err := h.key(ctx, m.SigningCertURL)
	if err != nil {
		return err
	}
	// Straight RSA: x509's CheckSignature refuses SHA-1, which version 1 still uses.
	if err := rsa.VerifyPKCS1v15(key, hash, digest, sig); err != nil {
		return errSignature
	}
	return nil
}

// snsURL reports whether s is an https URL on an SNS host, with no credentials or odd port.
func snsURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && u.Scheme == "https" && u.User == nil && (u.Port() == "" || u.Port() == "443") &&
		snsHost.MatchString(u.Hostname())
}

func mustURL(s string) *url.URL {
	u, _ := url.Parse(s)
	return u
}

func (h *SESHandler) client() *http.Client {
	if h.Client != nil {
		return h.Client
	}
	return &http.Client{Timeout: 10 * time.Second}
}

// maxCerts bounds the certificate cache; SNS signs with one certificate at a time.
const maxCerts = 16

// key returns the public key of the certificate at certURL, fetched once and cached.
func (h *SESHandler) key(ctx context.Context, certURL string) (*rsa.PublicKey, error) {
	h.mu.Lock()
	k, ok := h.certs[certURL]
	h.mu.Unlock()
	if ok {
		return k, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, certURL, nil)
	if err != nil {
		return nil, err
	}
	resp, err := h.client().Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetch certificate: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("fetch certificate: %s", resp.Status)
	}
	pemBytes, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("fetch certificate: %w", err)
	}
	block, _ := pem.Decode(pemBytes)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("%w: no certificate at the URL", errSignature)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: certificate: %v", errSignature, err)
	}
	if now := time.Now(); now.Before(cert.NotBefore) || now.After(cert.NotAfter) {
		return nil, fmt.Errorf("%w: certificate expired or not yet valid", errSignature)
	}
	k, ok = cert.PublicKey.(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%w: not an RSA certificate", errSignature)
	}
	h.mu.Lock()
	if h.certs == nil || len(h.certs) >= maxCerts {
		h.certs = map[string]*rsa.PublicKey{}
	}
	h.certs[certURL] = k
	h.mu.Unlock()
	return k, nil
}

// confirm fetches the SubscribeURL of a verified SubscriptionConfirmation.
func (h *SESHandler) confirm(ctx context.Context, subscribeURL string) error {
	if !snsURL(subscribeURL) {
		return errors.New("SubscribeURL not on an SNS host")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, subscribeURL, nil)
	if err != nil {
		return err
	}
	resp, err := h.client().Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("SubscribeURL answered %s", resp.Status)
	}
	return nil
}

// sesNotification is an SES notification (notificationType) or event (eventType).
type sesNotification struct {
	NotificationType string `json:"notificationType"`
	EventType        string `json:"eventType"`
	Bounce           *struct {
		BounceType        string `json:"bounceType"`
		BounceSubType     string `json:"bounceSubType"`
		BouncedRecipients []struct {
			EmailAddress   string `json:"emailAddress"`
			Status         string `json:"status"`
			DiagnosticCode string `json:"diagnosticCode"`
		} `json:"bouncedRecipients"`
		Timestamp  time.Time `json:"timestamp"`
		FeedbackID string    `json:"feedbackId"`
	} `json:"bounce"`
	Complaint *struct {
		ComplainedRecipients []struct {
			EmailAddress string `json:"emailAddress"`
		} `json:"complainedRecipients"`
		Timestamp             time.Time `json:"timestamp"`
		FeedbackID            string    `json:"feedbackId"`
		ComplaintFeedbackType string    `json:"complaintFeedbackType"`
		UserAgent             string    `json:"userAgent"`
	} `json:"complaint"`
	Mail struct {
		Source  string `json:"source"`
		Headers []struct {
			Name  string `json:"name"`
			Value string `json:"value"`
		} `json:"headers"`
		CommonHeaders struct {
			ReturnPath string `json:"returnPath"`
		} `json:"commonHeaders"`
	} `json:"mail"`
}

// events turns an SES notification into events. The reader comes from our VERP token in the
// envelope sender when the message had one recipient; otherwise (no token: mail sent without
// VERP) from the recipient address SES reports, which the SNS signature vouches for.
func (h *SESHandler) events(m *snsMessage) ([]Event, error) {
	var n sesNotification
	if err := json.Unmarshal([]byte(m.Message), &n); err != nil {
		return nil, errors.New("not an SES notification")
	}
	returnPaths := []string{n.Mail.Source, n.Mail.CommonHeaders.ReturnPath}
	for _, hd := range n.Mail.Headers {
		if strings.EqualFold(hd.Name, "Return-Path") {
			returnPaths = append(returnPaths, hd.Value)
		}
	}
	uuid, issue, hasToken := tokenFrom(h.Base, h.Secret, returnPaths...)
	at := func(t time.Time) time.Time {
		if t.IsZero() {
			return time.Now().UTC()
		}
		return t.UTC()
	}
	make1 := func(kind Kind, recipient, reason, feedbackID string, i, n int, t time.Time) Event {
		ev := Event{Kind: kind, IssueID: issue, Reason: reason, At: at(t), Source: SourceSES, ExternalID: feedbackID}
		if ev.ExternalID == "" {
			ev.ExternalID = m.MessageID
		}
		if n > 1 {
			ev.ExternalID += "/" + strconv.Itoa(i)
		}
		if hasToken && n == 1 {
			ev.SubscriberUUID = uuid
		} else {
			ev.Email = strings.TrimSpace(recipient)
		}
		return ev
	}
	typ := n.NotificationType
	if typ == "" {
		typ = n.EventType
	}
	var out []Event
	switch typ {
	case "Bounce":
		b := n.Bounce
		if b == nil {
			return nil, errors.New("a bounce without its bounce object")
		}
		for i, r := range b.BouncedRecipients {
			kind := Soft
			switch b.BounceType {
			case "Permanent":
				kind = Hard
			case "Transient":
			default: // Undetermined: as its status says, else soft
				if k := statusKind(r.Status, r.DiagnosticCode); k != "" {
					kind = k
				}
			}
			reason := Reason(statusCode(r.Status), r.DiagnosticCode)
			if reason == "" {
				reason = Reason("SES " + b.BounceType + "/" + b.BounceSubType)
			}
			out = append(out, make1(kind, r.EmailAddress, reason, b.FeedbackID, i, len(b.BouncedRecipients), b.Timestamp))
		}
	case "Complaint":
		c := n.Complaint
		if c == nil {
			return nil, errors.New("a complaint without its complaint object")
		}
		ft := strings.ToLower(c.ComplaintFeedbackType)
		if ft == "not-spam" {
			return nil, nil
		}
		if ft == "" {
			ft = "complaint"
		}
		for i, r := range c.ComplainedRecipients {
			out = append(out, make1(Complaint, r.EmailAddress, Reason("feedback-type "+ft, clip(c.UserAgent, 100)), c.FeedbackID, i, len(c.ComplainedRecipients), c.Timestamp))
		}
	default:
		// Delivery, Send, Open...: nothing for the list.
	}
	for _, e := range out {
		if e.SubscriberUUID == "" && e.Email == "" {
			return nil, errors.New("a recipient without an address")
		}
	}
	return out, nil
}
