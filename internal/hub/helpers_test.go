package hub_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"atoll.dev/atoll/internal/atolltest"
	"atoll.dev/atoll/internal/hub"
	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/hub/hubtest"
	"atoll.dev/atoll/internal/hub/intent"
	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/wire"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

type testHub struct {
	*hub.Hub
	t    testing.TB
	base string
	stop func()
}

// startHub runs a hub on random ports until the test ends (or stop),
// with TLS and authentication off: these tests are about the API and the
// agents' protocol; security_test.go runs the hub as it is by default.
func startHub(t testing.TB, cfg hub.Config) *testHub {
	t.Helper()
	cfg.Insecure = true
	return runHub(t, cfg)
}

// runHub runs a hub with cfg on random ports until the test ends (or
// stop).
func runHub(t testing.TB, cfg hub.Config) *testHub {
	t.Helper()
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.NATSListen == "" {
		cfg.NATSListen = "127.0.0.1:0"
	}
	h, err := hub.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h.Run(ctx) }()
	select {
	case <-h.Ready():
	case err := <-done:
		cancel()
		t.Fatalf("hub stopped before it was ready: %v", err)
	case <-time.After(30 * time.Second):
		cancel()
		t.Fatal("hub not ready after 30s")
	}
	stop := sync.OnceFunc(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("hub Run: %v", err)
		}
	})
	t.Cleanup(stop)
	scheme := "https://"
	if cfg.Insecure {
		scheme = "http://"
	}
	return &testHub{Hub: h, t: t, base: scheme + h.HTTPAddr(), stop: stop}
}

// do sends a request; body is JSON-encoded unless it is a string or
// []byte. hdr is "Key", "value" pairs.
func (h *testHub) do(method, path string, body any, hdr ...string) (int, []byte) {
	h.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	case []byte:
		r = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		if err != nil {
			h.t.Fatal(err)
		}
		r = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, h.base+path, r)
	if err != nil {
		h.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp.StatusCode, out
}

// get decodes a 200 answer into out.
func (h *testHub) get(path string, out any) {
	h.t.Helper()
	code, body := h.do(http.MethodGet, path, nil)
	if code != http.StatusOK {
		h.t.Fatalf("GET %s = %d %s", path, code, body)
	}
	if err := json.Unmarshal(body, out); err != nil {
		h.t.Fatalf("GET %s: %v in %s", path, err, body)
	}
}

func (h *testHub) apply(ws ...manifest.Workload) []api.ApplyResult {
	h.t.Helper()
	code, body := h.do(http.MethodPost, "/v1/workloads:apply", ws)
	if code != http.StatusOK {
		h.t.Fatalf("apply = %d %s", code, body)
	}
	var res []api.ApplyResult
	if err := json.Unmarshal(body, &res); err != nil {
		h.t.Fatal(err)
	}
	return res
}

func (h *testHub) node(name string) api.Node {
	h.t.Helper()
	var n api.Node
	h.get("/v1/nodes/"+name, &n)
	return n
}

func (h *testHub) workload(name string) api.Workload {
	h.t.Helper()
	var w api.Workload
	h.get("/v1/workloads/"+name, &w)
	return w
}

func (h *testHub) events(query string) []wire.Event {
	h.t.Helper()
	var evs []wire.Event
	h.get("/v1/events?"+query, &evs)
	return evs
}

// waitEvent waits for an event of type typ in the answer to query.
func (h *testHub) waitEvent(query, typ string) wire.Event {
	h.t.Helper()
	var found wire.Event
	atolltest.WaitFor(h.t, 10*time.Second, func() error {
		for _, e := range h.events(query) {
			if e.Type == typ {
				found = e
				return nil
			}
		}
		return fmt.Errorf("no %s event in %s", typ, query)
	})
	return found
}

// exec is a minimal exec workload, not normalized (the hub does that).
func exec(name string, selector map[string]string, nodes ...string) manifest.Workload {
	return manifest.Workload{
		APIVersion: manifest.APIVersion, Kind: manifest.KindWorkload,
		Metadata: manifest.Metadata{Name: name},
		Spec: manifest.WorkloadSpec{
			Runtime:   manifest.RuntimeExec,
			Exec:      &manifest.ExecSpec{Command: []string{"/bin/" + name}},
			Placement: manifest.Placement{NodeSelector: selector, Nodes: nodes},
		},
	}
}

// dump reads every key of every store bucket ("bucket/key@rev" → value)
// and the event stream's message count: what "changes nothing" compares.
func dump(t *testing.T, url string) map[string]string {
	t.Helper()
	_, js := hubtest.Connect(t, url)
	ctx := hubtest.Context(t)
	out := map[string]string{}
	for _, b := range []string{intent.BucketWorkloads, intent.BucketNodes, intent.BucketPlans,
		intent.BucketStatuses, intent.BucketCommands} {
		kv, err := js.KeyValue(ctx, b)
		if err != nil {
			t.Fatal(err)
		}
		w, err := kv.WatchAll(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for e := range w.Updates() {
			if e == nil {
				break
			}
			out[fmt.Sprintf("%s/%s@%d", b, e.Key(), e.Revision())] = string(e.Value())
		}
		w.Stop()
	}
	s, err := js.Stream(ctx, wire.EventStream)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out["events"] = fmt.Sprint(info.State.Msgs)
	return out
}

func diff(before, after map[string]string) string {
	var keys []string
	for k := range before {
		if after[k] != before[k] {
			keys = append(keys, "changed or gone: "+k)
		}
	}
	for k := range after {
		if _, ok := before[k]; !ok {
			keys = append(keys, "new: "+k)
		}
	}
	sort.Strings(keys)
	return strings.Join(keys, "\n")
}

// planHistory is the retained revisions of node's plan, oldest first.
func planHistory(t *testing.T, url, node string) []wire.Plan {
	t.Helper()
	_, js := hubtest.Connect(t, url)
	ctx := hubtest.Context(t)
	kv, err := js.KeyValue(ctx, intent.BucketPlans)
	if err != nil {
		t.Fatal(err)
	}
	es, err := kv.History(ctx, node)
	if err != nil {
		t.Fatal(err)
	}
	var out []wire.Plan
	for _, e := range es {
		if e.Operation() != jetstream.KeyValuePut {
			continue
		}
		var p wire.Plan
		if err := json.Unmarshal(e.Value(), &p); err != nil {
			t.Fatal(err)
		}
		out = append(out, p)
	}
	return out
}

func planNames(p *wire.Plan) []string {
	out := []string{}
	if p == nil {
		return out
	}
	for _, pw := range p.Workloads {
		out = append(out, pw.Workload.Metadata.Name)
	}
	return out
}

// waitTimer waits until the hub's maintenance loop is parked on a timer
// of c, so that advancing c fires it.
func waitTimer(t testing.TB, c *hubtest.Clock) {
	t.Helper()
	atolltest.WaitFor(t, 10*time.Second, func() error {
		if c.Timers() == 0 {
			return fmt.Errorf("no timer pending")
		}
		return nil
	})
}

// waitFor waits until cond holds, describing it with format on failure.
func waitFor(t testing.TB, cond func() bool, format string, args ...any) {
	t.Helper()
	atolltest.WaitFor(t, 10*time.Second, func() error {
		if !cond() {
			return fmt.Errorf("waiting until "+format, args...)
		}
		return nil
	})
}
