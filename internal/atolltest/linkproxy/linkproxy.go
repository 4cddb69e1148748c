// Package linkproxy is a TCP proxy for tests and the bench that stands for
// the network between an agent and its hub: it forwards bytes both ways,
// counts them, can cut the link and restore it, and can slow the way down.
//
// While cut, the proxy keeps its address: it still accepts connections but
// closes them at once, so a client sees its connection reset or closed
// immediately (as with a broken link) rather than a dial that hangs, and
// Restore never has to bind the port again.
package linkproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
	"golang.org/x/time/rate"
)

// dialTimeout bounds the dial of the target for one accepted connection.
const dialTimeout = 5 * time.Second

// Proxy forwards every connection accepted on Addr to its target. Its
// methods are safe for concurrent use.
type Proxy struct {
	ln     net.Listener
	target string

	up   atomic.Int64 // payload bytes client → target, written to the target
	down atomic.Int64 // payload bytes target → client, written to the client
	// slow bounds the bytes target → client per second; nil: no bound.
	slow atomic.Pointer[rate.Limiter]

	mu         sync.Mutex
	cut        bool               // guarded by mu
	closed     bool               // guarded by mu
	links      map[*link]struct{} // open connections; guarded by mu
	accepts    int                // connections let through; guarded by mu
	lastAccept time.Time          // guarded by mu
	segsIn     uint64             // segments of closed client connections; guarded by mu
	segsOut    uint64             // guarded by mu
	wg         sync.WaitGroup     // the accept loop and every link's goroutines
}

// link is one proxied connection: the accepted client side and, once
// dialled, the target side.
type link struct {
	client net.Conn
	server net.Conn // nil until dialled; guarded by Proxy.mu
	dead   bool     // closed by Cut, Close or either side ending; guarded by Proxy.mu
}

// Start listens on a free port of 127.0.0.1 and forwards every connection
// to target (host:port). The target is dialled per connection, so it need
// not be up yet.
func Start(target string) (*Proxy, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("linkproxy: %w", err)
	}
	p := &Proxy{ln: ln, target: target, links: map[*link]struct{}{}}
	p.wg.Add(1)
	go p.accept()
	return p, nil
}

// Addr is where clients connect, host:port.
func (p *Proxy) Addr() string { return p.ln.Addr().String() }

// Bytes returns the payload bytes forwarded so far: up from clients to the
// target, down from the target to clients. A byte counts once it has been
// written to the other side.
func (p *Proxy) Bytes() (up, down int64) { return p.up.Load(), p.down.Load() }

// Stats is a reading of a proxy's counters.
type Stats struct {
	At       time.Time
	Up, Down int64 // payload bytes, as Bytes
	// SegsIn and SegsOut are the TCP segments (data and pure ACKs) received
	// and sent on the client-side connections, from TCP_INFO; with Up and
	// Down they estimate the bytes on the wire with IP and TCP headers.
	SegsIn, SegsOut uint64
	// Accepts counts the connections let through; LastAccept is the last.
	Accepts    int
	LastAccept time.Time
}

// Stats reads the counters now.
func (p *Proxy) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	st := Stats{At: time.Now(), Up: p.up.Load(), Down: p.down.Load(), SegsIn: p.segsIn, SegsOut: p.segsOut,
		Accepts: p.accepts, LastAccept: p.lastAccept}
	for l := range p.links {
		in, out := tcpSegs(l.client)
		st.SegsIn += in
		st.SegsOut += out
	}
	return st
}

// tcpSegs reads the segments received and sent on c (0, 0 if unknown).
func tcpSegs(c net.Conn) (in, out uint64) {
	tc, ok := c.(*net.TCPConn)
	if !ok {
		return 0, 0
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return 0, 0
	}
	_ = raw.Control(func(fd uintptr) {
		if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
			in, out = uint64(info.Segs_in), uint64(info.Segs_out)
		}
	})
	return in, out
}

// Cut closes every open connection and, until Restore, closes every new
// one as soon as it is accepted.
func (p *Proxy) Cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	p.dropAllLocked()
}

// Restore lets new connections through again.
func (p *Proxy) Restore() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

// Close stops listening, closes every connection and waits until every
// goroutine of the proxy has returned. It is safe to call more than once.
func (p *Proxy) Close() error {
	p.mu.Lock()
	already := p.closed
	p.closed = true
	p.dropAllLocked()
	p.mu.Unlock()
	var err error
	if !already {
		err = p.ln.Close()
	}
	p.wg.Wait()
	return err
}

func (p *Proxy) dropAllLocked() {
	for l := range p.links {
		p.dropLocked(l)
	}
}

// dropLocked closes both sides of l and forgets it; the caller holds mu.
func (p *Proxy) dropLocked(l *link) {
	if l.dead {
		return
	}
	l.dead = true
	delete(p.links, l)
	in, out := tcpSegs(l.client)
	p.segsIn += in
	p.segsOut += out
	l.client.Close()
	if l.server != nil {
		l.server.Close()
	}
}

func (p *Proxy) drop(l *link) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.dropLocked(l)
}

func (p *Proxy) accept() {
	defer p.wg.Done()
	for {
		c, err := p.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			// A transient failure (too many open files): go on.
			continue
		}
		p.mu.Lock()
		if p.cut || p.closed {
			p.mu.Unlock()
			c.Close()
			continue
		}
		l := &link{client: c}
		p.links[l] = struct{}{}
		p.accepts++
		p.lastAccept = time.Now()
		p.wg.Add(1)
		p.mu.Unlock()
		go p.run(l)
	}
}

// run dials the target for l and copies both ways until either side ends
// or the link is cut.
func (p *Proxy) run(l *link) {
	defer p.wg.Done()
	server, err := net.DialTimeout("tcp", p.target, dialTimeout)
	p.mu.Lock()
	if err != nil || l.dead {
		// The target is down, or Cut/Close came while dialling.
		if err == nil {
			server.Close()
		}
		p.dropLocked(l)
		p.mu.Unlock()
		return
	}
	l.server = server
	p.wg.Add(1)
	p.mu.Unlock()
	go func() {
		defer p.wg.Done()
		p.copy(l, server, l.client, &p.up)
	}()
	p.copyDown(l, server)
}

// SetDownRate bounds what the proxy forwards towards its clients to
// bytesPerSecond, over all links; 0 removes the bound.
func (p *Proxy) SetDownRate(bytesPerSecond int) {
	if bytesPerSecond <= 0 {
		p.slow.Store(nil)
		return
	}
	p.slow.Store(rate.NewLimiter(rate.Limit(bytesPerSecond), slowBurst))
}

// slowBurst is the largest write a slowed link lets through at once.
const slowBurst = 16 << 10

// copyDown is copy towards the client, within the rate SetDownRate set.
func (p *Proxy) copyDown(l *link, server net.Conn) {
	buf := make([]byte, slowBurst)
	for {
		k, err := server.Read(buf)
		if k > 0 {
			if lim := p.slow.Load(); lim != nil {
				_ = lim.WaitN(context.Background(), k)
			}
			if _, werr := (counter{l.client, &p.down}).Write(buf[:k]); werr != nil {
				break
			}
		}
		if err != nil {
			break
		}
	}
	p.drop(l)
}

// copy forwards src to dst, counting what dst accepted, and drops the
// whole link when src ends or dst fails: a half-open link is not a state
// the tests need.
func (p *Proxy) copy(l *link, dst, src net.Conn, n *atomic.Int64) {
	_, _ = io.Copy(counter{dst, n}, src)
	p.drop(l)
}

// counter adds to n what w accepted.
type counter struct {
	w io.Writer
	n *atomic.Int64
}

func (c counter) Write(b []byte) (int, error) {
	k, err := c.w.Write(b)
	c.n.Add(int64(k))
	return k, err
}
