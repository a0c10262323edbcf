package subscribers

import (
	"errors"
	"strings"
	"testing"
	"time"
)

const tokenUUID = "3f2b6c1e-9d4a-4e8b-a1c2-7f00aa55ee01"

func TestTokenRoundTrip(t *testing.T) {
	s := NewSigner([]byte("token-secret-0123456789"))
	issued := time.Date(2026, 3, 1, 12, 30, 45, 123456789, time.UTC)
	for _, p := range []Purpose{PurposeConfirm, PurposeUnsubscribe, PurposeManage} {
		t.Run(string(p), func(t *testing.T) {
			tok := s.Token(p, strings.ToUpper(tokenUUID), issued)
			if tok == "" || strings.ContainsAny(tok, "+/=.%") {
				t.Fatalf("token %q is not URL-safe", tok)
			}
			if strings.Contains(tok, "3f2b6c1e") {
				t.Error("token shows the uuid in clear hex")
			}
			uuid, got, err := s.Verify(p, tok, issued.Add(time.Hour))
			if err != nil || uuid != tokenUUID || !got.Equal(issued.Truncate(time.Microsecond)) {
				t.Fatalf("Verify = %q, %v, %v", uuid, got, err)
			}
		})
	}
}

func TestTokenRefused(t *testing.T) {
	s := NewSigner([]byte("token-secret-0123456789"))
	now := time.Date(2026, 3, 10, 0, 0, 0, 0, time.UTC)
	valid := s.Token(PurposeConfirm, tokenUUID, now.Add(-time.Hour))
	tests := []struct {
		name  string
		p     Purpose
		token string
		want  error
	}{
		{"empty", PurposeConfirm, "", ErrInvalid},
		{"garbage", PurposeConfirm, "hello", ErrInvalid},
		{"another purpose", PurposeUnsubscribe, valid, ErrInvalid},
		{"another secret", PurposeConfirm, NewSigner([]byte("other-secret-0123456789")).Token(PurposeConfirm, tokenUUID, now), ErrInvalid},
		{"truncated", PurposeConfirm, valid[:len(valid)-1], ErrInvalid},
		{"extended", PurposeConfirm, valid + "A", ErrInvalid},
		{"padded", PurposeConfirm, valid + "=", ErrInvalid},
		{"standard base64 alphabet", PurposeConfirm, strings.NewReplacer("-", "+", "_", "/").Replace(valid), ErrInvalid},
		{"expired", PurposeConfirm, s.Token(PurposeConfirm, tokenUUID, now.Add(-ConfirmTTL-time.Second)), ErrExpired},
		{"from the future", PurposeConfirm, s.Token(PurposeConfirm, tokenUUID, now.Add(time.Hour)), ErrInvalid},
		{"other reader's uuid in a valid token's place", PurposeConfirm, swapUUID(valid, s.Token(PurposeConfirm, "00000000-0000-4000-8000-000000000000", now.Add(-time.Hour))), ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			uuid, _, err := s.Verify(tc.p, tc.token, now)
			if !errors.Is(err, tc.want) || uuid != "" {
				t.Fatalf("Verify = %q, %v; want %v", uuid, err, tc.want)
			}
		})
	}
	if _, _, err := s.Verify(PurposeConfirm, s.Token(PurposeConfirm, tokenUUID, now.Add(-ConfirmTTL)), now); err != nil {
		t.Errorf("a token exactly 7 days old: %v", err)
	}
	if s.Token(PurposeConfirm, "not-a-uuid", now) != "" {
		t.Error("a token for a malformed uuid")
	}
}

// swapUUID puts the uuid bytes of b into a (what an attacker who knows both tokens could try).
func swapUUID(a, b string) string {
	ra, _ := tokenEncoding.DecodeString(a)
	rb, _ := tokenEncoding.DecodeString(b)
	copy(ra[1:17], rb[1:17])
	return tokenEncoding.EncodeToString(ra)
}

func TestTokenEveryAlteredCharacterRefused(t *testing.T) {
	s := NewSigner([]byte("token-secret-0123456789"))
	now := time.Now()
	tok := s.Token(PurposeManage, tokenUUID, now)
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	for i := range tok {
		for _, c := range []byte{alphabet[(strings.IndexByte(alphabet, tok[i])+1)%64], alphabet[(strings.IndexByte(alphabet, tok[i])+33)%64]} {
			altered := tok[:i] + string(c) + tok[i+1:]
			if _, _, err := s.Verify(PurposeManage, altered, now); !errors.Is(err, ErrInvalid) {
				t.Fatalf("altered at %d: %v", i, err)
			}
		}
	}
}

func TestLinksNeverExpire(t *testing.T) {
	s := NewSigner([]byte("token-secret-0123456789"))
	far := time.Now().AddDate(30, 0, 0)
	for _, tc := range []struct {
		p    Purpose
		url  string
		path string
	}{
		{PurposeUnsubscribe, s.UnsubscribeURL("https://news.example/", tokenUUID), "https://news.example/unsubscribe/"},
		{PurposeManage, s.ManageURL("https://news.example", tokenUUID), "https://news.example/manage/"},
	} {
		tok, ok := strings.CutPrefix(tc.url, tc.path)
		if !ok {
			t.Fatalf("%s URL %q", tc.p, tc.url)
		}
		if uuid, _, err := s.Verify(tc.p, tok, far); err != nil || uuid != tokenUUID {
			t.Errorf("%s link 30 years on: %q, %v", tc.p, uuid, err)
		}
	}
	// Digests are rendered once per reader and retried: the link must not change between calls.
	first := s.UnsubscribeURL("https://news.example", tokenUUID)
	time.Sleep(time.Millisecond)
	if again := s.UnsubscribeURL("https://news.example", tokenUUID); again != first {
		t.Error("a reader's unsubscribe link changes between calls")
	}
	confirm := s.ConfirmURL("https://news.example", tokenUUID, time.Now())
	tok, _ := strings.CutPrefix(confirm, "https://news.example/confirm/")
	if _, _, err := s.Verify(PurposeConfirm, tok, time.Now().Add(ConfirmTTL+time.Minute)); !errors.Is(err, ErrExpired) {
		t.Errorf("confirm link after 7 days: %v", err)
	}
}

// An issue's unsubscribe link names its issue, signed; a reader's link of no issue (as digests
// sent before carried) still works and names none; neither kind stands in for another purpose.
func TestIssueUnsubscribeLinks(t *testing.T) {
	s := NewSigner([]byte("token-secret-0123456789"))
	cut := func(link string) string {
		t.Helper()
		tok, ok := strings.CutPrefix(link, "https://news.example/unsubscribe/")
		if !ok {
			t.Fatalf("link %q", link)
		}
		return tok
	}
	for _, issue := range []int64{1, 42, 1 << 40} {
		link := s.IssueUnsubscribeURL("https://news.example/", tokenUUID, issue)
		if link != s.IssueUnsubscribeURL("https://news.example", tokenUUID, issue) {
			t.Error("an issue's unsubscribe link changes between calls")
		}
		uuid, got, err := s.VerifyUnsubscribe(cut(link))
		if err != nil || uuid != tokenUUID || got != issue {
			t.Errorf("issue %d: VerifyUnsubscribe = %q, %d, %v", issue, uuid, got, err)
		}
		for _, p := range []Purpose{PurposeUnsubscribe, PurposeManage, PurposeConfirm} {
			if _, _, err := s.Verify(p, cut(link), time.Now()); !errors.Is(err, ErrInvalid) {
				t.Errorf("issue %d's link verifies as %s: %v", issue, p, err)
			}
		}
	}
	if uuid, issue, err := s.VerifyUnsubscribe(cut(s.UnsubscribeURL("https://news.example", tokenUUID))); err != nil || uuid != tokenUUID || issue != 0 {
		t.Errorf("a reader's link of no issue: %q, %d, %v", uuid, issue, err)
	}
	// The issue field is under the MAC: another issue's number spliced in is refused.
	a, _ := tokenEncoding.DecodeString(cut(s.IssueUnsubscribeURL("https://news.example", tokenUUID, 7)))
	a[24] = 8
	for name, tok := range map[string]string{
		"spliced issue":  tokenEncoding.EncodeToString(a),
		"issue zero":     s.Token(PurposeIssueUnsubscribe, tokenUUID, time.UnixMicro(0)),
		"negative issue": s.Token(PurposeIssueUnsubscribe, tokenUUID, time.UnixMicro(-3)),
		"manage token":   s.Token(PurposeManage, tokenUUID, time.UnixMicro(0)),
		"other secret":   cut(NewSigner([]byte("other-secret-0123456789")).IssueUnsubscribeURL("https://news.example", tokenUUID, 7)),
	} {
		if uuid, issue, err := s.VerifyUnsubscribe(tok); !errors.Is(err, ErrInvalid) || uuid != "" || issue != 0 {
			t.Errorf("%s: VerifyUnsubscribe = %q, %d, %v", name, uuid, issue, err)
		}
	}

	// A newsletter's link (a welcome's) names the newsletter, not an issue, and is no other kind.
	link := s.NewsletterUnsubscribeURL("https://news.example/", tokenUUID, 3)
	if link != s.NewsletterUnsubscribeURL("https://news.example", tokenUUID, 3) {
		t.Error("a newsletter's unsubscribe link changes between calls")
	}
	if uuid, scope, err := s.VerifyUnsubscribeScope(cut(link)); err != nil || uuid != tokenUUID || scope != (UnsubscribeScope{Newsletter: 3}) {
		t.Errorf("a newsletter's link: %q, %+v, %v", uuid, scope, err)
	}
	if uuid, issue, err := s.VerifyUnsubscribe(cut(link)); err != nil || uuid != tokenUUID || issue != 0 {
		t.Errorf("a newsletter's link read for its issue: %q, %d, %v", uuid, issue, err)
	}
	if _, scope, err := s.VerifyUnsubscribeScope(cut(s.IssueUnsubscribeURL("https://news.example", tokenUUID, 3))); err != nil || scope != (UnsubscribeScope{Issue: 3}) {
		t.Errorf("issue 3's link read as %+v, %v", scope, err)
	}
	for p, tok := range map[Purpose]string{PurposeUnsubscribe: cut(link), PurposeIssueUnsubscribe: cut(link), PurposeManage: cut(link),
		PurposeNewsletterUnsubscribe: cut(s.IssueUnsubscribeURL("https://news.example", tokenUUID, 3))} {
		if _, _, err := s.Verify(p, tok, time.Now()); !errors.Is(err, ErrInvalid) {
			t.Errorf("a link of another kind verifies as %s: %v", p, err)
		}
	}
	if _, _, err := s.VerifyUnsubscribeScope(s.Token(PurposeNewsletterUnsubscribe, tokenUUID, time.UnixMicro(0))); !errors.Is(err, ErrInvalid) {
		t.Errorf("newsletter zero: %v", err)
	}
}

// FuzzVerifyToken: no input panics, and the only strings that verify are the exact tokens the
// signer makes (no forged or altered variant is ever accepted).
func FuzzVerifyToken(f *testing.F) {
	s := NewSigner([]byte("fuzz-secret-0123456789"))
	issued := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	for _, p := range []Purpose{PurposeConfirm, PurposeUnsubscribe, PurposeManage, PurposeIssueUnsubscribe, PurposeNewsletterUnsubscribe} {
		tok := s.Token(p, tokenUUID, issued)
		f.Add(string(p), tok)
		f.Add(string(p), tok[:len(tok)-2]+"AA")
		f.Add(string(p), strings.ToUpper(tok))
	}
	f.Add("confirm", "")
	f.Add("confirm", "AQ")
	f.Add("other", strings.Repeat("A", 76))
	other := NewSigner([]byte("another-secret-0123456789"))
	f.Fuzz(func(t *testing.T, purpose, token string) {
		p := Purpose(purpose)
		uuid, got, err := s.Verify(p, token, issued.Add(time.Hour))
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrExpired) {
				t.Fatalf("error %v is neither ErrInvalid nor ErrExpired", err)
			}
			if uuid != "" {
				t.Fatalf("uuid %q returned with an error", uuid)
			}
			return
		}
		if again := s.Token(p, uuid, got); again != token {
			t.Fatalf("accepted %q, which the signer would write as %q", token, again)
		}
		if _, _, err := other.Verify(p, token, issued.Add(time.Hour)); err == nil {
			t.Fatalf("token %q verifies under another secret", token)
		}
		// An unsubscribe link of any kind: what VerifyUnsubscribeScope takes, Verify took.
		if u, scope, err := s.VerifyUnsubscribeScope(token); err == nil {
			want, id := PurposeUnsubscribe, int64(0)
			switch {
			case scope.Issue > 0:
				want, id = PurposeIssueUnsubscribe, scope.Issue
			case scope.Newsletter > 0:
				want, id = PurposeNewsletterUnsubscribe, scope.Newsletter
			}
			if _, at, err := s.Verify(want, token, time.Time{}); err != nil || u != uuid || (id > 0 && at.UnixMicro() != id) {
				t.Fatalf("VerifyUnsubscribeScope(%q) = %q, %+v, which Verify does not confirm", token, u, scope)
			}
		}
	})
}

func TestLogTag(t *testing.T) {
	a, b := NewSigner([]byte("one secret of at least 32 bytes..")), NewSigner([]byte("another secret, 32 bytes or more."))
	tag := a.LogTag("203.0.113.77")
	if len(tag) != 8 || strings.Trim(tag, "0123456789abcdef") != "" || tag != a.LogTag("203.0.113.77") {
		t.Fatalf("LogTag = %q, want 8 hex characters, the same each time", tag)
	}
	if tag == a.LogTag("203.0.113.78") || tag == b.LogTag("203.0.113.77") {
		t.Error("LogTag does not depend on both the client and the secret")
	}
}
