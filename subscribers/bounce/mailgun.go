package bounce

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"math"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// MailgunHandler receives Mailgun's event webhooks (failed, complained). Each is signed: an
// HMAC-SHA256 under the webhook signing key over the timestamp and a random token, both in the
// body. A request is accepted only with a valid signature, a timestamp within MaxAge of now, and a
// token not seen before (a replay within the window is refused; one after it fails the
// timestamp check). A token counts as used once its event was handled, so Mailgun's retry of a
// request that failed here is not taken for a replay.
//
// Answers: 200 done (also for events that call for nothing); 400 not a Mailgun event; 401 bad
// or stale signature, or a replay (nothing changes); 405 not a POST; 413 body too large; 503 the
// events could not be recorded (Mailgun tries again).
type MailgunHandler struct {
	// SigningKey is the HTTP webhook signing key (NEWSLETTER_MAILGUN_SIGNING_KEY).
	SigningKey []byte
	// Base and Secret read the VERP token in the event's envelope sender.
	Base   string
	Secret []byte
	// Recorder receives the events.
	Recorder Recorder
	// Log notes refusals (nil: none).
	Log *slog.Logger
	// MaxAge is how far a signature's timestamp may be from now (default 10 minutes).
	MaxAge time.Duration
	// MaxBody bounds a request body (default 1 MiB).
	MaxBody int64
	// Now is the clock (default time.Now).
	Now func() time.Time

	mu   sync.Mutex
	used map[string]time.Time // token -> when it may be forgotten
}

// maxTokens bounds the replay cache; past it (a flood of validly signed requests) requests wait
// for tokens to expire rather than be let through unchecked.
const maxTokens = 100_000

type mailgunPayload struct {
	Signature struct {
		Timestamp json.RawMessage `json:"timestamp"` // a string, or a number in older payloads
		Token     string          `json:"token"`
		Signature string          `json:"signature"`
	} `json:"signature"`
	EventData *struct {
		Event     string  `json:"event"`
		ID        string  `json:"id"`
		Timestamp float64 `json:"timestamp"`
		Severity  string  `json:"severity"`
		Reason    string  `json:"reason"`
		Recipient string  `json:"recipient"`
		Envelope  struct {
			Sender string `json:"sender"`
		} `json:"envelope"`
		DeliveryStatus struct {
			Code        int    `json:"code"`
			Message     string `json:"message"`
			Description string `json:"description"`
		} `json:"delivery-status"`
	} `json:"event-data"`
}

func (h *MailgunHandler) log() *slog.Logger {
	if h.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return h.Log
}

func (h *MailgunHandler) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

func (h *MailgunHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, ok := readBody(w, r, h.MaxBody)
	if !ok {
		return
	}
	var p mailgunPayload
	if err := json.Unmarshal(body, &p); err != nil || p.EventData == nil {
		answer(w, http.StatusBadRequest)
		return
	}
	ts := string(bytes.Trim(p.Signature.Timestamp, `"`))
	if !h.signed(ts, p.Signature.Token, p.Signature.Signature) {
		h.log().Warn("Mailgun webhook: bad signature")
		answer(w, http.StatusUnauthorized)
		return
	}
	maxAge := h.MaxAge
	if maxAge <= 0 {
		maxAge = 10 * time.Minute
	}
	sec, _ := strconv.ParseInt(ts, 10, 64)
	signedAt := time.Unix(sec, 0)
	if d := h.now().Sub(signedAt); d > maxAge || d < -maxAge {
		h.log().Warn("Mailgun webhook: signature too old or from the future", "age", d.Round(time.Second))
		answer(w, http.StatusUnauthorized)
		return
	}
	if !h.claim(p.Signature.Token, signedAt.Add(maxAge)) {
		h.log().Warn("Mailgun webhook: token seen before (a replay)")
		answer(w, http.StatusUnauthorized)
		return
	}
	if events := h.events(&p); len(events) > 0 {
		if err := h.Recorder.RecordEvents(r.Context(), events); err != nil {
			h.release(p.Signature.Token)
			h.log().Error("Mailgun webhook: recording events", "err", err)
			answer(w, http.StatusServiceUnavailable)
			return
		}
	}
	answer(w, http.StatusOK)
}

// signed checks the signature over timestamp and token, in constant time.
func (h *MailgunHandler) signed(timestamp, token, signature string) bool {
	if len(h.SigningKey) == 0 || timestamp == "" || token == "" {
		return false
	}
	if _, err := strconv.ParseInt(timestamp, 10, 64); err != nil {
		return false
	}
	got, err := hex.DecodeString(signature)
	if err != nil {
		return false
	}
	mac := hmac.New(sha256.New, h.SigningKey)
	mac.Write([]byte(timestamp + token))
	return hmac.Equal(got, mac.Sum(nil))
}

// claim marks token used until expires; false when it already is (or the cache is full).
func (h *MailgunHandler) claim(token string, expires time.Time) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	now := h.now()
	if h.used == nil {
		h.used = map[string]time.Time{}
	}
	if until, ok := h.used[token]; ok && now.Before(until) {
		return false
	}
	if len(h.used) >= maxTokens/2 {
		for t, until := range h.used {
			if !now.Before(until) {
				delete(h.used, t)
			}
		}
		if len(h.used) >= maxTokens {
			return false
		}
	}
	h.used[token] = expires
	return true
}

// release forgets a claimed token whose event was not handled, so Mailgun's retry is accepted.
func (h *MailgunHandler) release(token string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.used, token)
}

// events maps a Mailgun event to ours. failed/permanent is a hard bounce, or soft when the
// server's code was a 4xx or the ESP blocked the message; failed/temporary is Mailgun still
// retrying, except reason "old" (it gave up: soft); complained, and a message dropped because the
// address is on Mailgun's complaint list, is a complaint. The reader comes from our VERP token in
// the envelope sender, else from the recipient address the signature vouches for.
func (h *MailgunHandler) events(p *mailgunPayload) []Event {
	e := p.EventData
	var kind Kind
	code := e.DeliveryStatus.Code
	switch e.Event {
	case "failed":
		switch {
		case e.Severity == "permanent" && e.Reason == "suppress-complaint":
			kind = Complaint
		case e.Severity == "permanent" && e.Reason == "suppress-unsubscribe":
			return nil // Mailgun's own unsubscribe list: not ours to act on
		case e.Severity == "permanent" && (code/100 == 4 || e.Reason == "espblock" || e.Reason == "old"):
			kind = Soft
		case e.Severity == "permanent":
			kind = Hard
		case e.Reason == "old":
			kind = Soft
		default:
			return nil
		}
	case "complained":
		kind = Complaint
	default:
		return nil // delivered, opened, accepted...: nothing for the list
	}
	ev := Event{Kind: kind, Source: SourceMailgun, ExternalID: e.ID}
	if e.Timestamp > 0 && !math.IsInf(e.Timestamp, 0) {
		// To the microsecond, as the database keeps it: a float's nanoseconds are noise.
		ev.At = time.UnixMicro(int64(math.Round(e.Timestamp * 1e6))).UTC()
		// The event id is unique only within a day (Mailgun's documentation).
		ev.ExternalID += "/" + strconv.FormatInt(int64(e.Timestamp), 10)
	} else {
		ev.At = h.now().UTC()
	}
	if ev.ExternalID == "" || strings.HasPrefix(ev.ExternalID, "/") {
		ev.ExternalID = "token:" + p.Signature.Token
	}
	switch kind {
	case Complaint:
		ev.Reason = Reason("complaint", e.Reason)
	default:
		c := ""
		if code != 0 {
			c = strconv.Itoa(code)
		}
		ev.Reason = Reason(c, e.DeliveryStatus.Message, e.DeliveryStatus.Description, e.Reason)
	}
	if uuid, issue, ok := tokenFrom(h.Base, h.Secret, e.Envelope.Sender); ok {
		ev.SubscriberUUID, ev.IssueID = uuid, issue
	} else if e.Recipient != "" {
		ev.Email = strings.TrimSpace(e.Recipient)
	} else {
		return nil
	}
	return []Event{ev}
}
