package cli

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	yaml "go.yaml.in/yaml/v2"

	"atoll.dev/atoll/internal/hub/api"
)

var testNodes = []api.Node{
	{Name: "pi-1", Labels: map[string]string{"site": "p3", "role": "kiosk"}, State: api.NodeConnected,
		LastSeen: testNow.Add(-30 * time.Second), PlanRevision: 7, StoredRevision: 7, AppliedRevision: 6,
		CapacityMemory: 512 << 20, CapacityMilliCPU: 2000, Version: "v0.2.0", Workloads: 2},
	{Name: "kiosk-long-name", State: api.NodeNeverSeen},
}

func TestGetNodes_Table(t *testing.T) {
	env := hubEnv(serveHub(t, &fakeHub{Nodes: testNodes}))
	code, out, errOut := atoll(t, env, "get", "nodes")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	cols := []string{"NAME", "STATE", "LAST-SEEN", "PLAN", "APPLIED", "WORKLOADS", "LABELS"}
	checkAligned(t, lines, cols)
	want := [][]string{
		{"pi-1", "connected", "30s", "7", "6", "2", "role=kiosk,site=p3"},
		{"kiosk-long-name", "never-seen", "-", "-", "-", "0", "-"},
	}
	for i, w := range want {
		if got := cells(lines[0], lines[i+1], cols); !slices.Equal(got, w) {
			t.Errorf("row %d = %q, want %q", i, got, w)
		}
	}
}

func TestGetNodes_Wide(t *testing.T) {
	env := hubEnv(serveHub(t, &fakeHub{Nodes: testNodes}))
	_, out, _ := atoll(t, env, "get", "nodes", "-o", "wide")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	cols := []string{"NAME", "STATE", "LAST-SEEN", "PLAN", "APPLIED", "WORKLOADS", "STORED", "VERSION", "CAPACITY", "LABELS"}
	checkAligned(t, lines, cols)
	want := []string{"pi-1", "connected", "30s", "7", "6", "2", "7", "v0.2.0", "memory 512Mi, cpu 2", "role=kiosk,site=p3"}
	if got := cells(lines[0], lines[1], cols); !slices.Equal(got, want) {
		t.Errorf("wide row = %q, want %q", got, want)
	}
}

func TestGetNodes_JSONAndYAML(t *testing.T) {
	env := hubEnv(serveHub(t, &fakeHub{Nodes: testNodes}))
	code, out, _ := atoll(t, env, "get", "nodes", "-o", "json")
	var raw []map[string]any
	if err := json.Unmarshal([]byte(out), &raw); err != nil || code != 0 || len(raw) != 2 {
		t.Fatalf("get nodes -o json = %d, %q: %v", code, out, err)
	}
	for _, key := range []string{"name", "labels", "state", "lastSeen", "planRevision", "appliedRevision"} {
		if _, ok := raw[0][key]; !ok {
			t.Errorf("node JSON lacks %q: %v", key, raw[0])
		}
	}
	if raw[0]["planRevision"] != 7.0 || raw[0]["state"] != "connected" {
		t.Errorf("node JSON = %v", raw[0])
	}

	code, out, _ = atoll(t, env, "get", "nodes", "-o", "yaml")
	var doc []map[string]any
	if err := yaml.Unmarshal([]byte(out), &doc); err != nil || code != 0 || len(doc) != 2 {
		t.Fatalf("get nodes -o yaml = %d, %q: %v", code, out, err)
	}
	if doc[0]["name"] != "pi-1" || doc[0]["appliedRevision"] != 6 || doc[0]["lastSeen"] != "2026-03-01T11:59:30Z" {
		t.Errorf("node YAML = %v", doc[0])
	}
}

func TestGet_EmptyIsArray(t *testing.T) {
	env := hubEnv(serveHub(t, &fakeHub{}))
	for _, args := range [][]string{
		{"get", "nodes", "-o", "json"}, {"get", "workloads", "-o", "json"},
		{"get", "nodes", "-o", "yaml"}, {"get", "workloads", "-o", "yaml"},
	} {
		if code, out, errOut := atoll(t, env, args...); code != 0 || out != "[]\n" {
			t.Errorf("%q = %d, %q, %q; want []", args, code, out, errOut)
		}
	}
	// The table of nothing is its header.
	if _, out, _ := atoll(t, env, "get", "workloads"); strings.Fields(out)[0] != "NAME" || strings.Count(out, "\n") != 1 {
		t.Errorf("empty table = %q", out)
	}
}

var testWorkloads = []api.Workload{
	{Name: "web", Targets: 3, Instances: []api.Instance{
		{Node: "pi-1", NodeState: api.NodeConnected, State: "running", Revision: 6},
		{Node: "pi-2", NodeState: api.NodeDisconnected, State: "running", Revision: 5},
		{Node: "pi-3", NodeState: api.NodeConnected, State: "backoff", Restarts: 4, Reason: "exited with status 1", Revision: 6},
	}},
	{Name: "sensor-long-name", Targets: 0, TargetReason: "no spec.placement: targets no node", Instances: []api.Instance{}},
}

func TestGetWorkloads_Table(t *testing.T) {
	env := hubEnv(serveHub(t, &fakeHub{Workloads: testWorkloads}))
	code, out, errOut := atoll(t, env, "get", "workloads")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	cols := []string{"NAME", "TARGETS", "RUNNING", "NOT-RUNNING"}
	checkAligned(t, lines, cols)
	want := [][]string{{"web", "3", "2", "1"}, {"sensor-long-name", "0", "0", "0"}}
	for i, w := range want {
		if got := cells(lines[0], lines[i+1], cols); !slices.Equal(got, w) {
			t.Errorf("row %d = %q, want %q", i, got, w)
		}
	}

	_, out, _ = atoll(t, env, "get", "workloads", "-o", "wide")
	lines = strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	cols = append(cols, "DISCONNECTED", "NOT-RUNNING-ON")
	checkAligned(t, lines, cols)
	if got, want := cells(lines[0], lines[1], cols), []string{"web", "3", "2", "1", "1", "pi-3(backoff)"}; !slices.Equal(got, want) {
		t.Errorf("wide row = %q, want %q", got, want)
	}
}

func TestGetWorkloads_JSON(t *testing.T) {
	env := hubEnv(serveHub(t, &fakeHub{Workloads: testWorkloads}))
	code, out, _ := atoll(t, env, "get", "workloads", "-o", "json")
	var raw []struct {
		Name      string           `json:"name"`
		Targets   *int             `json:"targets"`
		Instances []map[string]any `json:"instances"`
	}
	if err := json.Unmarshal([]byte(out), &raw); err != nil || code != 0 || len(raw) != 2 {
		t.Fatalf("get workloads -o json = %d, %q: %v", code, out, err)
	}
	if raw[0].Name != "web" || raw[0].Targets == nil || *raw[0].Targets != 3 || len(raw[0].Instances) != 3 {
		t.Fatalf("workload JSON = %+v", raw[0])
	}
	in := raw[0].Instances[2]
	if in["node"] != "pi-3" || in["state"] != "backoff" || in["revision"] != 6.0 {
		t.Errorf("instance JSON = %v", in)
	}
}

func TestGet_BadOutputSendsNothing(t *testing.T) {
	h := &fakeHub{}
	env := hubEnv(serveHub(t, h))
	code, _, errOut := atoll(t, env, "get", "nodes", "-o", "xml")
	if code != 1 || !strings.Contains(errOut, `unknown output format "xml"`) {
		t.Errorf("-o xml = %d, %q", code, errOut)
	}
	if got := h.Requests(); len(got) != 0 {
		t.Errorf("hub called despite a bad flag: %q", got)
	}
}
