package control_test

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"atoll.dev/atoll/internal/hlc"
	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/hub/control"
	"atoll.dev/atoll/internal/hub/events"
	"atoll.dev/atoll/internal/hub/fleet"
	"atoll.dev/atoll/internal/hub/hubtest"
	"atoll.dev/atoll/internal/hub/intent"
	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/seal"
	"atoll.dev/atoll/internal/wire"

	"github.com/nats-io/nats.go/jetstream"
)

// nodeKeys is the enrollment registry as the controller sees it: the
// nodes it holds have keys, the others are not enrolled.
type nodeKeys map[string]*ecdh.PrivateKey

func (k nodeKeys) Labels(string) map[string]string { return nil }

func (k nodeKeys) NodeKey(_ context.Context, node string) (*ecdh.PublicKey, error) {
	if p, ok := k[node]; ok {
		return p.PublicKey(), nil
	}
	return nil, nil
}

type secretEnv struct {
	*env
	js   jetstream.JetStream
	keys nodeKeys
}

// newSecretEnv is a controller with a secrets key, and keys for n1 and n2
// (n3 is not enrolled).
func newSecretEnv(t *testing.T) *secretEnv {
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
	keys := nodeKeys{}
	for _, n := range []string{"n1", "n2"} {
		if keys[n], err = ecdh.P256().GenerateKey(rand.Reader); err != nil {
			t.Fatal(err)
		}
	}
	c := hubtest.NewClock(t0)
	l := &link{}
	ctl := control.New(control.Config{Store: store, Fleet: fleet.New(c, 0), Events: evlog, Link: l,
		Clock: c, HLC: hlc.New(c, hlc.Timestamp{}), NodeKeys: keys, SecretKey: bytes.Repeat([]byte{1}, seal.KeySize)})
	if err := ctl.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return &secretEnv{env: &env{ctl: ctl, store: store, link: l, clock: c}, js: js, keys: keys}
}

const secretValue = "hunter2-plaintext"

func secret(name, value string, nodes ...string) manifest.Secret {
	return manifest.Secret{APIVersion: manifest.APIVersion, Kind: manifest.KindSecret, Metadata: manifest.Metadata{Name: name},
		Spec: manifest.SecretSpec{Data: map[string]string{"password": value, "user": "app"}, Placement: manifest.Placement{Nodes: nodes}}}
}

func withSecret(w manifest.Workload, ref manifest.SecretRef) manifest.Workload {
	w.Spec.Secrets = append(w.Spec.Secrets, ref)
	return w
}

func (e *secretEnv) plan(t *testing.T, node string) intent.Entry[wire.Plan] {
	t.Helper()
	p, err := e.store.Plans.Get(hubtest.Context(t), node)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// open opens a workload's sealed secret with the node's key.
func (e *secretEnv) open(t *testing.T, node string, ss wire.SealedSecret) map[string]string {
	t.Helper()
	b, err := seal.Open(e.keys[node], ss.Sealed, wire.SecretAAD(node, ss.Name, ss.Version))
	if err != nil {
		t.Fatal(err)
	}
	var data map[string]string
	if err := json.Unmarshal(b, &data); err != nil {
		t.Fatal(err)
	}
	return data
}

func TestController_Secrets_ApplyListDelete(t *testing.T) {
	e := newSecretEnv(t)
	ctx := hubtest.Context(t)
	res, err := e.ctl.ApplySecrets(ctx, []manifest.Secret{secret("db", secretValue, "n1")})
	if err != nil {
		t.Fatal(err)
	}
	if res[0].Action != api.ActionCreated || res[0].Targets != 1 {
		t.Fatalf("apply = %+v, want created, 1 target", res)
	}
	if res, _ = e.ctl.ApplySecrets(ctx, []manifest.Secret{secret("db", secretValue, "n1")}); res[0].Action != api.ActionUnchanged {
		t.Fatalf("second apply = %+v, want unchanged", res)
	}
	list, err := e.ctl.Secrets(ctx)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := json.Marshal(list)
	if len(list) != 1 || list[0].Name != "db" || strings.Join(list[0].Keys, ",") != "password,user" ||
		strings.Join(list[0].Targets, ",") != "n1" || list[0].Version != 1 {
		t.Fatalf("list = %s", out)
	}
	if bytes.Contains(out, []byte(secretValue)) {
		t.Fatalf("the list shows the secret's value: %s", out)
	}
	// The stored bytes, read raw from the KV bucket, hold no plaintext.
	kv, err := e.js.KeyValue(ctx, intent.BucketSecrets)
	if err != nil {
		t.Fatal(err)
	}
	raw, err := kv.Get(ctx, "db")
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw.Value(), []byte(secretValue)) || bytes.Contains(raw.Value(), []byte(`"app"`)) {
		t.Fatalf("the stored secret holds plaintext: %s", raw.Value())
	}
	if err := e.ctl.DeleteSecret(ctx, "db"); err != nil {
		t.Fatal(err)
	}
	if list, _ = e.ctl.Secrets(ctx); len(list) != 0 {
		t.Fatalf("after delete: %+v", list)
	}
	if err := e.ctl.DeleteSecret(ctx, "db"); !errors.Is(err, api.ErrNotFound) {
		t.Fatalf("delete again = %v, want not found", err)
	}
}

func TestController_Secrets_Invalid(t *testing.T) {
	e := newSecretEnv(t)
	bad := secret("Bad", secretValue)
	_, err := e.ctl.ApplySecrets(hubtest.Context(t), []manifest.Secret{bad})
	if _, ok := errors.AsType[manifest.FieldErrors](err); !ok {
		t.Fatalf("apply = %v, want FieldErrors", err)
	}
	if strings.Contains(err.Error(), secretValue) {
		t.Fatalf("the error shows the value: %v", err)
	}
	if list, _ := e.ctl.Secrets(hubtest.Context(t)); len(list) != 0 {
		t.Fatalf("an invalid secret was stored: %+v", list)
	}
}

// TestController_Secrets_Plans: the plans of the nodes whose workloads use
// a secret carry it sealed to the node; rotating it makes a new revision
// for them only; planning again without a change keeps the plan's bytes.
func TestController_Secrets_Plans(t *testing.T) {
	e := newSecretEnv(t)
	ctx := hubtest.Context(t)
	ref := manifest.SecretRef{Name: "db", Env: map[string]string{"DB_PASSWORD": "password"}, Files: []string{"user"}}
	if _, err := e.ctl.ApplySecrets(ctx, []manifest.Secret{secret("db", secretValue, "n1", "n2")}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ctl.Apply(ctx, []manifest.Workload{withSecret(workload("app", "n1"), ref), workload("plain", "n2")}); err != nil {
		t.Fatal(err)
	}
	p1, p2 := e.plan(t, "n1"), e.plan(t, "n2")
	pw := p1.Value.Workloads[0]
	if pw.SecretsBlocked != "" || len(pw.Secrets) != 1 {
		t.Fatalf("n1's plan entry: blocked %q, %d secrets", pw.SecretsBlocked, len(pw.Secrets))
	}
	if got := e.open(t, "n1", pw.Secrets[0]); got["password"] != secretValue {
		t.Fatalf("opened = %v", got)
	}
	if _, err := seal.Open(e.keys["n2"], pw.Secrets[0].Sealed, wire.SecretAAD("n1", "db", 1)); err == nil {
		t.Fatal("n2's key opens the secret sealed to n1")
	}
	raw1, _ := json.Marshal(p1.Value)
	if bytes.Contains(raw1, []byte(secretValue)) {
		t.Fatal("the plan holds the plaintext")
	}

	// Planning again changes nothing, to the byte.
	if err := e.ctl.Reconcile(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ctl.ApplySecrets(ctx, []manifest.Secret{secret("db", secretValue, "n1", "n2")}); err != nil {
		t.Fatal(err)
	}
	again := e.plan(t, "n1")
	rawAgain, _ := json.Marshal(again.Value)
	if again.Rev != p1.Rev || !bytes.Equal(raw1, rawAgain) {
		t.Fatalf("n1's plan changed without a change: revision %d → %d", p1.Value.Revision, again.Value.Revision)
	}

	// Rotation: a new revision for n1, which uses the secret; none for n2.
	if _, err := e.ctl.ApplySecrets(ctx, []manifest.Secret{secret("db", "rotated", "n1", "n2")}); err != nil {
		t.Fatal(err)
	}
	r1, r2 := e.plan(t, "n1"), e.plan(t, "n2")
	if r1.Value.Revision != p1.Value.Revision+1 {
		t.Fatalf("n1's revision after rotation = %d, want %d", r1.Value.Revision, p1.Value.Revision+1)
	}
	if r2.Rev != p2.Rev {
		t.Fatalf("n2's plan changed on rotation of a secret it does not use: revision %d → %d", p2.Value.Revision, r2.Value.Revision)
	}
	if got := e.open(t, "n1", r1.Value.Workloads[0].Secrets[0]); got["password"] != "rotated" || r1.Value.Workloads[0].Secrets[0].Version != 2 {
		t.Fatalf("after rotation: %v, version %d", got, r1.Value.Workloads[0].Secrets[0].Version)
	}
}

func TestController_Secrets_Blocked(t *testing.T) {
	e := newSecretEnv(t)
	ctx := hubtest.Context(t)
	if _, err := e.ctl.ApplySecrets(ctx, []manifest.Secret{secret("db", secretValue, "n1", "n3")}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, node string
		ref        manifest.SecretRef
		want       string
	}{
		{"missing secret", "n1", manifest.SecretRef{Name: "nope", Files: []string{"x"}}, "secret nope not found"},
		{"not targeted", "n2", manifest.SecretRef{Name: "db", Files: []string{"password"}}, "secret db does not target node n2 (its spec.placement)"},
		{"missing key", "n1", manifest.SecretRef{Name: "db", Env: map[string]string{"TOKEN": "token"}}, "secret db has no key token (it has password, user)"},
		{"node not enrolled", "n3", manifest.SecretRef{Name: "db", Files: []string{"password"}}, "node n3 is not enrolled: no key to seal secrets to"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := withSecret(workload("app-"+strings.ReplaceAll(tt.name, " ", "-"), tt.node), tt.ref)
			if _, err := e.ctl.Apply(ctx, []manifest.Workload{w}); err != nil {
				t.Fatal(err)
			}
			for _, pw := range e.plan(t, tt.node).Value.Workloads {
				if pw.Workload.Metadata.Name != w.Metadata.Name {
					continue
				}
				if pw.SecretsBlocked != tt.want || pw.Secrets != nil {
					t.Fatalf("blocked = %q with %d secrets, want %q", pw.SecretsBlocked, len(pw.Secrets), tt.want)
				}
				return
			}
			t.Fatalf("workload not in %s's plan", tt.node)
		})
	}
}
