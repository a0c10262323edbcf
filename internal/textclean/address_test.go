package textclean

import "testing"

func TestAddressScrubber(t *testing.T) {
	sc := NewAddressScrubber("Ann.Lee+news@bücher.example")
	for _, c := range []struct{ in, want string }{
		{"550 5.1.1 <Ann.Lee+news@bücher.example>: Recipient address rejected", "550 5.1.1 <address>: Recipient address rejected"},
		{"550 5.1.1 <ANN.LEE+NEWS@XN--BCHER-KVA.EXAMPLE>: user unknown", "550 5.1.1 <address>: user unknown"},
		{"550 see https://help.example/?rcpt=ann.lee+news%40xn--bcher-kva.example", "550 see https://help.example/?rcpt=<address>"},
		{"550 mailbox ann.lee+news unknown", "550 mailbox <address> unknown"},
		{"550 No such user: Ann.Lee", "550 No such user: <address>"},
		{"550 joann.lee and ann.leeds are other people", "550 joann.lee and ann.leeds are other people"},
		{"", ""},
	} {
		if got := sc.All(c.in); got != c.want {
			t.Errorf("All(%q) = %q, want %q", c.in, got, c.want)
		}
	}
	if got := sc.Address("ann.lee is busy; ann.lee+news@bücher.example refused"); got != "ann.lee is busy; <address> refused" {
		t.Errorf("Address kept or took the wrong part: %q", got)
	}
	if got := NewAddressScrubber("al@example.org").All("550 al@example.org: mailbox al full, all in vain"); got != "550 <address>: mailbox al full, all in vain" {
		t.Errorf("a two-letter local part alone was scrubbed, or the address kept: %q", got)
	}
}
