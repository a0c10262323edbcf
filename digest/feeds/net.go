package feeds

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"syscall"
	"time"
)

// errAddressNotAllowed is what every refused connection gives, whatever the address: it is said
// before anything is sent, so a feed's error never tells what answers inside (no port scanner).
var errAddressNotAllowed = errors.New("address not allowed")

// newFeedTransport returns the transport of feed fetches. Its dialer asks check about the address
// of every connection it opens: after DNS, for each address it tries, and for every redirect, so
// neither a redirect nor a DNS answer that changes between lookups (rebinding) gets around it.
// resolver may be nil (the system's).
//
// No proxy, not even HTTP_PROXY from the environment: through a proxy the dialer would check the
// proxy's address and the proxy would reach whatever the feed names.
func newFeedTransport(check func(netip.AddrPort) error, resolver *net.Resolver) *http.Transport {
	d := &net.Dialer{
		Timeout:   10 * time.Second,
		KeepAlive: 30 * time.Second,
		Resolver:  resolver,
		Control: func(network, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return errAddressNotAllowed
			}
			return check(ap)
		},
	}
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.Proxy = nil
	t.DialContext = d.DialContext
	return t
}

// feedAddrCheck is the dialer's rule: public unicast addresses only, unless allowPrivate also lets
// loopback and private ones through (an intranet feed; local tests).
func feedAddrCheck(allowPrivate bool) func(netip.AddrPort) error {
	return func(ap netip.AddrPort) error {
		switch addrClass(ap.Addr()) {
		case addrPublic:
			return nil
		case addrInternal:
			if allowPrivate {
				return nil
			}
		}
		return errAddressNotAllowed
	}
}

type addrKind int

const (
	addrPublic   addrKind = iota
	addrInternal          // loopback, private, shared or reserved: refused unless private is allowed
	addrNever             // unspecified, link-local (cloud metadata), multicast, broadcast: always refused
)

// IANA's special-purpose address registries, as they bear on fetching a feed.
var (
	neverPrefixes = prefixes(
		"0.0.0.0/8",      // "this network"; 0.0.0.0 reaches the host itself
		"169.254.0.0/16", // link-local, cloud metadata at 169.254.169.254
		"224.0.0.0/4",    // multicast
		"240.0.0.0/4",    // reserved, and the broadcast address
		"::/128",         // unspecified
		"fe80::/10",      // link-local
		"ff00::/8",       // multicast
	)
	internalPrefixes = prefixes(
		"10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", // RFC 1918
		"127.0.0.0/8",     // loopback
		"100.64.0.0/10",   // carrier-grade NAT, shared address space
		"192.0.0.0/24",    // IETF protocol assignments
		"192.0.2.0/24",    // documentation
		"192.88.99.0/24",  // 6to4 relay anycast
		"198.18.0.0/15",   // benchmarking
		"198.51.100.0/24", // documentation
		"203.0.113.0/24",  // documentation
		"::1/128",         // loopback
		"fc00::/7",        // unique local
		"2001::/23",       // IETF protocol assignments (Teredo, ORCHID, ...)
		"2001:db8::/32",   // documentation
		"3fff::/20",       // documentation
		"64:ff9b:1::/48",  // local-use NAT64
	)
	globalUnicast6 = netip.MustParsePrefix("2000::/3")
	nat64          = netip.MustParsePrefix("64:ff9b::/96")
	sixToFour      = netip.MustParsePrefix("2002::/16")
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

// addrClass sorts an address to dial. IPv6 forms that carry an IPv4 address (mapped, NAT64,
// 6to4) are judged by that address.
func addrClass(ip netip.Addr) addrKind {
	ip = ip.Unmap().WithZone("")
	if !ip.IsValid() {
		return addrNever
	}
	if ip.Is6() {
		b := ip.As16()
		switch {
		case nat64.Contains(ip):
			return addrClass(netip.AddrFrom4([4]byte(b[12:16])))
		case sixToFour.Contains(ip):
			return addrClass(netip.AddrFrom4([4]byte(b[2:6])))
		}
	}
	for _, p := range neverPrefixes {
		if p.Contains(ip) {
			return addrNever
		}
	}
	for _, p := range internalPrefixes {
		if p.Contains(ip) {
			return addrInternal
		}
	}
	if ip.Is6() && !globalUnicast6.Contains(ip) {
		return addrInternal // the rest of IPv6 outside 2000::/3 is unassigned or deprecated
	}
	return addrPublic
}
