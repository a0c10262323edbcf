package clientaddr

import (
	"net/http"
	"testing"
)

func TestOf(t *testing.T) {
	for _, c := range []struct {
		name, remote string
		xff          []string
		trust        bool
		want         string
	}{
		{"IPv4", "192.0.2.7:5123", nil, false, "192.0.2.7"},
		{"IPv6", "[2001:db8::1]:443", nil, false, "2001:db8::1"},
		{"NoPort", "192.0.2.8", nil, false, "192.0.2.8"},
		{"ForwardedIgnoredWithoutTrust", "192.0.2.7:5123", []string{"198.51.100.1"}, false, "192.0.2.7"},
		{"ForwardedLastEntry", "10.0.0.1:5123", []string{"203.0.113.9, 198.51.100.1"}, true, "198.51.100.1"},
		{"ForwardedLastHeader", "10.0.0.1:5123", []string{"203.0.113.9", "198.51.100.2"}, true, "198.51.100.2"},
		{"ForwardedJunkFallsBack", "10.0.0.1:5123", []string{"not an address"}, true, "10.0.0.1"},
		{"ForwardedSpoofedFirstIgnored", "10.0.0.1:5123", []string{"1.2.3.4, 198.51.100.3"}, true, "198.51.100.3"},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := &http.Request{RemoteAddr: c.remote, Header: http.Header{}}
			for _, v := range c.xff {
				r.Header.Add("X-Forwarded-For", v)
			}
			if got := Of(r, c.trust); got != c.want {
				t.Errorf("Of = %q, want %q", got, c.want)
			}
		})
	}
}

func TestKey(t *testing.T) {
	for _, c := range []struct{ addr, want string }{
		{"203.0.113.7", "203.0.113.7"},
		{"2001:db8:1:2:aaaa::1", "2001:db8:1:2::/64"},
		{"2001:db8:1:2:bbbb::9", "2001:db8:1:2::/64"},
		{"::ffff:203.0.113.7", "203.0.113.7"},
		{"not-an-ip", "not-an-ip"},
	} {
		if got := Key(c.addr); got != c.want {
			t.Errorf("Key(%q) = %q, want %q", c.addr, got, c.want)
		}
	}
}

func TestTruncate(t *testing.T) {
	for in, want := range map[string]string{
		"198.51.100.77":            "198.51.100.0",
		"::ffff:198.51.100.77":     "198.51.100.0",
		"2001:db8:1234:5678::9":    "2001:db8:1234::",
		"not an address":           "",
		"":                         "",
		"2001:db8:abcd:ffff:1::ff": "2001:db8:abcd::",
	} {
		if got := Truncate(in); got != want {
			t.Errorf("Truncate(%q) = %q, want %q", in, got, want)
		}
	}
}
