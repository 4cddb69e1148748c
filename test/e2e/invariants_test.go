package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"atoll.dev/atoll/internal/atolltest"
)

// expect is what a scenario tells the invariant checks beyond what the hub
// knows.
type expect struct {
	// keep lists, per node, workloads that must still run with the PID
	// they had before the faults: nothing that happened to the node's link
	// or its agent may restart them.
	keep map[string]map[string]int
	// local adjusts the hub's desired set of a node for local overrides:
	// workload → true (added on the node) or false (deleted on the node).
	local map[string]map[string]bool
	// flapping names workloads that crash by design: running, starting or
	// backoff all count as "running" for them.
	flapping map[string]bool
	// env, per node and workload, is the environment a settled workload
	// must show in its log line (KEY=VALUE), checked with `node logs`.
	env map[string]map[string]string
}

// report is what the checks measured.
type report struct {
	converged   time.Duration // from the start of the checks to convergence
	interrupted int           // kept workloads whose PID changed
	lost        int           // node events the hub never got
	duplicated  int           // node events the hub stored more than once
	nodeEvents  int
}

// checkInvariants waits for the fleet to converge after the last heal and
// checks every invariant of the suite; violations fail the test.
//
//  1. The hub shows every node connected, with planRevision ==
//     storedRevision == appliedRevision, and the node agrees.
//  2. Every node runs exactly its desired set (the hub's, adjusted by the
//     scenario's local overrides), every workload running.
//  3. Workloads the scenario kept run with the same PID: a disconnection,
//     a dead hub or a killed agent interrupted nothing.
//  4. Every event in each node's store reached the hub, and the hub stored
//     none of them twice.
//  5. While any node was disconnected the hub showed it disconnected
//     (never anything else), and changed nothing it had reported about its
//     workloads (the monitor).
func (c *cluster) checkInvariants(exp expect) report {
	c.t.Helper()
	var r report
	begin := time.Now()
	c.logf("checking invariants: waiting for convergence")
	atolltest.WaitFor(c.t, convergeTimeout, func() error {
		for _, n := range c.nodes {
			if err := c.converged(n, exp); err != nil {
				return err
			}
		}
		return nil
	})
	r.converged = time.Since(begin)
	c.logf("converged in %v", r.converged.Round(100*time.Millisecond))

	for _, n := range c.nodes {
		st := n.mustStatus()
		for _, name := range sortedKeys(exp.keep[n.name]) {
			pid := exp.keep[n.name][name]
			if w := st[name]; w.PID != pid || w.State != "running" {
				r.interrupted++
				c.t.Errorf("%s: %s was interrupted: pid %d before, now %+v", n.name, name, pid, w)
			}
		}
		for _, name := range sortedKeys(exp.env[n.name]) {
			want := exp.env[n.name][name]
			atolltest.WaitFor(c.t, convergeTimeout, func() error {
				out, err := n.nodeCLI("logs", name, "--tail", "1")
				if err != nil {
					return err
				}
				if !strings.Contains(out, want) {
					return fmt.Errorf("%s: %s logs %q, want %q", n.name, name, out, want)
				}
				return nil
			})
		}
	}

	for _, n := range c.nodes {
		lost, dup, total := c.checkEvents(n)
		r.lost += lost
		r.duplicated += dup
		r.nodeEvents += total
	}
	for _, v := range c.mon.violations() {
		c.t.Errorf("monitor: %s", v)
	}
	c.logf("invariants: %d node events delivered, %d lost, %d duplicated; %d kept workloads interrupted",
		r.nodeEvents, r.lost, r.duplicated, r.interrupted)
	return r
}

// desired is the set of workloads the node must run: the hub's targets,
// adjusted by local overrides.
func (c *cluster) desired(n *node, ws []hubWorkloadView, exp expect) []string {
	set := map[string]bool{}
	for _, w := range ws {
		for _, in := range w.Instances {
			if in.Node == n.name {
				set[w.Name] = true
			}
		}
	}
	for name, add := range exp.local[n.name] {
		set[name] = add
	}
	var out []string
	for name, ok := range set {
		if ok {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// converged says why node n has not converged yet, or nil.
func (c *cluster) converged(n *node, exp expect) error {
	hn := c.hubNode(n.name)
	if hn.State != "connected" {
		return fmt.Errorf("hub shows %s %q", n.name, hn.State)
	}
	if hn.StoredRevision != hn.PlanRevision || hn.AppliedRevision != hn.PlanRevision {
		return fmt.Errorf("hub: %s plan %d stored %d applied %d", n.name, hn.PlanRevision, hn.StoredRevision, hn.AppliedRevision)
	}
	info, err := n.info()
	if err != nil {
		return err
	}
	if !info.HubConnected || info.StoredRevision != hn.PlanRevision || info.AppliedRevision != hn.PlanRevision {
		return fmt.Errorf("%s: node info %+v, hub plan revision %d", n.name, info, hn.PlanRevision)
	}
	ws, err := c.hubWorkloads()
	if err != nil {
		return err
	}
	want := c.desired(n, ws, exp)
	st, err := n.status()
	if err != nil {
		return err
	}
	got := sortedKeys(st)
	if !slices.Equal(got, want) {
		return fmt.Errorf("%s runs %v, want %v", n.name, got, want)
	}
	for _, name := range got {
		w := st[name]
		if w.State == "running" || exp.flapping[name] && (w.State == "backoff" || w.State == "starting" || w.State == "pending") {
			continue
		}
		return fmt.Errorf("%s: %s is %s (%s)", n.name, name, w.State, w.Reason)
	}
	// The hub's view of each instance has caught up too.
	for _, w := range ws {
		for _, in := range w.Instances {
			if in.Node == n.name && in.Revision != hn.PlanRevision {
				return fmt.Errorf("hub: %s on %s at revision %d, plan %d", w.Name, n.name, in.Revision, hn.PlanRevision)
			}
		}
	}
	return nil
}

// checkEvents compares the node's stored events with the hub's: each node
// event id must be at the hub exactly once. It waits for delivery, then
// counts what is missing and what is doubled.
func (c *cluster) checkEvents(n *node) (lost, dup, total int) {
	c.t.Helper()
	var nodeEvs, hubEvs []event
	var missing []string
	// A subtest, so that a delivery that never completes fails the test
	// but the checks go on to count what is missing and doubled.
	c.t.Run("events-"+n.name, func(t *testing.T) {
		atolltest.WaitFor(t, convergeTimeout, func() error {
			var err error
			if nodeEvs, err = n.events(); err != nil {
				return err
			}
			if hubEvs, err = c.hubEvents(n.name); err != nil {
				return err
			}
			at := map[string]bool{}
			for _, e := range hubEvs {
				at[e.ID] = true
			}
			missing = missing[:0]
			for _, e := range nodeEvs {
				if !at[e.ID] {
					missing = append(missing, fmt.Sprintf("%s (%s %s)", e.ID, e.Type, e.Workload))
				}
			}
			if len(missing) > 0 {
				return fmt.Errorf("%d of %d events of %s not at the hub: %s", len(missing), len(nodeEvs), n.name, strings.Join(missing, ", "))
			}
			return nil
		})
	})
	count := map[string]int{}
	for _, e := range hubEvs {
		count[e.ID]++
	}
	for _, id := range sortedKeys(count) {
		if count[id] > 1 {
			dup++
			c.t.Errorf("%s: the hub stored event %s %d times", n.name, id, count[id])
		}
	}
	return len(missing), dup, len(nodeEvs)
}

// monitor polls the hub's API all along a scenario and records what the
// hub must never show: a node state other than connected, disconnected or
// never-seen, and a change to what it reports of a workload on a node
// while that node is disconnected (nothing may be evicted, moved or
// marked failed because a node is silent).
type monitor struct {
	c      *cluster
	stopCh chan struct{}
	done   chan struct{}
	client *http.Client

	mu     sync.Mutex
	bad    []string                     // guarded by mu
	seen   map[string]map[string]int    // node → state → polls; guarded by mu
	frozen map[string]map[string]string // node → workload → state while disconnected; guarded by mu
}

func startMonitor(c *cluster) *monitor {
	m := &monitor{c: c, stopCh: make(chan struct{}), done: make(chan struct{}),
		client: c.httpClient(3 * time.Second),
		seen:   map[string]map[string]int{}, frozen: map[string]map[string]string{}}
	go m.run()
	return m
}

func (m *monitor) stop() {
	select {
	case <-m.stopCh:
	default:
		close(m.stopCh)
	}
	<-m.done
}

func (m *monitor) run() {
	defer close(m.done)
	tick := time.NewTicker(300 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-m.stopCh:
			return
		case <-tick.C:
		}
		m.poll()
	}
}

func (m *monitor) get(path string, v any) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.c.hubURL+path, nil)
	if err != nil {
		return err
	}
	resp, err := m.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, resp.Status)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}

func (m *monitor) poll() {
	var nodes []hubNodeView
	if err := m.get("/v1/nodes", &nodes); err != nil {
		return // the hub is down or restarting
	}
	var ws []hubWorkloadView
	if err := m.get("/v1/workloads", &ws); err != nil {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, n := range nodes {
		if m.seen[n.Name] == nil {
			m.seen[n.Name] = map[string]int{}
		}
		m.seen[n.Name][n.State]++
		switch n.State {
		case "connected", "disconnected", "never-seen":
		default:
			m.bad = append(m.bad, fmt.Sprintf("hub showed node %s %q", n.Name, n.State))
		}
	}
	// For each node disconnected in this answer, the states the hub shows
	// of its workloads must be those it showed when the node went silent.
	now := map[string]map[string]string{}
	for _, w := range ws {
		for _, in := range w.Instances {
			if in.NodeState != "disconnected" {
				continue
			}
			if now[in.Node] == nil {
				now[in.Node] = map[string]string{}
			}
			now[in.Node][w.Name] = in.State
			if in.State == "failed" && m.frozen[in.Node][w.Name] != "failed" {
				m.bad = append(m.bad, fmt.Sprintf("hub shows %s on disconnected %s failed", w.Name, in.Node))
			}
		}
	}
	for node, states := range now {
		before, ok := m.frozen[node]
		if !ok {
			continue
		}
		for name, s := range states {
			if b, ok := before[name]; ok && b != s {
				m.bad = append(m.bad, fmt.Sprintf("hub changed %s on disconnected %s from %s to %s", name, node, b, s))
			}
		}
	}
	for node := range m.frozen {
		if _, still := now[node]; !still {
			delete(m.frozen, node)
		}
	}
	for node, states := range now {
		if _, ok := m.frozen[node]; !ok {
			m.frozen[node] = states
		} else {
			for name, s := range states {
				if _, ok := m.frozen[node][name]; !ok {
					m.frozen[node][name] = s // a workload added meanwhile
				}
			}
		}
	}
}

func (m *monitor) violations() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]string(nil), m.bad...)
}

// sawState reports whether the monitor saw the hub show node in state.
func (m *monitor) sawState(node, state string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.seen[node][state] > 0
}
