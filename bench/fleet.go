package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"atoll.dev/atoll/internal/agent/identity"
	"atoll.dev/atoll/internal/agent/uplink"
	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/wire"
)

// The fleet figure: one hub process and simulated agents in the bench
// process, each a real uplink.Uplink with its own NATS connection over an
// in-memory node.
const (
	fleetSettle   = 12 * time.Second // all connected, before the idle window
	fleetIdle     = 20 * time.Second // idle CPU window: two heartbeats of every node
	fleetPoll     = 20 * time.Millisecond
	fleetJoinWait = 2 * time.Minute
)

// simNode is an in-memory uplink.Node: it keeps the plan in memory and
// reports every workload of it running at once.
type simNode struct {
	name    string
	labels  map[string]string
	changed chan struct{}
	watch   *planWatch

	stored atomic.Uint64
	mu     sync.Mutex
	status wire.Status // guarded by mu; digest set
}

func newSimNode(name string, labels map[string]string, watch *planWatch) *simNode {
	n := &simNode{name: name, labels: labels, changed: make(chan struct{}, 1), watch: watch}
	n.setStatus(nil, 0)
	return n
}

func (n *simNode) Hello() wire.Hello {
	return wire.Hello{ProtocolVersion: wire.ProtocolVersion, Node: n.name, Labels: n.labels,
		CapacityMemory: 1 << 30, CapacityMilliCPU: 1000, Runtimes: []string{"exec"}, Version: "bench-sim"}
}

func (n *simNode) Revisions() (stored, applied uint64) {
	r := n.stored.Load()
	return r, r
}

func (n *simNode) StorePlan(_ context.Context, p *wire.Plan) error {
	if p.Revision <= n.stored.Load() {
		return nil
	}
	ws := make([]wire.WorkloadStatus, 0, len(p.Workloads))
	now := time.Now().UTC()
	for _, pw := range p.Workloads {
		ws = append(ws, wire.WorkloadStatus{Name: pw.Workload.Metadata.Name, Runtime: string(pw.Workload.Spec.Runtime),
			State: wire.StateRunning, PID: 1, StartedAt: now})
	}
	n.setStatus(ws, p.Revision)
	n.stored.Store(p.Revision)
	n.watch.stored(p)
	select {
	case n.changed <- struct{}{}:
	default:
	}
	return nil
}

func (n *simNode) setStatus(ws []wire.WorkloadStatus, rev uint64) {
	st := wire.Status{Node: n.name, StoredRevision: rev, AppliedRevision: rev, Workloads: ws}
	b, _ := json.Marshal(st)
	sum := sha256.Sum256(b)
	st.Digest = hex.EncodeToString(sum[:12])
	n.mu.Lock()
	n.status = st
	n.mu.Unlock()
}

func (n *simNode) Status() wire.Status {
	n.mu.Lock()
	st := n.status
	n.mu.Unlock()
	st.Time = time.Now().UTC()
	return st
}

func (n *simNode) Run(context.Context, wire.Command) error  { return nil }
func (n *simNode) Events(uint64, int) ([]wire.Event, error) { return nil, nil }
func (n *simNode) EventCursor() (uint64, error)             { return 0, nil }
func (n *simNode) SetEventCursor(uint64) error              { return nil }
func (n *simNode) Logs(string, int) ([]byte, error)         { return nil, nil }
func (n *simNode) Changed() <-chan struct{}                 { return n.changed }
func (n *simNode) MissingArtifacts() []string               { return nil }
func (n *simNode) TelemetryCursor(string) (uint64, error)   { return 0, nil }
func (n *simNode) SetTelemetryCursor(string, uint64) error  { return nil }
func (n *simNode) TelemetryDropped(uint64)                  {}
func (n *simNode) ResumeArtifact(string) (uplink.Download, error) {
	return nil, errors.New("simulated nodes fetch no artifacts")
}

var _ uplink.Node = (*simNode)(nil)

// planWatch records, per simulated node, when it first stored a plan
// holding the watched workload.
type planWatch struct {
	mu    sync.Mutex
	name  string // the workload watched; "" before the apply
	t0    time.Time
	times []time.Duration
	want  int
	done  chan struct{}
}

func (w *planWatch) start(name string, want int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.name, w.t0, w.want, w.done = name, time.Now(), want, make(chan struct{})
}

func (w *planWatch) stored(p *wire.Plan) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.name == "" || len(w.times) >= w.want {
		return
	}
	for _, pw := range p.Workloads {
		if pw.Workload.Metadata.Name == w.name {
			w.times = append(w.times, time.Since(w.t0))
			if len(w.times) == w.want {
				close(w.done)
			}
			return
		}
	}
}

// fleetResult is the fleet figure.
type fleetResult struct {
	nodes     int
	heartbeat time.Duration
	enroll    time.Duration // every simulated agent enrolled (8 at a time), before the join
	join      time.Duration // uplinks started → the hub shows all connected
	applyCall time.Duration
	stored    []time.Duration // per node: apply call start → the node stored the plan with it
	hubAPI    time.Duration   // apply call start → the hub's API shows every instance running at the current revision
	getMean   time.Duration   // one GET /v1/workloads/NAME with every node in it
	gets      int
	nodesGet  time.Duration // one GET /v1/nodes
	idleMem   mem           // hub, all connected, idle
	busyMem   mem           // hub, after the convergence
	idleCPU   float64       // hub, % of one core over fleetIdle, all connected
	idleSim   float64       // the bench process (the simulated agents) over the same window
	joinCPU   float64       // hub over the join
	applyCPU  float64       // hub from the apply call to the hub showing every instance
	runCPU    float64       // hub from its process start to the convergence
	runWall   time.Duration
	rlimit    uint64
}

// measureFleet starts a hub and n simulated agents, waits until the hub
// shows them all connected, measures the hub idle, then applies one
// workload selecting them all and times convergence.
// enrollSims enrolls n simulated agents, 8 at a time, as real agents do:
// a key each, a certificate from the hub.
func (h *harness) enrollSims(ctx context.Context, hub *hubProc, prefix string, n int) ([]*identity.Identity, error) {
	tok, err := hub.token(ctx)
	if err != nil {
		return nil, err
	}
	ids := make([]*identity.Identity, n)
	errs := make([]error, n)
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for i := range n {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			name := fmt.Sprintf("%s%04d", prefix, i)
			ids[i], errs[i] = identity.Enroll(ctx, identity.Dir(h.dataDir(name)), hub.natsURL, tok, name)
		})
	}
	wg.Wait()
	return ids, errors.Join(errs...)
}

func (h *harness) measureFleet(ctx context.Context, n int) (r fleetResult, err error) {
	r.nodes, r.heartbeat = n, wire.HeartbeatInterval
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return r, err
	}
	need := uint64(2*n + 1024)
	if lim.Cur < need {
		lim.Cur = min(max(need, lim.Cur), lim.Max)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			return r, fmt.Errorf("raise RLIMIT_NOFILE to %d: %w", lim.Cur, err)
		}
	}
	r.rlimit = lim.Cur
	if lim.Cur < need {
		return r, fmt.Errorf("RLIMIT_NOFILE is %d; %d simulated agents need about %d", lim.Cur, n, need)
	}

	hub, err := h.startHub(ctx)
	if err != nil {
		return r, err
	}
	hubStart, err := readStat(hub.pid())
	if err != nil {
		return r, err
	}

	watch := &planWatch{}
	sctx, stopSims := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer func() {
		stopSims()
		wg.Wait()
	}()
	quiet := slog.New(slog.DiscardHandler)
	prefix := "sim-" + h.runID + "-"
	t0 := time.Now()
	ids, err := h.enrollSims(ctx, hub, prefix, n)
	if err != nil {
		return r, err
	}
	r.enroll = time.Since(t0)
	t0 = time.Now()
	for i := range n {
		node := newSimNode(fmt.Sprintf("%s%04d", prefix, i),
			map[string]string{"fleet": "sim", "site": fmt.Sprintf("s%d", i%10)}, watch)
		tlsCfg, err := ids[i].TLS()
		if err != nil {
			return r, err
		}
		u := uplink.New(uplink.Config{URL: hub.natsURL, Node: node, TLS: tlsCfg, Identity: ids[i], Logger: quiet})
		wg.Go(func() {
			if err := u.Run(sctx); err != nil {
				fmt.Fprintf(h.log, "bench: simulated agent %s: %v\n", node.name, err)
			}
		})
	}
	count := func(ns []api.Node, ok func(api.Node) bool) int {
		c := 0
		for _, nd := range ns {
			if strings.HasPrefix(nd.Name, prefix) && ok(nd) {
				c++
			}
		}
		return c
	}
	listNodes := func() ([]api.Node, error) {
		cctx, cancel := context.WithTimeout(ctx, 6*callTimeout)
		defer cancel()
		return hub.api.Nodes(cctx)
	}
	err = poll(ctx, 250*time.Millisecond, fleetJoinWait, fmt.Sprintf("%d simulated agents connected", n), hub.alive, func() (bool, error) {
		ns, err := listNodes()
		if err != nil {
			return false, err
		}
		c := count(ns, func(nd api.Node) bool { return nd.State == api.NodeConnected })
		return c == n, fmt.Errorf("%d of %d connected", c, n)
	})
	if err != nil {
		return r, err
	}
	r.join = time.Since(t0)
	joined, err := readStat(hub.pid())
	if err != nil {
		return r, err
	}
	r.joinCPU = cpuPct(joined, hubStart, r.join)

	// Idle, all connected.
	if err := sleep(ctx, fleetSettle); err != nil {
		return r, err
	}
	i0, err := readStat(hub.pid())
	if err != nil {
		return r, err
	}
	b0, err := readStat(os.Getpid())
	if err != nil {
		return r, err
	}
	ti := time.Now()
	if err := sleep(ctx, fleetIdle); err != nil {
		return r, err
	}
	i1, err := readStat(hub.pid())
	if err != nil {
		return r, err
	}
	b1, err := readStat(os.Getpid())
	if err != nil {
		return r, err
	}
	idle := time.Since(ti)
	r.idleCPU, r.idleSim = cpuPct(i1, i0, idle), cpuPct(b1, b0, idle)
	if r.idleMem, err = readMem(hub.pid()); err != nil {
		return r, err
	}
	g0 := time.Now()
	ns, err := listNodes()
	if err != nil {
		return r, err
	}
	r.nodesGet = time.Since(g0)
	if c := count(ns, func(nd api.Node) bool { return nd.State == api.NodeConnected }); c != n {
		return r, fmt.Errorf("after the idle window %d of %d simulated agents are connected", c, n)
	}

	// Apply one workload to all of them.
	name := h.name("fleet")
	doc := fmt.Sprintf(`apiVersion: atoll.dev/v1
kind: Workload
metadata:
  name: %s
spec:
  runtime: exec
  exec:
    command: [sleep, "100000"]
  placement:
    nodeSelector: {fleet: sim}
`, name)
	ws, err := manifest.Decode("fleet.yaml", []byte(doc))
	if err != nil {
		return r, err
	}
	a0, err := readStat(hub.pid())
	if err != nil {
		return r, err
	}
	watch.start(name, n)
	ta := watch.t0
	if err := hub.apply(ctx, ws); err != nil {
		return r, err
	}
	r.applyCall = time.Since(ta)
	select {
	case <-watch.done:
	case <-time.After(convergeLimit):
		watch.mu.Lock()
		got := len(watch.times)
		watch.mu.Unlock()
		return r, fmt.Errorf("only %d of %d simulated agents stored the plan within %v", got, n, convergeLimit)
	case <-ctx.Done():
		return r, ctx.Err()
	}
	watch.mu.Lock()
	r.stored = append([]time.Duration(nil), watch.times...)
	watch.mu.Unlock()

	var getTime time.Duration
	err = poll(ctx, fleetPoll, convergeLimit, "hub shows every instance running", hub.alive, func() (bool, error) {
		g0 := time.Now()
		cctx, cancel := context.WithTimeout(ctx, 6*callTimeout)
		wl, err := hub.api.Workload(cctx, name)
		cancel()
		r.gets++
		getTime += time.Since(g0)
		if err != nil {
			return false, err
		}
		ok := 0
		for _, in := range wl.Instances {
			if in.State == string(wire.StateRunning) && in.Revision >= 1 {
				ok++
			}
		}
		if ok == n && len(wl.Instances) == n {
			r.hubAPI = time.Since(ta)
			return true, nil
		}
		return false, fmt.Errorf("%d of %d instances running at the current revision (%d targets)", ok, n, len(wl.Instances))
	})
	if err != nil {
		return r, err
	}
	r.getMean = getTime / time.Duration(max(r.gets, 1))
	a1, err := readStat(hub.pid())
	if err != nil {
		return r, err
	}
	r.applyCPU = cpuPct(a1, a0, r.hubAPI)
	r.runWall = time.Since(hub.started)
	r.runCPU = cpuPct(a1, procStat{}, r.runWall)
	if r.busyMem, err = readMem(hub.pid()); err != nil {
		return r, err
	}
	// Every node's plan revision acknowledged as applied, by the node list.
	ns, err = listNodes()
	if err != nil {
		return r, err
	}
	if c := count(ns, func(nd api.Node) bool { return nd.PlanRevision > 0 && nd.AppliedRevision == nd.PlanRevision }); c != n {
		return r, fmt.Errorf("hub shows %d of %d nodes at appliedRevision == planRevision", c, n)
	}
	stopSims()
	wg.Wait()
	return r, h.teardown()
}

// cpuPct is the CPU a process used between two readings, as a percentage
// of one core over d.
func cpuPct(after, before procStat, d time.Duration) float64 {
	ticks := after.utime + after.stime - before.utime - before.stime
	return float64(ticks) / clockTicks / d.Seconds() * 100
}
