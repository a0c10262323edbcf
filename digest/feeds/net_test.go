package feeds

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"sync/atomic"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

func TestAddrClass(t *testing.T) {
	for addr, want := range map[string]addrKind{
		"93.184.215.14": addrPublic, "8.8.8.8": addrPublic, "2a00:1450:4001:80b::200e": addrPublic,
		"127.0.0.1": addrInternal, "127.255.255.254": addrInternal, "10.1.2.3": addrInternal,
		"172.16.0.1": addrInternal, "172.31.255.255": addrInternal, "172.32.0.1": addrPublic,
		"192.168.1.1": addrInternal, "100.64.0.1": addrInternal, "100.127.255.255": addrInternal,
		"100.128.0.1": addrPublic, "198.18.0.1": addrInternal, "192.0.2.1": addrInternal,
		"::1": addrInternal, "fd00::1": addrInternal, "fc00::1": addrInternal, "2001:db8::1": addrInternal,
		"2001::1": addrInternal, "::7f00:1": addrInternal,
		"169.254.169.254": addrNever, "0.0.0.0": addrNever, "255.255.255.255": addrNever,
		"224.0.0.1": addrNever, "::": addrNever, "fe80::1": addrNever, "ff02::1": addrNever,
		// IPv6 forms of IPv4 addresses are judged by the IPv4 address.
		"::ffff:127.0.0.1": addrInternal, "::ffff:169.254.169.254": addrNever, "::ffff:8.8.8.8": addrPublic,
		"64:ff9b::7f00:1": addrInternal, "64:ff9b::a9fe:a9fe": addrNever, "64:ff9b::808:808": addrPublic,
		"2002:7f00:1::": addrInternal, "2002:a9fe:a9fe::1": addrNever, "2002:808:808::1": addrPublic,
		"fe80::1%eth0": addrNever,
	} {
		if got := addrClass(netip.MustParseAddr(addr)); got != want {
			t.Errorf("addrClass(%s) = %d, want %d", addr, got, want)
		}
	}
}

// fakeDNS answers every A question with 127.0.0.1 and every other question with no answer: a
// public-looking name whose DNS points inside, as a rebinding attacker's would.
func fakeDNS(t *testing.T) *net.Resolver {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			var p dnsmessage.Parser
			h, err := p.Start(buf[:n])
			if err != nil {
				continue
			}
			q, err := p.Question()
			if err != nil {
				continue
			}
			b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: h.ID, Response: true, Authoritative: true})
			b.StartQuestions()
			b.Question(q)
			b.StartAnswers()
			if q.Type == dnsmessage.TypeA {
				b.AResource(dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 0},
					dnsmessage.AResource{A: [4]byte{127, 0, 0, 1}})
			}
			msg, err := b.Finish()
			if err == nil {
				pc.WriteTo(msg, from)
			}
		}
	}()
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "udp", pc.LocalAddr().String())
	}}
}

// TestFeedFetchStaysOutside: no fetch reaches a loopback, private or link-local address, directly,
// through a redirect or through DNS, and every refusal reads the same.
func TestFeedFetchStaysOutside(t *testing.T) {
	ctx := context.Background()
	var insideHits atomic.Int32
	inside := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		insideHits.Add(1)
		w.Write([]byte(testFeedXML(testFeedItemXML("secret", "Inside", "meta-data"))))
	}))
	defer inside.Close()
	port := inside.Listener.Addr().(*net.TCPAddr).Port
	// outside stands in for a public feed host: the dialer lets its exact address through.
	outside := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/to-loopback":
			http.Redirect(w, r, inside.URL+"/latest/meta-data/", http.StatusFound)
		case "/to-metadata":
			http.Redirect(w, r, "http://169.254.169.254/latest/meta-data/", http.StatusMovedPermanently)
		case "/to-mapped":
			http.Redirect(w, r, "http://[::ffff:127.0.0.1]:"+strconv.Itoa(port)+"/", http.StatusTemporaryRedirect)
		default:
			w.Write([]byte(testFeedXML(testFeedItemXML("public", "Outside", "fine"))))
		}
	}))
	defer outside.Close()
	outsideAddr := netip.MustParseAddrPort(outside.Listener.Addr().String())
	client := func(allowPrivate bool) *http.Client {
		guard := feedAddrCheck(allowPrivate)
		return &http.Client{Transport: newFeedTransport(func(ap netip.AddrPort) error {
			if ap == outsideAddr {
				return nil
			}
			return guard(ap)
		}, fakeDNS(t))}
	}

	refused := map[string]string{
		"direct":          inside.URL + "/latest/meta-data/",
		"redirect":        outside.URL + "/to-loopback",
		"metadata":        outside.URL + "/to-metadata",
		"mapped-redirect": outside.URL + "/to-mapped",
		"localhost":       "http://localhost:" + strconv.Itoa(port) + "/",
		"rebinding-name":  "http://feeds.news.example:" + strconv.Itoa(port) + "/",
		"ipv6-loopback":   "http://[::1]:" + strconv.Itoa(port) + "/",
		"ipv4-mapped":     "http://[::ffff:127.0.0.1]:" + strconv.Itoa(port) + "/",
		"unspecified":     "http://0.0.0.0:" + strconv.Itoa(port) + "/",
	}
	s := ingestTestStore(t)
	ing := NewIngester(s, nil, Options{Client: client(false)}, nil, nil)
	for name, u := range refused {
		t.Run(name, func(t *testing.T) {
			r := ing.Poll(ctx, Config{"en", u})
			if r.Err == nil || r.Err.Error() != "fetch: address not allowed" {
				t.Errorf("err = %v, want exactly %q", r.Err, "fetch: address not allowed")
			}
		})
	}
	if n := insideHits.Load(); n != 0 {
		t.Errorf("the inside server answered %d requests", n)
	}
	statuses, err := List(ctx, s)
	if err != nil {
		t.Fatal(err)
	}
	for _, st := range statuses {
		if st.LastError != "fetch: address not allowed" {
			t.Errorf("%s: last error %q, want the one generic message", st.URL, st.LastError)
		}
	}
	if r := ing.Poll(ctx, Config{"en", outside.URL + "/feed"}); r.Err != nil || r.New != 1 {
		t.Errorf("the outside feed: %+v", r)
	}

	// The escape hatch: the same addresses are fetched when private ones are allowed.
	t.Run("AllowPrivate", func(t *testing.T) {
		ing := NewIngester(s, nil, Options{Client: client(true)}, nil, nil)
		for _, name := range []string{"direct", "redirect", "mapped-redirect", "localhost", "rebinding-name", "ipv4-mapped"} {
			before := insideHits.Load()
			if r := ing.Poll(ctx, Config{"en", refused[name]}); r.Err != nil || insideHits.Load() != before+1 {
				t.Errorf("%s with private addresses allowed: %+v", name, r)
			}
		}
		// Link-local stays out even then: no intranet feed lives at the cloud's metadata address.
		if r := ing.Poll(ctx, Config{"en", refused["metadata"]}); r.Err == nil || r.Err.Error() != "fetch: address not allowed" {
			t.Errorf("metadata with private addresses allowed: %+v", r)
		}
	})

	// The option as NewIngester wires it, with the system resolver.
	t.Run("Option", func(t *testing.T) {
		u := inside.URL + "/"
		if r := NewIngester(s, nil, Options{}, nil, nil).Poll(ctx, Config{"en", u}); r.Err == nil || r.Err.Error() != "fetch: address not allowed" {
			t.Errorf("default options: %+v", r)
		}
		before := insideHits.Load()
		if r := NewIngester(s, nil, Options{AllowPrivate: true}, nil, nil).Poll(ctx, Config{"en", u}); r.Err != nil || insideHits.Load() != before+1 {
			t.Errorf("AllowPrivate: %+v", r)
		}
	})
}
