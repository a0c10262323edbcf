package bounce

import (
	"errors"
	"strings"
	"testing"
)

const (
	testBase = "bounces@news.example.org"
	testUUID = "0b9d7c1e-4f6a-4c2e-9a51-3e8f2d7b6c10"
)

var testSecret = []byte("the service secret, 32 bytes....")

func TestAddressRoundTrip(t *testing.T) {
	for _, issue := range []int64{0, 1, 127, 128, 42_000, 2_000_000, 1 << 40} {
		addr := Address(testBase, testSecret, testUUID, issue)
		if !strings.HasPrefix(addr, "bounces+") || !strings.HasSuffix(addr, "@news.example.org") {
			t.Fatalf("Address(issue %d) = %q", issue, addr)
		}
		local := addr[:strings.IndexByte(addr, '@')]
		if issue < 2_000_000 && len(local) > 64-18+len("bounces") {
			t.Errorf("issue %d: local part %q is %d bytes", issue, local, len(local))
		}
		if strings.ToLower(addr) != addr {
			t.Errorf("issue %d: %q is not lower case", issue, addr)
		}
		for _, variant := range []string{addr, strings.ToUpper(addr), "<" + addr + ">", " " + addr + " "} {
			uuid, got, err := Parse(variant, testBase, testSecret)
			if err != nil || uuid != testUUID || got != issue {
				t.Errorf("Parse(%q) = %q, %d, %v; want %q, %d", variant, uuid, got, err, testUUID, issue)
			}
		}
	}
	// The base's own case does not matter either.
	addr := Address("Bounces@News.Example.org", testSecret, testUUID, 7)
	if uuid, issue, err := Parse(addr, testBase, testSecret); err != nil || uuid != testUUID || issue != 7 {
		t.Errorf("Parse(%q) = %q, %d, %v", addr, uuid, issue, err)
	}
}

func TestAddressRefusesBadInput(t *testing.T) {
	for _, c := range []struct {
		name, base, uuid string
		issue            int64
	}{
		{"NoAt", "bounces", testUUID, 1},
		{"NoDomain", "bounces@", testUUID, 1},
		{"BadUUID", testBase, "not-a-uuid", 1},
		{"NegativeIssue", testBase, testUUID, -1},
	} {
		if got := Address(c.base, testSecret, c.uuid, c.issue); got != "" {
			t.Errorf("%s: Address = %q, want empty", c.name, got)
		}
	}
}

// CheckBase takes an address that leaves room for the token, and refuses the rest.
func TestCheckBase(t *testing.T) {
	longest := strings.Repeat("b", MaxBaseLocal) + "@news.example.org"
	for _, ok := range []string{testBase, "b@x.io", "bounce.list-1+x@mail.news.example.org", longest} {
		if err := CheckBase(ok); err != nil {
			t.Errorf("CheckBase(%q) = %v", ok, err)
		}
	}
	// The longest base still gives a local part of 64 octets for the first two million issues.
	addr := Address(longest, testSecret, testUUID, 2_000_000-1)
	if local := addr[:strings.IndexByte(addr, '@')]; len(local) != 64 {
		t.Errorf("VERP local part of the longest base is %d octets, want 64", len(local))
	}
	for _, bad := range []string{"", "bounces", "bounces@", "@news.example.org", "Digest <bounces@news.example.org>",
		"<bounces@news.example.org>", strings.Repeat("b", MaxBaseLocal+1) + "@news.example.org", "bo unces@news.example.org",
		"bounces.@news.example.org", "bö@news.example.org", "bounces@localhost", "bounces@news..example.org",
		"bounces@-news.example.org", "bounces@news.example.org\r\n", "a@b@news.example.org"} {
		if err := CheckBase(bad); err == nil {
			t.Errorf("CheckBase(%q) accepted", bad)
		}
	}
}

func TestParseRefusesForgeries(t *testing.T) {
	good := Address(testBase, testSecret, testUUID, 42)
	local, domain, _ := splitAddr(good)
	token := strings.TrimPrefix(local, "bounces+")
	other := Address(testBase, testSecret, "ffffffff-4f6a-4c2e-9a51-3e8f2d7b6c10", 42)
	otherToken := strings.TrimPrefix(other[:strings.IndexByte(other, '@')], "bounces+")

	flip := func(s string, i int) string {
		b := []byte(s)
		if b[i] == 'a' {
			b[i] = 'b'
		} else {
			b[i] = 'a'
		}
		return string(b)
	}
	for _, c := range []struct {
		name, addr string
		want       error
	}{
		{"OtherSecret", Address(testBase, []byte("another secret"), testUUID, 42), ErrBadToken},
		{"AlteredFirst", "bounces+" + flip(token, 0) + "@" + domain, ErrBadToken},
		{"AlteredUUID", "bounces+" + flip(token, 5) + "@" + domain, ErrBadToken},
		{"AlteredIssue", "bounces+" + flip(token, 27) + "@" + domain, ErrBadToken},
		{"AlteredMAC", "bounces+" + flip(token, len(token)-1) + "@" + domain, ErrBadToken},
		{"UUIDSpliced", "bounces+" + otherToken[:26] + token[26:] + "@" + domain, ErrBadToken},
		{"Truncated", "bounces+" + token[:len(token)-2] + "@" + domain, ErrBadToken},
		{"Extended", "bounces+" + token + "aa@" + domain, ErrBadToken},
		{"NotBase32", "bounces+" + token[:10] + "!" + token[11:] + "@" + domain, ErrBadToken},
		{"Padding", "bounces+" + token + "===@" + domain, ErrBadToken},
		{"Empty", "bounces+@" + domain, ErrNotVERP},
		{"TheBaseItself", testBase, ErrNotVERP},
		{"OtherDomain", "bounces+" + token + "@evil.example", ErrNotVERP},
		{"OtherLocal", "alice+" + token + "@" + domain, ErrNotVERP},
		{"NoPlus", "bounces" + token + "@" + domain, ErrNotVERP},
		{"Garbage", "not an address", ErrNotVERP},
		{"Blank", "", ErrNotVERP},
	} {
		uuid, issue, err := Parse(c.addr, testBase, testSecret)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: Parse(%q) = %q, %d, %v; want %v", c.name, c.addr, uuid, issue, err, c.want)
		}
	}
}

func TestParseRefusesNonCanonicalSpelling(t *testing.T) {
	good := Address(testBase, testSecret, testUUID, 1)
	local, domain, _ := splitAddr(good)
	token := strings.TrimPrefix(local, "bounces+")
	// The last character carries spare bits: every other spelling of the same bytes is refused.
	accepted := 0
	for _, c := range "abcdefghijklmnopqrstuvwxyz234567" {
		addr := "bounces+" + token[:len(token)-1] + string(c) + "@" + domain
		if _, _, err := Parse(addr, testBase, testSecret); err == nil {
			accepted++
		}
	}
	if accepted != 1 {
		t.Errorf("%d spellings of the last character accepted, want 1", accepted)
	}
}

func TestReason(t *testing.T) {
	for _, c := range []struct {
		in   []string
		want string
	}{
		{[]string{"5.1.1", "smtp; 550 5.1.1 <alice@example.com>: Recipient address rejected"}, "5.1.1 smtp; 550 5.1.1 <address>: Recipient address rejected"},
		{[]string{"", "  550\r\n  user   unknown\x00 "}, "550 user unknown"},
		{[]string{"4.2.2", "mailbox of bob.smith+tag@mail.example.net is full"}, "4.2.2 mailbox of <address> is full"},
		{[]string{"5.0.0", strings.Repeat("x", 400)}, "5.0.0 " + strings.Repeat("x", MaxReason-6)},
		{[]string{"5.0.0", "bad\xffutf8"}, "5.0.0 badutf8"},
	} {
		if got := Reason(c.in...); got != c.want {
			t.Errorf("Reason(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	if got := Reason(strings.Repeat("я", 200)); len(got) > MaxReason || !strings.HasPrefix(strings.Repeat("я", 200), got) {
		t.Errorf("clipped inside a rune: %q", got)
	}
}
