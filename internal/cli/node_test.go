package cli

import (
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"atoll.dev/atoll/internal/agent/localapi"
	"atoll.dev/atoll/internal/agent/localapi/localapitest"
	"atoll.dev/atoll/internal/agent/store"
	"atoll.dev/atoll/internal/agent/supervisor"
)

// agentDir serves n as an agent whose data directory is the returned dir.
func agentDir(t *testing.T, n *localapitest.Node) string {
	t.Helper()
	dir := t.TempDir()
	localapitest.Serve(t, dir, n)
	return dir
}

func TestNodeStatus_JSONEmptyIsArray(t *testing.T) {
	dir := agentDir(t, &localapitest.Node{})
	code, out, errOut := atoll(t, nil, "node", "status", "-o", "json", "--data", dir)
	if code != 0 || out != "[]\n" {
		t.Errorf("node status -o json = %d, %q (stderr %q); want 0, \"[]\\n\"", code, out, errOut)
	}
}

func TestNodeStatus_JSON(t *testing.T) {
	dir := agentDir(t, &localapitest.Node{Statuses: []supervisor.Status{{Name: "web", State: supervisor.StateRunning, PID: 7}}})
	code, out, _ := atoll(t, nil, "node", "status", "-o", "json", "--data", dir)
	var st []supervisor.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 0 {
		t.Fatalf("output %q: %v (exit %d)", out, err, code)
	}
	if len(st) != 1 || st[0].Name != "web" || st[0].PID != 7 {
		t.Errorf("status = %+v", st)
	}
}

var tableStatuses = []supervisor.Status{
	{Name: "a", Runtime: "exec", State: supervisor.StateRunning, PID: 4242, Priority: 10,
		StartedAt: testNow.Add(-90 * time.Second), Health: "healthy", Limits: "memory 64Mi enforced by cgroup v1"},
	{Name: "sensor-long-name", Runtime: "wasm", State: supervisor.StateBackoff, Restarts: 12,
		Reason: "exited with status 1"},
}

func TestNodeStatus_TableIsAligned(t *testing.T) {
	dir := agentDir(t, &localapitest.Node{Statuses: tableStatuses})
	code, out, errOut := atoll(t, nil, "node", "status", "--data", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	cols := []string{"NAME", "RUNTIME", "STATE", "PID", "RESTARTS", "PRIORITY", "AGE", "REASON"}
	checkAligned(t, lines, cols)
	want := [][]string{
		{"a", "exec", "running", "4242", "0", "10", "1m", "-"},
		{"sensor-long-name", "wasm", "backoff", "-", "12", "0", "-", "exited with status 1"},
	}
	for i, w := range want {
		if got := cells(lines[0], lines[i+1], cols); !slices.Equal(got, w) {
			t.Errorf("row %d = %q, want %q", i, got, w)
		}
	}
}

func TestNodeStatus_Wide(t *testing.T) {
	dir := agentDir(t, &localapitest.Node{Statuses: tableStatuses})
	_, out, _ := atoll(t, nil, "node", "status", "-o", "wide", "--data", dir)
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	cols := []string{"NAME", "RUNTIME", "STATE", "PID", "RESTARTS", "PRIORITY", "AGE", "HEALTH", "LIMITS", "REASON"}
	checkAligned(t, lines, cols)
	got := cells(lines[0], lines[1], cols)
	if got[7] != "healthy" || got[8] != "memory 64Mi enforced by cgroup v1" {
		t.Errorf("wide row = %q", got)
	}
}

// checkAligned checks that lines has a header naming cols and that every
// row has a cell starting exactly under each header.
func checkAligned(t *testing.T, lines, cols []string) {
	t.Helper()
	if len(lines) < 2 {
		t.Fatalf("table has %d lines", len(lines))
	}
	if got := strings.Fields(lines[0]); !slices.Equal(got, cols) {
		t.Fatalf("header = %q, want %q", got, cols)
	}
	for _, col := range cols[1:] {
		at := strings.Index(lines[0], " "+col) + 1
		for _, row := range lines[1:] {
			if len(row) <= at || row[at-1] != ' ' || row[at] == ' ' {
				t.Errorf("column %s (at %d) not aligned in row %q", col, at, row)
			}
		}
	}
}

// cells cuts a row at the header's column starts.
func cells(header, row string, cols []string) []string {
	var out []string
	for i, col := range cols {
		start := strings.Index(header, col)
		end := len(row)
		if i+1 < len(cols) {
			end = strings.Index(header, " "+cols[i+1]) + 1
		}
		out = append(out, strings.TrimSpace(row[start:min(end, len(row))]))
	}
	return out
}

func TestNode_UnreachableAgent(t *testing.T) {
	dir := t.TempDir()
	sock := filepath.Join(dir, "agent.sock")
	for _, args := range [][]string{
		{"node", "status", "--data", dir},
		{"node", "info", "--data", dir},
		{"node", "delete", "web", "--data", dir},
	} {
		code, out, errOut := atoll(t, nil, args...)
		want := "error: cannot reach the agent at " + sock + ": is `atoll agent --data " + dir + "` running?\n"
		if code != 1 || errOut != want || out != "" {
			t.Errorf("%q = %d, %q, %q; want 1 and %q", args, code, out, errOut, want)
		}
	}
}

func TestNode_DataDirFromEnvironment(t *testing.T) {
	dir := agentDir(t, &localapitest.Node{Statuses: []supervisor.Status{{Name: "web"}}})
	code, out, errOut := atoll(t, map[string]string{"ATOLL_DATA": dir}, "node", "status", "-o", "json")
	if code != 0 || !strings.Contains(out, `"web"`) {
		t.Errorf("with $ATOLL_DATA: %d, %q, %q", code, out, errOut)
	}
	// Without it, the default is /var/lib/atoll.
	_, _, errOut = atoll(t, nil, "node", "status")
	if !strings.Contains(errOut, " /var/lib/atoll/agent.sock") {
		t.Errorf("default data dir not used: %q", errOut)
	}
}

func TestNodeApply(t *testing.T) {
	n := &localapitest.Node{}
	dir := agentDir(t, n)
	file := writeFile(t, t.TempDir(), "web.yaml", goodYAML)

	for _, want := range []string{"workload/web created\n", "workload/web configured\n"} {
		code, out, errOut := atoll(t, nil, "node", "apply", "-f", file, "--data", dir)
		if code != 0 || out != want {
			t.Errorf("apply = %d, %q (stderr %q); want %q", code, out, errOut, want)
		}
	}
	// An invalid manifest is caught locally; the agent never hears of it.
	bad := writeFile(t, t.TempDir(), "bad.yaml", badYAML)
	code, _, errOut := atoll(t, nil, "node", "apply", "-f", bad, "--data", dir)
	if code != 1 || !strings.Contains(errOut, "error: "+bad+"#1: spec.runtime: ") {
		t.Errorf("apply bad = %d, %q", code, errOut)
	}
	if got := n.Calls(); !slices.Equal(got, []string{"Apply(web)", "Apply(web)"}) {
		t.Errorf("calls = %q", got)
	}
}

func TestNodeDeleteRestart(t *testing.T) {
	n := &localapitest.Node{Statuses: []supervisor.Status{{Name: "web"}}}
	dir := agentDir(t, n)
	tests := []struct {
		args      []string
		code      int
		out, errs string
	}{
		{[]string{"restart", "web"}, 0, "workload/web restarted\n", ""},
		{[]string{"delete", "web"}, 0, "workload/web deleted\n", ""},
		{[]string{"delete", "nope"}, 1, "", "workload not found"},
		{[]string{"restart", "nope"}, 1, "", "workload not found"},
		{[]string{"delete"}, 1, "", "accepts 1 arg"},
	}
	for _, tt := range tests {
		code, out, errOut := atoll(t, nil, append([]string{"node", "--data", dir}, tt.args...)...)
		if code != tt.code || out != tt.out || !strings.Contains(errOut, tt.errs) {
			t.Errorf("%q = %d, %q, %q; want %d, %q, %q", tt.args, code, out, errOut, tt.code, tt.out, tt.errs)
		}
	}
}

func TestNodeEvents(t *testing.T) {
	at := time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC)
	n := &localapitest.Node{EventLog: []store.Event{
		{Seq: 1, ID: "e1", Time: at, Workload: "web", Type: "started", Message: "pid 42"},
		{Seq: 2, ID: "e2", Time: at, Workload: "web", Type: "crashed", Message: "exit status 1"},
	}}
	dir := agentDir(t, n)

	code, out, _ := atoll(t, nil, "node", "events", "--data", dir, "--after", "1")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || len(lines) != 2 {
		t.Fatalf("events = %d, %q", code, out)
	}
	checkAligned(t, lines, []string{"SEQ", "TIME", "WORKLOAD", "TYPE", "MESSAGE"})
	if !strings.HasPrefix(lines[1], "2 ") || !strings.HasSuffix(lines[1], "crashed   exit status 1") {
		t.Errorf("event row = %q", lines[1])
	}

	_, out, _ = atoll(t, nil, "node", "events", "--data", dir, "-o", "json")
	var evs []store.Event
	if err := json.Unmarshal([]byte(out), &evs); err != nil || len(evs) != 2 {
		t.Errorf("events -o json = %q, %v", out, err)
	}
}

func TestNodeInfo(t *testing.T) {
	n := &localapitest.Node{NodeInfo: localapi.NodeInfo{Name: "kiosk-7", Labels: map[string]string{"site": "p3", "role": "kiosk"},
		CapacityMemory: 512 << 20, CapacityMilliCPU: 1500, Limits: "cgroup v1", Version: "v0.1.0",
		Runtimes: []string{"exec", "wasm"}, UnavailableRuntimes: map[string]string{"container": "no Docker engine at unix:///x.sock: refused"},
		Hub: "nats://hub:4222", HubConnected: true, StoredRevision: 7, AppliedRevision: 6,
		Broker: "nats://127.0.0.1:4223", MQTT: "127.0.0.1:1883", Outbox: 12}}
	dir := agentDir(t, n)
	code, out, _ := atoll(t, nil, "node", "info", "--data", dir)
	for _, want := range []string{"Name:", "kiosk-7", "role=kiosk,site=p3", "memory 512Mi, cpu 1500m", "cgroup v1", "Store:      ok", "v0.1.0",
		"Runtimes:   exec, wasm; not container: no Docker engine at unix:///x.sock: refused",
		"Hub:        nats://hub:4222, connected; plan revision 7 stored, 6 applied",
		"Broker:     nats://127.0.0.1:4223, MQTT 127.0.0.1:1883; 12 messages waiting for the hub"} {
		if !strings.Contains(out, want) {
			t.Errorf("info output lacks %q:\n%s", want, out)
		}
	}
	if code != 0 {
		t.Errorf("exit %d", code)
	}
}

func TestNode_UnknownOutputFormat(t *testing.T) {
	n := &localapitest.Node{}
	dir := agentDir(t, n)
	code, _, errOut := atoll(t, nil, "node", "status", "-o", "yaml", "--data", dir)
	if code != 1 || !strings.Contains(errOut, `unknown output format "yaml"`) {
		t.Errorf("-o yaml = %d, %q", code, errOut)
	}
	if calls := n.Calls(); len(calls) != 0 {
		t.Errorf("agent called despite a bad flag: %q", calls)
	}
}

func TestNodeLogs(t *testing.T) {
	log := writeFile(t, t.TempDir(), "web.log", "one\ntwo\nthree\n")
	dir := agentDir(t, &localapitest.Node{LogFiles: map[string]string{"web": log}})

	code, out, errOut := atoll(t, nil, "node", "logs", "web", "--tail", "2", "--data", dir)
	if code != 0 || out != "two\nthree\n" {
		t.Errorf("logs --tail 2 = %d, %q, %q", code, out, errOut)
	}
	code, out, _ = atoll(t, nil, "node", "logs", "web", "--data", dir)
	if code != 0 || out != "one\ntwo\nthree\n" {
		t.Errorf("logs = %d, %q; want everything", code, out)
	}
	code, _, errOut = atoll(t, nil, "node", "logs", "nope", "--data", dir)
	if code != 1 || !strings.Contains(errOut, "workload not found") {
		t.Errorf("logs nope = %d, %q", code, errOut)
	}
}
