package client_test

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"atoll.dev/atoll/internal/agent/localapi"
	"atoll.dev/atoll/internal/agent/localapi/localapitest"
	"atoll.dev/atoll/internal/agent/store"
	"atoll.dev/atoll/internal/agent/supervisor"
	"atoll.dev/atoll/internal/client"
	"atoll.dev/atoll/internal/manifest"
)

func serve(t *testing.T, n *localapitest.Node) *client.Local {
	t.Helper()
	return client.NewLocal(localapitest.Serve(t, t.TempDir(), n))
}

const webYAML = `apiVersion: atoll.dev/v1
kind: Workload
metadata:
  name: web
spec:
  runtime: exec
  exec:
    command: ["/bin/sleep", "1000"]
  restart:
    policy: always
    backoff:
      initial: 250ms
  resources:
    memory: 64Mi
`

func TestLocal_Apply(t *testing.T) {
	n := &localapitest.Node{}
	c := serve(t, n)
	ws, err := manifest.Decode("web.yaml", []byte(webYAML))
	if err != nil {
		t.Fatal(err)
	}

	res, err := c.Apply(context.Background(), ws)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	if want := []localapi.ApplyResult{{Name: "web", Action: "created"}}; !slices.Equal(res, want) {
		t.Errorf("Apply = %+v, want %+v", res, want)
	}
	// The workload crossed the wire intact, durations and quantities included.
	got, ok := n.Applied("web")
	if !ok {
		t.Fatal("node did not get web")
	}
	if b := got.Spec.Restart.Backoff.Initial; b == nil || b.Duration != 250*time.Millisecond {
		t.Errorf("backoff.initial = %v, want 250ms", b)
	}
	if m := got.Spec.Resources.MemoryBytes(); m != 64<<20 {
		t.Errorf("memory = %d, want 64Mi", m)
	}
}

func TestLocal_Apply_InvalidCarriesFields(t *testing.T) {
	n := &localapitest.Node{}
	c := serve(t, n)
	bad := manifest.Workload{APIVersion: manifest.APIVersion, Kind: manifest.KindWorkload,
		Metadata: manifest.Metadata{Name: "db"}, Spec: manifest.WorkloadSpec{Runtime: "bogus"}}

	_, err := c.Apply(context.Background(), []manifest.Workload{bad})
	apiErr, ok := errors.AsType[*client.APIError](err)
	if !ok {
		t.Fatalf("Apply error = %v (%T), want *client.APIError", err, err)
	}
	if apiErr.StatusCode != 400 || !strings.Contains(apiErr.Error(), "spec.runtime") {
		t.Errorf("error = %d %q, want 400 mentioning spec.runtime", apiErr.StatusCode, apiErr.Error())
	}
	if !slices.ContainsFunc(apiErr.Fields, func(f localapi.FieldError) bool {
		return f.Path == "spec.runtime" && f.Source == "request#1"
	}) {
		t.Errorf("fields = %+v, want request#1 spec.runtime", apiErr.Fields)
	}
	if calls := n.Calls(); len(calls) != 0 {
		t.Errorf("node was called: %q", calls)
	}
}

func TestLocal_DeleteRestart(t *testing.T) {
	n := &localapitest.Node{Statuses: []supervisor.Status{{Name: "web"}}}
	c := serve(t, n)
	ctx := context.Background()

	if err := c.Restart(ctx, "web"); err != nil {
		t.Errorf("Restart(web): %v", err)
	}
	if err := c.Delete(ctx, "web"); err != nil {
		t.Errorf("Delete(web): %v", err)
	}
	del := func(ctx context.Context, name string) error { return c.Delete(ctx, name) }
	for _, f := range []func(context.Context, string) error{c.Restart, del} {
		err := f(ctx, "nope")
		if !errors.Is(err, supervisor.ErrWorkloadNotFound) || !strings.Contains(err.Error(), `"nope"`) {
			t.Errorf("error = %v, want workload-not-found naming nope", err)
		}
	}
	want := []string{"Restart(web)", "Delete(web)", "Restart(nope)", "Delete(nope)"}
	if got := n.Calls(); !slices.Equal(got, want) {
		t.Errorf("calls = %q, want %q", got, want)
	}
}

func TestLocal_StatusEventsNode(t *testing.T) {
	info := localapi.NodeInfo{Name: "n1", CapacityMemory: 1 << 30, Version: "v9"}
	n := &localapitest.Node{
		Statuses: []supervisor.Status{{Name: "b", State: supervisor.StateRunning}, {Name: "a", State: supervisor.StateFailed}},
		EventLog: []store.Event{{Seq: 4, ID: "x-4", Type: "started"}, {Seq: 5, ID: "x-5", Type: "crashed"}},
		NodeInfo: info,
	}
	c := serve(t, n)
	ctx := context.Background()

	st, err := c.Status(ctx)
	if err != nil || len(st) != 2 || st[0].Name != "a" || st[1].State != supervisor.StateRunning {
		t.Errorf("Status = %+v, %v", st, err)
	}
	evs, err := c.Events(ctx, 4)
	if err != nil || len(evs) != 1 || evs[0].ID != "x-5" {
		t.Errorf("Events(4) = %+v, %v; want x-5", evs, err)
	}
	got, err := c.Node(ctx)
	if err != nil || got.Name != "n1" || got.CapacityMemory != 1<<30 || got.Version != "v9" {
		t.Errorf("Node = %+v, %v", got, err)
	}
}

func TestLocal_EmptyListsAreNotNil(t *testing.T) {
	c := serve(t, &localapitest.Node{})
	st, err := c.Status(context.Background())
	if err != nil || st == nil || len(st) != 0 {
		t.Errorf("Status = %#v, %v; want empty non-nil", st, err)
	}
	evs, err := c.Events(context.Background(), 0)
	if err != nil || evs == nil || len(evs) != 0 {
		t.Errorf("Events = %#v, %v; want empty non-nil", evs, err)
	}
}

func TestLocal_Unreachable(t *testing.T) {
	dir := t.TempDir()
	stale := filepath.Join(t.TempDir(), localapi.SocketFile)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()

	for name, sock := range map[string]string{
		"missing socket": localapi.SocketPath(dir),
		"stale socket":   stale,
		"missing dir":    localapi.SocketPath(filepath.Join(dir, "nope")),
	} {
		t.Run(strings.ReplaceAll(name, " ", "_"), func(t *testing.T) {
			_, err := client.NewLocal(sock).Status(context.Background())
			want := "cannot reach the agent at " + sock + ": is `atoll agent --data " + filepath.Dir(sock) + "` running?"
			if err == nil || err.Error() != want {
				t.Errorf("error = %v, want %q", err, want)
			}
			if _, ok := errors.AsType[*client.UnreachableError](err); !ok {
				t.Errorf("error %T is not an *UnreachableError", err)
			}
		})
	}
}
