package localapi_test

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"atoll.dev/atoll/internal/agent/localapi"
	"atoll.dev/atoll/internal/agent/localapi/localapitest"
	"atoll.dev/atoll/internal/agent/store"
	"atoll.dev/atoll/internal/agent/supervisor"
)

const validWorkload = `{"apiVersion":"atoll.dev/v1","kind":"Workload","metadata":{"name":"web"},
	"spec":{"runtime":"exec","exec":{"command":["/bin/sleep","1000"]}}}`

func serve(t *testing.T, n *localapitest.Node) string {
	t.Helper()
	return localapitest.Serve(t, t.TempDir(), n)
}

func wantCalls(t *testing.T, n *localapitest.Node, want ...string) {
	t.Helper()
	if got := n.Calls(); !slices.Equal(got, want) {
		t.Errorf("calls = %q, want %q", got, want)
	}
}

func TestApply_CreatesThenConfigures(t *testing.T) {
	n := &localapitest.Node{}
	sock := serve(t, n)

	for _, want := range []string{localapi.ActionCreated, localapi.ActionConfigured} {
		code, body, _ := call(t, sock, "POST", "/v1/workloads:apply", "["+validWorkload+"]")
		if code != 200 {
			t.Fatalf("apply: status %d, body %s", code, body)
		}
		res := decode[[]localapi.ApplyResult](t, body)
		if len(res) != 1 || res[0] != (localapi.ApplyResult{Name: "web", Action: want}) {
			t.Errorf("apply = %+v, want web %s", res, want)
		}
	}
	wantCalls(t, n, "Apply(web)", "Apply(web)")
	w, ok := n.Applied("web")
	if !ok || len(w.Spec.Exec.Command) != 2 || w.Spec.Exec.Command[0] != "/bin/sleep" {
		t.Errorf("node got %+v", w)
	}
}

func TestApply_BadRequests(t *testing.T) {
	tests := []struct {
		name, body, substr string
	}{
		{"truncated json", `[{"apiVersion":`, "decode request body"},
		{"not an array", `{"kind":"Workload"}`, "decode request body"},
		{"unknown field", `[{"apiVersion":"atoll.dev/v1","kind":"Workload","metdata":{}}]`, "metdata"},
		{"two values", `[] []`, "more than one JSON value"},
		{"empty array", `[]`, "no workloads"},
		{"null", `null`, "no workloads"},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.name, " ", "_"), func(t *testing.T) {
			n := &localapitest.Node{}
			sock := serve(t, n)
			code, body, h := call(t, sock, "POST", "/v1/workloads:apply", tt.body)
			wantError(t, code, body, h, 400, tt.substr)
			wantCalls(t, n)
		})
	}
}

func TestApply_TooLarge(t *testing.T) {
	n := &localapitest.Node{}
	sock := serve(t, n)
	body := `[{"kind":"` + strings.Repeat("x", 9<<20) + `"}]`
	code, resp, h := call(t, sock, "POST", "/v1/workloads:apply", body)
	wantError(t, code, resp, h, 413, "too large")
	wantCalls(t, n)
}

func TestApply_InvalidManifestListsFields(t *testing.T) {
	n := &localapitest.Node{}
	sock := serve(t, n)
	bad := `{"apiVersion":"atoll.dev/v1","kind":"Workload","metadata":{"name":"db"},"spec":{"runtime":"bogus"}}`

	code, body, h := call(t, sock, "POST", "/v1/workloads:apply", "["+validWorkload+","+bad+"]")
	er := wantError(t, code, body, h, 400, "spec.runtime")
	i := slices.IndexFunc(er.Fields, func(f localapi.FieldError) bool { return f.Path == "spec.runtime" })
	if i < 0 {
		t.Fatalf("fields = %+v, want one at spec.runtime", er.Fields)
	}
	if f := er.Fields[i]; f.Source != "request#2" || f.Message == "" {
		t.Errorf("field = %+v, want source request#2 and a message", f)
	}
	// Nothing is applied, not even the valid workload.
	wantCalls(t, n)
}

func TestApply_NodeErrorIs500(t *testing.T) {
	n := &localapitest.Node{Err: errors.New("store is read-only")}
	sock := serve(t, n)
	code, body, h := call(t, sock, "POST", "/v1/workloads:apply", "["+validWorkload+"]")
	wantError(t, code, body, h, 500, "store is read-only")
}

func TestDeleteAndRestart(t *testing.T) {
	n := &localapitest.Node{Statuses: []supervisor.Status{{Name: "web"}}}
	sock := serve(t, n)

	if code, body, _ := call(t, sock, "POST", "/v1/workloads/web:restart", ""); code != 204 {
		t.Errorf("restart: status %d, body %s", code, body)
	}
	code, body, h := call(t, sock, "POST", "/v1/workloads/nope:restart", "")
	wantError(t, code, body, h, 404, "workload not found")

	if code, body, _ := call(t, sock, "DELETE", "/v1/workloads/web", ""); code != 204 {
		t.Errorf("delete: status %d, body %s", code, body)
	}
	code, body, h = call(t, sock, "DELETE", "/v1/workloads/nope", "")
	wantError(t, code, body, h, 404, "workload not found")

	wantCalls(t, n, "Restart(web)", "Restart(nope)", "Delete(web)", "Delete(nope)")
}

func TestUnknownAction_Is404(t *testing.T) {
	n := &localapitest.Node{Statuses: []supervisor.Status{{Name: "web"}}}
	sock := serve(t, n)
	for _, path := range []string{"/v1/workloads/web:explode", "/v1/workloads/web", "/v1/workloads/:restart"} {
		code, body, h := call(t, sock, "POST", path, "")
		wantError(t, code, body, h, 404, "no endpoint")
	}
	wantCalls(t, n)
}

func TestStatus(t *testing.T) {
	t.Run("empty is []", func(t *testing.T) {
		sock := serve(t, &localapitest.Node{})
		code, body, _ := call(t, sock, "GET", "/v1/workloads", "")
		if code != 200 || strings.TrimSpace(string(body)) != "[]" {
			t.Errorf("status = %d %q, want 200 []", code, body)
		}
	})
	t.Run("lists workloads", func(t *testing.T) {
		started := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
		want := []supervisor.Status{
			{Name: "a", Runtime: "exec", State: supervisor.StateRunning, PID: 42, Restarts: 1, Priority: 10,
				Health: "healthy", Limits: "cgroup v1", StartedAt: started},
			{Name: "b", Runtime: "wasm", State: supervisor.StateBackoff, Reason: "exit 1"},
		}
		sock := serve(t, &localapitest.Node{Statuses: want})
		code, body, _ := call(t, sock, "GET", "/v1/workloads", "")
		if code != 200 {
			t.Fatalf("status %d", code)
		}
		if got := decode[[]supervisor.Status](t, body); !slices.EqualFunc(got, want, statusEqual) {
			t.Errorf("status = %+v, want %+v", got, want)
		}
	})
}

func statusEqual(a, b supervisor.Status) bool {
	ta, tb := a.StartedAt, b.StartedAt
	a.StartedAt, b.StartedAt = time.Time{}, time.Time{}
	return a == b && ta.Equal(tb)
}

func TestEvents(t *testing.T) {
	n := &localapitest.Node{EventLog: []store.Event{
		{Seq: 1, ID: "e-1", Type: "started", Workload: "a"},
		{Seq: 2, ID: "e-2", Type: "crashed", Workload: "a", Message: "exit 1"},
		{Seq: 3, ID: "e-3", Type: "started", Workload: "a"},
	}}
	sock := serve(t, n)

	code, body, _ := call(t, sock, "GET", "/v1/events?after=1", "")
	if code != 200 {
		t.Fatalf("events: %d %s", code, body)
	}
	got := decode[[]store.Event](t, body)
	if len(got) != 2 || got[0].ID != "e-2" || got[1].ID != "e-3" {
		t.Errorf("events after 1 = %+v, want e-2, e-3", got)
	}
	code, body, _ = call(t, sock, "GET", "/v1/events?after=3", "")
	if code != 200 || strings.TrimSpace(string(body)) != "[]" {
		t.Errorf("events after 3 = %d %q, want 200 []", code, body)
	}
	code, body, h := call(t, sock, "GET", "/v1/events?after=-1", "")
	wantError(t, code, body, h, 400, "after")

	wantCalls(t, n, "Events(1)", "Events(3)")
}

func TestEvents_StoreErrorIs500(t *testing.T) {
	sock := serve(t, &localapitest.Node{Err: errors.New("disk on fire")})
	code, body, h := call(t, sock, "GET", "/v1/events", "")
	wantError(t, code, body, h, 500, "disk on fire")
}

func TestNodeInfo(t *testing.T) {
	want := localapi.NodeInfo{Name: "n1", Labels: map[string]string{"site": "plant-3"},
		CapacityMemory: 512 << 20, CapacityMilliCPU: 2000, Limits: "cgroup v1", StoreRecovery: "restored snapshot", Version: "v1"}
	sock := serve(t, &localapitest.Node{NodeInfo: want})
	code, body, _ := call(t, sock, "GET", "/v1/node", "")
	if code != 200 {
		t.Fatalf("node: %d %s", code, body)
	}
	for _, key := range []string{`"capacityMemory":536870912`, `"capacityMilliCPU":2000`, `"storeRecovery":`} {
		if !strings.Contains(string(body), key) {
			t.Errorf("body %s lacks %s", body, key)
		}
	}
	got := decode[localapi.NodeInfo](t, body)
	if got.Name != want.Name || got.Labels["site"] != "plant-3" || got.CapacityMemory != want.CapacityMemory ||
		got.Limits != want.Limits || got.StoreRecovery != want.StoreRecovery || got.Version != want.Version {
		t.Errorf("node = %+v, want %+v", got, want)
	}
}

func TestMethodNotAllowed(t *testing.T) {
	n := &localapitest.Node{}
	sock := serve(t, n)
	tests := []struct{ method, path, allow string }{
		{"GET", "/v1/workloads:apply", "POST"},
		{"POST", "/v1/workloads", "GET"},
		{"PUT", "/v1/workloads/web", "DELETE, POST"},
		{"DELETE", "/v1/events", "GET"},
		{"POST", "/v1/node", "GET"},
		{"POST", "/v1/workloads/web/logs", "GET"},
	}
	for _, tt := range tests {
		code, body, h := call(t, sock, tt.method, tt.path, "")
		wantError(t, code, body, h, 405, "not allowed")
		if got := h.Get("Allow"); got != tt.allow {
			t.Errorf("%s %s: Allow = %q, want %q", tt.method, tt.path, got, tt.allow)
		}
	}
	wantCalls(t, n)
}

func TestUnknownPath_Is404JSON(t *testing.T) {
	sock := serve(t, &localapitest.Node{})
	for _, path := range []string{"/", "/v2/workloads", "/v1/nodes"} {
		code, body, h := call(t, sock, "GET", path, "")
		wantError(t, code, body, h, 404, "no endpoint")
	}
}
