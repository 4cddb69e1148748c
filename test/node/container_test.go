package node_test

import (
	"context"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/moby/moby/client"

	"atoll.dev/atoll/internal/agent/supervisor"
	"atoll.dev/atoll/internal/atolltest"
	"atoll.dev/atoll/internal/atolltest/testimage"
	"atoll.dev/atoll/internal/driver/container"
)

// containerNode is a node whose agent runs container workloads from a
// test image loaded for the test. Its containers are removed after its
// agents are killed, so none is restarted behind the cleanup's back.
func containerNode(t *testing.T) (*node, *client.Client, testimage.Image) {
	t.Helper()
	ctx := context.Background()
	engine, err := testimage.Connect(ctx)
	testimage.Require(t, err)
	t.Cleanup(func() { engine.Close() })
	im, err := testimage.Load(ctx, engine)
	if err != nil {
		t.Fatal(err)
	}
	var n *node
	t.Cleanup(func() {
		if n != nil {
			removeContainers(t, engine, n.dir)
		}
		if err := im.Remove(ctx, engine); err != nil {
			t.Errorf("cleanup: remove image %s: %v", im.Ref, err)
		}
	})
	n = newNode(t)
	return n, engine, im
}

// removeContainers removes every container of the agent on dataDir.
func removeContainers(t *testing.T, engine *client.Client, dataDir string) {
	ctx := context.Background()
	list, err := engine.ContainerList(ctx, client.ContainerListOptions{
		All: true, Filters: make(client.Filters).Add("label", container.LabelOwner+"="+dataDir),
	})
	if err != nil {
		t.Errorf("cleanup: list containers: %v", err)
		return
	}
	for _, c := range list.Items {
		if _, err := engine.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true}); err != nil {
			t.Errorf("cleanup: remove container %s: %v", c.ID, err)
		}
	}
}

// engineState is what the engine says of the workload's container.
type engineState struct {
	id, startedAt string
	pid, restarts int
	running       bool
}

func (n *node) container(t *testing.T, engine *client.Client, workload string) (engineState, error) {
	t.Helper()
	name := "atoll-" + n.name + "-" + workload
	res, err := engine.ContainerInspect(context.Background(), name, client.ContainerInspectOptions{})
	if err != nil {
		return engineState{}, err
	}
	c := res.Container
	return engineState{id: c.ID, startedAt: c.State.StartedAt, pid: c.State.Pid, restarts: c.RestartCount, running: c.State.Running}, nil
}

// TestNode_Container_AdoptedAfterSIGKILL (invariant 3 for containers): a
// container workload outlives an agent killed with SIGKILL and the next
// agent adopts it (same container, same start, no restart, its output not
// copied twice); when the container then crashes, the supervisor restarts
// it with backoff in a new container.
func TestNode_Container_AdoptedAfterSIGKILL(t *testing.T) {
	n, engine, im := containerNode(t)
	first := n.start()
	n.apply(n.writeFile(fmt.Sprintf(`apiVersion: atoll.dev/v1
kind: Workload
metadata:
  name: box
spec:
  runtime: container
  container:
    image: %s
    args: [sleep]
    env: {%s: %s}
  resources: {memory: 64Mi, cpu: 250m}
  restart:
    backoff: {initial: 200ms, max: 200ms}
`, im.Ref, tokenVar, n.token)), "workload/box created\n")

	before := n.waitFor([]string{"box"}, "running", func(s supervisor.Status) bool {
		return s.State == supervisor.StateRunning && s.PID > 0
	})["box"]
	c1, err := n.container(t, engine, "box")
	if err != nil || !c1.running || c1.pid != before.PID {
		t.Fatalf("container = %+v, %v; status %+v", c1, err, before)
	}
	if want := "memory 64Mi, cpu 250m enforced by the Docker engine"; before.Limits != want {
		t.Errorf("limits %q, want %q", before.Limits, want)
	}
	atolltest.WaitFor(t, waitTimeout, func() error {
		if l := n.logLines("box"); len(l) != 1 || l[0] != "ready" {
			return fmt.Errorf("box log = %q", l)
		}
		return nil
	})

	n.kill9(first)
	if c, err := n.container(t, engine, "box"); err != nil || !c.running || c.id != c1.id {
		t.Fatalf("container after agent SIGKILL = %+v, %v; want %s running", c, err, c1.id)
	}

	second := n.spawn()
	atolltest.WaitFor(t, readyTimeout, func() error {
		if second.exited() {
			t.Fatalf("second agent exited: %v\n%s", second.waitErr, second.output())
		}
		m, err := n.statuses()
		if err != nil {
			return err
		}
		if s := m["box"]; s.State != supervisor.StateRunning || s.PID != before.PID {
			return fmt.Errorf("box = %+v; want running as pid %d", s, before.PID)
		}
		return nil
	})
	c2, err := n.container(t, engine, "box")
	if err != nil || c2 != c1 {
		t.Fatalf("container after adoption = %+v, %v; want the same, unrestarted: %+v", c2, err, c1)
	}
	evs := n.events()
	for typ, want := range map[string]int{"started": 1, "adopted": 1, "not-recovered": 0, "exited": 0} {
		if got := countEvents(evs, "box", typ); got != want {
			t.Errorf("box has %d %q events; want %d (events %+v)", got, typ, want, evs)
		}
	}
	if st := n.waitRunning("box")["box"]; st.Restarts != before.Restarts {
		t.Errorf("restarts %d -> %d; adoption is no restart", before.Restarts, st.Restarts)
	}

	// A crash: the supervisor, not the engine, starts a new container.
	if _, err := engine.ContainerKill(context.Background(), c1.id, client.ContainerKillOptions{Signal: "KILL"}); err != nil {
		t.Fatal(err)
	}
	after := n.waitFor([]string{"box"}, "restarted", func(s supervisor.Status) bool {
		return s.State == supervisor.StateRunning && s.Restarts == before.Restarts+1 && s.PID > 0 && s.PID != before.PID
	})["box"]
	c3, err := n.container(t, engine, "box")
	if err != nil || !c3.running || c3.id == c1.id || c3.pid != after.PID || c3.restarts != 0 {
		t.Fatalf("container after crash = %+v, %v; want a new running one (old %s)", c3, err, c1.id)
	}
	evs = n.events()
	if got := countEvents(evs, "box", "exited"); got != 1 {
		t.Errorf("box has %d exited events, want 1 (events %+v)", got, evs)
	}
	if got := countEvents(evs, "box", "backoff"); got < 1 {
		t.Errorf("box has no backoff event (events %+v)", evs)
	}
	// One "ready" per container run: none lost, none copied twice.
	atolltest.WaitFor(t, waitTimeout, func() error {
		if l := n.logLines("box"); len(l) != 2 || l[0] != "ready" || l[1] != "ready" {
			return fmt.Errorf("box log = %q; want two ready lines", l)
		}
		return nil
	})
}

// TestNode_Container_NoEngineBlocks: without an engine, a container
// workload is blocked with the reason, and node info says which runtimes
// the node has and why container is not one of them.
func TestNode_Container_NoEngineBlocks(t *testing.T) {
	n := newNode(t, "--docker-host", "unix:///nonexistent/docker.sock")
	n.start()
	n.apply(n.writeFile(`apiVersion: atoll.dev/v1
kind: Workload
metadata:
  name: box
spec:
  runtime: container
  container:
    image: atoll-test/none:1
`), "workload/box created\n")
	st := n.waitFor([]string{"box"}, "blocked", func(s supervisor.Status) bool { return s.State == supervisor.StateBlocked })["box"]
	const want = "runtime container: no Docker engine at unix:///nonexistent/docker.sock: "
	if !strings.HasPrefix(st.Reason, want) || !strings.Contains(st.Reason, "no such file or directory") {
		t.Errorf("reason %q, want %q and the cause", st.Reason, want)
	}
	info, err := n.client.Node(apiCtx(t))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(info.Runtimes, []string{"exec", "wasm"}) || !strings.HasPrefix(info.UnavailableRuntimes["container"], "no Docker engine at ") {
		t.Errorf("runtimes %q, unavailable %q", info.Runtimes, info.UnavailableRuntimes)
	}
}

// TestNode_Container_RebootWithoutNetwork (invariant 2 for containers):
// after a "reboot" (agent killed, container gone), an agent with no
// network starts the container again from the image on the node.
func TestNode_Container_RebootWithoutNetwork(t *testing.T) {
	if out, err := exec.Command("unshare", "--net", "true").CombinedOutput(); err != nil {
		t.Skipf("cannot create a network namespace with `unshare --net`: %v %s", err, out)
	}
	n, engine, im := containerNode(t)
	first := n.start()
	n.apply(n.writeFile(fmt.Sprintf(`apiVersion: atoll.dev/v1
kind: Workload
metadata:
  name: box
spec:
  runtime: container
  container:
    image: %s
`, im.Ref)), "workload/box created\n")
	n.waitFor([]string{"box"}, "running", func(s supervisor.Status) bool { return s.State == supervisor.StateRunning && s.PID > 0 })
	c1, err := n.container(t, engine, "box")
	if err != nil {
		t.Fatal(err)
	}

	// The reboot: the agent dies, and the engine comes back without the container.
	n.kill9(first)
	removeContainers(t, engine, n.dir)

	n.start("unshare", "--net")
	after := n.waitFor([]string{"box"}, "running", func(s supervisor.Status) bool { return s.State == supervisor.StateRunning && s.PID > 0 })["box"]
	c2, err := n.container(t, engine, "box")
	if err != nil || !c2.running || c2.id == c1.id || c2.pid != after.PID {
		t.Fatalf("container after reboot = %+v, %v; want a new running one (old %s)", c2, err, c1.id)
	}
	evs := n.events()
	for typ, want := range map[string]int{"started": 2, "not-recovered": 1, "adopted": 0} {
		if got := countEvents(evs, "box", typ); got != want {
			t.Errorf("box has %d %q events; want %d (events %+v)", got, typ, want, evs)
		}
	}
}
