// Package uplink is the agent's link to its hub over NATS: it runs the
// heartbeat loop of package wire, stores new plans before acknowledging
// them, publishes status on change, delivers events until the hub's stream
// acknowledges them, answers log requests and carries out queued commands.
// The link may be down for days; nothing on the node waits for it.
package uplink

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"atoll.dev/atoll/internal/wire"
)

// Node is what the uplink needs from the agent.
type Node interface {
	// Hello describes the node.
	Hello() wire.Hello
	// Revisions returns the stored and applied plan revisions.
	Revisions() (stored, applied uint64)
	// StorePlan stores p durably, then converges to it; it returns once p
	// is stored.
	StorePlan(ctx context.Context, p *wire.Plan) error
	// Status is the node's current status, with its digest.
	Status() wire.Status
	// Run carries out a command once: a command whose ID was carried out
	// before returns nil without doing anything.
	Run(ctx context.Context, c wire.Command) error
	// Events returns stored events after seq, oldest first, at most limit.
	Events(afterSeq uint64, limit int) ([]wire.Event, error)
	// EventCursor is the last event Seq the hub acknowledged;
	// SetEventCursor stores a new one.
	EventCursor() (uint64, error)
	SetEventCursor(seq uint64) error
	// Logs returns the last tail lines of a workload's log.
	Logs(workload string, tail int) ([]byte, error)
	// Changed is signalled (without blocking) when the status changes.
	Changed() <-chan struct{}
	// MissingArtifacts lists artifact references the desired state needs
	// and the node does not have.
	MissingArtifacts() []string
	// ResumeArtifact opens the download of an artifact, with what an
	// earlier, interrupted download of it left.
	ResumeArtifact(ref string) (Download, error)
	// TelemetryCursor is the last outbox record of epoch the hub holds (0
	// for none); SetTelemetryCursor stores a new one.
	TelemetryCursor(epoch string) (uint64, error)
	SetTelemetryCursor(epoch string, seq uint64) error
	// TelemetryDropped records that n outbox records were dropped before
	// the hub had them.
	TelemetryDropped(n uint64)
}

// Download is an artifact arriving chunk by chunk, kept across cuts and
// restarts (artifact.Download).
type Download interface {
	// Size and Cursor say what the download has: its bytes, and the
	// cursor given with the last Append ("" for none).
	Size() int64
	Cursor() string
	Append(b []byte, cursor string) error
	// Restart drops what the download has.
	Restart() error
	// Commit verifies the digest and stores the artifact; wrong bytes are
	// dropped.
	Commit() error
	Close() error
}

// Config wires an uplink.
type Config struct {
	// URL of the hub's NATS, e.g. nats://hub.example:4222.
	URL  string
	Node Node
	// Heartbeat interval; default wire.HeartbeatInterval.
	Heartbeat time.Duration
	// RequestTimeout bounds each request to the hub; default 5s.
	RequestTimeout time.Duration
	// Outbox holds the workloads' messages for the hub; nil when the node
	// runs no local broker.
	Outbox Outbox
	// ForwardRate bounds the telemetry forwarded, in bytes of record data
	// per second; default DefaultForwardRate.
	ForwardRate int
	// TLS secures the link with the node's certificate; nil for a hub
	// run with --insecure.
	TLS *tls.Config
	// Identity, when set, is renewed over the link before it expires, and
	// told when the hub revokes the node.
	Identity Identity
	Logger   *slog.Logger
}

// Identity is the node's certificate (package agent/identity).
type Identity interface {
	RenewDue(now time.Time) bool
	Expired(now time.Time) bool
	Renew(ctx context.Context, nc *nats.Conn) error
	MarkRevoked() error
}

// Uplink is a running link. Create with New and call Run.
type Uplink struct {
	cfg    Config
	name   string
	notify chan struct{}
	// forward wakes the telemetry forwarder (forward.go).
	forward chan struct{}
	// fetch wakes the artifact fetcher, which copies artifacts beside the
	// sync loop, over a connection of its own, so a long download never
	// holds back a heartbeat.
	fetch chan struct{}

	mu        sync.Mutex
	connected bool     // guarded by mu
	done      []string // commands carried out, not yet acknowledged; guarded by mu
	sentHello bool     // since the last (re)connect; guarded by mu
	conns     uint64   // (re)connects so far; guarded by mu
	// dropped is closed when the current connection drops (and made anew
	// on the next); guarded by mu.
	dropped chan struct{}
	healthy bool // the last heartbeat round succeeded; guarded by mu
	// stalls counts consecutive heartbeat rounds that timed out; after
	// maxStalls the connection is redialled rather than left to the
	// client's ping timeout. Only the loop goroutine touches it.
	stalls int
	// planTimeout bounds a plan fetch; it doubles after a fetch times out
	// (a big plan on a slow link) and resets after one succeeds. Only the
	// loop goroutine touches it.
	planTimeout time.Duration
	// expiredAtConnect: the current connection was made with an expired
	// certificate, so the hub let it renew and nothing else; guarded by mu.
	expiredAtConnect bool
	// revoked is closed when the hub says the node was revoked.
	revoked     chan struct{}
	revokedOnce sync.Once
	// heard is what the hub has confirmed of the heartbeat's fields since
	// the last hello. Only the loop goroutine touches it.
	heard heard
	// acked remembers recently acknowledged command ids, so a hub that
	// resends one before it has processed the ack does not make the loop
	// spin. Only the loop goroutine touches it.
	acked map[string]bool
}

// New prepares an uplink; nothing connects until Run.
func New(cfg Config) *Uplink {
	if cfg.Heartbeat <= 0 {
		cfg.Heartbeat = wire.HeartbeatInterval
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ForwardRate <= 0 {
		cfg.ForwardRate = DefaultForwardRate
	}
	return &Uplink{cfg: cfg, name: cfg.Node.Hello().Node, notify: make(chan struct{}, 1), revoked: make(chan struct{}), fetch: make(chan struct{}, 1), forward: make(chan struct{}, 1), acked: map[string]bool{}}
}

// Connected reports whether the link to the hub is up.
// It is false as soon as a heartbeat round fails, even while the socket
// still looks open (a silent partition, a half-open connection).
func (u *Uplink) Connected() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.connected && u.healthy
}

// Run keeps the link until ctx is done. It never gives up: a hub that is
// unreachable for days is retried with the client's reconnect backoff.
func (u *Uplink) Run(ctx context.Context) error {
	nc, err := nats.Connect(u.cfg.URL, append(u.dialOptions(""),
		nats.RetryOnFailedConnect(true),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(time.Second),
		nats.ReconnectJitter(500*time.Millisecond, time.Second),
		// The heartbeat is the liveness check (judge redials after
		// maxStalls rounds without an answer); the client's own PINGs
		// would only add bytes on a metered link.
		nats.PingInterval(pingInterval),
		nats.MaxPingsOutstanding(3),
		nats.ConnectHandler(func(*nats.Conn) { u.setConnected(true) }),
		nats.ReconnectHandler(func(*nats.Conn) { u.setConnected(true) }),
		nats.DisconnectErrHandler(func(*nats.Conn, error) { u.setConnected(false) }),
		// A refused certificate (revoked, or the hub's store restored)
		// is retried like a cut link: the node never gives up by itself.
		nats.IgnoreAuthErrorAbort(),
	)...)
	if err != nil {
		return fmt.Errorf("uplink: connect %s: %w", u.cfg.URL, err)
	}
	defer nc.Close()
	if nc.IsConnected() {
		u.setConnected(true)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("uplink: %w", err)
	}
	subs, err := u.subscribe(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	var workers sync.WaitGroup
	workers.Go(func() { u.fetchLoop(ctx) })
	if u.cfg.Outbox != nil {
		workers.Go(func() { u.forwardLoop(ctx, nc) })
	}
	defer workers.Wait()
	defer cancel()
	defer func() {
		for _, s := range subs {
			_ = s.Unsubscribe()
		}
	}()

	lastDigest := ""
	for {
		if nc.IsConnected() {
			u.renew(ctx, nc)
			err := u.sync(ctx, nc, js, &lastDigest)
			if err != nil && ctx.Err() == nil {
				u.cfg.Logger.Debug("sync with hub", "err", err)
			}
			u.judge(nc, err)
		}
		t := time.NewTimer(u.cfg.Heartbeat)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-u.revoked:
			t.Stop()
			return ErrRevoked
		case <-t.C:
		case <-u.notify:
		case <-u.cfg.Node.Changed():
			select {
			case <-u.notify: // a sync is due anyway: no reason to wait
			default:
				// A start or a stop changes status several times in a few
				// milliseconds: report the burst once.
				d := time.NewTimer(statusDebounce)
				select {
				case <-ctx.Done():
				case <-d.C:
				}
				d.Stop()
			}
		}
		t.Stop()
	}
}

// heard is what the hub confirmed: with quiet heartbeats the agent leaves
// it out, so an idle heartbeat is "{}" (it goes out every 10 s, on links
// that may be metered).
type heard struct {
	quiet           bool // the hub takes quiet heartbeats
	stored, applied uint64
	digest          string
}

// heartbeat is the heartbeat to send. The subject names the node, so the
// body does not.
func (h heard) heartbeat(stored, applied uint64, digest string) wire.Heartbeat {
	hb := wire.Heartbeat{StoredRevision: stored, AppliedRevision: applied, StatusDigest: digest}
	if !h.quiet {
		return hb
	}
	if stored == h.stored {
		hb.StoredRevision = 0
	}
	if applied == h.applied {
		hb.AppliedRevision = 0
	}
	if digest == h.digest {
		hb.StatusDigest = ""
	}
	return hb
}

// answered records what the hub's answer to hb confirmed: the revisions,
// and the digest unless the hub asked for the status (then it is sent
// again until the hub has it).
func (h *heard) answered(hb wire.Heartbeat, stored, applied uint64, needStatus bool) {
	h.stored, h.applied = stored, applied
	switch {
	case needStatus:
		h.digest = ""
	case hb.StatusDigest != "":
		h.digest = hb.StatusDigest
	}
}

// pingInterval is the NATS client's PING interval.
const pingInterval = 5 * time.Minute

// maxStalls is how many heartbeat rounds in a row may time out before the
// uplink redials: a half-open connection or a silent partition is then
// noticed in a few heartbeats, not after the client's ping timeout.
const maxStalls = 3

// maxPlanTimeout caps the plan fetch timeout's growth.
const maxPlanTimeout = 5 * time.Minute

// judge records how a sync round went: the health Connected reports, and
// a redial after repeated timeouts.
func (u *Uplink) judge(nc *nats.Conn, err error) {
	u.mu.Lock()
	u.healthy = err == nil
	u.mu.Unlock()
	if err == nil || !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
		u.stalls = 0
		return
	}
	u.stalls++
	if u.stalls >= maxStalls {
		u.stalls = 0
		u.cfg.Logger.Warn("hub not answering: redialling", "timeouts", maxStalls)
		if err := nc.ForceReconnect(); err != nil {
			u.cfg.Logger.Warn("redial", "err", err)
		}
	}
}

func (u *Uplink) setConnected(up bool) {
	u.mu.Lock()
	if up && !u.connected {
		u.dropped = make(chan struct{})
	}
	if !up && u.connected {
		close(u.dropped)
	}
	u.connected = up
	if up {
		u.sentHello = false
		u.conns++
		u.expiredAtConnect = u.cfg.Identity != nil && u.cfg.Identity.Expired(time.Now())
	}
	u.mu.Unlock()
	if up {
		u.poke()
		u.pokeForward()
	}
}

// onThisConnection returns a context that ends when ctx does or when the
// current connection drops: a request whose connection broke gets no
// answer, and need not wait out its timeout to learn that.
func (u *Uplink) onThisConnection(ctx context.Context) (context.Context, context.CancelFunc) {
	u.mu.Lock()
	dropped := u.dropped
	u.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	if dropped == nil {
		cancel() // not connected
		return ctx, cancel
	}
	go func() {
		select {
		case <-dropped:
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, cancel
}

// statusDebounce is how long the loop waits after a status change before
// it reports, to send one status for a burst of changes.
const statusDebounce = 10 * time.Millisecond

// poke makes the loop run a sync now.
func (u *Uplink) poke() {
	select {
	case u.notify <- struct{}{}:
	default:
	}
}

// ErrRevoked ends Run when the hub revoked the node.
var ErrRevoked = errors.New("the hub revoked this node's certificate")

// dialOptions are the options of every connection to the hub; suffix
// tells them apart in the hub's monitoring.
func (u *Uplink) dialOptions(suffix string) []nats.Option {
	opts := []nats.Option{nats.Name("atoll-agent-" + u.name + suffix), nats.CustomInboxPrefix(wire.NodeInboxPrefix + u.name)}
	if u.cfg.TLS != nil {
		opts = append(opts, nats.Secure(u.cfg.TLS))
	}
	return opts
}

// renew renews the node's certificate once two thirds of its life have
// passed; a connection made with an expired one (the hub let it renew and
// nothing else) is redialled with the fresh one.
func (u *Uplink) renew(ctx context.Context, nc *nats.Conn) {
	id := u.cfg.Identity
	if id == nil || !id.RenewDue(time.Now()) {
		return
	}
	if err := id.Renew(ctx, nc); err != nil {
		u.cfg.Logger.Warn("renew certificate", "err", err)
		return
	}
	u.cfg.Logger.Info("certificate renewed")
	u.mu.Lock()
	redial := u.expiredAtConnect
	u.mu.Unlock()
	if redial {
		if err := nc.ForceReconnect(); err != nil {
			u.cfg.Logger.Warn("redial", "err", err)
		}
	}
}

func (u *Uplink) onNotify(m *nats.Msg) {
	var n wire.Notify
	if json.Unmarshal(m.Data, &n) == nil && n.Revoked && u.cfg.Identity != nil {
		u.revokedOnce.Do(func() {
			if err := u.cfg.Identity.MarkRevoked(); err != nil {
				u.cfg.Logger.Warn("record revocation", "err", err)
			}
			close(u.revoked)
		})
		return
	}
	u.poke()
}

func (u *Uplink) subscribe(nc *nats.Conn) ([]*nats.Subscription, error) {
	notify, err := nc.Subscribe(wire.SubjectNotify+u.name, u.onNotify)
	if err != nil {
		return nil, fmt.Errorf("uplink: subscribe: %w", err)
	}
	logs, err := nc.Subscribe(wire.SubjectLogs+u.name, u.serveLogs)
	if err != nil {
		_ = notify.Unsubscribe()
		return nil, fmt.Errorf("uplink: subscribe: %w", err)
	}
	return []*nats.Subscription{notify, logs}, nil
}

func (u *Uplink) serveLogs(m *nats.Msg) {
	var req wire.LogsRequest
	var reply wire.LogsReply
	if err := json.Unmarshal(m.Data, &req); err != nil {
		reply.Error = "bad request: " + err.Error()
	} else {
		tail := req.Tail
		if tail <= 0 {
			tail = 100
		}
		data, err := u.cfg.Node.Logs(req.Workload, tail)
		if err != nil {
			reply.Error = err.Error()
		}
		if len(data) > wire.MaxLogsReply {
			data = data[len(data)-wire.MaxLogsReply:]
		}
		reply.Data = data
	}
	b, _ := json.Marshal(reply)
	_ = m.Respond(b)
}

// sync runs one round of the protocol: hello if needed, heartbeat, plan,
// status, commands, events.
func (u *Uplink) sync(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, lastDigest *string) error {
	u.mu.Lock()
	needHello := !u.sentHello
	u.mu.Unlock()
	if needHello {
		var hr wire.HelloReply
		if err := u.request(ctx, nc, wire.SubjectHello, u.cfg.Node.Hello(), &hr); err != nil {
			return err
		}
		if hr.Error != "" {
			return fmt.Errorf("hub refused hello: %s", hr.Error)
		}
		if err := u.skipDelivered(hr.LastEventID); err != nil {
			return err
		}
		u.mu.Lock()
		u.sentHello = true
		u.mu.Unlock()
		*lastDigest = ""
		u.heard = heard{quiet: hr.QuietHeartbeats}
	}

	stored, applied := u.cfg.Node.Revisions()
	st := u.cfg.Node.Status()
	u.mu.Lock()
	done := append([]string(nil), u.done...)
	u.mu.Unlock()
	hb := u.heard.heartbeat(stored, applied, st.Digest)
	hb.DoneCommands = done
	var reply wire.HeartbeatReply
	if err := u.request(ctx, nc, wire.SubjectHeartbeat, hb, &reply); err != nil {
		return err
	}
	if reply.Error != "" {
		// A hub that does not know the node (its store was reset, or
		// another hub answered first) gets a Hello again next round.
		u.mu.Lock()
		u.sentHello = false
		u.mu.Unlock()
		u.poke()
		return fmt.Errorf("hub refused heartbeat: %s", reply.Error)
	}
	u.heard.answered(hb, stored, applied, reply.NeedStatus)
	u.forgetDone(done)
	if len(u.acked) > maxAcked {
		clear(u.acked)
	}
	for _, id := range done {
		u.acked[id] = true
	}

	if reply.PlanRevision > stored {
		if err := u.fetchPlan(ctx, nc, stored); err != nil {
			return err
		}
		u.poke() // report the new revisions at once
	}
	if reply.NeedStatus || st.Digest != *lastDigest {
		if err := u.publish(nc, wire.SubjectStatus+u.name, st); err != nil {
			return err
		}
		*lastDigest = st.Digest
	}
	fresh := 0
	for _, c := range reply.Commands {
		if u.acked[c.ID] || slices.Contains(done, c.ID) {
			continue // already carried out; the ack is on its way
		}
		if err := u.cfg.Node.Run(ctx, c); err != nil {
			u.cfg.Logger.Warn("command failed", "id", c.ID, "kind", c.Kind, "err", err)
		}
		u.mu.Lock()
		u.done = append(u.done, c.ID)
		u.mu.Unlock()
		fresh++
	}
	if fresh > 0 {
		u.poke() // acknowledge them at once
	}
	if len(u.cfg.Node.MissingArtifacts()) > 0 {
		select {
		case u.fetch <- struct{}{}:
		default: // a fetch is under way or due
		}
	}
	return u.drainEvents(ctx, js)
}

func (u *Uplink) forgetDone(acked []string) {
	if len(acked) == 0 {
		return
	}
	u.mu.Lock()
	defer u.mu.Unlock()
	u.done = u.done[len(acked):]
}

func (u *Uplink) fetchPlan(ctx context.Context, nc *nats.Conn, have uint64) error {
	var pr wire.PlanReply
	if u.planTimeout < u.cfg.RequestTimeout {
		u.planTimeout = u.cfg.RequestTimeout
	}
	err := u.requestWithin(ctx, nc, u.planTimeout, wire.SubjectPlan, wire.PlanRequest{Node: u.name, Have: have, Gzip: true}, &pr)
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) {
		// The plan may be too big for this link to carry in time: give the
		// next try longer instead of asking again and again.
		u.planTimeout = min(2*u.planTimeout, maxPlanTimeout)
		u.cfg.Logger.Warn("plan fetch timed out", "next timeout", u.planTimeout)
	}
	if err != nil {
		return err
	}
	u.planTimeout = u.cfg.RequestTimeout
	if pr.Error != "" {
		return fmt.Errorf("hub refused plan request: %s", pr.Error)
	}
	if pr.PlanGzip != nil {
		p, err := wire.DecodePlanGzip(pr.PlanGzip)
		if err != nil {
			return err
		}
		pr.Plan = p
	}
	if pr.Plan == nil || pr.Plan.Revision <= have {
		return nil
	}
	if pr.Plan.Node != u.name {
		return fmt.Errorf("hub sent the plan of %q", pr.Plan.Node)
	}
	return u.cfg.Node.StorePlan(ctx, pr.Plan)
}

// maxAcked bounds the memory of acknowledged command ids; forgetting them
// is safe, because the node itself never runs a command id twice.
const maxAcked = 1024

// skipDelivered moves the event cursor past the event the hub says it
// already holds, so an event whose acknowledgement was lost with the link is
// not sent again (after the stream's duplicate window it would be stored
// twice).
func (u *Uplink) skipDelivered(id string) error {
	if id == "" {
		return nil
	}
	cursor, err := u.cfg.Node.EventCursor()
	if err != nil {
		return err
	}
	evs, err := u.cfg.Node.Events(cursor, 0)
	if err != nil {
		return err
	}
	for _, e := range evs {
		if e.ID == id {
			return u.cfg.Node.SetEventCursor(e.Seq)
		}
	}
	return nil
}

// eventBatch bounds how many events one sync round sends.
const eventBatch = 256

// drainEvents publishes stored events after the acknowledged cursor to the
// hub's stream, each with its ID as the deduplication key, and moves the
// cursor once the stream has acknowledged them.
func (u *Uplink) drainEvents(ctx context.Context, js jetstream.JetStream) error {
	cursor, err := u.cfg.Node.EventCursor()
	if err != nil {
		return err
	}
	for {
		evs, err := u.cfg.Node.Events(cursor, eventBatch)
		if err != nil || len(evs) == 0 {
			return err
		}
		futures := make([]jetstream.PubAckFuture, 0, len(evs))
		for _, e := range evs {
			e.Node = u.name
			b, err := json.Marshal(e)
			if err != nil {
				return err
			}
			f, err := js.PublishAsync(wire.SubjectEvents+u.name, b, jetstream.WithMsgID(e.ID))
			if err != nil {
				return fmt.Errorf("publish event %s: %w", e.ID, err)
			}
			futures = append(futures, f)
		}
		for i, f := range futures {
			var err error
			select {
			case <-f.Ok():
			case err = <-f.Err():
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(u.cfg.RequestTimeout):
				err = context.DeadlineExceeded
			}
			if err != nil {
				// The stream may have stored what it did not acknowledge:
				// say Hello again before resending, and its LastEventID
				// moves the cursor past what the hub already holds.
				u.mu.Lock()
				u.sentHello = false
				u.mu.Unlock()
				if cursor > 0 {
					_ = u.cfg.Node.SetEventCursor(cursor)
				}
				return fmt.Errorf("publish event %s: %w", evs[i].ID, err)
			}
			cursor = evs[i].Seq
		}
		if err := u.cfg.Node.SetEventCursor(cursor); err != nil {
			return err
		}
		if len(evs) < eventBatch {
			return nil
		}
	}
}

func (u *Uplink) request(ctx context.Context, nc *nats.Conn, subject string, req, reply any) error {
	return u.requestWithin(ctx, nc, u.cfg.RequestTimeout, subject, req, reply)
}

func (u *Uplink) requestWithin(ctx context.Context, nc *nats.Conn, timeout time.Duration, subject string, req, reply any) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	return u.requestBody(ctx, nc, timeout, subject, b, reply)
}

// requestBody sends body as is and decodes the JSON reply.
func (u *Uplink) requestBody(ctx context.Context, nc *nats.Conn, timeout time.Duration, subject string, b []byte, reply any) error {
	rctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	m, err := nc.RequestWithContext(rctx, subject+u.name, b)
	if err != nil {
		return fmt.Errorf("request %s: %w", subject+u.name, err)
	}
	if err := json.Unmarshal(m.Data, reply); err != nil {
		return fmt.Errorf("request %s: decode reply: %w", subject+u.name, err)
	}
	return nil
}

func (u *Uplink) publish(nc *nats.Conn, subject string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := nc.Publish(subject, b); err != nil {
		return fmt.Errorf("publish %s: %w", subject, err)
	}
	return nil
}
