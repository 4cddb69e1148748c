package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"atoll.dev/atoll/internal/atolltest"
)

// everyNode is the selector every node of a cluster matches.
var everyNode = map[string]string{"fleet": "e2e"}

// fleetSleeper is a sleeper on every node.
func fleetSleeper(name string) workload {
	w := sleeper(name)
	w.selector = everyNode
	return w
}

// echoEnv prints LEVEL once, then sleeps: its last log line shows the
// environment the node settled on.
func echoEnv(name, level string) workload {
	return workload{name: name, selector: everyNode, env: map[string]string{"LEVEL": level},
		command: []string{"busybox", "sh", "-c", "echo LEVEL=$LEVEL; exec busybox sleep 1000000"}}
}

// allPIDs snapshots the PIDs of every running workload on every node.
func (c *cluster) allPIDs() map[string]map[string]int {
	c.t.Helper()
	out := map[string]map[string]int{}
	for _, n := range c.nodes {
		out[n.name] = n.pids()
	}
	return out
}

// hold keeps a fault in place for d, checking cond all along: the
// assertions that must hold while the fault lasts.
func (c *cluster) hold(d time.Duration, what string, cond func() error) {
	c.t.Helper()
	end := time.Now().Add(d)
	tick := time.NewTicker(100 * time.Millisecond) // paces the checks
	defer tick.Stop()
	checks := 0
	for time.Now().Before(end) {
		if err := cond(); err != nil {
			c.t.Fatalf("while %s: %v", what, err)
		}
		checks++
		<-tick.C
	}
	c.logf("held %v (%s), checked %d times", d, what, checks)
}

// samePIDs says which of want's workloads no longer run with their PID.
func samePIDs(n *node, want map[string]int) error {
	st, err := n.status()
	if err != nil {
		return err
	}
	for name, pid := range want {
		if w := st[name]; w.PID != pid || w.State != "running" {
			return fmt.Errorf("%s: %s was pid %d, now %+v", n.name, name, pid, w)
		}
	}
	return nil
}

// TestPartition_LongAutonomy cuts one node off for a long time (many node
// timeouts): the hub shows it disconnected, never failed; its workloads
// keep their PIDs; a workload that crashes meanwhile is restarted by the
// node alone; after the heal nothing restarts and every event arrives.
func TestPartition_LongAutonomy(t *testing.T) {
	c := newCluster(t, 3)
	c.apply(fleetSleeper("steady"), fleetSleeper("crashy"))
	for _, n := range c.nodes {
		n.waitRunning("steady", "crashy")
	}
	keep := c.allPIDs()
	n2 := c.nodes[1]

	n2.cutNet()
	c.waitHubState(n2, "disconnected", 5*nodeTimeout)
	old := n2.killWorkload("crashy")
	var restarted wlStatus
	atolltest.WaitFor(t, convergeTimeout, func() error {
		st, err := n2.status()
		if err != nil {
			return err
		}
		restarted = st["crashy"]
		if restarted.State != "running" || restarted.PID == old || restarted.Restarts != 1 {
			return fmt.Errorf("crashy is %+v", restarted)
		}
		return nil
	})
	c.logf("node-2: crashy restarted locally as pid %d (restarts %d)", restarted.PID, restarted.Restarts)
	keep[n2.name]["crashy"] = restarted.PID
	c.hold(20*time.Second, "node-2 is cut off", func() error {
		if s := c.hubNode(n2.name).State; s != "disconnected" {
			return fmt.Errorf("hub shows node-2 %q", s)
		}
		return samePIDs(n2, keep[n2.name])
	})
	// The node tells its operator it is cut off: hubConnected comes from
	// the last heartbeat round, not from the socket (which a silent
	// partition leaves open for a minute).
	if info, err := n2.info(); err != nil || info.HubConnected {
		t.Errorf("node-2: node info after 20s cut off: %+v, %v; want hubConnected false", info, err)
	}
	n2.healNet()
	c.checkInvariants(expect{keep: keep})
	if !c.mon.sawState(n2.name, "disconnected") {
		t.Error("the monitor never saw node-2 disconnected")
	}
}

// TestPartition_QueuedChangesReachNode changes the fleet while a node is
// cut off (its proxy down): a new workload, a changed one, a deleted one
// and a restart command with an idempotency key. The node keeps running
// its old plan untouched until it returns, then gets every change once.
func TestPartition_QueuedChangesReachNode(t *testing.T) {
	c := newCluster(t, 3)
	c.apply(fleetSleeper("stay"), fleetSleeper("change"), fleetSleeper("drop"), fleetSleeper("bounce"))
	for _, n := range c.nodes {
		n.waitRunning("stay", "change", "drop", "bounce")
	}
	keep := c.allPIDs()
	n3 := c.nodes[2]
	before := c.hubNode(n3.name).PlanRevision

	n3.link.Down()
	c.logf("node-3: link down (proxy stopped)")
	c.waitHubState(n3, "disconnected", 5*nodeTimeout)

	changed := fleetSleeper("change")
	changed.env = map[string]string{"VERSION": "2"}
	c.apply(fleetSleeper("stay"), changed, fleetSleeper("added"))
	c.mustCLI("delete", "workload", "drop")
	c.logf("deleted workload drop")
	out := c.mustCLI("restart", "workload", "bounce", "--node", n3.name, "--idempotency-key", "bounce-1", "--ttl", "10m")
	again := c.mustCLI("restart", "workload", "bounce", "--node", n3.name, "--idempotency-key", "bounce-1", "--ttl", "10m")
	c.logf("restart queued: %s; again: %s", strings.TrimSpace(out), strings.TrimSpace(again))
	if !strings.Contains(again, "already queued") {
		t.Errorf("the same idempotency key queued a second command: %q", again)
	}
	hn := c.hubNode(n3.name)
	if hn.PlanRevision <= before || hn.AppliedRevision >= hn.PlanRevision {
		t.Errorf("hub: node-3 plan %d (was %d), applied %d: want a newer plan waiting", hn.PlanRevision, before, hn.AppliedRevision)
	}
	c.hold(5*time.Second, "node-3 is cut off with changes queued", func() error {
		return samePIDs(n3, keep[n3.name])
	})

	if err := n3.link.Up(); err != nil {
		t.Fatal(err)
	}
	c.logf("node-3: link up")
	// What changed restarts; what did not keeps its PID.
	for _, n := range c.nodes {
		delete(keep[n.name], "change")
		delete(keep[n.name], "drop")
	}
	bouncePID := keep[n3.name]["bounce"] // from before the partition
	delete(keep[n3.name], "bounce")
	c.checkInvariants(expect{keep: keep})
	atolltest.WaitFor(t, convergeTimeout, func() error {
		st, err := n3.status()
		if err != nil {
			return err
		}
		if st["bounce"].PID == bouncePID {
			return fmt.Errorf("bounce not restarted yet (pid %d)", bouncePID)
		}
		return nil
	})
	evs, err := n3.events()
	if err != nil {
		t.Fatal(err)
	}
	restarts := 0
	for _, e := range evs {
		if e.Workload == "bounce" && e.Type == "restart-requested" {
			restarts++
		}
	}
	if restarts != 1 {
		t.Errorf("node-3 carried out the queued restart %d times, want once", restarts)
	}
	c.logf("node-3: queued restart carried out once")
}

// TestOverride_SettledByTheRules makes a local change on each node while
// all three are cut off, and changes the same field at the hub: after the
// heal every node runs what the settlement rules say (architecture.md,
// "Local overrides and settlement"), and the settlements are events that
// reach the hub.
//
//   - node-1: local override at the default priority 50 → the hub's 100 wins.
//   - node-2: local override at priority 200 → the local value wins.
//   - node-3: equal priority (100), the local change made after the hub's
//     → the later hybrid-logical-clock stamp wins: local.
func TestOverride_SettledByTheRules(t *testing.T) {
	c := newCluster(t, 3)
	c.apply(echoEnv("cfg", "base"), fleetSleeper("steady"))
	for _, n := range c.nodes {
		n.waitRunning("cfg", "steady")
	}
	keep := c.allPIDs()
	for _, n := range c.nodes {
		delete(keep[n.name], "cfg") // restarted with its new environment
	}
	n1, n2, n3 := c.nodes[0], c.nodes[1], c.nodes[2]
	for _, n := range c.nodes {
		n.link.Down()
	}
	c.logf("all links down")
	for _, n := range c.nodes {
		c.waitHubState(n, "disconnected", 5*nodeTimeout)
	}
	n1.mustNodeCLI("set", "cfg", "--env", "LEVEL=local-50")
	c.logf("node-1: local override LEVEL=local-50 (priority 50)")
	n2.mustNodeCLI("set", "cfg", "--env", "LEVEL=local-200", "--priority", "200")
	c.logf("node-2: local override LEVEL=local-200 (priority 200)")
	c.apply(echoEnv("cfg", "hub"))
	n3.mustNodeCLI("set", "cfg", "--env", "LEVEL=local-100-later", "--priority", "100")
	c.logf("node-3: local override LEVEL=local-100-later (priority 100, after the hub's change)")
	for _, n := range c.nodes {
		if err := n.link.Up(); err != nil {
			t.Fatal(err)
		}
	}
	c.logf("all links up")
	c.checkInvariants(expect{keep: keep, env: map[string]map[string]string{
		n1.name: {"cfg": "LEVEL=hub"},
		n2.name: {"cfg": "LEVEL=local-200"},
		n3.name: {"cfg": "LEVEL=local-100-later"},
	}})
	for _, n := range c.nodes {
		evs, err := c.hubEvents(n.name)
		if err != nil {
			t.Fatal(err)
		}
		settled := ""
		for _, e := range evs {
			if e.Type == "settled" && e.Workload == "cfg" {
				settled = e.Message
			}
		}
		if settled == "" {
			t.Errorf("%s: no settled event for cfg at the hub", n.name)
		}
		c.logf("%s: settled: %s", n.name, settled)
	}
}

// TestReboot_WhilePartitioned reboots a node that cannot reach the hub:
// its workloads come back from its store without any hub.
func TestReboot_WhilePartitioned(t *testing.T) {
	c := newCluster(t, 3)
	c.apply(fleetSleeper("app"), fleetSleeper("db"))
	for _, n := range c.nodes {
		n.waitRunning("app", "db")
	}
	keep := c.allPIDs()
	n1 := c.nodes[0]
	n1.cutNet()
	c.waitHubState(n1, "disconnected", 5*nodeTimeout)
	n1.reboot()
	st := n1.waitRunning("app", "db")
	for name, pid := range keep[n1.name] {
		c.logf("node-1: %s back from the store as pid %d (was %d)", name, st[name].PID, pid)
	}
	info, err := n1.info()
	if err != nil {
		t.Fatal(err)
	}
	if info.HubConnected || info.AppliedRevision == 0 {
		t.Errorf("node-1 after reboot without hub: %+v, want the stored plan applied and no hub", info)
	}
	delete(keep, n1.name) // rebooted: everything on it started again
	c.hold(3*time.Second, "node-1 is rebooted and cut off", func() error {
		if s := c.hubNode(n1.name).State; s != "disconnected" {
			return fmt.Errorf("hub shows node-1 %q", s)
		}
		return nil
	})
	n1.healNet()
	keep[n1.name] = st2pids(st)
	c.checkInvariants(expect{keep: keep})
}

func st2pids(st map[string]wlStatus) map[string]int {
	out := map[string]int{}
	for name, w := range st {
		if w.State == "running" {
			out[name] = w.PID
		}
	}
	return out
}

// TestHubDown_NodeRebootsAndAgentDies kills the hub, then reboots node-2
// and SIGKILLs node-3's agent while it is down: node-2's workloads come
// back from its store, node-3's agent adopts its workloads (same PIDs), and
// nothing elsewhere moves. When the hub returns everything converges.
func TestHubDown_NodeRebootsAndAgentDies(t *testing.T) {
	c := newCluster(t, 3)
	c.apply(fleetSleeper("app"), fleetSleeper("db"))
	for _, n := range c.nodes {
		n.waitRunning("app", "db")
	}
	keep := c.allPIDs()
	n2, n3 := c.nodes[1], c.nodes[2]
	c.killHub()
	n2.reboot()
	st := n2.waitRunning("app", "db")
	c.logf("node-2: app and db back from the store with no hub (pids %d, %d)", st["app"].PID, st["db"].PID)
	keep[n2.name] = st2pids(st)
	n3.kill9()
	if err := samePIDs(n3, keep[n3.name]); err != nil {
		t.Errorf("after SIGKILL of its agent: %v", err)
	}
	c.logf("node-3: agent adopted app and db (same pids)")
	c.hold(3*time.Second, "the hub is down", func() error {
		for _, n := range c.nodes {
			if err := samePIDs(n, keep[n.name]); err != nil {
				return err
			}
		}
		return nil
	})
	c.startHub()
	c.checkInvariants(expect{keep: keep})
}

// TestSatelliteLink puts node-3 on a satellite link (200 ms each way,
// 64 kbit/s, ~5 % loss; see link.Satellite) and changes the fleet: the
// change still converges everywhere, node-3 within satelliteBound.
func TestSatelliteLink(t *testing.T) {
	const satelliteBound = 60 * time.Second
	c := newCluster(t, 3)
	c.apply(fleetSleeper("app"), echoEnv("cfg", "v1"))
	for _, n := range c.nodes {
		n.waitRunning("app", "cfg")
	}
	keep := c.allPIDs()
	n3 := c.nodes[2]
	if err := n3.link.Satellite(); err != nil {
		t.Fatal(err)
	}
	c.logf("node-3: satellite link (200ms±50ms each way, 64 kbit/s, ~5%% loss)")
	// Twenty workloads and a changed one: a plan of some kilobytes.
	ws := []workload{fleetSleeper("app"), echoEnv("cfg", "v2")}
	for i := range 20 {
		w := fleetSleeper(fmt.Sprintf("extra-%02d", i))
		w.env = map[string]string{"PAD": strings.Repeat("x", 200)}
		ws = append(ws, w)
	}
	start := time.Now()
	c.apply(ws...)
	per := map[string]time.Duration{}
	atolltest.WaitFor(t, 3*satelliteBound, func() error {
		for _, n := range c.nodes {
			if _, done := per[n.name]; done {
				continue
			}
			if err := c.converged(n, expect{}); err != nil {
				return err
			}
			per[n.name] = time.Since(start)
			c.logf("%s converged %v after the apply", n.name, per[n.name].Round(100*time.Millisecond))
		}
		return nil
	})
	if per[n3.name] > satelliteBound {
		t.Errorf("node-3 on the satellite link converged in %v, bound %v", per[n3.name], satelliteBound)
	}
	for _, n := range c.nodes {
		delete(keep[n.name], "cfg")
	}
	c.checkInvariants(expect{keep: keep, env: map[string]map[string]string{n3.name: {"cfg": "LEVEL=v2"}}})
	if err := n3.link.Clear(); err != nil {
		t.Fatal(err)
	}
}

// TestHalfOpen_AgentRedials leaves node-1's connection half-open (open at
// both ends, carrying nothing, no FIN or RST): the hub shows the node
// disconnected within its timeout, the node's workloads stay, and the
// agent notices the dead connection and redials by itself, with no heal,
// within halfOpenBound (three heartbeat rounds that time out make it
// redial; before that fix it took the NATS ping timeout, ~80 s).
func TestHalfOpen_AgentRedials(t *testing.T) {
	const halfOpenBound = 45 * time.Second
	c := newCluster(t, 3)
	c.apply(fleetSleeper("app"))
	for _, n := range c.nodes {
		n.waitRunning("app")
	}
	keep := c.allPIDs()
	n1 := c.nodes[0]
	if err := n1.link.HalfOpen(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	c.logf("node-1: connection half-open")
	c.waitHubState(n1, "disconnected", 5*nodeTimeout)
	c.apply(fleetSleeper("app"), fleetSleeper("later"))
	atolltest.WaitFor(t, halfOpenBound, func() error {
		if err := samePIDs(n1, keep[n1.name]); err != nil {
			t.Fatal(err)
		}
		if s := c.hubNode(n1.name).State; s != "connected" {
			return fmt.Errorf("hub shows node-1 %q", s)
		}
		return nil
	})
	c.logf("node-1: agent redialled by itself %v after the connection went half-open", time.Since(start).Round(time.Second))
	c.checkInvariants(expect{keep: keep})
	if err := n1.link.Clear(); err != nil {
		t.Fatal(err)
	}
}
