package agent_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"atoll.dev/atoll/internal/agent"
	"atoll.dev/atoll/internal/agent/localapi"
	"atoll.dev/atoll/internal/atolltest"
	"atoll.dev/atoll/internal/client"
	"atoll.dev/atoll/internal/hlc"
	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/natsembed"
	"atoll.dev/atoll/internal/wire"
)

const wait = 20 * time.Second

// fakeHub answers the agent's side of the wire protocol from a test-set
// plan and command list, and records what the agent sent.
type fakeHub struct {
	t  *testing.T
	nc *nats.Conn
	js jetstream.JetStream

	mu         sync.Mutex
	plan       *wire.Plan
	commands   []wire.Command
	heartbeats []wire.Heartbeat
	statuses   []wire.Status
}

func newFakeHub(t *testing.T) (*fakeHub, string) {
	t.Helper()
	srv, err := natsembed.Start(natsembed.Config{DataDir: t.TempDir(), Listen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Shutdown)
	nc, err := nats.Connect(srv.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	_, err = js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name: wire.EventStream, Subjects: []string{wire.SubjectEvents + ">"}, Duplicates: 2 * time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	h := &fakeHub{t: t, nc: nc, js: js}
	h.handle(wire.SubjectHello+"*", func(data []byte) any {
		return wire.HelloReply{ProtocolVersion: wire.ProtocolVersion, PlanRevision: h.revision()}
	})
	h.handle(wire.SubjectHeartbeat+"*", func(data []byte) any {
		var hb wire.Heartbeat
		_ = json.Unmarshal(data, &hb)
		h.mu.Lock()
		defer h.mu.Unlock()
		h.heartbeats = append(h.heartbeats, hb)
		return wire.HeartbeatReply{PlanRevision: h.revisionLocked(), Commands: slices.Clone(h.commands)}
	})
	h.handle(wire.SubjectPlan+"*", func(data []byte) any {
		var req wire.PlanRequest
		_ = json.Unmarshal(data, &req)
		h.mu.Lock()
		defer h.mu.Unlock()
		if h.plan == nil || h.plan.Revision <= req.Have {
			return wire.PlanReply{}
		}
		return wire.PlanReply{Plan: h.plan}
	})
	if _, err := nc.Subscribe(wire.SubjectStatus+"*", func(m *nats.Msg) {
		var st wire.Status
		_ = json.Unmarshal(m.Data, &st)
		h.mu.Lock()
		h.statuses = append(h.statuses, st)
		h.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	return h, srv.ClientURL()
}

func (h *fakeHub) handle(subject string, f func([]byte) any) {
	if _, err := h.nc.Subscribe(subject, func(m *nats.Msg) {
		b, _ := json.Marshal(f(m.Data))
		_ = m.Respond(b)
	}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *fakeHub) revision() uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.revisionLocked()
}

func (h *fakeHub) revisionLocked() uint64 {
	if h.plan == nil {
		return 0
	}
	return h.plan.Revision
}

// setPlan publishes a new plan revision with ws, stamped at `at`.
func (h *fakeHub) setPlan(node string, at int64, ws ...manifest.Workload) {
	h.mu.Lock()
	rev := h.revisionLocked() + 1
	p := &wire.Plan{Node: node, Revision: rev, Stamp: hlc.Timestamp{Wall: at}}
	for _, w := range ws {
		p.Workloads = append(p.Workloads, wire.PlanWorkload{Workload: w, Stamp: hlc.Timestamp{Wall: at}})
	}
	h.plan = p
	h.mu.Unlock()
	_ = h.nc.Publish(wire.SubjectNotify+node, []byte(`{}`))
}

func (h *fakeHub) lastHeartbeat() wire.Heartbeat {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.heartbeats) == 0 {
		return wire.Heartbeat{}
	}
	return h.heartbeats[len(h.heartbeats)-1]
}

func sleeper(name string, env map[string]string) manifest.Workload {
	w := manifest.Workload{APIVersion: manifest.APIVersion, Kind: manifest.KindWorkload, Metadata: manifest.Metadata{Name: name},
		Spec: manifest.WorkloadSpec{Runtime: manifest.RuntimeExec, Exec: &manifest.ExecSpec{Command: []string{"sleep", "1000"}, Env: env}}}
	if err := manifest.Normalize([]manifest.Workload{w}); err != nil {
		panic(err)
	}
	return w
}

// runAgent runs an in-process agent on dir until the test ends.
func runAgent(t *testing.T, dir, hubURL string) (*client.Local, context.CancelFunc) {
	t.Helper()
	a, err := agent.New(agent.Config{DataDir: dir, Name: "n1", Hub: hubURL, Heartbeat: 50 * time.Millisecond,
		CgroupParent: "atoll-test-" + filepath.Base(dir), StopWorkloadsOnExit: true, StopGrace: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stop := func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, context.Canceled) {
			t.Errorf("agent: %v", err)
		}
	}
	t.Cleanup(func() {
		if ctx.Err() == nil {
			stop()
		}
	})
	c := client.NewLocal(localapi.SocketPath(dir))
	atolltest.WaitFor(t, wait, func() error { _, err := c.Node(ctx); return err })
	return c, stop
}

// envOf reads a running workload's environment variable from /proc.
func envOf(t *testing.T, c *client.Local, name, key string) (string, int) {
	t.Helper()
	var val string
	var pid int
	atolltest.WaitFor(t, wait, func() error {
		st, err := c.Status(context.Background())
		if err != nil {
			return err
		}
		for _, s := range st {
			if s.Name == name && s.State == "running" && s.PID > 0 {
				b, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", s.PID))
				if err != nil {
					return err
				}
				pid = s.PID
				val = ""
				for _, kv := range strings.Split(string(b), "\x00") {
					if v, ok := strings.CutPrefix(kv, key+"="); ok {
						val = v
					}
				}
				return nil
			}
		}
		return fmt.Errorf("%s not running: %+v", name, st)
	})
	return val, pid
}

func TestAgent_Hub_StoresPlanAcksAndReports(t *testing.T) {
	hub, url := newFakeHub(t)
	hub.setPlan("n1", 10, sleeper("web", nil))
	c, _ := runAgent(t, t.TempDir(), url)
	envOf(t, c, "web", "X") // running
	atolltest.WaitFor(t, wait, func() error {
		hb := hub.lastHeartbeat()
		if hb.StoredRevision != 1 || hb.AppliedRevision != 1 {
			return fmt.Errorf("heartbeat %+v", hb)
		}
		hub.mu.Lock()
		defer hub.mu.Unlock()
		for _, st := range hub.statuses {
			if st.AppliedRevision == 1 && len(st.Workloads) == 1 && st.Workloads[0].State == "running" && st.Digest == hb.StatusDigest {
				return nil
			}
		}
		return errors.New("no status with web running at revision 1")
	})
	// Events reach the hub's stream, each once.
	atolltest.WaitFor(t, wait, func() error {
		s, err := hub.js.Stream(context.Background(), wire.EventStream)
		if err != nil {
			return err
		}
		info, err := s.Info(context.Background())
		if err != nil {
			return err
		}
		evs, err := c.Events(context.Background(), 0)
		if err != nil {
			return err
		}
		if info.State.Msgs == 0 || info.State.Msgs != uint64(len(evs)) {
			return fmt.Errorf("stream has %d events, node %d", info.State.Msgs, len(evs))
		}
		return nil
	})
}

func TestAgent_Hub_OverrideSettledByPriorityThenStamp(t *testing.T) {
	hub, url := newFakeHub(t)
	hub.setPlan("n1", 10, sleeper("web", map[string]string{"LEVEL": "info"}))
	c, _ := runAgent(t, t.TempDir(), url)
	ctx := context.Background()
	if v, _ := envOf(t, c, "web", "LEVEL"); v != "info" {
		t.Fatalf("LEVEL = %q", v)
	}
	// A local override stands while the hub leaves the field alone.
	if err := c.Set(ctx, "web", localapi.SetRequest{Env: map[string]string{"LEVEL": "debug"}}); err != nil {
		t.Fatal(err)
	}
	waitEnv(t, c, "web", "LEVEL", "debug")
	// The hub changes the same field: with default priorities the hub wins,
	// and the settlement is recorded.
	hub.setPlan("n1", time.Now().Add(time.Hour).UnixNano(), sleeper("web", map[string]string{"LEVEL": "warn"}))
	waitEnv(t, c, "web", "LEVEL", "warn")
	settled := eventsOf(t, c, "settled")
	if len(settled) != 1 || !strings.Contains(settled[0].Message, "conflict on env.LEVEL of web: the hub's change wins") {
		t.Fatalf("settled events: %+v", settled)
	}
	// An override with a higher priority than the hub's wins the next conflict.
	if err := c.Set(ctx, "web", localapi.SetRequest{Env: map[string]string{"LEVEL": "trace"}, Priority: 200}); err != nil {
		t.Fatal(err)
	}
	waitEnv(t, c, "web", "LEVEL", "trace")
	hub.setPlan("n1", time.Now().Add(2*time.Hour).UnixNano(), sleeper("web", map[string]string{"LEVEL": "error"}))
	atolltest.WaitFor(t, wait, func() error {
		if n := len(eventsOf(t, c, "settled")); n != 2 {
			return fmt.Errorf("%d settlements", n)
		}
		return nil
	})
	if v, _ := envOf(t, c, "web", "LEVEL"); v != "trace" {
		t.Fatalf("LEVEL = %q, want the priority-200 override to stand", v)
	}
	last := eventsOf(t, c, "settled")[1]
	if !strings.Contains(last.Message, "the local override wins (priority 200 > hub 100)") {
		t.Fatalf("settlement %q", last.Message)
	}
	// The overrides in force travel up with the status.
	atolltest.WaitFor(t, wait, func() error {
		hub.mu.Lock()
		defer hub.mu.Unlock()
		st := hub.statuses[len(hub.statuses)-1]
		if len(st.Overrides) != 1 || st.Overrides[0].Path != "env.LEVEL" || st.Overrides[0].Priority != 200 {
			return fmt.Errorf("overrides in status: %+v", st.Overrides)
		}
		return nil
	})
}

func TestAgent_Hub_CommandRunsOnceDespiteReplays(t *testing.T) {
	hub, url := newFakeHub(t)
	hub.setPlan("n1", 10, sleeper("web", nil))
	c, _ := runAgent(t, t.TempDir(), url)
	_, pid := envOf(t, c, "web", "X")
	hub.mu.Lock()
	// The hub keeps sending the command in every heartbeat reply: replays.
	hub.commands = []wire.Command{{ID: "cmd-1", Kind: wire.CommandRestart, Workload: "web", Expires: time.Now().Add(time.Hour)},
		{ID: "cmd-old", Kind: wire.CommandRestart, Workload: "web", Expires: time.Now().Add(-time.Minute)}}
	hub.mu.Unlock()
	atolltest.WaitFor(t, wait, func() error {
		hub.mu.Lock()
		defer hub.mu.Unlock()
		for _, hb := range hub.heartbeats {
			if slices.Contains(hb.DoneCommands, "cmd-1") {
				return nil
			}
		}
		return errors.New("cmd-1 not acknowledged yet")
	})
	// Let many more heartbeats carry the replayed commands.
	hub.mu.Lock()
	seen := len(hub.heartbeats)
	hub.mu.Unlock()
	atolltest.WaitFor(t, wait, func() error {
		hub.mu.Lock()
		defer hub.mu.Unlock()
		if len(hub.heartbeats) < seen+10 {
			return errors.New("waiting for more heartbeats")
		}
		return nil
	})
	if n := len(eventsOf(t, c, "command")); n != 1 {
		t.Fatalf("%d restarts by command, want exactly 1", n)
	}
	if n := len(eventsOf(t, c, "command-expired")); n != 1 {
		t.Fatalf("%d expired-command events, want 1", n)
	}
	if _, newPID := envOf(t, c, "web", "X"); newPID == pid {
		t.Fatal("the restart command did not restart the workload")
	}
}

func TestAgent_Hub_LogsOnRequest(t *testing.T) {
	hub, url := newFakeHub(t)
	w := sleeper("talker", nil)
	w.Spec.Exec.Command = []string{"sh", "-c", "echo hello-from-talker; sleep 1000"}
	hub.setPlan("n1", 10, w)
	runAgent(t, t.TempDir(), url)
	atolltest.WaitFor(t, wait, func() error {
		b, _ := json.Marshal(wire.LogsRequest{Workload: "talker", Tail: 5})
		m, err := hub.nc.Request(wire.SubjectLogs+"n1", b, 2*time.Second)
		if err != nil {
			return err
		}
		var r wire.LogsReply
		if err := json.Unmarshal(m.Data, &r); err != nil {
			return err
		}
		if !strings.Contains(string(r.Data), "hello-from-talker") {
			return fmt.Errorf("reply %+v", r)
		}
		return nil
	})
}

func TestAgent_Hub_StoredPlanRunsWithHubGone(t *testing.T) {
	hub, url := newFakeHub(t)
	hub.setPlan("n1", 10, sleeper("web", nil), sleeper("db", nil))
	dir := t.TempDir()
	c, stop := runAgent(t, dir, url)
	envOf(t, c, "web", "X")
	envOf(t, c, "db", "X")
	stop() // stops workloads too (StopWorkloadsOnExit): a reboot
	// The new agent points at a hub that does not exist.
	c, _ = runAgent(t, dir, "nats://127.0.0.1:1")
	envOf(t, c, "web", "X")
	envOf(t, c, "db", "X")
	info, err := c.Node(context.Background())
	if err != nil || info.HubConnected || info.StoredRevision != 1 || info.AppliedRevision != 1 {
		t.Fatalf("info %+v, %v", info, err)
	}
}

func waitEnv(t *testing.T, c *client.Local, name, key, want string) {
	t.Helper()
	atolltest.WaitFor(t, wait, func() error {
		if v, _ := envOf(t, c, name, key); v != want {
			return fmt.Errorf("%s=%q, want %q", key, v, want)
		}
		return nil
	})
}

func eventsOf(t *testing.T, c *client.Local, typ string) []wire.Event {
	t.Helper()
	evs, err := c.Events(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []wire.Event
	for _, e := range evs {
		if e.Type == typ {
			out = append(out, e)
		}
	}
	return out
}

func TestAgent_Hub_FetchesArtifactsAndVerifiesThem(t *testing.T) {
	hub, url := newFakeHub(t)
	module, err := os.ReadFile("../../examples/wasm/sensor.wasm")
	if err != nil {
		t.Fatal(err)
	}
	ref := "sha256:" + sha256Hex(module)
	forged := "sha256:" + strings.Repeat("ab", 32)
	objs, err := hub.js.CreateObjectStore(context.Background(), jetstream.ObjectStoreConfig{Bucket: wire.ArtifactStore})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := objs.PutBytes(context.Background(), ref, module); err != nil {
		t.Fatal(err)
	}
	// An object whose bytes do not match its name is never used.
	if _, err := objs.PutBytes(context.Background(), forged, []byte("not the module")); err != nil {
		t.Fatal(err)
	}
	wasmW := func(name, module string) manifest.Workload {
		w := manifest.Workload{APIVersion: manifest.APIVersion, Kind: manifest.KindWorkload, Metadata: manifest.Metadata{Name: name},
			Spec: manifest.WorkloadSpec{Runtime: manifest.RuntimeWASM, WASM: &manifest.WASMSpec{Module: module, Env: map[string]string{"INTERVAL": "50ms"}}}}
		if err := manifest.Normalize([]manifest.Workload{w}); err != nil {
			t.Fatal(err)
		}
		return w
	}
	hub.setPlan("n1", 10, wasmW("sensor", ref), wasmW("forged", forged))
	c, _ := runAgent(t, t.TempDir(), url)
	// The 2.6 MiB module's first compilation takes seconds, and many more
	// under the race detector on a busy machine.
	atolltest.WaitFor(t, 4*wait, func() error {
		st, err := c.Status(context.Background())
		if err != nil {
			return err
		}
		got := map[string]string{}
		for _, s := range st {
			got[s.Name] = string(s.State) + ": " + s.Reason
		}
		if got["sensor"] != "running: " || !strings.HasPrefix(got["forged"], "pending: waiting for artifact "+forged) {
			return fmt.Errorf("status %v", got)
		}
		return nil
	})
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}
