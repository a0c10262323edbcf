package textclean

import (
	"net"
	"net/url"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/net/idna"
)

// trackingParams are dropped from links: they differ per feed and would split one story in two.
var trackingParams = []string{"utm_source", "utm_medium", "utm_campaign", "utm_term", "utm_content", "fbclid", "gclid", "yclid"}

// CanonicalLink resolves link against base (nil: link must be absolute) and normalises it
// (lower-case scheme and host, no default port, no fragment, no tracking parameters); "" unless it
// is http or https on a host a browser can reach.
func CanonicalLink(base *url.URL, link string) string {
	link = strings.TrimSpace(link)
	if link == "" || len(link) > 2000 {
		return ""
	}
	u, err := url.Parse(link)
	if err != nil {
		return ""
	}
	if base != nil {
		u = base.ResolveReference(u)
	}
	u.Scheme = strings.ToLower(u.Scheme)
	// URLHost: url.Parse takes hosts no browser can reach ("//::" gives host "::" and no name).
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.User != nil || !URLHost(u) {
		return ""
	}
	u.Host = strings.ToLower(u.Host)
	if h := u.Hostname(); !IsASCIIPrintable(h) { // URLHost let no control character through
		// An IDN host as its A-label: url.String would percent-encode it, which mail clients
		// do not all resolve.
		a, err := idna.Lookup.ToASCII(h)
		if err != nil || !WebHost(a) { // IDNA maps some characters to nothing
			return ""
		}
		if p := u.Port(); p != "" {
			a += ":" + p
		}
		u.Host = a
	}
	if (u.Scheme == "http" && u.Port() == "80") || (u.Scheme == "https" && u.Port() == "443") {
		u.Host = u.Hostname()
	}
	u.Fragment, u.RawFragment = "", ""
	if u.RawQuery != "" {
		q := u.Query()
		for _, p := range trackingParams {
			q.Del(p)
		}
		u.RawQuery = q.Encode()
	}
	if u.Path == "" {
		u.Path = "/"
	}
	s := u.String()
	if strings.ContainsAny(s, " \"'<>\\") {
		return ""
	}
	return s
}

// URLHost reports whether u's host is one a browser can reach: a DNS name or IPv4 address
// (WebHost), or an IPv6 address in brackets. url.Parse takes "https://:::/" (host ":::", whose
// Hostname "::" is a valid address, but not one written the way a URL needs it).
func URLHost(u *url.URL) bool {
	h := u.Hostname()
	if strings.Contains(h, ":") {
		return strings.HasPrefix(u.Host, "[") && net.ParseIP(h) != nil
	}
	return WebHost(h)
}

// WebHost reports whether host is an IP address or a DNS name: dot-separated labels of letters of
// any script (IDN), marks, digits, '-' and '_', each starting with a letter or digit. url.Parse
// lets far more through (quotes, parentheses, stray bytes), which no browser can reach.
func WebHost(host string) bool {
	if host == "" || len(host) > 253 || !utf8.ValidString(host) {
		return false
	}
	if net.ParseIP(host) != nil {
		return true
	}
	for _, label := range strings.Split(strings.TrimSuffix(host, "."), ".") {
		if r, _ := utf8.DecodeRuneInString(label); !unicode.IsLetter(r) && !unicode.IsDigit(r) {
			return false // empty, or starting with a mark or punctuation
		}
		for _, r := range label {
			if !unicode.IsLetter(r) && !unicode.IsDigit(r) && !unicode.IsMark(r) && r != '-' && r != '_' {
				return false
			}
		}
	}
	return true
}

// IsASCIIPrintable reports whether s holds printable ASCII only (no control characters).
func IsASCIIPrintable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 32 || s[i] > 126 {
			return false
		}
	}
	return true
}
