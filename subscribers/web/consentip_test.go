package web

import "testing"

// TestConsentIPKept: the consent record keeps as much of the client's address as
// NEWSLETTER_CONSENT_IP says, truncated by default.
func TestConsentIPKept(t *testing.T) {
	for _, c := range []struct{ setting, v4, v6 string }{
		{"", "198.51.100.0", "2001:db8:1234::"},
		{"truncated", "198.51.100.0", "2001:db8:1234::"},
		{"full", "198.51.100.77", "2001:db8:1234:5678::9"},
		{"none", "", ""},
	} {
		t.Run("setting "+c.setting, func(t *testing.T) {
			f := newWebFixture(t, HandlerOptions{TrustProxy: true, ConsentIP: c.setting})
			for email, xff := range map[string]string{"v4@example.org": "198.51.100.77", "v6@example.org": "2001:db8:1234:5678::9"} {
				if r := f.do("POST", "/subscribe", formType, form("email", email, "lang", "en"), "X-Forwarded-For", xff); r.status != 200 {
					t.Fatalf("subscribe %s: %d", email, r.status)
				}
			}
			for email, want := range map[string]string{"v4@example.org": c.v4, "v6@example.org": c.v6} {
				var ip string
				if err := f.db.Get(&ip, `SELECT c.ip FROM consents c JOIN subscribers s ON s.id = c.subscriber_id WHERE s.email = $1`, email); err != nil {
					t.Fatal(err)
				}
				if ip != want {
					t.Errorf("%s: consent keeps %q, want %q", email, ip, want)
				}
			}
		})
	}
}
