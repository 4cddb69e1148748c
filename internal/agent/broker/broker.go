// Package broker is the node's message broker for its workloads: an
// embedded NATS server on a loopback port (and MQTT beside it, if asked),
// so that workloads on one node talk to each other with the hub gone, and
// the outbox: a JetStream stream on the node that keeps every message
// published on the subjects the node forwards (the workloads'
// spec.forward) until the hub holds it, within a disk budget. The uplink
// reads the outbox and forwards it (package uplink).
package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"atoll.dev/atoll/internal/natsembed"
	"atoll.dev/atoll/internal/subject"
	"atoll.dev/atoll/internal/wire"
)

// Outbox is the name of the node's outbox stream.
const Outbox = "ATOLL_OUTBOX"

// MetricsSubject is where the agent keeps its one-minute resource
// summaries for the hub; the outbox always captures it, beside what the
// workloads forward. No workload may forward under "atoll."
// (subject.CheckForward), so none can pose as the agent.
const MetricsSubject = "atoll.node.metrics"

// Defaults.
const (
	DefaultListen   = "127.0.0.1:4223"
	DefaultMaxBytes = 256 << 20
	// duplicateWindow is how long the outbox remembers the Nats-Msg-Id of
	// a publish: a workload retrying a publish it did not see
	// acknowledged (the agent restarted meanwhile) stores it once.
	duplicateWindow = 2 * time.Minute
	// outboxSync is how often the outbox's files are fsynced (NATS's
	// default is two minutes).
	outboxSync = 100 * time.Millisecond
)

// Config says how to run the broker.
type Config struct {
	// DataDir holds the outbox (required).
	DataDir string
	// Listen is the NATS address for workloads; default DefaultListen.
	// Keep it on loopback: the broker has no authentication.
	Listen string
	// MQTTListen, if set, also serves MQTT 3.1.1 there (e.g.
	// 127.0.0.1:1883; a fixed port). An MQTT topic a/b is the NATS
	// subject a.b.
	MQTTListen string
	// MaxBytes is the outbox's disk budget; beyond it the oldest records
	// go first. Default DefaultMaxBytes.
	MaxBytes int64
	// Name names the server (the node name).
	Name   string
	Logger *slog.Logger
}

// Broker is a running broker.
type Broker struct {
	cfg    Config
	srv    *natsembed.Server
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream
	epoch  string
	// arrived is signalled (without blocking) when a message lands on a
	// forwarded subject.
	arrived chan struct{}

	mu       sync.Mutex
	subjects []string             // captured now; guarded by mu
	watch    []*nats.Subscription // on subjects, for arrived; guarded by mu
}

// Start runs the broker and opens the outbox, creating it on first start.
func Start(ctx context.Context, cfg Config) (*Broker, error) {
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	mqttHost, mqttPort, err := splitHostPort(cfg.MQTTListen)
	if err != nil {
		return nil, fmt.Errorf("broker: MQTT address: %w", err)
	}
	srv, err := natsembed.Start(natsembed.Config{
		DataDir: filepath.Join(cfg.DataDir, "broker"),
		Listen:  cfg.Listen,
		Name:    "atoll-node-" + cfg.Name,
		Configure: func(o *server.Options) {
			o.MaxPayload = 1 << 20
			// The outbox is on disk; memory streams are not used.
			o.JetStreamMaxMemory = 8 << 20
			o.JetStreamMaxStore = cfg.MaxBytes + 64<<20 // the outbox, and MQTT's sessions
			// fsync in batches: an acknowledged message survives an
			// agent crash at once, and a power cut after outboxSync.
			o.SyncInterval = outboxSync
			if cfg.MQTTListen != "" {
				o.MQTT.Host, o.MQTT.Port = mqttHost, mqttPort
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("broker: %w", err)
	}
	b := &Broker{cfg: cfg, srv: srv, arrived: make(chan struct{}, 1)}
	if err := b.open(ctx); err != nil {
		srv.Shutdown()
		return nil, fmt.Errorf("broker: %w", err)
	}
	return b, nil
}

func splitHostPort(addr string) (string, int, error) {
	if addr == "" {
		return "", 0, nil
	}
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("%q: port must be 1-65535", addr)
	}
	return host, port, nil
}

func (b *Broker) open(ctx context.Context) error {
	nc, err := nats.Connect(b.srv.ClientURL(), nats.Name("atoll-agent-outbox"), nats.InProcessServer(b.srv.NATS()))
	if err != nil {
		return err
	}
	b.nc = nc
	if b.js, err = jetstream.New(nc); err != nil {
		nc.Close()
		return err
	}
	cfg := b.streamConfig([]string{MetricsSubject})
	s, err := b.js.Stream(ctx, Outbox)
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		s, err = b.js.CreateStream(ctx, cfg)
	}
	if err != nil {
		nc.Close()
		return fmt.Errorf("open outbox: %w", err)
	}
	b.stream = s
	info := s.CachedInfo()
	b.subjects = info.Config.Subjects
	// The stream's creation time names the outbox: a node whose outbox
	// is created anew counts its records from 1 again, in a new epoch.
	b.epoch = strconv.FormatInt(info.Created.UnixNano(), 36)
	if info.Config.MaxBytes != b.cfg.MaxBytes {
		if err := b.update(ctx, info.Config.Subjects); err != nil {
			nc.Close()
			return err
		}
	}
	return b.rewatch()
}

func (b *Broker) streamConfig(subjects []string) jetstream.StreamConfig {
	return jetstream.StreamConfig{
		Name:        Outbox,
		Description: "messages waiting to be forwarded to the hub",
		Subjects:    subjects,
		Storage:     jetstream.FileStorage,
		Retention:   jetstream.LimitsPolicy,
		Discard:     jetstream.DiscardOld,
		MaxBytes:    b.cfg.MaxBytes,
		Duplicates:  duplicateWindow,
	}
}

func (b *Broker) update(ctx context.Context, subjects []string) error {
	s, err := b.js.UpdateStream(ctx, b.streamConfig(subjects))
	if err != nil {
		return fmt.Errorf("outbox subjects %q: %w", subjects, err)
	}
	b.stream = s
	b.subjects = subjects
	return nil
}

// SetSubjects makes the outbox capture the subjects that match patterns
// (the union of the node's workloads' spec.forward; patterns that partly
// overlap are widened, subject.Capture). Records already in the outbox
// stay.
func (b *Broker) SetSubjects(ctx context.Context, patterns []string) error {
	want := subject.Capture(append(slices.Clone(patterns), MetricsSubject))
	b.mu.Lock()
	defer b.mu.Unlock()
	if slices.Equal(want, b.subjects) {
		return nil
	}
	if err := b.update(ctx, want); err != nil {
		return err
	}
	return b.rewatchLocked()
}

func (b *Broker) rewatch() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.rewatchLocked()
}

// rewatchLocked subscribes to the captured subjects, to signal arrivals.
func (b *Broker) rewatchLocked() error {
	for _, s := range b.watch {
		_ = s.Unsubscribe()
	}
	b.watch = nil
	for _, p := range b.subjects {
		s, err := b.nc.Subscribe(p, func(*nats.Msg) {
			select {
			case b.arrived <- struct{}{}:
			default:
			}
		})
		if err != nil {
			return fmt.Errorf("watch outbox subjects: %w", err)
		}
		b.watch = append(b.watch, s)
	}
	return nil
}

// Keep stores data on subject in the outbox (the agent's own records,
// MetricsSubject).
func (b *Broker) Keep(ctx context.Context, subj string, data []byte) error {
	if _, err := b.js.Publish(ctx, subj, data); err != nil {
		return fmt.Errorf("outbox: keep %s: %w", subj, err)
	}
	return nil
}

// URL is where workloads connect with a NATS client.
func (b *Broker) URL() string { return b.srv.ClientURL() }

// MQTTAddr is where workloads connect with an MQTT client ("" without).
func (b *Broker) MQTTAddr() string { return b.cfg.MQTTListen }

// Epoch names the outbox; record sequence numbers count within it.
func (b *Broker) Epoch() string { return b.epoch }

// Arrived is signalled when a message lands in the outbox.
func (b *Broker) Arrived() <-chan struct{} { return b.arrived }

// Read returns the records after seq, oldest first, up to about maxBytes
// of data (at least one record when there is one). dropped counts the
// records after seq the outbox no longer holds: its disk budget pushed
// them out before they were forwarded.
func (b *Broker) Read(ctx context.Context, after uint64, maxBytes int) (recs []wire.TelemetryRecord, dropped uint64, err error) {
	info, err := b.stream.Info(ctx)
	if err != nil {
		return nil, 0, fmt.Errorf("outbox: %w", err)
	}
	st := info.State
	next := after + 1
	if st.FirstSeq > next {
		dropped = st.FirstSeq - next
		next = st.FirstSeq
	}
	size := 0
	for seq := next; seq <= st.LastSeq && (len(recs) == 0 || size < maxBytes); seq++ {
		m, err := b.stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			// Pushed out by the budget since Info: the next Read
			// counts it.
			break
		}
		if err != nil {
			return recs, dropped, fmt.Errorf("outbox: record %d: %w", seq, err)
		}
		recs = append(recs, wire.TelemetryRecord{Seq: m.Sequence, Subject: m.Subject, Time: m.Time.UTC(), Data: m.Data})
		size += len(m.Data) + len(m.Subject)
	}
	return recs, dropped, nil
}

// Forwarded lets the outbox drop the records up to seq: the hub holds them.
func (b *Broker) Forwarded(ctx context.Context, seq uint64) error {
	if err := b.stream.Purge(ctx, jetstream.WithPurgeSequence(seq+1)); err != nil {
		return fmt.Errorf("outbox: drop forwarded records up to %d: %w", seq, err)
	}
	return nil
}

// Pending is how many records wait in the outbox.
func (b *Broker) Pending(ctx context.Context) (uint64, error) {
	info, err := b.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("outbox: %w", err)
	}
	return info.State.Msgs, nil
}

// Close stops the broker; the outbox stays on disk for the next start.
func (b *Broker) Close() {
	b.nc.Close()
	b.srv.Shutdown()
}
