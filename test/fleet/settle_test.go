package fleet_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"atoll.dev/atoll/internal/wire"
)

// TestFleet_OverrideVsHubChangeSettled checks DESIGN invariant 7 across
// the real processes: a local `node set` override of an environment
// variable is in force until the hub changes the same variable; then with
// default priorities the hub wins, with --priority 200 the override does;
// each settlement is an event that reaches the hub and says who won, and
// the hub shows the override in force.
func TestFleet_OverrideVsHubChangeSettled(t *testing.T) {
	f := newFleet(t)
	f.startHub()
	a := f.addNode("a", "")
	web := func(level, mode string) []wl {
		return []wl{{name: "web", nodes: []string{a.name}, env: map[string]string{"LEVEL": level, "MODE": mode}}}
	}
	f.apply(web("info", "m0"), "workload/web created (1 node)")
	pid := a.waitRunning("web")["web"].PID
	f.waitSynced(f.begin, a)
	f.waitLevel(a, pid, "info")
	f.logf("web runs on %s with LEVEL=info from the hub (pid %d)", a.name, pid)

	// A local override, default priority (50).
	a.mustCLI("set", "web", "--env", "LEVEL=debug")
	pid = f.waitLevelChange(a, pid, "debug")
	f.logf("node set web --env LEVEL=debug: restarted as pid %d with LEVEL=debug", pid)
	f.waitOverride(a, "debug", 50)
	f.logf("hub shows the override env.LEVEL=debug (priority 50) on %s", a.name)

	// The hub changes the same variable: its priority, 100, wins.
	tHub := time.Now()
	f.apply(web("warn", "m0"), "workload/web configured (1 node)")
	pid = f.waitLevelChange(a, pid, "warn")
	f.logf("hub set LEVEL=warn: the process has LEVEL=warn (pid %d, %s)", pid, since(tHub))
	ev := f.waitSettled(a, 1)
	for _, want := range []string{"env.LEVEL", "web", "the hub's change wins", "priority 50 < hub 100"} {
		if !strings.Contains(ev.Message, want) {
			t.Errorf("settled event %q does not say %q", ev.Message, want)
		}
	}
	f.logf("settled event at the hub: %s", ev.Message)
	f.waitFor(0, func() error {
		hn, err := f.hubNode(a.name)
		if err != nil {
			return err
		}
		if len(hn.Overrides) != 0 {
			return fmt.Errorf("hub still shows overrides %+v after the hub's change won", hn.Overrides)
		}
		return nil
	})
	if r := f.mustCLI("describe", "node", a.name); !strings.Contains(r.stdout, "Local Overrides:  <none>") {
		t.Errorf("describe node after the hub won still shows overrides:\n%s", r.stdout)
	}

	// A local override of higher priority than the hub's.
	a.mustCLI("set", "web", "--env", "LEVEL=trace", "--priority", "200")
	pid = f.waitLevelChange(a, pid, "trace")
	f.logf("node set web --env LEVEL=trace --priority 200: pid %d has LEVEL=trace", pid)
	f.waitOverride(a, "trace", 200)

	tHub = time.Now()
	f.apply(web("error", "m0"), "workload/web configured (1 node)")
	ev = f.waitSettled(a, 2)
	for _, want := range []string{"env.LEVEL", "web", "the local override wins", "priority 200 > hub 100"} {
		if !strings.Contains(ev.Message, want) {
			t.Errorf("settled event %q does not say %q", ev.Message, want)
		}
	}
	f.logf("hub set LEVEL=error; settled event at the hub (%s): %s", since(tHub), ev.Message)
	f.waitSynced(tHub, a)
	if v, err := f.procEnv(pid, "web", "LEVEL"); err != nil || v != "trace" {
		t.Errorf("after the hub's losing change: pid %d LEVEL=%q (%v); want the same process with LEVEL=trace", pid, v, err)
	}
	if s := a.statusJSON()["web"]; s.PID != pid || !running(s) {
		t.Errorf("node status after the hub's losing change: %+v; want web still running as pid %d", s, pid)
	}
	// The override stays in force, now based on the hub's new value; the
	// hub shows it.
	o := f.waitOverride(a, "trace", 200)
	if string(o.Base) != `"error"` {
		t.Errorf("override in force after winning has base %s; want the hub's new value \"error\"", o.Base)
	}
	r := f.mustCLI("describe", "node", a.name)
	if !containsRow(r.stdout, "web", "env.LEVEL", "200") || !strings.Contains(r.stdout, "trace") {
		t.Errorf("describe node does not show the override env.LEVEL=trace, priority 200, in force:\n%s", r.stdout)
	}
	f.logf("describe node %s shows the override in force", a.name)

	// Equal priorities: the later change wins, by hybrid logical clock. A
	// conflict needs a partition: connected, the node's next local change
	// would be based on the hub's latest value.
	tCut := a.cut()
	f.apply(web("error", "hub-1"), "workload/web configured (1 node)")
	a.mustCLI("set", "web", "--env", "MODE=local-1", "--priority", "100")
	pid = f.waitEnvChange(a, pid, "MODE", "local-1")
	f.logf("cut; hub set MODE=hub-1, then node set MODE=local-1 --priority 100 (pid %d)", pid)
	a.proxy.Restore()
	ev = f.waitSettled(a, 3)
	for _, want := range []string{"env.MODE", "the local override wins", "equal priority 100, local change later"} {
		if !strings.Contains(ev.Message, want) {
			t.Errorf("settled event %q does not say %q", ev.Message, want)
		}
	}
	f.waitSynced(tCut, a)
	if v, err := f.procEnv(pid, "web", "MODE"); err != nil || v != "local-1" {
		t.Errorf("after the earlier hub change lost: pid %d MODE=%q (%v); want the same process with MODE=local-1", pid, v, err)
	}
	f.logf("restored: the later local change won (%s): %s", since(tCut), ev.Message)

	tCut = a.cut()
	a.mustCLI("set", "web", "--env", "MODE=local-2", "--priority", "100")
	pid = f.waitEnvChange(a, pid, "MODE", "local-2")
	f.apply(web("error", "hub-2"), "workload/web configured (1 node)")
	f.logf("cut; node set MODE=local-2 --priority 100 (pid %d), then hub set MODE=hub-2", pid)
	a.proxy.Restore()
	ev = f.waitSettled(a, 4)
	for _, want := range []string{"env.MODE", "the hub's change wins", "equal priority 100, hub change later"} {
		if !strings.Contains(ev.Message, want) {
			t.Errorf("settled event %q does not say %q", ev.Message, want)
		}
	}
	pid = f.waitEnvChange(a, pid, "MODE", "hub-2")
	f.waitSynced(tCut, a)
	if v, _ := f.procEnv(pid, "web", "LEVEL"); v != "trace" {
		t.Errorf("LEVEL=%q after the MODE conflict; want the priority-200 override trace still in force", v)
	}
	f.logf("restored: the later hub change won (%s): %s", since(tCut), ev.Message)
}

// levelOf reads LEVEL from a live process of web.
func (f *fleet) levelOf(pid int) (string, error) { return f.procEnv(pid, "web", "LEVEL") }

// waitLevel waits until pid (web on n) has LEVEL=want in its environment.
func (f *fleet) waitLevel(n *node, pid int, want string) {
	f.t.Helper()
	f.waitFor(0, func() error {
		v, err := f.levelOf(pid)
		if err != nil || v != want {
			return fmt.Errorf("web on %s, pid %d: LEVEL=%q (%v); want %q", n.name, pid, v, err, want)
		}
		return nil
	})
}

// waitLevelChange waits until web on n runs as a process other than old,
// with LEVEL=want, and returns its pid.
func (f *fleet) waitLevelChange(n *node, old int, want string) int {
	f.t.Helper()
	return f.waitEnvChange(n, old, "LEVEL", want)
}

// waitEnvChange waits until web on n runs as a process other than old,
// with key=want in its environment, and returns its pid.
func (f *fleet) waitEnvChange(n *node, old int, key, want string) int {
	f.t.Helper()
	var pid int
	f.waitFor(0, func() error {
		st, err := n.statuses()
		if err != nil {
			return err
		}
		s := st["web"]
		if !running(s) || s.PID == old {
			return fmt.Errorf("web on %s not restarted yet: %+v", n.name, s)
		}
		if v, err := f.procEnv(s.PID, "web", key); err != nil || v != want {
			return fmt.Errorf("web on %s, pid %d: %s=%q (%v); want %q", n.name, s.PID, key, v, err, want)
		}
		pid = s.PID
		return nil
	})
	return pid
}

// waitOverride waits until the hub shows n's override of env.LEVEL with
// value and priority, and returns it.
func (f *fleet) waitOverride(n *node, value string, priority int) wire.Override {
	f.t.Helper()
	var got wire.Override
	f.waitFor(0, func() error {
		hn, err := f.hubNode(n.name)
		if err != nil {
			return err
		}
		if len(hn.Overrides) != 1 {
			return fmt.Errorf("hub shows overrides %+v on %s; want one", hn.Overrides, n.name)
		}
		o := hn.Overrides[0]
		if o.Workload != "web" || o.Path != "env.LEVEL" || string(o.Value) != jsonText(value) || o.Priority != priority {
			return fmt.Errorf("hub shows override %+v; want web env.LEVEL=%s priority %d", o, value, priority)
		}
		got = o
		return nil
	})
	return got
}

// waitSettled waits until the hub has the nth settled event of n (through
// `atoll events --node N -o json`) and returns it.
func (f *fleet) waitSettled(n *node, nth int) wire.Event {
	f.t.Helper()
	var got wire.Event
	f.waitFor(0, func() error {
		var settled []wire.Event
		for _, e := range decode[[]wire.Event](f.t, f.mustCLI("events", "--node", n.name, "-o", "json")) {
			if e.Type == "settled" {
				settled = append(settled, e)
			}
		}
		if len(settled) > nth {
			f.t.Fatalf("the hub has %d settled events for %s; want %d:%s", len(settled), n.name, nth, briefEvents(settled))
		}
		if len(settled) < nth {
			return fmt.Errorf("the hub has %d settled events for %s; want %d", len(settled), n.name, nth)
		}
		got = settled[nth-1]
		if got.Node != n.name || got.Workload != "web" {
			f.t.Fatalf("settled event %+v; want node %s, workload web", got, n.name)
		}
		return nil
	})
	return got
}

// TestFleet_LaterLocalChangeWinsOverEarlierHubChangeOfSameField checks the
// "later stamp wins" rule of DESIGN invariant 7 per field: during a
// partition the hub changes LEVEL, then the node changes LEVEL locally
// (equal priority, later), then the hub changes an unrelated variable. The
// hub's change to LEVEL is older than the node's, so the node's wins (the
// plan dates each variable by its own change: wire.PlanWorkload.FieldStamps).
func TestFleet_LaterLocalChangeWinsOverEarlierHubChangeOfSameField(t *testing.T) {
	f := newFleet(t)
	f.startHub()
	a := f.addNode("a", "")
	web := func(level, mode string) []wl {
		return []wl{{name: "web", nodes: []string{a.name}, env: map[string]string{"LEVEL": level, "MODE": mode}}}
	}
	f.apply(web("info", "m0"), "workload/web created (1 node)")
	pid := a.waitRunning("web")["web"].PID
	f.waitSynced(f.begin, a)

	tCut := a.cut()
	f.apply(web("hub-level", "m0"), "workload/web configured (1 node)")
	a.mustCLI("set", "web", "--env", "LEVEL=local-level", "--priority", "100")
	pid = f.waitEnvChange(a, pid, "LEVEL", "local-level")
	f.apply(web("hub-level", "m1"), "workload/web configured (1 node)")
	f.logf("cut; hub set LEVEL=hub-level, node set LEVEL=local-level --priority 100, hub set MODE=m1")
	a.proxy.Restore()
	ev := f.waitSettled(a, 1)
	f.waitSynced(tCut, a)
	// The hub's change of MODE is no conflict: it applies either way.
	pid = f.waitEnvChange(a, pid, "MODE", "m1")
	f.logf("restored; settled: %s", ev.Message)
	if v, _ := f.procEnv(pid, "web", "LEVEL"); v != "local-level" {
		t.Errorf("web runs with LEVEL=%q; want the later change, local-level", v)
	}
	if !strings.Contains(ev.Message, "the local override wins") {
		t.Errorf("settled event %q: the hub's change of LEVEL (before the local one) won, because the hub stamps the whole workload, "+
			"and its later change of MODE counted as a later change of LEVEL", ev.Message)
	}
}
