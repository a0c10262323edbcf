package textclean

import (
	"net/url"
	"testing"
)

func TestCanonicalLinkHosts(t *testing.T) {
	base, _ := url.Parse("https://news.example.com/feed.xml")
	for link, want := range map[string]string{
		"//::":                           "",
		"//:::":                          "",
		"https://:::/":                   "",
		"https://[::1]/a":                "https://[::1]/a",
		"https://[2001:db8::1]:8443/x":   "https://[2001:db8::1]:8443/x",
		"https://1.2.3.4/x":              "https://1.2.3.4/x",
		"//\u034f":                       "",
		"https://\u034f.example/":        "",
		"https://-x.example/":            "",
		"https://a..b/":                  "",
		"https://новости.example/x":      "https://xn--b1amnebsh.example/x",
		"https://НОВОСТИ.example:8080/x": "https://xn--b1amnebsh.example:8080/x",
	} {
		if got := CanonicalLink(base, link); got != want {
			t.Errorf("CanonicalLink(%q) = %q, want %q", link, got, want)
		}
	}
}

func TestClipBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"exactly", 7, "exactly"},
		{"longer text", 6, "longer"},
		{"ёлка", 3, "ё"}, // 2-byte runes: never half of one
		{"bad\xffbyte", 20, "badbyte"},
		{"a\xff\xfeb", 2, "ab"},
	} {
		if got := ClipBytes(tc.in, tc.n); got != tc.want {
			t.Errorf("ClipBytes(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
	if got := ClipLine("  a\n\tb   c  ", 100); got != "a b c" {
		t.Errorf("ClipLine folded to %q", got)
	}
}
