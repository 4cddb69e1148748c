package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"atoll.dev/atoll/internal/atolltest"
	"atoll.dev/atoll/internal/atolltest/linkproxy"
	"atoll.dev/atoll/internal/hub"
	"go.yaml.in/yaml/v2"

	"atoll.dev/atoll/internal/client"
	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/wire"
)

// The hub figures: apply → running on a connected node, convergence after a
// reconnect with queued changes, and bytes on the wire of an idle node.
const (
	hubPoll       = 2 * time.Millisecond // the hub's API, for apply → running
	nodePoll      = 5 * time.Millisecond // the hub's node view, for the reconnect
	linkCount     = 10                   // workloads on the node of the link figures
	linkRounds    = 10                   // rounds of env changes to each of them while cut: linkCount*linkRounds changes
	hubSettle     = 15 * time.Second     // connected node, workloads running, before the idle window
	convergeLimit = 60 * time.Second     // bound on every convergence wait
	ipTCPHeaders  = 52                   // bytes per segment: IPv4 (20) + TCP (20) + timestamps option (12)
)

// hubProc is one `atoll hub` process with its embedded NATS.
type hubProc struct {
	*agent  // the process (its local client is unused)
	api     *client.Hub
	data    string
	admin   *tls.Config   // the admin's TLS (admin.conf): the API, and the NATS for looking into streams
	tok     string        // an enrollment token for every agent of the run
	natsURL string        // nats://127.0.0.1:PORT
	natsAdr string        // 127.0.0.1:PORT
	started time.Time     // process start
	up      time.Duration // process start → API answering
}

// freeAddr returns a loopback address with a port that was free a moment
// ago.
func freeAddr() (string, error) {
	port, err := atolltest.UnusedPort()
	return fmt.Sprintf("127.0.0.1:%d", port), err
}

// startHub starts `atoll hub` on a fresh data directory, its API and NATS on
// free loopback ports, and waits until its API answers.
func (h *harness) startHub(ctx context.Context) (*hubProc, error) {
	httpAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	natsAddr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	data := h.dataDir("hub")
	t0 := time.Now()
	p, err := h.spawn(data, "hub", []string{"hub", "--data", data, "--listen", httpAddr, "--nats-listen", natsAddr})
	if err != nil {
		return nil, err
	}
	hp := &hubProc{agent: p, data: data, natsURL: "nats://" + natsAddr, natsAdr: natsAddr, started: t0}
	err = poll(ctx, 10*time.Millisecond, startTimeout, "hub API answering", hp.alive, func() (bool, error) {
		if hp.api == nil {
			if err := hp.loadAdmin(); err != nil {
				return false, err
			}
		}
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		defer cancel()
		_, err := hp.api.Nodes(cctx)
		return err == nil, err
	})
	hp.up = time.Since(t0)
	return hp, err
}

// loadAdmin reads the admin's credentials the hub writes once it serves.
func (hp *hubProc) loadAdmin() error {
	b, err := os.ReadFile(filepath.Join(hp.data, hub.AdminConfigFile))
	if err != nil {
		return err
	}
	var creds client.Credentials
	if err := yaml.Unmarshal(b, &creds); err != nil {
		return err
	}
	if hp.admin, err = creds.TLS(); err != nil {
		return err
	}
	hp.api = client.NewHub(creds.Hub, hp.admin)
	return nil
}

// token is an enrollment token for the run's agents, made once.
func (hp *hubProc) token(ctx context.Context) (string, error) {
	if hp.tok != "" {
		return hp.tok, nil
	}
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	t, err := hp.api.CreateToken(cctx, api.TokenRequest{TTL: "24h", Uses: 1 << 20})
	if err != nil {
		return "", fmt.Errorf("enrollment token: %w", err)
	}
	hp.tok = t.Token
	return hp.tok, nil
}

// alive fails once the hub process has exited.
func (hp *hubProc) alive() error {
	if hp.exited() {
		return fmt.Errorf("hub exited (%v)%s", hp.err, hp.logTail())
	}
	return nil
}

func (hp *hubProc) node(ctx context.Context, name string) (api.Node, error) {
	cctx, cancel := context.WithTimeout(ctx, callTimeout)
	defer cancel()
	return hp.api.Node(cctx, name)
}

func (hp *hubProc) apply(ctx context.Context, ws []manifest.Workload) error {
	cctx, cancel := context.WithTimeout(ctx, 4*callTimeout)
	defer cancel()
	if _, err := hp.api.Apply(cctx, ws); err != nil {
		return fmt.Errorf("apply at the hub: %w", err)
	}
	return nil
}

// poll calls cond every interval until it holds, failing after timeout,
// when ctx ends or when alive fails. An error from cond counts as "not yet";
// the last one is quoted if time runs out.
func poll(ctx context.Context, interval, timeout time.Duration, what string, alive func() error, cond func() (bool, error)) error {
	deadline := time.Now().Add(timeout)
	var last error
	for {
		ok, err := cond()
		if ok {
			return nil
		}
		if err != nil {
			last = err
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if alive != nil {
			if err := alive(); err != nil {
				return fmt.Errorf("%s: %w", what, err)
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: not within %v; last: %v", what, timeout, last)
		}
		time.Sleep(interval)
	}
}

// hubWorkloads returns `sleep 100000` exec workloads named names, restart
// policy always, with env (and this run's marker) and placement, a YAML
// mapping such as `nodes: [edge-1]`.
func (h *harness) hubWorkloads(names []string, placement string, env map[string]string) ([]manifest.Workload, error) {
	vars := []string{fmt.Sprintf("ATOLL_BENCH: %q", h.runID)}
	for _, k := range slices.Sorted(maps.Keys(env)) {
		vars = append(vars, fmt.Sprintf("%s: %q", k, env[k]))
	}
	docs := make([]string, 0, len(names))
	for _, n := range names {
		docs = append(docs, fmt.Sprintf(`apiVersion: atoll.dev/v1
kind: Workload
metadata:
  name: %s
spec:
  runtime: exec
  exec:
    command: [sleep, "100000"]
    env: {%s}
  restart:
    policy: always
  placement: {%s}
`, n, strings.Join(vars, ", "), placement))
	}
	return manifest.Decode("bench-hub.yaml", []byte(strings.Join(docs, "---\n")))
}

// startHubAgent starts a hub and an agent (named h.node, with extra flags)
// joined to it at natsURL(hub), and waits until the hub shows the node
// connected.
func (h *harness) startHubAgent(ctx context.Context, what string, natsURL func(*hubProc) (string, error), extra ...string) (*hubProc, *agent, error) {
	hub, err := h.startHub(ctx)
	if err != nil {
		return nil, nil, err
	}
	url, err := natsURL(hub)
	if err != nil {
		return nil, nil, err
	}
	tok, err := hub.token(ctx)
	if err != nil {
		return nil, nil, err
	}
	a, err := h.startAgent(h.dataDir(what), append([]string{"--hub", url, "--token", tok, "--labels", "bench=" + h.runID}, extra...)...)
	if err != nil {
		return nil, nil, err
	}
	err = poll(ctx, 10*time.Millisecond, startTimeout, "node connected at the hub", aliveBoth(hub, a), func() (bool, error) {
		n, err := hub.node(ctx, h.node)
		return err == nil && n.State == api.NodeConnected, err
	})
	return hub, a, err
}

// startHubAgentBehindProxy is startHubAgent with the agent's link to the
// hub through a linkproxy, which the caller closes (when it is not nil).
func (h *harness) startHubAgentBehindProxy(ctx context.Context, what string, extra ...string) (*hubProc, *agent, *linkproxy.Proxy, error) {
	var px *linkproxy.Proxy
	hub, a, err := h.startHubAgent(ctx, what, func(hp *hubProc) (string, error) {
		var err error
		px, err = linkproxy.Start(hp.natsAdr)
		if err != nil {
			return "", err
		}
		return "nats://" + px.Addr(), nil
	}, extra...)
	return hub, a, px, err
}

func aliveBoth(hub *hubProc, a *agent) func() error {
	return func() error {
		if err := hub.alive(); err != nil {
			return err
		}
		if a.exited() {
			return fmt.Errorf("agent exited (%v)%s", a.err, a.logTail())
		}
		return nil
	}
}

// hubApplyResult is the apply → running figure.
type hubApplyResult struct {
	hubUp time.Duration   // hub process start → API answering
	call  []time.Duration // apply call
	proc  []time.Duration // apply call start → the process exists on the node
	api   []time.Duration // apply call start → the hub's API shows it running
	del   []time.Duration // delete call start → the process is gone
	// From the agent's own events (their times, same machine's clock):
	planStored []time.Duration // apply call start → the agent stored the plan
	started    []time.Duration // apply call start → the agent recorded the workload started (handle persisted)
	gets       int             // GET /v1/workloads/NAME calls while polling
	getTime    time.Duration   // their total duration
	scanMean   time.Duration   // one /proc scan
	warmProc   time.Duration   // the untimed first apply, for the record
	warmAPI    time.Duration
}

// measureHubApply applies, runs times (after one warm-up), a new workload
// placed on the agent's node through the hub's API and times it to the
// process existing on the node (/proc) and to the hub's API showing it
// running; then deletes it and waits for the process to go.
func (h *harness) measureHubApply(ctx context.Context, runs int) (hubApplyResult, error) {
	var r hubApplyResult
	hub, a, err := h.startHubAgent(ctx, "hub-apply", func(hp *hubProc) (string, error) { return hp.natsURL, nil })
	if err != nil {
		return r, err
	}
	r.hubUp = hub.up
	alive := aliveBoth(hub, a)
	w := &procWatch{parent: a.pid()}
	for i := -1; i < runs; i++ {
		name := h.name(fmt.Sprintf("apply-%02d", i+1))
		if i < 0 {
			name = h.name("apply-warm")
		}
		ws, err := h.hubWorkloads([]string{name}, "nodes: ["+h.node+"]", nil)
		if err != nil {
			return r, err
		}
		if err := w.prime(); err != nil {
			return r, err
		}
		kv := "ATOLL_WORKLOAD=" + name
		seq, err := lastEventSeq(ctx, a)
		if err != nil {
			return r, err
		}
		t0 := time.Now()
		if err := hub.apply(ctx, ws); err != nil {
			return r, err
		}
		call := time.Since(t0)

		// /proc is scanned every procPoll and the API polled every hubPoll,
		// each in its own goroutine, so that neither waits for the other.
		type found struct {
			pid int
			d   time.Duration
			err error
		}
		procCh := make(chan found, 1)
		pctx, stopScan := context.WithCancel(ctx)
		go func() {
			for polls := 1; ; polls++ {
				pid, err := w.find(kv, 0, polls%50 == 0)
				if err != nil || pid != 0 {
					procCh <- found{pid, time.Since(t0), err}
					return
				}
				if pctx.Err() != nil {
					procCh <- found{err: pctx.Err()}
					return
				}
				time.Sleep(procPoll)
			}
		}()
		var apiD time.Duration
		err = poll(ctx, hubPoll, startTimeout, "workload "+name+" running at the hub", alive, func() (bool, error) {
			g0 := time.Now()
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			wl, err := hub.api.Workload(cctx, name)
			cancel()
			r.gets++
			r.getTime += time.Since(g0)
			if err != nil {
				return false, err
			}
			for _, in := range wl.Instances {
				if in.Node == h.node && in.State == string(wire.StateRunning) {
					apiD = time.Since(t0)
					return true, nil
				}
			}
			return false, fmt.Errorf("instances: %+v", wl.Instances)
		})
		if err != nil {
			stopScan()
			<-procCh
			return r, err
		}
		var p found
		select {
		case p = <-procCh:
		case <-time.After(startTimeout):
			stopScan()
			p = <-procCh
		}
		stopScan()
		if p.err != nil || p.pid == 0 {
			return r, fmt.Errorf("apply %s: no process found in /proc although the hub shows it running: %v", name, p.err)
		}
		cctx, cancel := context.WithTimeout(ctx, callTimeout)
		evs, err := a.client.Events(cctx, seq)
		cancel()
		if err != nil {
			return r, fmt.Errorf("agent events: %w", err)
		}
		var stored, started time.Duration
		for _, e := range evs {
			switch {
			case e.Type == "plan-stored" && stored == 0:
				stored = e.Time.Sub(t0)
			case e.Type == "started" && e.Workload == name && started == 0:
				started = e.Time.Sub(t0)
			}
		}
		if stored == 0 || started == 0 {
			return r, fmt.Errorf("apply %s: the agent recorded no plan-stored or started event", name)
		}
		if i < 0 {
			r.warmProc, r.warmAPI = p.d, apiD
		} else {
			r.planStored = append(r.planStored, stored)
			r.started = append(r.started, started)
			r.call = append(r.call, call)
			r.proc = append(r.proc, p.d)
			r.api = append(r.api, apiD)
		}

		t1 := time.Now()
		cctx, cancel = context.WithTimeout(ctx, callTimeout)
		err = hub.api.DeleteWorkload(cctx, name)
		cancel()
		if err != nil {
			return r, fmt.Errorf("delete %s at the hub: %w", name, err)
		}
		if err := poll(ctx, procPoll, startTimeout, "process of "+name+" gone", alive, func() (bool, error) {
			return gone(p.pid), nil
		}); err != nil {
			return r, err
		}
		if i >= 0 {
			r.del = append(r.del, time.Since(t1))
		}
		// Start the next repetition from a node that has acknowledged
		// the deletion.
		if err := poll(ctx, nodePoll, startTimeout, "node applied the deletion", alive, func() (bool, error) {
			n, err := hub.node(ctx, h.node)
			return err == nil && n.AppliedRevision == n.PlanRevision && len(n.Instances) == 0, err
		}); err != nil {
			return r, err
		}
	}
	r.scanMean = w.scanTime / time.Duration(max(w.scans, 1))
	return r, h.teardown()
}

// linkResult is the idle-bytes and the reconnect figures.
type linkResult struct {
	// Idle: linkCount workloads running, nothing changing.
	idleWindow              time.Duration
	idleUp                  int64  // agent → hub payload bytes
	idleDown                int64  // hub → agent
	idleSegsIn, idleSegsOut uint64 // segments on the agent's TCP connection, each way
	idleChurn               bool   // the node reconnected or its plan changed during the window

	// Reconnect.
	cutToDisconnected time.Duration // cut → the hub shows the node disconnected
	changes           int           // apply calls made while cut
	applyWhileCut     time.Duration // all of them
	revisions         uint64        // plan revisions they made
	keptRunning       int           // of linkCount, still running (same PID) just before the restore
	reconnect         time.Duration // restore → the agent's new connection accepted
	connected         time.Duration // restore → the hub shows the node connected
	applied           time.Duration // restore → the hub shows appliedRevision == planRevision
	converged         time.Duration // restore → that, and every workload running with a new PID
	catchUpBytes      int64         // both ways, restore → converged
	envOK             int           // new processes carrying the last change's environment
}

// measureHubLink runs a hub and an agent joined through the counting proxy,
// with linkCount workloads. It measures the bytes of an idle window, then
// cuts the link, waits until the hub shows the node disconnected, applies
// linkCount*linkRounds changes, restores the link and times convergence.
func (h *harness) measureHubLink(ctx context.Context, idle time.Duration) (r linkResult, err error) {
	hub, a, px, err := h.startHubAgentBehindProxy(ctx, "hub-link")
	if px != nil {
		defer px.Close()
	}
	if err != nil {
		return r, err
	}
	alive := aliveBoth(hub, a)
	names := h.names("link", linkCount)
	gen := func(g int) ([]manifest.Workload, error) {
		return h.hubWorkloads(names, "nodes: ["+h.node+"]", map[string]string{"GEN": fmt.Sprint(g)})
	}
	ws, err := gen(0)
	if err != nil {
		return r, err
	}
	if err := hub.apply(ctx, ws); err != nil {
		return r, err
	}
	var view api.Node
	converged := func(exclude map[int]bool) func() (bool, error) {
		return func() (bool, error) {
			n, err := hub.node(ctx, h.node)
			if err != nil {
				return false, err
			}
			view = n
			if n.PlanRevision == 0 || n.AppliedRevision != n.PlanRevision || len(n.Instances) != linkCount {
				return false, fmt.Errorf("plan %d, applied %d, %d instances", n.PlanRevision, n.AppliedRevision, len(n.Instances))
			}
			for _, in := range n.Instances {
				if in.State != wire.StateRunning || in.PID == 0 || exclude[in.PID] {
					return false, fmt.Errorf("%s %s pid %d", in.Name, in.State, in.PID)
				}
			}
			return true, nil
		}
	}
	if err := poll(ctx, nodePoll, startTimeout, fmt.Sprintf("%d workloads running", linkCount), alive, converged(nil)); err != nil {
		return r, err
	}

	// Idle.
	if err := sleep(ctx, hubSettle); err != nil {
		return r, err
	}
	before, err := hub.node(ctx, h.node)
	if err != nil {
		return r, err
	}
	s0 := px.Stats()
	if err := sleep(ctx, idle); err != nil {
		return r, err
	}
	s1 := px.Stats()
	after, err := hub.node(ctx, h.node)
	if err != nil {
		return r, err
	}
	r.idleWindow = s1.At.Sub(s0.At)
	r.idleUp, r.idleDown = s1.Up-s0.Up, s1.Down-s0.Down
	r.idleSegsIn, r.idleSegsOut = s1.SegsIn-s0.SegsIn, s1.SegsOut-s0.SegsOut
	r.idleChurn = s1.Accepts != s0.Accepts || after.PlanRevision != before.PlanRevision || after.State != api.NodeConnected

	// Reconnect.
	old := map[int]bool{}
	for _, in := range view.Instances {
		old[in.PID] = true
	}
	t0 := time.Now()
	px.Cut()
	if err := poll(ctx, 100*time.Millisecond, wire.DisconnectedAfter+30*time.Second, "hub shows the node disconnected", alive, func() (bool, error) {
		n, err := hub.node(ctx, h.node)
		return err == nil && n.State == api.NodeDisconnected, err
	}); err != nil {
		return r, err
	}
	r.cutToDisconnected = time.Since(t0)
	t0 = time.Now()
	for g := 1; g <= linkRounds; g++ {
		ws, err := gen(g)
		if err != nil {
			return r, err
		}
		for _, w := range ws {
			if err := hub.apply(ctx, []manifest.Workload{w}); err != nil {
				return r, err
			}
			r.changes++
		}
	}
	r.applyWhileCut = time.Since(t0)
	cut, err := hub.node(ctx, h.node)
	if err != nil {
		return r, err
	}
	r.revisions = cut.PlanRevision - view.PlanRevision
	for pid := range old {
		if !gone(pid) {
			r.keptRunning++
		}
	}

	s2 := px.Stats()
	px.Restore()
	t0 = time.Now()
	done := converged(old)
	err = poll(ctx, nodePoll, convergeLimit, "convergence after the reconnect", alive, func() (bool, error) {
		ok, err := done()
		d := time.Since(t0)
		if r.connected == 0 && view.State == api.NodeConnected && view.LastSeen.After(t0) {
			r.connected = d
		}
		if r.applied == 0 && view.AppliedRevision == cut.PlanRevision && view.PlanRevision == cut.PlanRevision {
			r.applied = d
		}
		if ok {
			r.converged = d
		}
		return ok, err
	})
	if err != nil {
		return r, err
	}
	s3 := px.Stats()
	if s3.Accepts > s2.Accepts {
		r.reconnect = s3.LastAccept.Sub(t0)
	}
	r.catchUpBytes = s3.Up + s3.Down - s2.Up - s2.Down
	want := fmt.Sprintf("GEN=%d", linkRounds)
	for _, in := range view.Instances {
		if hasEnv(in.PID, want) && hasEnv(in.PID, h.marker()) {
			r.envOK++
		}
	}
	if r.envOK != linkCount {
		return r, fmt.Errorf("after the reconnect only %d of %d processes carry %s", r.envOK, linkCount, want)
	}
	return r, h.teardown()
}
