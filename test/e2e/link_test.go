package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	toxiproxy "github.com/Shopify/toxiproxy/v2"
	"github.com/Shopify/toxiproxy/v2/stream"
	"github.com/Shopify/toxiproxy/v2/toxics"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"
)

// link is one node's path to the hub's NATS: a Toxiproxy proxy in this
// process, listening on the Docker network's gateway address and
// forwarding to the hub container. Faulting it faults only that node.
type link struct {
	name  string
	proxy *toxiproxy.Proxy
	// down counts the bytes the hub sent towards the node, on every
	// connection, as they enter the proxy (a countToxic).
	down    atomic.Int64
	counter int64 // down's key in counters

	mu    sync.Mutex
	shape string // the toxics in force, for the timeline; guarded by mu
}

// newToxiServer is the Toxiproxy server the proxies of one cluster hang
// off; its HTTP API is never started.
func newToxiServer() *toxiproxy.ApiServer {
	return toxiproxy.NewServer(toxiproxy.NewMetricsContainer(prometheus.NewRegistry()), zerolog.Nop())
}

// newLink starts a proxy on listenHost (a free port) forwarding to upstream.
func newLink(srv *toxiproxy.ApiServer, name, listenHost, upstream string) (*link, error) {
	p := toxiproxy.NewProxy(srv, name, listenHost+":0", upstream)
	if err := srv.Collection.Add(p, true); err != nil {
		return nil, fmt.Errorf("start proxy %s: %w", name, err)
	}
	l := &link{name: name, proxy: p, counter: counterSeq.Add(1)}
	counters.Store(l.counter, &l.down)
	return l, l.count()
}

// Downstream is how many bytes the hub has sent towards the node.
func (l *link) Downstream() int64 { return l.down.Load() }

// count adds the byte counter, first in the downstream chain.
func (l *link) count() error {
	return l.toxic("count-downstream", "e2e_count", "downstream", 1, fmt.Sprintf(`{"counter":%d}`, l.counter))
}

// Addr is where the node dials (gateway:port); it stays the same across
// Down and Up.
func (l *link) Addr() string { return l.proxy.Listen }

// Down closes the listener and every connection through it: the node's
// connection breaks and new dials are refused until Up.
func (l *link) Down() { l.proxy.Stop() }

// Up listens again on the same address.
func (l *link) Up() error {
	l.proxy.Lock()
	enabled := l.proxy.Enabled
	l.proxy.Unlock()
	if enabled {
		return nil
	}
	return l.proxy.Start()
}

// toxic adds one toxic by its JSON description.
func (l *link) toxic(name, typ, stream string, toxicity float64, attrs string) error {
	body := fmt.Sprintf(`{"name":%q,"type":%q,"stream":%q,"toxicity":%g,"attributes":%s}`, name, typ, stream, toxicity, attrs)
	if _, err := l.proxy.Toxics.AddToxicJson(strings.NewReader(body)); err != nil {
		return fmt.Errorf("proxy %s: add toxic %s: %w", l.name, name, err)
	}
	return nil
}

// Satellite shapes the link like a geostationary satellite hop: 200 ms
// (±50 ms) each way, 64 kbit/s each way, and about 5 % packet loss. TCP
// never shows loss to the application, only its cost: a lost segment
// holds back everything behind it until the retransmission. So the data is
// cut into segments of about an MSS (slicer) and each segment is held back
// for one retransmission timeout with probability 5 % (toxic e2e_loss);
// the NATS connection is also reset now and then (reset_peer, on 5 % of
// the connections), as lossy links do to long-lived connections.
func (l *link) Satellite() error {
	for _, dir := range []string{"upstream", "downstream"} {
		steps := []struct {
			name, typ string
			toxicity  float64
			attrs     string
		}{
			{"sat-latency-" + dir, "latency", 1, `{"latency":200,"jitter":50}`},
			{"sat-bandwidth-" + dir, "bandwidth", 1, `{"rate":8}`},
			{"sat-slicer-" + dir, "slicer", 1, `{"average_size":1400,"size_variation":200,"delay":0}`},
			{"sat-loss-" + dir, "e2e_loss", 1, `{"probability":0.05,"rto":600}`},
		}
		for _, s := range steps {
			if err := l.toxic(s.name, s.typ, dir, s.toxicity, s.attrs); err != nil {
				return err
			}
		}
	}
	// Reset about one connection in twenty 30 s after it carries data.
	if err := l.toxic("sat-reset", "reset_peer", "downstream", 0.05, `{"timeout":30000}`); err != nil {
		return err
	}
	l.setShape("satellite")
	return nil
}

// Bandwidth limits both directions to kbps kilobytes per second.
func (l *link) Bandwidth(kbps int) error {
	for _, dir := range []string{"upstream", "downstream"} {
		if err := l.toxic("bw-"+dir, "bandwidth", dir, 1, fmt.Sprintf(`{"rate":%d}`, kbps)); err != nil {
			return err
		}
	}
	l.setShape(fmt.Sprintf("%d KB/s", kbps))
	return nil
}

// HalfOpen makes the node's open connection half-open: it stays open at
// both ends and carries nothing, in either direction, with no FIN or RST,
// as when a NAT forgets it or a cable is pulled mid-path. New connections
// pass: the node gets through again as soon as it notices and redials.
func (l *link) HalfOpen() error {
	for _, dir := range []string{"upstream", "downstream"} {
		if err := l.blackholeExisting("halfopen-"+dir, dir); err != nil {
			return err
		}
	}
	l.setShape("half-open")
	return nil
}

// BlackholeReplies swallows, on the node's open connection, only what the
// hub sends: the node's publishes reach the hub, their acknowledgements
// never come back. New connections pass.
func (l *link) BlackholeReplies() error {
	if err := l.blackholeExisting("blackhole-downstream", "downstream"); err != nil {
		return err
	}
	l.setShape("replies blackholed")
	return nil
}

func (l *link) blackholeExisting(name, dir string) error {
	w, err := l.proxy.Toxics.AddToxicJson(strings.NewReader(
		fmt.Sprintf(`{"name":%q,"type":"e2e_blackhole","stream":%q,"toxicity":1}`, name, dir)))
	if err != nil {
		return fmt.Errorf("proxy %s: add toxic %s: %w", l.name, name, err)
	}
	// The open connections got their state when the toxic was added;
	// from now on new ones pass.
	w.Toxic.(*blackholeToxic).passNew.Store(true)
	return nil
}

// Clear removes every toxic, and restarts the proxy if it was down. A
// connection that went through a swallowing toxic has lost bytes in the
// middle of its stream, so Clear also closes the connections: the node
// reconnects, as it would after the real fault.
func (l *link) Clear() error {
	l.mu.Lock()
	shape := l.shape
	l.shape = ""
	l.mu.Unlock()
	l.proxy.Toxics.ResetToxics(context.Background())
	if err := l.count(); err != nil {
		return err
	}
	if strings.Contains(shape, "half-open") || strings.Contains(shape, "blackholed") {
		l.Down()
	}
	return l.Up()
}

func (l *link) setShape(s string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.shape != "" {
		s = l.shape + " + " + s
	}
	l.shape = s
}

// lossToxic holds back a chunk for one retransmission timeout with the
// given probability, keeping order: the cost of a lost TCP segment.
type lossToxic struct {
	Probability float64 `json:"probability"`
	RTO         int64   `json:"rto"` // milliseconds
}

func (t *lossToxic) Pipe(stub *toxics.ToxicStub) {
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			if rand.Float64() < t.Probability {
				select {
				case <-time.After(time.Duration(t.RTO) * time.Millisecond):
				case <-stub.Interrupt:
					stub.Output <- c // never drop data when removed
					return
				}
			}
			stub.Output <- c
		}
	}
}

// blackholeToxic drops everything on the connections that were open when
// it was added, and passes the ones opened after (see blackholeExisting).
type blackholeToxic struct {
	passNew atomic.Bool
}

type blackholeState struct{ pass bool }

func (t *blackholeToxic) NewState() any { return &blackholeState{pass: t.passNew.Load()} }

func (t *blackholeToxic) Pipe(stub *toxics.ToxicStub) {
	pass := stub.State.(*blackholeState).pass
	passEach(stub, func(*stream.StreamChunk) bool { return pass })
}

// counters are the links' byte counters, by link.counter.
var (
	counters   sync.Map // int64 → *atomic.Int64
	counterSeq atomic.Int64
)

// countToxic adds the size of everything that passes to a counter.
type countToxic struct {
	Counter int64 `json:"counter"`
}

func (t *countToxic) Pipe(stub *toxics.ToxicStub) {
	v, _ := counters.Load(t.Counter)
	n := v.(*atomic.Int64)
	passEach(stub, func(c *stream.StreamChunk) bool {
		n.Add(int64(len(c.Data)))
		return true
	})
}

// passEach runs a toxic that decides chunk by chunk: pass says whether
// a chunk goes on.
func passEach(stub *toxics.ToxicStub, pass func(*stream.StreamChunk) bool) {
	for {
		select {
		case <-stub.Interrupt:
			return
		case c := <-stub.Input:
			if c == nil {
				stub.Close()
				return
			}
			if pass(c) {
				stub.Output <- c
			}
		}
	}
}

func init() {
	// Some toxics log through zerolog's global logger, at trace level.
	zerolog.SetGlobalLevel(zerolog.Disabled)
	toxics.Register("e2e_loss", new(lossToxic))
	toxics.Register("e2e_blackhole", new(blackholeToxic))
	toxics.Register("e2e_count", new(countToxic))
}
