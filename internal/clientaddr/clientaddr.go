// Package clientaddr names the client of a request for rate limits and throttles.
package clientaddr

import (
	"net"
	"net/http"
	"strings"
)

// Of is the request's remote address, or, when trustProxy is set (the service sits behind its own
// reverse proxy), the last X-Forwarded-For entry: the one that proxy added. Earlier entries are
// whatever the client claimed, so they are never used.
func Of(r *http.Request, trustProxy bool) string {
	if trustProxy {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			parts := strings.Split(xff[len(xff)-1], ",")
			if ip := net.ParseIP(strings.TrimSpace(parts[len(parts)-1])); ip != nil {
				return ip.String()
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	if ip := net.ParseIP(host); ip != nil {
		return ip.String()
	}
	return host
}

// Key groups IPv6 clients by /64, the block one subscriber line usually gets, so rotating
// addresses inside it does not multiply an allowance. IPv4 addresses (also IPv4-mapped IPv6) stay
// as they are.
func Key(addr string) string {
	ip := net.ParseIP(addr)
	if ip == nil {
		return addr
	}
	if ip.To4() != nil {
		return ip.To4().String()
	}
	return ip.Mask(net.CIDRMask(64, 128)).String() + "/64"
}

// Truncate keeps the network part of addr, for records that need to say roughly where a request
// came from but not who sent it: IPv4 to its /24 (198.51.100.0), IPv6 to its /48. Anything that
// is not an IP address gives "".
func Truncate(addr string) string {
	ip := net.ParseIP(addr)
	switch {
	case ip == nil:
		return ""
	case ip.To4() != nil:
		return ip.To4().Mask(net.CIDRMask(24, 32)).String()
	default:
		return ip.Mask(net.CIDRMask(48, 128)).String()
	}
}
