package smtptest

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// Proxy relays TCP connections to a target, holding every chunk back for a one-way delay in each
// direction (a relay that is far away: the round trip is twice the delay, and the order of bytes
// is kept), and counts turns: each time a client writes after the server's last bytes reached it.
// A client that waits for every reply takes one turn per command; a pipelining one, one per group.
type Proxy struct {
	Addr string // host:port to dial instead of the target

	target string
	delay  time.Duration
	l      net.Listener
	turns  atomic.Int64
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  []net.Conn
}

// StartProxy starts a proxy to target with the given one-way delay, stopped when the test ends.
func StartProxy(t testing.TB, target string, oneWay time.Duration) *Proxy {
	t.Helper()
	p, err := ListenProxy(target, oneWay)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// ListenProxy starts a proxy on a loopback port outside a test (the bench command); Close stops it.
func ListenProxy(target string, oneWay time.Duration) (*Proxy, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	p := &Proxy{Addr: l.Addr().String(), target: target, delay: oneWay, l: l}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Turns is the number of turns counted so far, over every connection.
func (p *Proxy) Turns() int64 { return p.turns.Load() }

// Close stops accepting, closes every relayed connection and waits for the relays to end.
func (p *Proxy) Close() error {
	err := p.l.Close()
	p.mu.Lock()
	for _, c := range p.conns {
		c.Close()
	}
	p.mu.Unlock()
	p.wg.Wait()
	return err
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		client, err := p.l.Accept()
		if err != nil {
			return
		}
		server, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, client, server)
		p.mu.Unlock()
		// spoke is set once server bytes reached the client, and taken by the client's next write.
		var spoke atomic.Bool
		p.wg.Add(2)
		go p.relay(client, server, func() {
			if spoke.Swap(false) {
				p.turns.Add(1)
			}
		}, nil)
		go p.relay(server, client, nil, func() { spoke.Store(true) })
	}
}

// chunk is bytes read at one moment, due at the far end a delay later.
type chunk struct {
	b   []byte
	due time.Time
}

// relay copies src to dst, each chunk delayed; onRead runs as a chunk arrives, onWritten after it
// was delivered. Either side closing ends both.
func (p *Proxy) relay(src, dst net.Conn, onRead, onWritten func()) {
	defer p.wg.Done()
	queue := make(chan chunk, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for c := range queue {
			time.Sleep(time.Until(c.due))
			if _, err := dst.Write(c.b); err != nil {
				src.Close()
				for range queue {
				}
				return
			}
			if onWritten != nil {
				onWritten()
			}
		}
	}()
	for {
		buf := make([]byte, 32<<10)
		n, err := src.Read(buf)
		if n > 0 {
			if onRead != nil {
				onRead()
			}
			queue <- chunk{b: buf[:n], due: time.Now().Add(p.delay)}
		}
		if err != nil {
			close(queue)
			<-done
			if errors.Is(err, io.EOF) {
				if tc, ok := dst.(*net.TCPConn); ok {
					tc.CloseWrite()
					return
				}
			}
			dst.Close()
			return
		}
	}
}
