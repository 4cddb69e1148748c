package cli

import (
	"bytes"
	"context"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// readyWatcher is the hub's stderr: it keeps everything written and sends
// the HTTP address from the hub's "hub ready" log line, once.
type readyWatcher struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	sent  bool
	ready chan string
}

func (w *readyWatcher) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	if !w.sent && strings.Contains(w.buf.String(), `msg="hub ready"`) {
		for f := range strings.FieldsSeq(w.buf.String()) {
			if addr, ok := strings.CutPrefix(f, "http="); ok {
				w.sent = true
				w.ready <- addr
			}
		}
	}
	return len(p), nil
}

func (w *readyWatcher) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

func TestHubCmd_ServesTheFleetVerbs(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	logs := &readyWatcher{ready: make(chan string, 1)}
	e := &env{stdout: &bytes.Buffer{}, stderr: logs, getenv: func(string) string { return "" }, now: time.Now}
	exited := make(chan int, 1)
	dir := t.TempDir()
	go func() {
		exited <- run(ctx, []string{"hub", "--data", dir, "--listen", "127.0.0.1:0", "--nats-listen", "127.0.0.1:0",
			"--telemetry-max-age", "24h", "--telemetry-max-bytes", "1048576"}, e)
	}()
	select {
	case <-logs.ready:
	case code := <-exited:
		t.Fatalf("hub exited with %d before it was ready:\n%s", code, logs)
	case <-time.After(30 * time.Second):
		t.Fatalf("hub not ready after 30s:\n%s", logs)
	}
	// TLS is on: the CLI reaches the hub with the admin's credentials the
	// hub wrote.
	env := map[string]string{"ATOLL_CONFIG": filepath.Join(dir, "admin.conf")}
	file := writeFile(t, t.TempDir(), "web.yaml", goodYAML)
	if code, _, errOut := atoll(t, nil, "get", "nodes", "--config", filepath.Join(dir, "admin.conf"), "--hub", "http://127.0.0.1:1"); code != 1 || !strings.Contains(errOut, "cannot reach") {
		t.Errorf("--config then --hub: %d %q", code, errOut)
	}

	for _, step := range []struct {
		args []string
		want string
	}{
		{[]string{"get", "nodes", "-o", "json"}, "[]\n"},
		{[]string{"apply", "-f", file}, "workload/web created (0 nodes)\n"},
		{[]string{"apply", "-f", file}, "workload/web unchanged (0 nodes)\n"},
		{[]string{"get", "workloads", "-o", "json"}, `"name": "web"`},
		{[]string{"describe", "workload", "web"}, "Targets:   0 ("},
		{[]string{"delete", "workload", "web"}, "workload/web deleted\n"},
		{[]string{"telemetry", "tail"}, "TIME   NODE   SUBJECT   SEQ   DATA\n"},
		{[]string{"telemetry", "tail", "-o", "json"}, "[]\n"},
	} {
		code, out, errOut := atoll(t, env, step.args...)
		if code != 0 || !strings.Contains(out, step.want) {
			t.Errorf("%q = %d, %q, %q; want %q", step.args, code, out, errOut, step.want)
		}
	}
	code, _, errOut := atoll(t, env, "describe", "workload", "web")
	if code != 1 || !strings.Contains(errOut, "error: ") || !strings.Contains(errOut, "web") {
		t.Errorf("describe of a deleted workload = %d, %q", code, errOut)
	}
	testAccessVerbs(t, env, file)

	cancel()
	select {
	case code := <-exited:
		if code != 0 {
			t.Errorf("hub stopped by its context exited %d:\n%s", code, logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("hub still running 30s after its context ended")
	}
}

func TestHubCmd_Flags(t *testing.T) {
	_, out, _ := atoll(t, map[string]string{"ATOLL_HUB_DATA": "/srv/hub"}, "hub", "--help")
	for _, want := range []string{`$ATOLL_HUB_DATA if set (default "/srv/hub")`,
		`(default "127.0.0.1:7070")`, `(default "127.0.0.1:4222")`, `--node-timeout duration`, `(default 30s)`,
		`--telemetry-max-age duration`, `(default 168h0m0s)`, `--telemetry-max-bytes int`, `(default 1073741824)`} {
		if !strings.Contains(out, want) {
			t.Errorf("hub --help lacks %q:\n%s", want, out)
		}
	}
	if _, out, _ := atoll(t, nil, "hub", "--help"); !strings.Contains(out, `(default "/var/lib/atoll-hub")`) {
		t.Errorf("hub --help without $ATOLL_HUB_DATA:\n%s", out)
	}
	code, _, errOut := atoll(t, nil, "hub", "--data", "")
	if code != 1 || !strings.Contains(errOut, "error: ") || !strings.Contains(errOut, "data") {
		t.Errorf("hub --data '' = %d, %q", code, errOut)
	}
}

// testAccessVerbs drives tokens and users through the CLI against a hub
// with TLS on: a viewer's config made by `atoll user create` reads but
// cannot apply; every change shows in `atoll audit`.
func testAccessVerbs(t *testing.T, admin map[string]string, manifest string) {
	t.Helper()
	code, token, errOut := atoll(t, admin, "token", "create", "--uses", "2", "--ttl", "1h", "--labels", "site=plant-9", "--name-prefix", "kiosk-")
	if code != 0 || !strings.HasPrefix(token, "AT1.") {
		t.Fatalf("token create = %d, %q, %q", code, token, errOut)
	}
	id := strings.Split(token, ".")[1]
	code, out, errOut := atoll(t, admin, "token", "list")
	if code != 0 || !strings.Contains(out, id) || !strings.Contains(out, "0/2") || !strings.Contains(out, "site=plant-9") || !strings.Contains(out, "kiosk-") {
		t.Errorf("token list = %d, %q, %q", code, out, errOut)
	}
	secret := strings.Split(token, ".")[2]
	if strings.Contains(out, secret) {
		t.Errorf("token list shows the token's secret:\n%s", out)
	}
	if code, out, errOut := atoll(t, admin, "token", "revoke", id); code != 0 || out != "token/"+id+" revoked\n" {
		t.Errorf("token revoke = %d, %q, %q", code, out, errOut)
	}
	for _, bad := range []struct{ args, want string }{
		{"token create --ttl soon", `ttl: "soon" is not a positive duration`},
		{"token create --uses -1", "uses: -1 is not a positive number"},
		{"token create --name-prefix Kiosk_", `namePrefix: "Kiosk_" cannot start a node name`},
		{"token revoke nosuch", `no token "nosuch"`},
		{"user create Ada_L --role viewer", `name: "Ada_L" is not a user name`},
		{"node revoke nobody", `no enrolled node "nobody"`},
	} {
		if code, _, errOut := atoll(t, admin, strings.Fields(bad.args)...); code != 1 || !strings.Contains(errOut, bad.want) {
			t.Errorf("%s = %d, %q; want an error with %q", bad.args, code, errOut, bad.want)
		}
	}

	code, conf, errOut := atoll(t, admin, "user", "create", "ada", "--role", "viewer")
	if code != 0 || !strings.Contains(conf, "BEGIN CERTIFICATE") || !strings.Contains(conf, "PRIVATE KEY") {
		t.Fatalf("user create = %d, %q, %q", code, conf, errOut)
	}
	viewer := map[string]string{"ATOLL_CONFIG": writeFile(t, t.TempDir(), "ada.yaml", conf)}
	if code, out, errOut := atoll(t, viewer, "get", "workloads"); code != 0 || !strings.Contains(out, "NAME") {
		t.Errorf("viewer get workloads = %d, %q, %q", code, out, errOut)
	}
	if code, _, errOut := atoll(t, viewer, "apply", "-f", manifest); code != 1 || !strings.Contains(errOut, "needs role operator") {
		t.Errorf("viewer apply = %d, %q; want refused, naming the role needed", code, errOut)
	}
	if code, _, errOut := atoll(t, admin, "user", "create", "bob", "--role", "root"); code != 1 || !strings.Contains(errOut, "admin, operator, viewer") {
		t.Errorf("user create --role root = %d, %q", code, errOut)
	}
	code, out, errOut = atoll(t, admin, "user", "list")
	if code != 0 || !containsAll(out, "admin", "ada", "viewer", "valid") {
		t.Errorf("user list = %d, %q, %q; want the admin and ada, valid", code, out, errOut)
	}
	if code, out, errOut := atoll(t, admin, "user", "revoke", "ada"); code != 0 || out != "user/ada revoked (1 certificate)\n" {
		t.Errorf("user revoke ada = %d, %q, %q", code, out, errOut)
	}
	if code, _, errOut := atoll(t, viewer, "get", "workloads"); code != 1 || !strings.Contains(errOut, "revoked") {
		t.Errorf("a revoked viewer's get workloads = %d, %q; want refused as revoked", code, errOut)
	}
	if code, _, errOut := atoll(t, admin, "user", "revoke", "nobody"); code != 1 || !strings.Contains(errOut, `no user "nobody"`) {
		t.Errorf("user revoke nobody = %d, %q", code, errOut)
	}
	code, out, errOut = atoll(t, admin, "audit")
	for _, want := range []string{"POST     /v1/tokens", "DELETE   /v1/tokens/" + id, "POST     /v1/users", "ada", "403", "/v1/users/ada/revoke"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("audit = %d, %q, %q; want %q in it", code, out, errOut, want)
		}
	}
}

func containsAll(s string, subs ...string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
