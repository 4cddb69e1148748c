package cli

import (
	"bytes"
	"net/http/httptest"
	"strings"
	"testing"

	"atoll.dev/atoll/internal/clock"
	"atoll.dev/atoll/internal/hlc"
	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/hub/control"
	"atoll.dev/atoll/internal/hub/events"
	"atoll.dev/atoll/internal/hub/fleet"
	"atoll.dev/atoll/internal/hub/hubtest"
	"atoll.dev/atoll/internal/hub/intent"
	"atoll.dev/atoll/internal/seal"
	"atoll.dev/atoll/internal/wire"
)

// secretsHub serves the hub API from a real controller over an embedded
// NATS, with a secrets key; it returns the API's URL.
func secretsHub(t *testing.T) string {
	t.Helper()
	ctx := hubtest.Context(t)
	_, js := hubtest.Connect(t, hubtest.NATS(t, "").ClientURL())
	store, err := intent.Open(ctx, js, intent.Config{})
	if err != nil {
		t.Fatal(err)
	}
	evlog, err := events.Open(ctx, js, events.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctl := control.New(control.Config{Store: store, Fleet: fleet.New(clock.Real{}, 0), Events: evlog, Link: noLink{},
		Clock: clock.Real{}, HLC: hlc.New(clock.Real{}, hlc.Timestamp{}), SecretKey: bytes.Repeat([]byte{3}, seal.KeySize)})
	if err := ctl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api.NewHandler(ctl, nil, api.WithSecrets(ctl, nil)))
	t.Cleanup(srv.Close)
	return srv.URL
}

type noLink struct{ control.Link }

func (noLink) Notify(string, wire.Notify) error { return nil }

const secretsYAML = `apiVersion: atoll.dev/v1
kind: Secret
metadata:
  name: db
spec:
  data:
    password: hunter2-cli
  placement:
    nodes: [pi-1]
---
apiVersion: atoll.dev/v1
kind: Workload
metadata:
  name: app
spec:
  runtime: exec
  exec:
    command: [/bin/app]
  placement:
    nodes: [pi-1]
  secrets:
    - name: db
      env: {DB_PASSWORD: password}
`

// TestSecrets_ApplyGetDelete: one file with a secret and a workload goes
// to both endpoints; no listing ever prints the value.
func TestSecrets_ApplyGetDelete(t *testing.T) {
	env := hubEnv(secretsHub(t))
	file := writeFile(t, t.TempDir(), "app.yaml", secretsYAML)
	code, out, errOut := atoll(t, env, "apply", "-f", file)
	if want := "secret/db created (1 node)\nworkload/app created (1 node)\n"; code != 0 || out != want {
		t.Fatalf("apply = %d, %q (stderr %q); want %q", code, out, errOut, want)
	}
	for _, format := range []string{"", "wide", "json", "yaml"} {
		code, out, errOut := atoll(t, env, "get", "secrets", "-o", format)
		if code != 0 || !strings.Contains(out, "db") || !strings.Contains(out, "password") {
			t.Fatalf("get secrets -o %q = %d, %q (stderr %q)", format, code, out, errOut)
		}
		if strings.Contains(out, "hunter2-cli") {
			t.Fatalf("get secrets -o %q prints the value:\n%s", format, out)
		}
	}
	code, out, _ = atoll(t, env, "get", "secrets")
	if want := "NAME   KEYS       VERSION   TARGETS   UPDATED\ndb     password   1         1  "; code != 0 || !strings.HasPrefix(out, want) {
		t.Fatalf("get secrets = %q, want it to start with %q", out, want)
	}
	if code, out, _ := atoll(t, env, "delete", "secret", "db"); code != 0 || out != "secret/db deleted\n" {
		t.Fatalf("delete secret = %d, %q", code, out)
	}
	if code, _, errOut := atoll(t, env, "delete", "secret", "db"); code != 1 || !strings.Contains(errOut, "secret db not found") {
		t.Fatalf("delete again = %d, %q", code, errOut)
	}
}
