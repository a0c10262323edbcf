package subscribers

import (
	"regexp"
	"strconv"
	"strings"
)

// browserRules name a browser by the token its user agent carries, in the order that tells them
// apart: browsers built on Chrome carry "Chrome/" too, and Chrome and Firefox on iOS carry
// "Safari/". Migration 0018 reduces the user agents stored before this with the same rules in SQL
// (TestUserAgentMigrationAgrees keeps the two in step).
var browserRules = []struct {
	family string
	re     *regexp.Regexp
}{
	{"Edge", regexp.MustCompile(`\bEdg(?:e|A|iOS)?/(\d{1,4})(?:\D|$)`)},
	{"Opera", regexp.MustCompile(`\bOPR/(\d{1,4})(?:\D|$)`)},
	{"Yandex", regexp.MustCompile(`\bYaBrowser/(\d{1,4})(?:\D|$)`)},
	{"Samsung Internet", regexp.MustCompile(`\bSamsungBrowser/(\d{1,4})(?:\D|$)`)},
	{"Firefox", regexp.MustCompile(`\b(?:Firefox|FxiOS)/(\d{1,4})(?:\D|$)`)},
	{"Chrome", regexp.MustCompile(`\b(?:Chrome|CriOS)/(\d{1,4})(?:\D|$)`)},
	{"Safari", regexp.MustCompile(`\bVersion/(\d{1,4})(?:[^\d ][^ ]*)? (?:Mobile/\S+ )?Safari/`)},
}

// ReduceUserAgent keeps of a user agent the browser family and major version ("Firefox 128",
// "Chrome 131", "Safari 17"), "other" for anything else, "" for none: the consent record says
// roughly how a request came, the full string (device, OS build, extensions) would help to single
// out a reader, and none of it is text the client chose freely.
func ReduceUserAgent(ua string) string {
	if strings.TrimSpace(ua) == "" {
		return ""
	}
	for _, r := range browserRules {
		if r.family == "Safari" && strings.Contains(ua, "Android") {
			continue // the old Android browser says "Version/4.0 ... Safari/": not Safari
		}
		if m := r.re.FindStringSubmatch(ua); m != nil {
			n, _ := strconv.Atoi(m[1])
			return r.family + " " + strconv.Itoa(n)
		}
	}
	return "other"
}
