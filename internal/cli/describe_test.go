package cli

import (
	"slices"
	"strings"
	"testing"

	"atoll.dev/atoll/internal/hlc"
	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/wire"
)

func TestDescribeNode(t *testing.T) {
	n := testNodes[0]
	n.Instances = []wire.WorkloadStatus{
		{Name: "web", State: wire.StateRunning, PID: 4242},
		{Name: "sensor", State: wire.StateBackoff, Restarts: 3, Reason: "exited with status 1"},
	}
	n.Overrides = []wire.Override{
		{Workload: "web", Path: "env.MODE", Value: []byte(`"debug"`), Priority: 10, Stamp: hlc.Timestamp{Wall: testNow.UnixNano()}},
		{Workload: "sensor", Path: "", Value: []byte(`{"metadata":{}}`)},
	}
	env := hubEnv(serveHub(t, &fakeHub{Nodes: []api.Node{n}}))

	code, out, errOut := atoll(t, env, "describe", "node", "pi-1")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"Name:               pi-1\n",
		"Labels:             role=kiosk,site=p3\n",
		"State:              connected\n",
		"Last Seen:          " + formatTime(n.LastSeen) + " (30s ago)\n",
		"Plan Revision:      7\n",
		"Stored Revision:    7\n",
		"Applied Revision:   6\n",
		"Capacity:           memory 512Mi, cpu 2\n",
		"Version:            v0.2.0\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("describe node lacks %q:\n%s", want, out)
		}
	}
	workloads := section(t, out, "Workloads:")
	cols := []string{"WORKLOAD", "STATE", "PID", "RESTARTS", "REASON"}
	checkAligned(t, workloads, cols)
	if got, want := cells(workloads[0], workloads[2], cols), []string{"sensor", "backoff", "-", "3", "exited with status 1"}; !slices.Equal(got, want) {
		t.Errorf("workload row = %q, want %q", got, want)
	}
	overrides := section(t, out, "Local Overrides:")
	cols = []string{"WORKLOAD", "FIELD", "PRIORITY", "STAMPED", "VALUE"}
	if got, want := cells(overrides[0], overrides[1], cols), []string{"web", "env.MODE", "10", formatTime(testNow), "debug"}; !slices.Equal(got, want) {
		t.Errorf("override row = %q, want %q", got, want)
	}
	if got, want := cells(overrides[0], overrides[2], cols), []string{"sensor", "(whole workload)", "0", "-", "(local workload)"}; !slices.Equal(got, want) {
		t.Errorf("override row = %q, want %q", got, want)
	}
}

func TestDescribeNode_NeverSeen(t *testing.T) {
	env := hubEnv(serveHub(t, &fakeHub{Nodes: testNodes}))
	_, out, _ := atoll(t, env, "describe", "node", "kiosk-long-name")
	for _, want := range []string{"Last Seen:          never\n", "Workloads:  <none>\n", "Local Overrides:  <none>\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("describe node lacks %q:\n%s", want, out)
		}
	}
}

func TestDescribeWorkload(t *testing.T) {
	env := hubEnv(serveHub(t, &fakeHub{Workloads: testWorkloads}))
	code, out, errOut := atoll(t, env, "describe", "workload", "web")
	if code != 0 || !strings.Contains(out, "Name:      web\nTargets:   3\n") {
		t.Fatalf("describe workload = %d, %q, %q", code, out, errOut)
	}
	instances := section(t, out, "Instances:")
	cols := []string{"NODE", "CONNECTION", "STATE", "APPLIED", "RESTARTS", "REASON"}
	checkAligned(t, instances, cols)
	want := [][]string{
		{"pi-1", "connected", "running", "6", "0", "-"},
		{"pi-2", "disconnected", "running", "5", "0", "-"},
		{"pi-3", "connected", "backoff", "6", "4", "exited with status 1"},
	}
	for i, w := range want {
		if got := cells(instances[0], instances[i+1], cols); !slices.Equal(got, w) {
			t.Errorf("instance %d = %q, want %q", i, got, w)
		}
	}

	_, out, _ = atoll(t, env, "describe", "workload", "sensor-long-name")
	if want := "Targets:   0 (no spec.placement: targets no node)\nInstances:  <none>\n"; !strings.Contains(out, want) {
		t.Errorf("describe of an untargeted workload lacks %q:\n%s", want, out)
	}
}

func TestDescribe_NotFound(t *testing.T) {
	env := hubEnv(serveHub(t, &fakeHub{}))
	for _, tt := range []struct{ args []string }{{[]string{"describe", "node", "nope"}}, {[]string{"describe", "workload", "nope"}}} {
		code, out, errOut := atoll(t, env, tt.args...)
		want := "error: " + tt.args[1] + ` "nope" not found` + "\n"
		if code != 1 || out != "" || errOut != want {
			t.Errorf("%q = %d, %q, %q; want %q", tt.args, code, out, errOut, want)
		}
	}
}

// section returns the lines of out's table under title, without their
// indentation.
func section(t *testing.T, out, title string) []string {
	t.Helper()
	_, rest, ok := strings.Cut(out, "\n"+title+"\n")
	if !ok {
		t.Fatalf("no %q section in:\n%s", title, out)
	}
	var lines []string
	for line := range strings.SplitSeq(rest, "\n") {
		if !strings.HasPrefix(line, "  ") {
			break
		}
		lines = append(lines, strings.TrimPrefix(line, "  "))
	}
	return lines
}
