package hub_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"atoll.dev/atoll/internal/hub"
	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/hub/hubtest"
	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/wire"
)

// TestHub_APIErrors sends one request of every error class and checks the
// status, that the body is a JSON ErrorResponse saying what is wrong, and
// that the store is exactly as before.
func TestHub_APIErrors(t *testing.T) {
	c := hubtest.NewClock(t0)
	h := startHub(t, hub.Config{DataDir: t.TempDir(), Clock: c})
	h.apply(exec("web", nil, "n1"))
	a := hubtest.NewAgent(t, h.NATSURL(), "n1", nil)
	a.Hello()
	a.Sync()
	h.waitInstances("web", 1) // the status is in before the store is dumped

	bad := exec("bad", nil)
	bad.Spec.Restart.Policy = "sometimes"
	bad.Spec.Exec.Command = nil
	huge := `[{"metadata":{"name":"` + strings.Repeat("x", api.MaxApplyBody) + `"}}]`
	before := dump(t, h.NATSURL())

	for _, tc := range []struct {
		name         string
		method, path string
		body         any
		hdr          []string
		code         int
		want         string
		fields       []string // paths of Fields, for invalid manifests
	}{
		{"invalid manifest", "POST", "/v1/workloads:apply", []manifest.Workload{exec("ok", nil, "n1"), bad}, nil, 400,
			"request#2", []string{"spec.exec.command", "spec.restart.policy"}},
		{"duplicate names", "POST", "/v1/workloads:apply", []manifest.Workload{exec("twin", nil), exec("twin", nil)}, nil, 400,
			"already used by request#1", []string{"metadata.name"}},
		{"unknown field", "POST", "/v1/workloads:apply", `[{"apiVersion":"atoll.dev/v1","spek":{}}]`, nil, 400, "spek", nil},
		{"not json", "POST", "/v1/workloads:apply", `apiVersion: atoll.dev/v1`, nil, 400, "decode request body", nil},
		{"two values", "POST", "/v1/workloads:apply", `[] []`, nil, 400, "more than one JSON value", nil},
		{"empty list", "POST", "/v1/workloads:apply", `[]`, nil, 400, "no workloads", nil},
		{"too large", "POST", "/v1/workloads:apply", huge, nil, 413, "larger than", nil},
		{"unknown workload", "GET", "/v1/workloads/nope", nil, nil, 404, "workload nope not found", nil},
		{"delete unknown", "DELETE", "/v1/workloads/nope", nil, nil, 404, "workload nope not found", nil},
		{"bad workload name", "GET", "/v1/workloads/Bad_Name", nil, nil, 400, "not a valid workload name", nil},
		{"query on a list", "GET", "/v1/workloads?all=1", nil, nil, 400, "takes none", nil},
		{"unknown node", "GET", "/v1/nodes/nope", nil, nil, 404, "node nope not found", nil},
		{"commands of unknown node", "GET", "/v1/nodes/nope/commands", nil, nil, 404, "node nope not found", nil},
		{"restart on unknown node", "POST", "/v1/nodes/nope/workloads/web:restart", nil, nil, 404, "node nope not found", nil},
		{"restart unknown workload", "POST", "/v1/nodes/n1/workloads/nope:restart", nil, nil, 404, "not on node n1", nil},
		{"unknown action", "POST", "/v1/nodes/n1/workloads/web:stop", nil, nil, 404, ":restart", nil},
		{"bad ttl", "POST", "/v1/nodes/n1/workloads/web:restart", api.CommandRequest{TTL: "soon"}, nil, 400, "ttl", nil},
		{"ttl too long", "POST", "/v1/nodes/n1/workloads/web:restart", api.CommandRequest{TTL: "9000h"}, nil, 400, "up to", nil},
		{"negative ttl", "POST", "/v1/nodes/n1/workloads/web:restart", api.CommandRequest{TTL: "-1m"}, nil, 400, "positive", nil},
		{"command unknown field", "POST", "/v1/nodes/n1/workloads/web:restart", `{"tll":"1m"}`, nil, 400, "tll", nil},
		{"key mismatch", "POST", "/v1/nodes/n1/workloads/web:restart", api.CommandRequest{IdempotencyKey: "a"},
			[]string{api.IdempotencyKeyHeader, "b"}, 400, "differ", nil},
		{"key too long", "POST", "/v1/nodes/n1/workloads/web:restart", nil,
			[]string{api.IdempotencyKeyHeader, strings.Repeat("k", 300)}, 400, "idempotency key", nil},
		{"command body too large", "POST", "/v1/nodes/n1/workloads/web:restart", `{"ttl":"` + strings.Repeat(" ", api.MaxCommandBody) + `"}`,
			nil, 413, "larger than", nil},
		{"events limit 0", "GET", "/v1/events?limit=0", nil, nil, 400, "limit", nil},
		{"events limit word", "GET", "/v1/events?limit=many", nil, nil, 400, "limit", nil},
		{"events limit huge", "GET", "/v1/events?limit=100000", nil, nil, 400, "1 to 1000", nil},
		{"events since", "GET", "/v1/events?since=yesterday", nil, nil, 400, "RFC 3339", nil},
		{"events node", "GET", "/v1/events?node=No.De", nil, nil, 400, "node name", nil},
		{"events unknown param", "GET", "/v1/events?nodes=n1", nil, nil, 400, "unknown", nil},
		{"events twice", "GET", "/v1/events?node=n1&node=n2", nil, nil, 400, "2 times", nil},
		{"logs tail", "GET", "/v1/nodes/n1/workloads/web/logs?tail=-1", nil, nil, 400, "tail", nil},
		{"logs unknown node", "GET", "/v1/nodes/nope/workloads/web/logs", nil, nil, 404, "node nope not found", nil},
		{"wrong method", "PUT", "/v1/workloads", `[]`, nil, 405, "allowed: GET", nil},
		{"wrong method on apply", "GET", "/v1/workloads:apply", nil, nil, 405, "allowed: POST", nil},
		{"delete a node", "DELETE", "/v1/nodes/n1", nil, nil, 405, "allowed: GET", nil},
		{"no such endpoint", "GET", "/v2/workloads", nil, nil, 404, "no endpoint", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := h.do(tc.method, tc.path, tc.body, tc.hdr...)
			if code != tc.code {
				t.Fatalf("%s %s = %d %s, want %d", tc.method, tc.path, code, body, tc.code)
			}
			var er api.ErrorResponse
			if err := json.Unmarshal(body, &er); err != nil || er.Error == "" {
				t.Fatalf("body %q is not a JSON ErrorResponse: %v", body, err)
			}
			if !strings.Contains(er.Error, tc.want) {
				t.Fatalf("error %q does not say %q", er.Error, tc.want)
			}
			var paths []string
			for _, f := range er.Fields {
				paths = append(paths, f.Path)
				if f.Source == "" || f.Message == "" {
					t.Fatalf("field error without source or message: %+v", f)
				}
			}
			if strings.Join(paths, ",") != strings.Join(tc.fields, ",") {
				t.Fatalf("fields = %v, want %v", paths, tc.fields)
			}
		})
	}
	req, _ := http.NewRequest("PUT", h.base+"/v1/workloads", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Header.Get("Allow") != "GET" || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("405 headers = %v, want Allow: GET and JSON", resp.Header)
	}
	if d := diff(before, dump(t, h.NATSURL())); d != "" {
		t.Fatalf("failed requests changed the store:\n%s", d)
	}
}

func TestHub_ListsAndDelete(t *testing.T) {
	h := startHub(t, hub.Config{DataDir: t.TempDir(), Clock: hubtest.NewClock(t0)})
	var ws []api.Workload
	h.get("/v1/workloads", &ws)
	var ns []api.Node
	h.get("/v1/nodes", &ns)
	var cmdsBody []api.Command
	if len(ws) != 0 || len(ns) != 0 {
		t.Fatalf("empty hub lists %v %v", ws, ns)
	}
	if code, body := h.do("GET", "/v1/workloads", nil); code != 200 || strings.TrimSpace(string(body)) != "[]" {
		t.Fatalf("empty list = %d %s, want []", code, body)
	}
	h.apply(exec("web", map[string]string{"site": "a"}), exec("db", nil, "n2"))
	a := hubtest.NewAgent(t, h.NATSURL(), "n1", map[string]string{"site": "a"})
	a.Hello()
	h.get("/v1/nodes", &ns)
	if len(ns) != 2 || ns[0].Name != "n1" || ns[0].State != api.NodeConnected || ns[0].Workloads != 1 ||
		ns[1].Name != "n2" || ns[1].State != api.NodeNeverSeen || ns[1].PlanRevision != 1 || ns[1].Labels == nil {
		t.Fatalf("nodes = %+v", ns)
	}
	h.get("/v1/workloads", &ws)
	if len(ws) != 2 || ws[0].Name != "db" || ws[0].Instances[0].NodeState != api.NodeNeverSeen ||
		ws[0].Instances[0].State != "unknown" || ws[1].Name != "web" || ws[1].Targets != 1 {
		t.Fatalf("workloads = %+v", ws)
	}
	h.get("/v1/nodes/n2/commands", &cmdsBody)
	if cmdsBody == nil || len(cmdsBody) != 0 {
		t.Fatalf("commands of a never-seen node = %#v, want an empty list", cmdsBody)
	}

	if code, body := h.do("DELETE", "/v1/workloads/web", nil); code != http.StatusNoContent || len(body) != 0 {
		t.Fatalf("delete = %d %s", code, body)
	}
	if n := h.node("n1"); n.PlanRevision != 2 || n.Workloads != 0 {
		t.Fatalf("n1 after delete = %+v, want revision 2 and no workloads", n)
	}
	if code, _ := h.do("GET", "/v1/workloads/web", nil); code != 404 {
		t.Fatalf("deleted workload answers %d", code)
	}
	// Applying it again restores it: a new revision, not an old one.
	h.apply(exec("web", map[string]string{"site": "a"}))
	if n := h.node("n1"); n.PlanRevision != 3 || n.Workloads != 1 {
		t.Fatalf("n1 after re-apply = %+v", n)
	}
}

// TestHub_Logs: logs come from a connected node's agent; a disconnected or
// never-seen node is answered at once without asking it.
func TestHub_Logs(t *testing.T) {
	c := hubtest.NewClock(t0)
	h := startHub(t, hub.Config{DataDir: t.TempDir(), Clock: c})
	h.apply(exec("web", nil, "n1", "n2", "ghost"))
	a := hubtest.NewAgent(t, h.NATSURL(), "n1", nil)
	a.Hello()
	got := make(chan wire.LogsRequest, 4)
	a.ServeLogs(func(req wire.LogsRequest) wire.LogsReply {
		got <- req
		if req.Workload != "web" {
			return wire.LogsReply{Error: "workload " + req.Workload + " not found"}
		}
		return wire.LogsReply{Data: []byte("line 1\nline 2\n")}
	})
	b := hubtest.NewAgent(t, h.NATSURL(), "n2", nil)
	b.Hello() // connected, but answers no log requests

	code, body := h.do("GET", "/v1/nodes/n1/workloads/web/logs?tail=5", nil)
	if code != 200 || string(body) != "line 1\nline 2\n" {
		t.Fatalf("logs = %d %q", code, body)
	}
	if req := <-got; req.Tail != 5 || req.Workload != "web" {
		t.Fatalf("agent got %+v", req)
	}
	code, body = h.do("GET", "/v1/nodes/n1/workloads/other/logs", nil)
	if code != http.StatusBadGateway || !strings.Contains(string(body), "workload other not found") {
		t.Fatalf("agent error = %d %s, want 502 with its message", code, body)
	}
	<-got
	code, body = h.do("GET", "/v1/nodes/n2/workloads/web/logs", nil)
	if code != http.StatusServiceUnavailable || !strings.Contains(string(body), "no agent is answering") {
		t.Fatalf("no responder = %d %s, want 503", code, body)
	}
	code, body = h.do("GET", "/v1/nodes/ghost/workloads/web/logs", nil)
	if code != http.StatusConflict || !strings.Contains(string(body), "node ghost has never connected") {
		t.Fatalf("never-seen = %d %s, want 409", code, body)
	}

	c.Advance(time.Hour)
	start := time.Now()
	code, body = h.do("GET", "/v1/nodes/n1/workloads/web/logs", nil)
	took := time.Since(start)
	want := "node n1 disconnected since 2026-03-01T12:00:00Z"
	if code != http.StatusConflict || !strings.Contains(string(body), want) {
		t.Fatalf("disconnected = %d %s, want 409 %q", code, body, want)
	}
	if took > time.Second || len(got) != 0 {
		t.Fatalf("disconnected answer took %v and asked the agent %d times; want at once, without asking", took, len(got))
	}
}

func TestHub_Artifacts(t *testing.T) {
	h := startHub(t, hub.Config{DataDir: t.TempDir(), Clock: hubtest.NewClock(t0)})
	body := "wasm bytes"
	sum := sha256.Sum256([]byte(body))
	ref := "sha256:" + hex.EncodeToString(sum[:])
	before := dump(t, h.NATSURL())
	if code, resp := h.do("PUT", "/v1/artifacts/"+ref, "not the bytes"); code != 400 || !strings.Contains(string(resp), "hash to") {
		t.Fatalf("wrong bytes = %d %s, want 400", code, resp)
	}
	if code, resp := h.do("PUT", "/v1/artifacts/sha256:nothex", body); code != 400 || !strings.Contains(string(resp), "artifact reference") {
		t.Fatalf("bad reference = %d %s, want 400", code, resp)
	}
	if d := diff(before, dump(t, h.NATSURL())); d != "" {
		t.Fatalf("rejected uploads changed the store:\n%s", d)
	}
	for range 2 {
		if code, resp := h.do("PUT", "/v1/artifacts/"+ref, body); code != http.StatusNoContent {
			t.Fatalf("upload = %d %s", code, resp)
		}
	}
	_, js := hubtest.Connect(t, h.NATSURL())
	obs, err := js.ObjectStore(hubtest.Context(t), wire.ArtifactStore)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := obs.GetBytes(hubtest.Context(t), ref); err != nil || string(got) != body {
		t.Fatalf("stored artifact = %q, %v", got, err)
	}
}
