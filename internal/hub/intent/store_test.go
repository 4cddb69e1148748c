package intent_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"atoll.dev/atoll/internal/hlc"
	"atoll.dev/atoll/internal/hub/hubtest"
	"atoll.dev/atoll/internal/hub/intent"
	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/wire"
)

func open(t *testing.T, url string) *intent.Store {
	t.Helper()
	_, js := hubtest.Connect(t, url)
	s, err := intent.Open(hubtest.Context(t), js, intent.Config{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStore_RoundTripAndRestart(t *testing.T) {
	dir := t.TempDir()
	srv := hubtest.NATS(t, dir)
	ctx := hubtest.Context(t)
	s := open(t, srv.ClientURL())

	w := intent.Workload{
		Manifest: manifest.Workload{APIVersion: manifest.APIVersion, Kind: manifest.KindWorkload,
			Metadata: manifest.Metadata{Name: "web"},
			Spec: manifest.WorkloadSpec{Runtime: manifest.RuntimeExec,
				Exec: &manifest.ExecSpec{Command: []string{"/bin/web"}}}},
		Stamp:   hlc.Timestamp{Wall: 42, Logical: 3},
		Created: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
	}
	if _, err := s.Workloads.Put(ctx, "web", w, 0); err != nil {
		t.Fatal(err)
	}
	node := intent.Node{Labels: map[string]string{"site": "a"}, Version: "1.0",
		LastSeen: time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC), StoredRevision: 3}
	if _, err := s.Nodes.Put(ctx, "n1", node, 0); err != nil {
		t.Fatal(err)
	}
	plan := wire.Plan{Node: "n1", Revision: 7, Stamp: hlc.Timestamp{Wall: 99},
		Workloads: []wire.PlanWorkload{{Workload: w.Manifest, Stamp: w.Stamp}}}
	if _, err := s.Plans.Put(ctx, "n1", plan, 0); err != nil {
		t.Fatal(err)
	}
	st := wire.Status{Node: "n1", Digest: "d1", Workloads: []wire.WorkloadStatus{{Name: "web", State: wire.StateRunning}}}
	if _, err := s.Statuses.Put(ctx, "n1", st, 0); err != nil {
		t.Fatal(err)
	}
	cmds := intent.Commands{Commands: []intent.Command{{
		Command: wire.Command{ID: "c1", Kind: wire.CommandRestart, Workload: "web"},
		State:   intent.CommandQueued, IdempotencyKey: "k"}}}
	if _, err := s.Commands.Put(ctx, "n1", cmds, 0); err != nil {
		t.Fatal(err)
	}

	// Restart NATS on the same directory: everything comes back.
	srv.Shutdown()
	srv = hubtest.NATS(t, dir)
	s = open(t, srv.ClientURL())

	check := func(name string, got, want any) {
		t.Helper()
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%s after restart = %+v, want %+v", name, got, want)
		}
	}
	gw, err := s.Workloads.Get(ctx, "web")
	if err != nil {
		t.Fatal(err)
	}
	check("workload", gw.Value, w)
	gn, _ := s.Nodes.Get(ctx, "n1")
	check("node", gn.Value, node)
	gp, _ := s.Plans.Get(ctx, "n1")
	check("plan", gp.Value, plan)
	gs, _ := s.Statuses.Get(ctx, "n1")
	check("status", gs.Value, st)
	gc, _ := s.Commands.Get(ctx, "n1")
	check("commands", gc.Value, cmds)

	last, err := s.LatestStamp(ctx)
	if err != nil || last != (hlc.Timestamp{Wall: 99}) {
		t.Fatalf("LatestStamp = %v, %v; want the plan's 99.0", last, err)
	}
}

func TestTable_CompareAndSet(t *testing.T) {
	s := open(t, hubtest.NATS(t, "").ClientURL())
	ctx := hubtest.Context(t)

	rev, err := s.Nodes.Put(ctx, "n", intent.Node{Version: "1"}, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Nodes.Put(ctx, "n", intent.Node{Version: "x"}, 0); !errors.Is(err, intent.ErrConflict) {
		t.Fatalf("create over an existing key: %v, want ErrConflict", err)
	}
	rev2, err := s.Nodes.Put(ctx, "n", intent.Node{Version: "2"}, rev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Nodes.Put(ctx, "n", intent.Node{Version: "stale"}, rev); !errors.Is(err, intent.ErrConflict) {
		t.Fatalf("update with a stale revision: %v, want ErrConflict", err)
	}
	if err := s.Nodes.Delete(ctx, "n", rev); !errors.Is(err, intent.ErrConflict) {
		t.Fatalf("delete with a stale revision: %v, want ErrConflict", err)
	}
	if err := s.Nodes.Delete(ctx, "n", rev2); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Nodes.Get(ctx, "n"); !errors.Is(err, intent.ErrNotFound) {
		t.Fatalf("get after delete: %v, want ErrNotFound", err)
	}
	if _, err := s.Nodes.Put(ctx, "n", intent.Node{Version: "3"}, 0); err != nil {
		t.Fatalf("create over a deleted key: %v", err)
	}
	got, err := s.Nodes.Get(ctx, "n")
	if err != nil || got.Value.Version != "3" {
		t.Fatalf("get = %+v, %v; want version 3", got, err)
	}
}

// TestTable_UpdateConcurrent has many writers increment one counter with
// Update: compare-and-set must lose no increment.
func TestTable_UpdateConcurrent(t *testing.T) {
	s := open(t, hubtest.NATS(t, "").ClientURL())
	ctx := hubtest.Context(t)
	const writers, each = 4, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for range writers {
		wg.Go(func() {
			for range each {
				_, _, err := s.Nodes.Update(ctx, "n", func(cur intent.Node, _ bool) (intent.Node, bool, error) {
					cur.StoredRevision++
					return cur, true, nil
				})
				if err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got, err := s.Nodes.Get(ctx, "n")
	if err != nil || got.Value.StoredRevision != writers*each {
		t.Fatalf("counter = %d, %v; want %d", got.Value.StoredRevision, err, writers*each)
	}
}

func TestTable_UpdateNoWriteAndError(t *testing.T) {
	s := open(t, hubtest.NATS(t, "").ClientURL())
	ctx := hubtest.Context(t)
	e, wrote, err := s.Nodes.Update(ctx, "n", func(cur intent.Node, exists bool) (intent.Node, bool, error) {
		return cur, false, nil
	})
	if err != nil || wrote || e.Rev != 0 {
		t.Fatalf("Update without write = %+v, %v, %v", e, wrote, err)
	}
	boom := errors.New("boom")
	if _, _, err := s.Nodes.Update(ctx, "n", func(intent.Node, bool) (intent.Node, bool, error) {
		return intent.Node{}, true, boom
	}); !errors.Is(err, boom) {
		t.Fatalf("Update error = %v, want boom", err)
	}
	if _, err := s.Nodes.Get(ctx, "n"); !errors.Is(err, intent.ErrNotFound) {
		t.Fatalf("nothing may be written: %v", err)
	}
}

func TestTable_AllSortedSkipsDeleted(t *testing.T) {
	s := open(t, hubtest.NATS(t, "").ClientURL())
	ctx := hubtest.Context(t)
	if all, err := s.Statuses.All(ctx); err != nil || len(all) != 0 {
		t.Fatalf("All on an empty bucket = %v, %v", all, err)
	}
	revs := map[string]uint64{}
	for _, n := range []string{"c", "a", "d", "b"} {
		rev, err := s.Statuses.Put(ctx, n, wire.Status{Node: n}, 0)
		if err != nil {
			t.Fatal(err)
		}
		revs[n] = rev
	}
	if err := s.Statuses.Delete(ctx, "d", revs["d"]); err != nil {
		t.Fatal(err)
	}
	all, err := s.Statuses.All(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	for _, e := range all {
		if e.Value.Node != e.Key || e.Rev != revs[e.Key] {
			t.Fatalf("entry %+v does not match what was written (rev %d)", e, revs[e.Key])
		}
		keys = append(keys, e.Key)
	}
	if strings.Join(keys, ",") != "a,b,c" {
		t.Fatalf("All keys = %v, want a,b,c", keys)
	}
}

func TestOpen_RefusesNewerSchema(t *testing.T) {
	url := hubtest.NATS(t, "").ClientURL()
	_, js := hubtest.Connect(t, url)
	ctx := hubtest.Context(t)
	open(t, url)
	meta, err := js.KeyValue(ctx, intent.BucketMeta)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := meta.Put(ctx, "schema", []byte(fmt.Sprint(intent.SchemaVersion+1))); err != nil {
		t.Fatal(err)
	}
	_, err = intent.Open(ctx, js, intent.Config{})
	if err == nil || !strings.Contains(err.Error(), "newer than this hub") {
		t.Fatalf("Open on a newer schema: %v", err)
	}
}
