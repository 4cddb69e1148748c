package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"atoll.dev/atoll/internal/agent/localapi"
	"atoll.dev/atoll/internal/agent/supervisor"
	"atoll.dev/atoll/internal/atolltest"
	"atoll.dev/atoll/internal/client"
	"atoll.dev/atoll/internal/hub/api"
)

// TestDev_RunsExamplesAndStopsCleanly runs README's first command for real:
// a hub and three agents, the bundled examples placed on them, the CLI
// config pointing at them, nothing left running after Ctrl-C, and the same
// again when it is run a second time on the same data.
func TestDev_RunsExamplesAndStopsCleanly(t *testing.T) {
	home, data := t.TempDir(), t.TempDir()
	vars := map[string]string{"HOME": home}
	for round, action := range []string{"created", "unchanged"} {
		out, stop := startDev(t, data, vars)
		pids := waitDevPlacement(t, data, vars, out)
		if !strings.Contains(out.String(), "workload/sensor "+action+" (2 nodes)") || !strings.Contains(out.String(), "secret/api-token "+action+" (2 nodes)") {
			t.Errorf("round %d: examples not %s:\n%s", round+1, action, out.String())
		}
		if round == 0 {
			// Another terminal's commands find the hub and edge-1's agent
			// with no flags.
			code, nodes, stderr := atoll(t, vars, "get", "nodes")
			if code != 0 || strings.Count(nodes, "connected") != 3 {
				t.Fatalf("get nodes without flags: %d %q %q", code, nodes, stderr)
			}
			code, status, stderr := atoll(t, vars, "node", "status", "-o", "json")
			var st []supervisor.Status
			if err := json.Unmarshal([]byte(status), &st); err != nil || code != 0 || len(st) != 4 {
				t.Fatalf("edge-1 status without flags: %d %q %q %v", code, status, stderr, err)
			}
			// The secret example: the workload got its secret as a variable
			// and a file; `get secrets` shows no value.
			atolltest.WaitFor(t, 30*time.Second, func() error {
				code, logs, stderr := atoll(t, vars, "logs", "edge-1", "token-check")
				if code != 0 || !strings.Contains(logs, "API_TOKEN has 25 characters; the file 25") {
					return fmt.Errorf("token-check's log: %d %q %q", code, logs, stderr)
				}
				return nil
			})
			if code, secrets, _ := atoll(t, vars, "get", "secrets"); code != 0 || !strings.Contains(secrets, "api-token") || strings.Contains(secrets, "dev-only-token") {
				t.Errorf("get secrets: %d %q; want api-token listed, its value not", code, secrets)
			}
		}
		stop()
		for _, pid := range pids {
			if syscall.Kill(pid, 0) == nil {
				t.Errorf("round %d: workload pid %d still running after dev stopped", round+1, pid)
			}
		}
	}
}

// startDev runs `atoll dev` on data until stop is called.
func startDev(t *testing.T, data string, vars map[string]string) (*atolltest.Buffer, func()) {
	t.Helper()
	var out, errOut atolltest.Buffer
	e := &env{stdout: &out, stderr: &errOut, getenv: func(k string) string { return vars[k] }, now: time.Now}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"dev", "--data", data, "--listen", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0"}, e)
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case code := <-done:
			if code != 0 {
				t.Fatalf("dev exited %d: %s", code, errOut.String())
			}
		case <-time.After(60 * time.Second):
			t.Fatal("dev did not stop")
		}
	}
	t.Cleanup(stop)
	return &out, stop
}

// waitDevPlacement waits until every example runs where its placement
// says, and returns the PIDs of the exec workloads.
func waitDevPlacement(t *testing.T, data string, vars map[string]string, out *atolltest.Buffer) []int {
	t.Helper()
	want := map[string]string{
		"hello@edge-1": "running", "hello@edge-3": "running",
		"sensor@edge-1": "running", "sensor@edge-2": "running",
		"readings@edge-1": "running", "readings@edge-2": "running",
		"safety-monitor@edge-3": "running", "data-uploader@edge-3": "blocked",
		"token-check@edge-1": "running", "token-check@edge-2": "running",
	}
	atolltest.WaitFor(t, 60*time.Second, func() error {
		if !strings.Contains(out.String(), "atoll dev is running") {
			return errors.New("not up yet")
		}
		code, js, stderr := atoll(t, vars, "get", "workloads", "-o", "json")
		if code != 0 {
			return fmt.Errorf("get workloads: %s", stderr)
		}
		var ws []api.Workload
		if err := json.Unmarshal([]byte(js), &ws); err != nil {
			return err
		}
		got := map[string]string{}
		for _, w := range ws {
			for _, in := range w.Instances {
				got[w.Name+"@"+in.Node] = in.State
			}
		}
		for k, v := range want {
			if got[k] != v {
				return fmt.Errorf("%s is %q, want %q (all: %v)", k, got[k], v, got)
			}
		}
		return nil
	})
	// The hub may still show the previous run's statuses: the agents'
	// own views are waited for too. hello twice and safety-monitor run
	// steadily; crashy (edge-2) has a PID only between its crashes.
	var pids []int
	atolltest.WaitFor(t, 30*time.Second, func() error {
		pids = pids[:0]
		steady := 0
		for _, n := range devNodes {
			c := client.NewLocal(localapi.SocketPath(devNodeDir(data, n.name)))
			all, err := c.Status(context.Background())
			if err != nil {
				return err
			}
			for _, st := range all {
				if st.PID > 0 {
					pids = append(pids, st.PID)
					if st.Name == "hello" || st.Name == "safety-monitor" {
						steady++
					}
				}
			}
		}
		if steady != 3 {
			return fmt.Errorf("%d steady exec workload processes (hello, safety-monitor), want 3", steady)
		}
		return nil
	})
	return pids
}
