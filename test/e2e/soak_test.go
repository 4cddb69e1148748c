package e2e

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"atoll.dev/atoll/internal/atolltest"
)

// The kinds of fault the soak injects.
const (
	faultPartitionNet   = "partition (network disconnect)"
	faultPartitionProxy = "partition (proxy down)"
	faultHalfOpen       = "half-open connection"
	faultSatellite      = "satellite link"
	faultHubKill        = "hub killed and restarted"
	faultAgentKill      = "agent SIGKILL"
	faultReboot         = "node reboot"
	faultMidTransfer    = "link cut mid-transfer (large plan)"
)

var faultKinds = []string{faultPartitionNet, faultPartitionProxy, faultHalfOpen, faultSatellite,
	faultHubKill, faultAgentKill, faultReboot, faultMidTransfer}

// soakStats is what the soak measured, for its summary.
type soakStats struct {
	seed        int64
	planned     time.Duration
	began       time.Time
	faults      map[string]int
	changes     int // changes accepted at the hub
	overrides   int // local overrides made on nodes
	interrupted int
	// notConverged counts faults after which the fleet did not converge
	// within convergeTimeout.
	notConverged int
	lost         int
	duplicated   int
	nodeEvents   int
	converge     []time.Duration // after each heal
	final        time.Duration   // after the last heal
	finished     bool
	failures     []string
}

// TestSoak injects random faults from the suite's list for -soak, each
// followed by a heal and a convergence check, with changes at the hub and
// local overrides made during the faults, then runs the invariant checks
// and appends a summary to docs/reliability.md. The faults, their targets,
// durations and the changes follow -seed.
func TestSoak(t *testing.T) {
	if *soakFor <= 0 {
		t.Skip("the soak runs only with -soak=DURATION: go test ./test/e2e -run TestSoak -soak=30m [-seed=N] -timeout 0")
	}
	seed := *soakSeed
	if seed == 0 {
		seed = time.Now().UnixNano() % 1_000_000_000
	}
	t.Logf("soak: seed %d, %v (reproduce: go test ./test/e2e -run TestSoak -soak=%v -seed=%d -timeout 0 -v)", seed, *soakFor, *soakFor, seed)
	rng := rand.New(rand.NewPCG(uint64(seed), 0x617401))
	st := &soakStats{seed: seed, planned: *soakFor, began: time.Now(), faults: map[string]int{}}
	t.Cleanup(func() { writeSoakSummary(t, st) })

	c := newCluster(t, 3)
	flaky := workload{name: "flaky", selector: everyNode, command: []string{"busybox", "sh", "-c", "busybox sleep 40; exit 3"}}
	base := []workload{fleetSleeper("steady-a"), fleetSleeper("steady-b"), flaky, echoEnv("cfg", "v0")}
	c.apply(base...)
	for _, n := range c.nodes {
		n.waitRunning("steady-a", "steady-b", "cfg")
	}
	// steady-a and steady-b never change: only a reboot may restart them.
	keep := map[string]map[string]int{}
	snapshot := func(n *node) {
		p := n.pids()
		keep[n.name] = map[string]int{"steady-a": p["steady-a"], "steady-b": p["steady-b"]}
	}
	for _, n := range c.nodes {
		snapshot(n)
	}
	exp := expect{keep: keep, flapping: map[string]bool{"flaky": true}}

	version, bulkVersion := 0, 0
	churn := map[string]bool{}
	// change makes one change at the hub: cfg's environment always, and a
	// churn workload added or removed; big also rewrites twelve bulk
	// workloads of 4 KB of environment each (a plan of ~50 KB per node),
	// which stay in the plans afterwards.
	change := func(big bool) {
		version++
		if big {
			bulkVersion = version
		} else if names := sortedKeys(churn); len(names) > 0 && rng.IntN(2) == 0 {
			delete(churn, names[rng.IntN(len(names))])
		} else {
			churn[fmt.Sprintf("churn-%d", rng.IntN(4))] = true
		}
		ws := append([]workload(nil), base...)
		ws[3] = echoEnv("cfg", fmt.Sprintf("v%d", version))
		for _, name := range sortedKeys(churn) {
			ws = append(ws, fleetSleeper(name))
		}
		if bulkVersion > 0 {
			for i := range 12 {
				w := fleetSleeper(fmt.Sprintf("bulk-%02d", i))
				w.env = map[string]string{"PAD": strings.Repeat(fmt.Sprint(bulkVersion%10), 4000)}
				ws = append(ws, w)
			}
		}
		c.apply(ws...)
		st.changes++
	}
	override := func(n *node) {
		n.mustNodeCLI("set", "cfg", "--env", fmt.Sprintf("LOCAL=o%d", st.overrides))
		st.overrides++
		c.logf("%s: local override cfg LOCAL=o%d", n.name, st.overrides-1)
	}
	checkKept := func() {
		for _, n := range c.nodes {
			if err := samePIDs(n, keep[n.name]); err != nil {
				st.interrupted++
				st.failures = append(st.failures, err.Error())
				t.Errorf("interrupted: %v", err)
				snapshot(n)
			}
		}
	}
	// converge waits for the fleet to converge in a subtest, so that a
	// fleet that does not converge is recorded and the soak goes on.
	converge := func(label string) (time.Duration, bool) {
		begin := time.Now()
		var why error
		ok := t.Run(label, func(t *testing.T) {
			atolltest.WaitFor(t, convergeTimeout, func() error {
				why = nil
				for _, n := range c.nodes {
					if err := c.converged(n, exp); err != nil {
						why = err
						return err
					}
				}
				return nil
			})
		})
		d := time.Since(begin)
		if !ok {
			st.failures = append(st.failures, fmt.Sprintf("%s: not converged within %v: %v", label, convergeTimeout, why))
			c.logf("%s: NOT converged in %v: %v", label, d.Round(100*time.Millisecond), why)
			return d, false
		}
		st.converge = append(st.converge, d)
		c.logf("converged %v after the heal", d.Round(100*time.Millisecond))
		checkKept()
		return d, true
	}
	// healAll undoes every fault there may be.
	healAll := func() {
		for _, n := range c.nodes {
			if err := n.link.Clear(); err != nil {
				t.Fatal(err)
			}
			if _, err := c.docker("network", "connect", "--ip", n.ip, c.network, n.container); err == nil {
				c.logf("%s: network healed", n.name)
			}
		}
		c.mustDocker("start", c.hubName) // a no-op when it runs
		c.waitHubReady()
	}
	cut := func(n *node, kind string) (heal func()) {
		if kind == faultPartitionNet {
			n.cutNet()
			return n.healNet
		}
		n.link.Down()
		c.logf("%s: link down", n.name)
		return func() {
			if err := n.link.Up(); err != nil {
				t.Fatal(err)
			}
			c.logf("%s: link up", n.name)
		}
	}

	deadline := st.began.Add(*soakFor)
	for i := 1; time.Now().Before(deadline); i++ {
		kind := faultKinds[rng.IntN(len(faultKinds))]
		n := c.nodes[rng.IntN(len(c.nodes))]
		hold := time.Duration(2+rng.IntN(25)) * time.Second
		doChange, doOverride := rng.IntN(10) < 6, rng.IntN(10) < 2
		st.faults[kind]++
		c.logf("fault %d: %s on %s for %v", i, kind, n.name, hold)
		switch kind {
		case faultPartitionNet, faultPartitionProxy:
			heal := cut(n, kind)
			c.waitHubState(n, "disconnected", 5*nodeTimeout)
			if doChange {
				change(false)
			}
			if doOverride {
				override(n)
			}
			c.hold(hold, n.name+" cut off", func() error { return samePIDs(n, keep[n.name]) })
			heal()
		case faultHalfOpen:
			if err := n.link.HalfOpen(); err != nil {
				t.Fatal(err)
			}
			c.waitHubState(n, "disconnected", 5*nodeTimeout)
			if doChange {
				change(false)
			}
			c.hold(hold, n.name+" half-open", func() error { return samePIDs(n, keep[n.name]) })
			if err := n.link.Clear(); err != nil {
				t.Fatal(err)
			}
			c.logf("%s: link cleared", n.name)
		case faultSatellite:
			if err := n.link.Satellite(); err != nil {
				t.Fatal(err)
			}
			change(false)
			if doOverride {
				override(n)
			}
			d, ok := converge(fmt.Sprintf("fault-%03d-satellite", i))
			if err := n.link.Clear(); err != nil {
				t.Fatal(err)
			}
			if ok {
				c.logf("%s: converged over the satellite link in %v", n.name, d.Round(100*time.Millisecond))
				continue // converged already, under the fault
			}
			st.notConverged++
			c.logf("%s: link cleared", n.name)
		case faultHubKill:
			c.killHub()
			if doOverride {
				override(n)
			}
			c.hold(hold, "hub down", func() error { return samePIDs(n, keep[n.name]) })
			c.startHub()
			if doChange {
				change(false)
			}
		case faultAgentKill:
			if doChange {
				change(false)
			}
			n.kill9()
		case faultReboot:
			if doChange {
				change(false)
			}
			n.reboot()
			n.waitRunning("steady-a", "steady-b")
			snapshot(n)
		case faultMidTransfer:
			if err := n.link.Bandwidth(4); err != nil {
				t.Fatal(err)
			}
			change(true) // ~50 KB for each node's plan: ~12 s at 4 KB/s
			after := time.Duration(500+rng.IntN(4000)) * time.Millisecond
			c.hold(after, "plan in flight", func() error { return nil })
			heal := cut(n, faultPartitionProxy)
			c.hold(hold/4, n.name+" cut mid-transfer", func() error { return samePIDs(n, keep[n.name]) })
			if err := n.link.Clear(); err != nil {
				t.Fatal(err)
			}
			heal()
		}
		if _, ok := converge(fmt.Sprintf("fault-%03d", i)); !ok {
			st.notConverged++
			healAll()
			if _, ok := converge(fmt.Sprintf("fault-%03d-healed", i)); !ok {
				t.Fatalf("the fleet does not converge even with every fault healed")
			}
		}
	}

	c.logf("soak over after %v: final checks", time.Since(st.began).Round(time.Second))
	r := c.checkInvariants(exp)
	st.final = r.converged
	st.interrupted += r.interrupted
	st.lost, st.duplicated, st.nodeEvents = r.lost, r.duplicated, r.nodeEvents
	st.finished = true
}

// writeSoakSummary logs the soak's summary and appends it to
// docs/reliability.md, whether the soak passed or not.
func writeSoakSummary(t *testing.T, st *soakStats) {
	var b strings.Builder
	status := "passed"
	if t.Failed() {
		status = "FAILED"
	}
	if !st.finished && !t.Failed() {
		status = "stopped before its end"
	}
	fmt.Fprintf(&b, "\n### Soak %s, seed %d, %v: %s\n\n", st.began.UTC().Format("2006-01-02 15:04 UTC"), st.seed, st.planned, status)
	fmt.Fprintf(&b, "Ran %v. Reproduce: `go test ./test/e2e -run TestSoak -soak=%v -seed=%d -timeout 0 -v`.\n\n",
		time.Since(st.began).Round(time.Second), st.planned, st.seed)
	b.WriteString("| fault | injected |\n| --- | ---: |\n")
	total := 0
	kinds := sortedKeys(st.faults)
	sort.Strings(kinds)
	for _, k := range kinds {
		fmt.Fprintf(&b, "| %s | %d |\n", k, st.faults[k])
		total += st.faults[k]
	}
	fmt.Fprintf(&b, "| **all** | **%d** |\n\n", total)
	var worst, sum time.Duration
	for _, d := range st.converge {
		sum += d
		worst = max(worst, d)
	}
	mean := time.Duration(0)
	if len(st.converge) > 0 {
		mean = sum / time.Duration(len(st.converge))
	}
	measured := func(v int) string {
		if !st.finished {
			return fmt.Sprintf("%d (final check not reached)", v)
		}
		return fmt.Sprint(v)
	}
	b.WriteString("| measure | value |\n| --- | ---: |\n")
	fmt.Fprintf(&b, "| changes accepted at the hub during faults | %d |\n", st.changes)
	fmt.Fprintf(&b, "| local overrides made on nodes | %d |\n", st.overrides)
	fmt.Fprintf(&b, "| faults after which the fleet did not converge within %v (must be 0) | %d |\n", convergeTimeout, st.notConverged)
	fmt.Fprintf(&b, "| workloads interrupted by disconnection (must be 0) | %d |\n", st.interrupted)
	fmt.Fprintf(&b, "| node events lost (must be 0) | %s |\n", measured(st.lost))
	fmt.Fprintf(&b, "| node events stored twice at the hub (must be 0) | %s |\n", measured(st.duplicated))
	fmt.Fprintf(&b, "| node events compared at the end | %d |\n", st.nodeEvents)
	fmt.Fprintf(&b, "| convergence after a heal: mean / worst | %v / %v |\n", mean.Round(100*time.Millisecond), worst.Round(100*time.Millisecond))
	fmt.Fprintf(&b, "| convergence after the last heal | %v |\n", st.final.Round(100*time.Millisecond))
	for _, f := range st.failures {
		fmt.Fprintf(&b, "\n- %s", f)
	}
	t.Log(b.String())
	p := filepath.Join(repoRoot, "docs", "reliability.md")
	f, err := os.OpenFile(p, os.O_APPEND|os.O_WRONLY|os.O_CREATE, 0o644)
	if err != nil {
		t.Errorf("append the soak summary: %v", err)
		return
	}
	defer f.Close()
	if _, err := f.WriteString(b.String()); err != nil {
		t.Errorf("append the soak summary: %v", err)
	}
}
