package client_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"atoll.dev/atoll/internal/client"
	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/wire"
)

// hubRequest is what the test hub received.
type hubRequest struct {
	Method, Path, Query string
	Body                []byte
}

// received records a test hub's requests, in order.
type received struct {
	mu   sync.Mutex
	reqs []hubRequest
}

func (rc *received) all() []hubRequest {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.reqs)
}

// testHub serves answer for every request and returns a client of it (made
// with a trailing slash, which the client must drop) and its requests.
func testHub(t *testing.T, answer func(w http.ResponseWriter, r *http.Request)) (*client.Hub, *received) {
	t.Helper()
	rc := &received{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		// EscapedPath shows what went over the wire.
		rc.reqs = append(rc.reqs, hubRequest{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, body})
		rc.mu.Unlock()
		answer(w, r)
	}))
	t.Cleanup(srv.Close)
	return client.NewHub(srv.URL+"/", nil), rc
}

// answerJSON answers every request with code and v as JSON.
func answerJSON(code int, v any) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(v)
	}
}

func checkRequests(t *testing.T, rc *received, want ...string) {
	t.Helper()
	var lines []string
	for _, r := range rc.all() {
		line := r.Method + " " + r.Path
		if r.Query != "" {
			line += "?" + r.Query
		}
		lines = append(lines, line)
	}
	if !slices.Equal(lines, want) {
		t.Errorf("requests = %q, want %q", lines, want)
	}
}

func TestHub_Apply(t *testing.T) {
	want := []api.ApplyResult{{Name: "web", Action: api.ActionCreated, Targets: 3}}
	c, reqs := testHub(t, answerJSON(http.StatusOK, want))
	ws, err := manifest.Decode("web.yaml", []byte(webYAML))
	if err != nil {
		t.Fatal(err)
	}

	res, err := c.Apply(context.Background(), ws)
	if err != nil || !slices.Equal(res, want) {
		t.Fatalf("Apply = %+v, %v; want %+v", res, err, want)
	}
	checkRequests(t, reqs, "POST /v1/workloads:apply")
	var sent []manifest.Workload
	if err := json.Unmarshal(reqs.all()[0].Body, &sent); err != nil {
		t.Fatalf("request body %s: %v", reqs.all()[0].Body, err)
	}
	if len(sent) != 1 || sent[0].Metadata.Name != "web" || sent[0].Spec.Resources.MemoryBytes() != 64<<20 {
		t.Errorf("sent %+v", sent)
	}
}

func TestHub_Reads(t *testing.T) {
	ctx := context.Background()
	seen := time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC)
	c, reqs := testHub(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v1/workloads":
			answerJSON(200, []api.Workload{{Name: "web", Targets: 1}})(w, r)
		case "/v1/workloads/web":
			answerJSON(200, api.Workload{Name: "web", Targets: 1,
				Instances: []api.Instance{{Node: "pi-1", State: "running", Revision: 4}}})(w, r)
		case "/v1/nodes":
			answerJSON(200, []api.Node{{Name: "pi-1", State: api.NodeConnected, LastSeen: seen}})(w, r)
		case "/v1/nodes/pi 1":
			answerJSON(200, api.Node{Name: "pi 1", Overrides: []wire.Override{{Workload: "web", Path: "env.A"}}})(w, r)
		case "/v1/nodes/pi-1/commands":
			answerJSON(200, []api.Command{{Node: "pi-1", State: "queued"}})(w, r)
		default:
			http.NotFound(w, r)
		}
	})

	ws, err := c.Workloads(ctx)
	if err != nil || len(ws) != 1 || ws[0].Name != "web" {
		t.Errorf("Workloads = %+v, %v", ws, err)
	}
	wl, err := c.Workload(ctx, "web")
	if err != nil || len(wl.Instances) != 1 || wl.Instances[0].Revision != 4 {
		t.Errorf("Workload = %+v, %v", wl, err)
	}
	ns, err := c.Nodes(ctx)
	if err != nil || len(ns) != 1 || !ns[0].LastSeen.Equal(seen) {
		t.Errorf("Nodes = %+v, %v", ns, err)
	}
	n, err := c.Node(ctx, "pi 1")
	if err != nil || n.Name != "pi 1" || len(n.Overrides) != 1 {
		t.Errorf("Node = %+v, %v", n, err)
	}
	cmds, err := c.Commands(ctx, "pi-1")
	if err != nil || len(cmds) != 1 || cmds[0].State != "queued" {
		t.Errorf("Commands = %+v, %v", cmds, err)
	}
	checkRequests(t, reqs, "GET /v1/workloads", "GET /v1/workloads/web", "GET /v1/nodes",
		"GET /v1/nodes/pi%201", "GET /v1/nodes/pi-1/commands")
}

func TestHub_EmptyListsAreNotNil(t *testing.T) {
	ctx := context.Background()
	c, _ := testHub(t, answerJSON(http.StatusOK, nil)) // "null"
	ns, err := c.Nodes(ctx)
	if err != nil || ns == nil {
		t.Errorf("Nodes = %#v, %v; want empty, non-nil", ns, err)
	}
	ws, err := c.Workloads(ctx)
	if err != nil || ws == nil {
		t.Errorf("Workloads = %#v, %v; want empty, non-nil", ws, err)
	}
	evs, err := c.Events(ctx, api.EventQuery{})
	if err != nil || evs == nil {
		t.Errorf("Events = %#v, %v; want empty, non-nil", evs, err)
	}
	recs, err := c.Telemetry(ctx, api.TelemetryQuery{})
	if err != nil || recs == nil {
		t.Errorf("Telemetry = %#v, %v; want empty, non-nil", recs, err)
	}
}

func TestHub_Events_Query(t *testing.T) {
	since := time.Date(2026, 3, 1, 11, 0, 0, 0, time.FixedZone("x", 3600))
	c, reqs := testHub(t, answerJSON(http.StatusOK, []wire.Event{{Node: "pi-1", ID: "e1", Type: "started"}}))

	evs, err := c.Events(context.Background(), api.EventQuery{Node: "pi-1", Since: since, Limit: 5})
	if err != nil || len(evs) != 1 || evs[0].ID != "e1" {
		t.Fatalf("Events = %+v, %v", evs, err)
	}
	if _, err := c.Events(context.Background(), api.EventQuery{}); err != nil {
		t.Fatal(err)
	}
	checkRequests(t, reqs, "GET /v1/events?limit=5&node=pi-1&since=2026-03-01T10%3A00%3A00Z", "GET /v1/events")
}

func TestHub_Logs(t *testing.T) {
	c, reqs := testHub(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		io.WriteString(w, "line 1\nline 2\n")
	})
	var out bytes.Buffer
	if err := c.Logs(context.Background(), "pi-1", "web", 2, &out); err != nil {
		t.Fatal(err)
	}
	if out.String() != "line 1\nline 2\n" {
		t.Errorf("logs = %q", out.String())
	}
	if err := c.Logs(context.Background(), "pi-1", "web", 0, io.Discard); err != nil {
		t.Fatal(err)
	}
	checkRequests(t, reqs, "GET /v1/nodes/pi-1/workloads/web/logs?tail=2", "GET /v1/nodes/pi-1/workloads/web/logs")
}

func TestHub_RestartWorkload(t *testing.T) {
	expires := time.Date(2026, 3, 1, 13, 0, 0, 0, time.UTC)
	queued := api.Command{Command: wire.Command{ID: "k1", Kind: "restart", Workload: "web", Expires: expires},
		Node: "pi-1", State: "queued"}
	for _, tt := range []struct {
		code     int
		existing bool
	}{{http.StatusAccepted, false}, {http.StatusOK, true}} {
		c, reqs := testHub(t, answerJSON(tt.code, queued))
		req := api.CommandRequest{IdempotencyKey: "k1", TTL: "30m"}

		cmd, existing, err := c.RestartWorkload(context.Background(), "pi-1", "web", req)
		if err != nil || cmd.ID != "k1" || !cmd.Expires.Equal(expires) || existing != tt.existing {
			t.Errorf("answer %d: RestartWorkload = %+v, %v, %v; want existing %v", tt.code, cmd, existing, err, tt.existing)
		}
		checkRequests(t, reqs, "POST /v1/nodes/pi-1/workloads/web:restart")
		var sent api.CommandRequest
		if err := json.Unmarshal(reqs.all()[0].Body, &sent); err != nil || sent != req {
			t.Errorf("sent %s (%v), want %+v", reqs.all()[0].Body, err, req)
		}
	}
}

func TestHub_DeleteWorkload(t *testing.T) {
	c, reqs := testHub(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	if err := c.DeleteWorkload(context.Background(), "web"); err != nil {
		t.Fatal(err)
	}
	checkRequests(t, reqs, "DELETE /v1/workloads/web")
}

func TestHub_ErrorAnswers(t *testing.T) {
	fields := []api.FieldError{
		{Source: "request#1", Path: "spec.runtime", Message: "must be exec, wasm or container"},
		{Source: "request#2", Path: "metadata.name", Message: "must be a DNS label"},
	}
	tests := []struct {
		name    string
		answer  func(http.ResponseWriter, *http.Request)
		code    int
		message string
		fields  int
	}{
		{"fields missing from the message are added", answerJSON(400, api.ErrorResponse{Error: "invalid workloads", Fields: fields}),
			400, "invalid workloads\nrequest#1: spec.runtime: must be exec, wasm or container\n" +
				"request#2: metadata.name: must be a DNS label", 2},
		{"fields already in the message are not repeated", answerJSON(400, api.ErrorResponse{
			Error: "request#1: spec.runtime: must be exec, wasm or container", Fields: fields[:1]}),
			400, "request#1: spec.runtime: must be exec, wasm or container", 1},
		{"not found", answerJSON(404, api.ErrorResponse{Error: `workload "web" not found`}),
			404, `workload "web" not found`, 0},
		{"not JSON", func(w http.ResponseWriter, _ *http.Request) { http.Error(w, "upstream down", http.StatusBadGateway) },
			502, "hub answered 502 Bad Gateway: upstream down", 0},
		{"empty", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(500) },
			500, "hub answered 500 Internal Server Error: no explanation", 0},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.name, " ", "_"), func(t *testing.T) {
			c, _ := testHub(t, tt.answer)
			_, err := c.Workload(context.Background(), "web")
			apiErr, ok := errors.AsType[*client.APIError](err)
			if !ok {
				t.Fatalf("error = %v (%T), want *client.APIError", err, err)
			}
			if apiErr.StatusCode != tt.code || apiErr.Error() != tt.message || len(apiErr.Fields) != tt.fields {
				t.Errorf("error = %d %q %+v; want %d %q and %d fields",
					apiErr.StatusCode, apiErr.Error(), apiErr.Fields, tt.code, tt.message, tt.fields)
			}
			if tt.fields > 0 && apiErr.Fields[0].Path != "spec.runtime" {
				t.Errorf("fields[0] = %+v", apiErr.Fields[0])
			}
		})
	}
}

func TestHub_Unreachable(t *testing.T) {
	// A port that was just free: nothing listens on it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	c := client.NewHub(url, nil)

	_, err = c.Nodes(context.Background())
	want := "cannot reach the hub at " + url + ": is `atoll hub` (or `atoll dev`) running?"
	if err == nil || err.Error() != want {
		t.Fatalf("error = %v, want %q", err, want)
	}
	if _, ok := errors.AsType[*client.HubUnreachableError](err); !ok {
		t.Errorf("error is %T, want *client.HubUnreachableError", err)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("error %v does not unwrap to the dial error", err)
	}
}

// stubBackend answers the hub's real API server (api.NewHandler) and
// records what reached it, so the client is checked against the server's
// routes and parameters, not only against this file's idea of them.
type stubBackend struct {
	mu    sync.Mutex
	calls []string
}

func (b *stubBackend) record(format string, args ...any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, fmt.Sprintf(format, args...))
}

func (b *stubBackend) Calls() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.calls)
}

func (b *stubBackend) Apply(_ context.Context, ws []manifest.Workload) ([]api.ApplyResult, error) {
	b.record("Apply(%s)", ws[0].Metadata.Name)
	if ws[0].Spec.Runtime == "bogus" {
		return nil, manifest.FieldErrors{{Source: ws[0].Source, Path: "spec.runtime", Msg: "unknown runtime"}}
	}
	return []api.ApplyResult{{Name: ws[0].Metadata.Name, Action: api.ActionUnchanged, Targets: 2}}, nil
}

func (b *stubBackend) Workloads(context.Context) ([]api.Workload, error) {
	b.record("Workloads")
	return nil, nil
}

func (b *stubBackend) Workload(_ context.Context, name string) (api.Workload, error) {
	b.record("Workload(%s)", name)
	return api.Workload{}, api.Errorf(api.ErrNotFound, "workload %q not found", name)
}

func (b *stubBackend) DeleteWorkload(_ context.Context, name string) error {
	b.record("DeleteWorkload(%s)", name)
	return nil
}

func (b *stubBackend) Nodes(context.Context) ([]api.Node, error) {
	b.record("Nodes")
	return []api.Node{{Name: "pi-1"}}, nil
}

func (b *stubBackend) Node(_ context.Context, name string) (api.Node, error) {
	b.record("Node(%s)", name)
	return api.Node{Name: name}, nil
}

func (b *stubBackend) Events(_ context.Context, q api.EventQuery) ([]wire.Event, error) {
	b.record("Events(%s %s %d)", q.Node, q.Since.UTC().Format(time.RFC3339), q.Limit)
	return nil, nil
}

func (b *stubBackend) Telemetry(_ context.Context, q api.TelemetryQuery) ([]api.TelemetryRecord, error) {
	after := "-"
	if q.After != nil {
		after = fmt.Sprint(*q.After)
	}
	b.record("Telemetry(%s %s %s %d)", q.Node, q.Subject, after, q.Limit)
	return []api.TelemetryRecord{{Node: "pi-1", Seq: 1, Data: []byte("x"), Text: "x"}}, nil
}

func (b *stubBackend) Logs(_ context.Context, node, workload string, tail int) ([]byte, error) {
	b.record("Logs(%s %s %d)", node, workload, tail)
	return []byte("hello\n"), nil
}

func (b *stubBackend) Restart(_ context.Context, node, workload string, req api.CommandRequest) (api.Command, bool, error) {
	b.record("Restart(%s %s %s %s)", node, workload, req.IdempotencyKey, req.TTL)
	return api.Command{Command: wire.Command{ID: req.IdempotencyKey}, Node: node}, req.IdempotencyKey == "new", nil
}

func (b *stubBackend) Commands(_ context.Context, node string) ([]api.Command, error) {
	b.record("Commands(%s)", node)
	return nil, nil
}

func TestHub_AgainstAPIServer(t *testing.T) {
	b := &stubBackend{}
	srv := httptest.NewServer(api.NewHandler(b, nil))
	t.Cleanup(srv.Close)
	c := client.NewHub(srv.URL, nil)
	ctx := context.Background()
	ws, err := manifest.Decode("web.yaml", []byte(webYAML))
	if err != nil {
		t.Fatal(err)
	}

	if res, err := c.Apply(ctx, ws); err != nil || len(res) != 1 || res[0].Targets != 2 {
		t.Errorf("Apply = %+v, %v", res, err)
	}
	ws[0].Spec.Runtime = "bogus"
	_, err = c.Apply(ctx, ws)
	if e, ok := errors.AsType[*client.APIError](err); !ok || e.StatusCode != 400 || len(e.Fields) != 1 ||
		e.Error() != "request#1: spec.runtime: unknown runtime" {
		t.Errorf("Apply(invalid) error = %#v", err)
	}
	if ws, err := c.Workloads(ctx); err != nil || ws == nil {
		t.Errorf("Workloads = %#v, %v", ws, err)
	}
	_, err = c.Workload(ctx, "web")
	if e, ok := errors.AsType[*client.APIError](err); !ok || e.StatusCode != 404 || e.Error() != `workload "web" not found` {
		t.Errorf("Workload error = %#v", err)
	}
	if err := c.DeleteWorkload(ctx, "web"); err != nil {
		t.Errorf("DeleteWorkload: %v", err)
	}
	if ns, err := c.Nodes(ctx); err != nil || len(ns) != 1 {
		t.Errorf("Nodes = %+v, %v", ns, err)
	}
	if n, err := c.Node(ctx, "pi-1"); err != nil || n.Name != "pi-1" {
		t.Errorf("Node = %+v, %v", n, err)
	}
	since := time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC)
	if _, err := c.Events(ctx, api.EventQuery{Node: "pi-1", Since: since, Limit: 5}); err != nil {
		t.Errorf("Events: %v", err)
	}
	after := uint64(0)
	if recs, err := c.Telemetry(ctx, api.TelemetryQuery{Node: "pi-1", Subject: "sensors.>", After: &after, Limit: 5}); err != nil ||
		len(recs) != 1 || string(recs[0].Data) != "x" || recs[0].Text != "x" {
		t.Errorf("Telemetry = %+v, %v", recs, err)
	}
	var out bytes.Buffer
	if err := c.Logs(ctx, "pi-1", "web", 20, &out); err != nil || out.String() != "hello\n" {
		t.Errorf("Logs = %q, %v", out.String(), err)
	}
	for _, key := range []string{"new", "old"} {
		cmd, existing, err := c.RestartWorkload(ctx, "pi-1", "web", api.CommandRequest{IdempotencyKey: key, TTL: "30m"})
		if err != nil || cmd.ID != key || existing != (key == "old") {
			t.Errorf("RestartWorkload(%s) = %+v, %v, %v", key, cmd, existing, err)
		}
	}
	if cmds, err := c.Commands(ctx, "pi-1"); err != nil || cmds == nil {
		t.Errorf("Commands = %#v, %v", cmds, err)
	}
	want := []string{"Apply(web)", "Apply(web)", "Workloads", "Workload(web)", "DeleteWorkload(web)", "Nodes",
		"Node(pi-1)", "Events(pi-1 2026-03-01T11:00:00Z 5)", "Telemetry(pi-1 sensors.> 0 5)", "Logs(pi-1 web 20)",
		"Restart(pi-1 web new 30m)", "Restart(pi-1 web old 30m)", "Commands(pi-1)"}
	if got := b.Calls(); !slices.Equal(got, want) {
		t.Errorf("backend calls =\n%q\nwant\n%q", got, want)
	}
}
