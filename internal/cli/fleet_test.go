package cli

import (
	"encoding/json"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/wire"
)

// hubEnv points the CLI at url through $ATOLL_HUB.
func hubEnv(url string) map[string]string { return map[string]string{"ATOLL_HUB": url} }

func TestFleet_HubURLResolution(t *testing.T) {
	// Four hubs, each knowing one node named after where the URL came from.
	url := map[string]string{}
	for _, from := range []string{"flag", "env", "config", "default"} {
		url[from] = serveHub(t, &fakeHub{Nodes: []api.Node{{Name: from}}})
	}
	cfg := writeFile(t, t.TempDir(), "config.yaml", "hub: "+url["config"]+"\n")
	tests := []struct {
		name    string
		env     map[string]string
		args    []string
		want    string
		wantErr string
	}{
		{"flag beats everything", map[string]string{"ATOLL_HUB": url["env"], "ATOLL_CONFIG": cfg},
			[]string{"--hub", url["flag"]}, "flag", ""},
		{"env beats config", map[string]string{"ATOLL_HUB": url["env"], "ATOLL_CONFIG": cfg}, nil, "env", ""},
		{"config beats default", map[string]string{"ATOLL_CONFIG": cfg}, nil, "config", ""},
		{"no scheme means https", nil, []string{"--hub", strings.TrimPrefix(url["flag"], "http://")}, "",
			"no credentials for https://" + strings.TrimPrefix(url["flag"], "http://") + ": pass --config"},
		{"default", map[string]string{"ATOLL_CONFIG": filepath.Join(t.TempDir(), "none.yaml")}, nil, "",
			"no credentials for https://127.0.0.1:7070: "},
		{"bad URL", nil, []string{"--hub", "ftp://x"}, "", `hub URL "ftp://x": want https://HOST:PORT`},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.name, " ", "_"), func(t *testing.T) {
			if tt.name == "default" && listening(defaultHubAddr) {
				t.Skip("something listens on " + defaultHubAddr)
			}
			code, out, errOut := atoll(t, tt.env, append([]string{"get", "nodes", "-o", "json"}, tt.args...)...)
			if tt.wantErr != "" {
				if code != 1 || !strings.Contains(errOut, tt.wantErr) {
					t.Errorf("= %d, %q; want 1 and %q", code, errOut, tt.wantErr)
				}
				return
			}
			var ns []api.Node
			if err := json.Unmarshal([]byte(out), &ns); err != nil || code != 0 || len(ns) != 1 || ns[0].Name != tt.want {
				t.Errorf("= %d, %q, %q; want the %s hub's node", code, out, errOut, tt.want)
			}
		})
	}
}

// listening reports whether something accepts connections at addr.
func listening(addr string) bool {
	c, err := net.Dial("tcp", addr)
	if err == nil {
		c.Close()
	}
	return err == nil
}

func TestFleet_UnreachableHub(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	manifest := writeFile(t, t.TempDir(), "web.yaml", goodYAML)
	want := "error: cannot reach the hub at " + url + ": is `atoll hub` (or `atoll dev`) running?\n"
	for _, args := range [][]string{
		{"apply", "-f", manifest},
		{"get", "nodes"},
		{"get", "workloads"},
		{"describe", "node", "pi-1"},
		{"describe", "workload", "web"},
		{"delete", "workload", "web"},
		{"logs", "pi-1", "web"},
		{"events"},
		{"restart", "workload", "web", "--node", "pi-1"},
	} {
		code, out, errOut := atoll(t, hubEnv(url), args...)
		if code != 1 || out != "" || errOut != want {
			t.Errorf("%q = %d, %q, %q; want 1 and %q", args, code, out, errOut, want)
		}
	}
}

func TestApply(t *testing.T) {
	h := &fakeHub{Nodes: []api.Node{{Name: "pi-1"}, {Name: "pi-2"}}}
	env := hubEnv(serveHub(t, h))
	file := writeFile(t, t.TempDir(), "web.yaml", goodYAML)

	for _, want := range []string{"workload/web created (2 nodes)\n", "workload/web configured (2 nodes)\n"} {
		code, out, errOut := atoll(t, env, "apply", "-f", file)
		if code != 0 || out != want {
			t.Errorf("apply = %d, %q (stderr %q); want %q", code, out, errOut, want)
		}
	}
	// An invalid manifest is caught here, every problem printed; the hub
	// never hears of it.
	bad := writeFile(t, t.TempDir(), "bad.yaml", badYAML)
	code, out, errOut := atoll(t, env, "apply", "-f", bad)
	if code != 1 || out != "" || strings.Count(errOut, "error: "+bad+"#1: ") != 2 ||
		!strings.Contains(errOut, "error: "+bad+"#1: spec.runtime: ") {
		t.Errorf("apply bad = %d, %q, %q; want both problems", code, out, errOut)
	}
	want := []string{"POST /v1/workloads:apply", "POST /v1/workloads:apply"}
	if got := h.Requests(); !slices.Equal(got, want) {
		t.Errorf("requests = %q, want %q", got, want)
	}
}

func TestApply_OneNode(t *testing.T) {
	env := hubEnv(serveHub(t, &fakeHub{Nodes: []api.Node{{Name: "pi-1"}}}))
	file := writeFile(t, t.TempDir(), "web.yaml", goodYAML)
	if _, out, _ := atoll(t, env, "apply", "-f", file); out != "workload/web created (1 node)\n" {
		t.Errorf("apply = %q", out)
	}
}

func TestApply_HubRejectsWithFields(t *testing.T) {
	h := &fakeHub{FailCode: 400, Fail: &api.ErrorResponse{Error: "invalid workloads", Fields: []api.FieldError{
		{Source: "request#1", Path: "spec.placement.selector", Message: `label key "Site" is not lower case`},
	}}}
	file := writeFile(t, t.TempDir(), "web.yaml", goodYAML)
	code, out, errOut := atoll(t, hubEnv(serveHub(t, h)), "apply", "-f", file)
	want := "error: invalid workloads\n" +
		`error: request#1: spec.placement.selector: label key "Site" is not lower case` + "\n"
	if code != 1 || out != "" || errOut != want {
		t.Errorf("apply = %d, %q, %q; want 1 and %q", code, out, errOut, want)
	}
}

func TestDeleteWorkload(t *testing.T) {
	h := &fakeHub{Workloads: []api.Workload{{Name: "web"}}}
	env := hubEnv(serveHub(t, h))
	tests := []struct {
		args      []string
		code      int
		out, errs string
	}{
		{[]string{"delete", "workload", "web"}, 0, "workload/web deleted\n", ""},
		{[]string{"delete", "workload", "web"}, 1, "", "error: workload \"web\" not found\n"},
		{[]string{"delete", "workload"}, 1, "", "accepts 1 arg"},
	}
	for _, tt := range tests {
		code, out, errOut := atoll(t, env, tt.args...)
		if code != tt.code || out != tt.out || !strings.Contains(errOut, tt.errs) {
			t.Errorf("%q = %d, %q, %q; want %d, %q, %q", tt.args, code, out, errOut, tt.code, tt.out, tt.errs)
		}
	}
	want := []string{"DELETE /v1/workloads/web", "DELETE /v1/workloads/web"}
	if got := h.Requests(); !slices.Equal(got, want) {
		t.Errorf("requests = %q, want %q", got, want)
	}
}

func TestLogs(t *testing.T) {
	h := &fakeHub{Logs: "two\nthree\n"}
	env := hubEnv(serveHub(t, h))
	code, out, errOut := atoll(t, env, "logs", "pi-1", "web", "--tail", "2")
	if code != 0 || out != "two\nthree\n" {
		t.Errorf("logs = %d, %q, %q", code, out, errOut)
	}
	atoll(t, env, "logs", "pi-1", "web")
	want := []string{"GET /v1/nodes/pi-1/workloads/web/logs?tail=2", "GET /v1/nodes/pi-1/workloads/web/logs"}
	if got := h.Requests(); !slices.Equal(got, want) {
		t.Errorf("requests = %q, want %q", got, want)
	}
}

func TestEvents(t *testing.T) {
	at := time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC)
	h := &fakeHub{Events: []wire.Event{
		{Node: "pi-1", ID: "e1", Time: at, Workload: "web", Type: "started", Message: "pid 42"},
		{Node: "kiosk-long-name", ID: "e2", Time: at, Type: "conflict-settled", Message: "env.A: local value kept"},
	}}
	env := hubEnv(serveHub(t, h))

	code, out, errOut := atoll(t, env, "events", "--node", "pi-1", "--since", "10m", "--limit", "5")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || len(lines) != 3 {
		t.Fatalf("events = %d, %q, %q", code, out, errOut)
	}
	cols := []string{"TIME", "NODE", "WORKLOAD", "TYPE", "MESSAGE"}
	checkAligned(t, lines, cols)
	want := []string{formatTime(at), "kiosk-long-name", "-", "conflict-settled", "env.A: local value kept"}
	if got := cells(lines[0], lines[2], cols); !slices.Equal(got, want) {
		t.Errorf("row = %q, want %q", got, want)
	}

	atoll(t, env, "events", "--since", "2026-03-01T10:00:00+01:00")
	_, out, _ = atoll(t, env, "events", "-o", "json")
	var evs []wire.Event
	if err := json.Unmarshal([]byte(out), &evs); err != nil || len(evs) != 2 || evs[1].Node != "kiosk-long-name" {
		t.Errorf("events -o json = %q, %v", out, err)
	}
	wantReqs := []string{
		"GET /v1/events?limit=5&node=pi-1&since=2026-03-01T11%3A50%3A00Z", // testNow - 10m
		"GET /v1/events?since=2026-03-01T09%3A00%3A00Z",
		"GET /v1/events",
	}
	if got := h.Requests(); !slices.Equal(got, wantReqs) {
		t.Errorf("requests = %q, want %q", got, wantReqs)
	}
}

func TestEvents_EmptyAndBadFlags(t *testing.T) {
	h := &fakeHub{}
	env := hubEnv(serveHub(t, h))
	if code, out, _ := atoll(t, env, "events", "-o", "json"); code != 0 || out != "[]\n" {
		t.Errorf("events -o json = %d, %q; want []", code, out)
	}
	for _, args := range [][]string{{"events", "--since", "yesterday"}, {"events", "--since", "-5m"}, {"events", "-o", "wide"}} {
		if code, _, errOut := atoll(t, env, args...); code != 1 || !strings.Contains(errOut, "error: ") {
			t.Errorf("%q = %d, %q; want an error", args, code, errOut)
		}
	}
	if got := h.Requests(); len(got) != 1 {
		t.Errorf("requests = %q; bad flags must send nothing", got)
	}
}

func TestRestartWorkload(t *testing.T) {
	h := &fakeHub{}
	env := hubEnv(serveHub(t, h))
	expires := formatTime(testNow.Add(30 * time.Minute))
	args := []string{"restart", "workload", "web", "--node", "pi-1", "--idempotency-key", "k1", "--ttl", "30m"}

	code, out, errOut := atoll(t, env, args...)
	if want := "command/k1 queued for node pi-1 (expires " + expires + ")\n"; code != 0 || out != want {
		t.Errorf("restart = %d, %q, %q; want %q", code, out, errOut, want)
	}
	var sent api.CommandRequest
	if err := json.Unmarshal(h.LastBody(), &sent); err != nil || sent.IdempotencyKey != "k1" {
		t.Errorf("sent %s: %v", h.LastBody(), err)
	}
	if d, err := time.ParseDuration(sent.TTL); err != nil || d != 30*time.Minute {
		t.Errorf("sent ttl %q, want 30m", sent.TTL)
	}
	code, out, _ = atoll(t, env, args...)
	if want := "command/k1 already queued for node pi-1 (expires " + expires + ")\n"; code != 0 || out != want {
		t.Errorf("restart again = %d, %q; want %q", code, out, want)
	}
	// Default TTL: one hour.
	_, out, _ = atoll(t, env, "restart", "workload", "web", "--node", "pi-1")
	if want := "command/generated-1 queued for node pi-1 (expires " + formatTime(testNow.Add(time.Hour)) + ")\n"; out != want {
		t.Errorf("restart, default ttl = %q; want %q", out, want)
	}
	want := slices.Repeat([]string{"POST /v1/nodes/pi-1/workloads/web:restart"}, 3)
	if got := h.Requests(); !slices.Equal(got, want) {
		t.Errorf("requests = %q, want %q", got, want)
	}

	for _, bad := range [][]string{
		{"restart", "workload", "web"},
		{"restart", "workload", "web", "--node", "pi-1", "--ttl", "0s"},
	} {
		if code, _, errOut := atoll(t, env, bad...); code != 1 || !strings.Contains(errOut, "error: ") {
			t.Errorf("%q = %d, %q; want an error", bad, code, errOut)
		}
	}
	if got := h.Requests(); len(got) != 3 {
		t.Errorf("requests = %q; bad flags must send nothing", got)
	}
}
