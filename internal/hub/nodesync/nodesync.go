// Package nodesync is the hub's NATS side of the wire protocol: it answers
// the agents' requests (Hello, Heartbeat, PlanRequest) and takes in their
// statuses, in the queue group QueueGroup so that several hubs on one NATS
// share the work; it stores the telemetry they forward; it reaches agents (Notify, logs requests); and it tells
// the other hubs about the contacts it handled, so that every hub's view of
// the fleet is fresh.
//
// The node a message is about is the last token of its subject, which a
// node's NATS permissions will restrict to its own name; a body naming
// another node is refused.
package nodesync

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"atoll.dev/atoll/internal/hub/control"
	"atoll.dev/atoll/internal/hub/fleet"
	"atoll.dev/atoll/internal/wire"
)

// QueueGroup is the queue group every hub subscribes to the agents'
// subjects in: NATS hands each message to one hub.
const QueueGroup = "atoll-hub"

// SubjectSeen is where hubs tell each other about contacts (hub → every
// hub, no queue group): SubjectSeen + <node>, a Seen.
const SubjectSeen = "atoll.hub.seen."

// Seen is a contact a hub handled.
type Seen struct {
	LastSeen        time.Time `json:"lastSeen"`
	StoredRevision  uint64    `json:"storedRevision"`
	AppliedRevision uint64    `json:"appliedRevision"`
}

// Handler answers the protocol (package control).
type Handler interface {
	Hello(ctx context.Context, h wire.Hello) wire.HelloReply
	Heartbeat(ctx context.Context, hb wire.Heartbeat) wire.HeartbeatReply
	Plan(ctx context.Context, req wire.PlanRequest) wire.PlanReply
	Status(ctx context.Context, st wire.Status)
	StoreTelemetry(ctx context.Context, b wire.TelemetryBatch) wire.TelemetryAck
	ObserveSeen(node string, s fleet.Session)
}

// Defaults.
const (
	DefaultMaxInFlight = 64
	DefaultTimeout     = 10 * time.Second
)

// Config says how to serve.
type Config struct {
	Conn    *nats.Conn
	Handler Handler
	Logger  *slog.Logger
	// MaxInFlight bounds the messages handled at once; more wait in NATS's
	// buffers. 0 means DefaultMaxInFlight.
	MaxInFlight int
	// MaxTelemetryInFlight bounds the telemetry batches among them, so
	// that a fleet forwarding a backlog cannot delay heartbeats; more
	// batches wait in their own subscription's buffer. 0 means a quarter
	// of MaxInFlight (at least 1).
	MaxTelemetryInFlight int
	// Timeout bounds the handling of one message; 0 means DefaultTimeout.
	Timeout time.Duration
}

// Server is the running subscriptions.
type Server struct {
	cfg    Config
	ctx    context.Context
	cancel context.CancelFunc
	sem    chan struct{}
	tmSem  chan struct{} // taken before sem by telemetry batches
	wg     sync.WaitGroup
	subs   []*nats.Subscription
}

// Serve subscribes to the protocol's subjects. Stop ends it.
func Serve(cfg Config) (*Server, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = DefaultMaxInFlight
	}
	if cfg.MaxTelemetryInFlight <= 0 {
		cfg.MaxTelemetryInFlight = max(cfg.MaxInFlight/4, 1)
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{cfg: cfg, ctx: ctx, cancel: cancel, sem: make(chan struct{}, cfg.MaxInFlight),
		tmSem: make(chan struct{}, cfg.MaxTelemetryInFlight)}
	subs := []struct {
		prefix string
		queue  bool
		share  chan struct{} // a semaphore taken before MaxInFlight's; nil for none
		f      func(context.Context, string, *nats.Msg)
	}{
		{wire.SubjectHello, true, nil, s.hello},
		{wire.SubjectHeartbeat, true, nil, s.heartbeat},
		{wire.SubjectPlan, true, nil, s.plan},
		{wire.SubjectStatus, true, nil, s.status},
		{wire.SubjectTelemetry, true, s.tmSem, s.telemetry},
		{SubjectSeen, false, nil, s.seen},
	}
	for _, sub := range subs {
		h := s.dispatch(sub.prefix, sub.share, sub.f)
		var (
			ns  *nats.Subscription
			err error
		)
		if sub.queue {
			ns, err = cfg.Conn.QueueSubscribe(sub.prefix+"*", QueueGroup, h)
		} else {
			ns, err = cfg.Conn.Subscribe(sub.prefix+"*", h)
		}
		if err != nil {
			s.Stop()
			return nil, fmt.Errorf("subscribe %s*: %w", sub.prefix, err)
		}
		s.subs = append(s.subs, ns)
	}
	// Subscriptions are in place once the server has seen them.
	if err := cfg.Conn.Flush(); err != nil {
		s.Stop()
		return nil, fmt.Errorf("subscribe: %w", err)
	}
	return s, nil
}

// Stop unsubscribes and waits for the messages being handled.
func (s *Server) Stop() {
	for _, sub := range s.subs {
		_ = sub.Unsubscribe()
	}
	s.cancel()
	s.wg.Wait()
}

// dispatch validates the subject's node token and handles the message in
// a goroutine of its own, at most MaxInFlight at once, and at most share's
// capacity at once when share is not nil. Waiting for a slot blocks only
// this subscription's delivery.
func (s *Server) dispatch(prefix string, share chan struct{}, f func(context.Context, string, *nats.Msg)) nats.MsgHandler {
	return func(m *nats.Msg) {
		node := strings.TrimPrefix(m.Subject, prefix)
		if !isDNSLabel(node) {
			s.cfg.Logger.Warn("message for an invalid node name dropped", "subject", m.Subject)
			return
		}
		if share != nil {
			select {
			case share <- struct{}{}:
			case <-s.ctx.Done():
				return
			}
		}
		select {
		case s.sem <- struct{}{}:
		case <-s.ctx.Done():
			if share != nil {
				<-share
			}
			return
		}
		s.wg.Go(func() {
			defer func() {
				<-s.sem
				if share != nil {
					<-share
				}
			}()
			ctx, cancel := context.WithTimeout(s.ctx, s.cfg.Timeout)
			defer cancel()
			f(ctx, node, m)
		})
	}
}

func (s *Server) respond(m *nats.Msg, v any) {
	b, err := json.Marshal(v)
	if err == nil {
		err = m.Respond(b)
	}
	if err != nil && !errors.Is(err, nats.ErrMsgNoReply) {
		s.cfg.Logger.Warn("reply", "subject", m.Subject, "err", err)
	}
}

// decode reads m's body into v and checks that the node it names (set
// when empty) is the subject's.
func decode(m *nats.Msg, node string, v any, bodyNode *string) error {
	if err := json.Unmarshal(m.Data, v); err != nil {
		return fmt.Errorf("decode %s: %w", m.Subject, err)
	}
	return sameNode(node, bodyNode)
}

// sameNode checks that the node a body names (set when empty) is node,
// the subject's.
func sameNode(node string, bodyNode *string) error {
	if *bodyNode == "" {
		*bodyNode = node
	}
	if *bodyNode != node {
		return fmt.Errorf("message for node %q on the subject of node %q", *bodyNode, node)
	}
	return nil
}

func (s *Server) hello(ctx context.Context, node string, m *nats.Msg) {
	var h wire.Hello
	if err := decode(m, node, &h, &h.Node); err != nil {
		s.respond(m, wire.HelloReply{ProtocolVersion: wire.ProtocolVersion, Error: err.Error()})
		return
	}
	s.respond(m, s.cfg.Handler.Hello(ctx, h))
}

func (s *Server) heartbeat(ctx context.Context, node string, m *nats.Msg) {
	var hb wire.Heartbeat
	if err := decode(m, node, &hb, &hb.Node); err != nil {
		s.respond(m, wire.HeartbeatReply{Error: err.Error()})
		return
	}
	s.respond(m, s.cfg.Handler.Heartbeat(ctx, hb))
}

func (s *Server) plan(ctx context.Context, node string, m *nats.Msg) {
	var req wire.PlanRequest
	if err := decode(m, node, &req, &req.Node); err != nil {
		s.respond(m, wire.PlanReply{Error: err.Error()})
		return
	}
	s.respond(m, s.cfg.Handler.Plan(ctx, req))
}

func (s *Server) status(ctx context.Context, node string, m *nats.Msg) {
	var st wire.Status
	if err := decode(m, node, &st, &st.Node); err != nil {
		s.cfg.Logger.Warn("status dropped", "subject", m.Subject, "err", err)
		return
	}
	s.cfg.Handler.Status(ctx, st)
}

func (s *Server) telemetry(ctx context.Context, node string, m *nats.Msg) {
	b, err := wire.DecodeTelemetryBatch(m.Data)
	if err == nil {
		err = sameNode(node, &b.Node)
	}
	var ack wire.TelemetryAck
	if err != nil {
		ack.Error = err.Error()
	} else {
		ack = s.cfg.Handler.StoreTelemetry(ctx, b)
	}
	if ack.Error != "" {
		// The agent keeps the batch and sends it again; say why here too.
		s.cfg.Logger.Warn("telemetry batch not stored", "node", node, "err", ack.Error)
	}
	s.respond(m, ack)
}

func (s *Server) seen(_ context.Context, node string, m *nats.Msg) {
	var sn Seen
	if err := json.Unmarshal(m.Data, &sn); err != nil {
		s.cfg.Logger.Warn("hub contact message dropped", "subject", m.Subject, "err", err)
		return
	}
	s.cfg.Handler.ObserveSeen(node, fleet.Session{LastSeen: sn.LastSeen,
		StoredRevision: sn.StoredRevision, AppliedRevision: sn.AppliedRevision})
}

// Link reaches agents and the other hubs (control.Link).
type Link struct{ nc *nats.Conn }

var _ control.Link = (*Link)(nil)

// NewLink returns a link over nc.
func NewLink(nc *nats.Conn) *Link { return &Link{nc: nc} }

// Notify publishes n to node.
func (l *Link) Notify(node string, n wire.Notify) error {
	b, err := json.Marshal(n)
	if err != nil {
		return fmt.Errorf("notify %s: %w", node, err)
	}
	if err := l.nc.Publish(wire.SubjectNotify+node, b); err != nil {
		return fmt.Errorf("notify %s: %w", node, err)
	}
	return nil
}

// RequestLogs sends req to node's agent and waits for the answer until
// ctx ends.
func (l *Link) RequestLogs(ctx context.Context, node string, req wire.LogsRequest) (wire.LogsReply, error) {
	b, err := json.Marshal(req)
	if err != nil {
		return wire.LogsReply{}, fmt.Errorf("logs request to %s: %w", node, err)
	}
	m, err := l.nc.RequestWithContext(ctx, wire.SubjectLogs+node, b)
	if errors.Is(err, nats.ErrNoResponders) {
		return wire.LogsReply{}, fmt.Errorf("logs request to %s: %w", node, control.ErrUnreachable)
	}
	if err != nil {
		return wire.LogsReply{}, fmt.Errorf("logs request to %s: %w", node, err)
	}
	var reply wire.LogsReply
	if err := json.Unmarshal(m.Data, &reply); err != nil {
		return wire.LogsReply{}, fmt.Errorf("logs reply from %s: %w", node, err)
	}
	return reply, nil
}

// AnnounceSeen publishes a contact to every hub (this one included, which
// is harmless: contacts merge).
func (l *Link) AnnounceSeen(node string, s fleet.Session) error {
	b, err := json.Marshal(Seen{LastSeen: s.LastSeen, StoredRevision: s.StoredRevision, AppliedRevision: s.AppliedRevision})
	if err != nil {
		return fmt.Errorf("announce %s: %w", node, err)
	}
	if err := l.nc.Publish(SubjectSeen+node, b); err != nil {
		return fmt.Errorf("announce %s: %w", node, err)
	}
	return nil
}

func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}
