package fleet_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	procfs "atoll.dev/atoll/internal/atolltest/proc"

	"atoll.dev/atoll/internal/hub/api"
)

// TestFleet_CertificateExpiresDuringAnOutage: a node whose certificate
// expires while its link is cut keeps running its workloads untouched; on
// reconnect it renews with no human and changes reach it again.
func TestFleet_CertificateExpiresDuringAnOutage(t *testing.T) {
	f := newFleet(t)
	f.hubFlags = []string{"--node-cert-ttl", "8s"}
	f.startHub()
	a := f.addNode("a", "role=edge")
	f.apply([]wl{{name: "app", nodes: []string{a.name}}}, "workload/app created (1 node)")
	before := a.waitRunning("app")

	tCut := a.cut()
	f.logf("link of %s cut", a.name)
	var expired time.Time
	f.waitFor(30*time.Second, func() error {
		info, err := a.info()
		if err != nil {
			return err
		}
		if expired = info.CertExpires; expired.IsZero() || time.Now().Before(expired) {
			return fmt.Errorf("certificate of %s valid until %s", a.name, expired.Format(time.RFC3339Nano))
		}
		return nil
	})
	f.logf("its certificate expired at %s, %s after the cut", expired.Format(time.RFC3339), expired.Sub(tCut).Round(time.Millisecond))
	if st, err := a.statuses(); err != nil {
		t.Fatal(err)
	} else if err := sameRun(a.name, before, st); err != nil {
		t.Errorf("with the certificate expired, offline: %v", err)
	}

	a.proxy.Restore()
	tBack := time.Now()
	f.waitFor(0, func() error {
		info, err := a.info()
		if err != nil {
			return err
		}
		if !info.HubConnected || !info.CertExpires.After(time.Now()) {
			return fmt.Errorf("%s: connected %v, certificate until %s", a.name, info.HubConnected, info.CertExpires.Format(time.RFC3339Nano))
		}
		return nil
	})
	f.logf("link restored: renewed and connected %s later", since(tBack))
	f.waitHubState(a, api.NodeConnected, api.NodeDisconnected)
	f.apply([]wl{{name: "app", nodes: []string{a.name}}, {name: "fresh", nodes: []string{a.name}}},
		"workload/app unchanged (1 node)", "workload/fresh created (1 node)")
	now := a.waitRunning("app", "fresh")
	if now["app"].PID != before["app"].PID || now["app"].Restarts != before["app"].Restarts {
		t.Errorf("app was pid %d restarts %d, is pid %d restarts %d: the expiry touched it",
			before["app"].PID, before["app"].Restarts, now["app"].PID, now["app"].Restarts)
	}
}

// TestFleet_RevokedNodeIsCutOffAndRunsOn: revocation closes the node's
// link within seconds; the node says it is revoked, keeps its workloads,
// and stays cut off across an agent restart.
func TestFleet_RevokedNodeIsCutOffAndRunsOn(t *testing.T) {
	f := newFleet(t)
	f.startHub()
	a := f.addNode("a", "role=edge")
	f.apply([]wl{{name: "app", nodes: []string{a.name}}}, "workload/app created (1 node)")
	before := a.waitRunning("app")

	t0 := time.Now()
	if r := f.mustCLI("node", "revoke", a.name); r.stdout != "node/"+a.name+" revoked\n" {
		t.Errorf("node revoke: %s", r)
	}
	f.waitFor(10*time.Second, func() error {
		info, err := a.info()
		if err != nil {
			return err
		}
		if !info.Revoked || info.HubConnected {
			return fmt.Errorf("%s: revoked %v, connected %v", a.name, info.Revoked, info.HubConnected)
		}
		return nil
	})
	f.logf("%s says it is revoked and disconnected %s after the revocation", a.name, since(t0))
	if r := a.mustCLI("info"); !bytes.Contains([]byte(r.stdout), []byte("revoked")) {
		t.Errorf("node info does not say revoked:\n%s", r.stdout)
	}
	a.kill9()
	a.start()
	f.waitHubState(a, api.NodeDisconnected, api.NodeConnected)
	if info, err := a.info(); err != nil || !info.Revoked || info.HubConnected {
		t.Errorf("after an agent restart: %+v, %v; want revoked and not connected", info, err)
	}
	if st, err := a.statuses(); err != nil {
		t.Fatal(err)
	} else if err := sameRun(a.name, before, st); err != nil {
		t.Errorf("revoked node: %v", err)
	}
	if r := f.cli("node", "revoke", "nobody"); r.code != 1 || !bytes.Contains([]byte(r.stderr), []byte(`no enrolled node "nobody"`)) {
		t.Errorf("revoking an unknown node: %s", r)
	}
}

// TestFleet_SecretsOfflineAndNeverInPlaintext: a secret reaches its
// workload as a variable and a file, again after the workload and the agent
// die with the hub down, and no file of the node's or the hub's data holds
// its value.
func TestFleet_SecretsOfflineAndNeverInPlaintext(t *testing.T) {
	f := newFleet(t)
	f.startHub()
	a := f.addNode("a", "role=edge")
	value := "s3cret-" + randHex(16)
	path := filepath.Join(f.aux, "secret.yaml")
	manifest := fmt.Sprintf(`apiVersion: atoll.dev/v1
kind: Secret
metadata: {name: db}
spec:
  data: {password: %q}
  placement: {nodes: [%s]}
---
apiVersion: atoll.dev/v1
kind: Workload
metadata: {name: app}
spec:
  runtime: exec
  exec:
    command: [sh, -c, "exec sleep 3600"]
    env: {%s: %s}
  placement: {nodes: [%s]}
  secrets:
    - {name: db, env: {DB_PASSWORD: password}, files: [password]}
`, value, a.name, tokenVar, f.token, a.name)
	if err := os.WriteFile(path, []byte(manifest), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := f.mustCLI("apply", "-f", path); r.stdout != "secret/db created (1 node)\nworkload/app created (1 node)\n" {
		t.Errorf("apply: %s", r)
	}
	check := func(when string) int {
		t.Helper()
		var pid int
		f.waitFor(0, func() error {
			pid = a.waitRunning("app")["app"].PID
			if v, _ := f.procEnv(pid, "app", "DB_PASSWORD"); v != value {
				return fmt.Errorf("%s: app (pid %d) does not have the current secret yet", when, pid)
			}
			return nil
		})
		if v, err := f.procEnv(pid, "app", "DB_PASSWORD"); err != nil || v != value {
			t.Errorf("%s: DB_PASSWORD = %q, %v; want the secret", when, v, err)
		}
		dir, _ := procfs.EnvValue(procfs.Environ(pid), "ATOLL_SECRETS_DIR")
		if b, err := os.ReadFile(filepath.Join(dir, "db", "password")); err != nil || string(b) != value {
			t.Errorf("%s: secret file %s = %q, %v; want the secret", when, filepath.Join(dir, "db", "password"), b, err)
		}
		return pid
	}
	check("first start")

	// Rotated: the connected node gets the new value; the workload is
	// started again with it.
	old := value
	value = "r0tated-" + randHex(16)
	rotated := strings.Replace(manifest, old, value, 1)
	if err := os.WriteFile(path, []byte(rotated), 0o600); err != nil {
		t.Fatal(err)
	}
	if r := f.mustCLI("apply", "-f", path); !strings.HasPrefix(r.stdout, "secret/db configured (1 node)\n") {
		t.Errorf("apply the rotated secret: %s", r)
	}
	pid := check("after the rotation")
	f.logf("the rotated secret reached app (pid %d)", pid)
	if r := f.mustCLI("get", "secrets", "-o", "wide"); bytes.Contains([]byte(r.stdout), []byte(value)) || !bytes.Contains([]byte(r.stdout), []byte("password")) {
		t.Errorf("get secrets shows the value, or not the key:\n%s", r.stdout)
	}

	// The hub down, the agent and the workload killed: the agent starts it
	// again from its stored plan, secrets and all.
	f.killHub()
	a.kill9()
	if err := f.killWorkloads(func(p wproc) bool { return p.pid == pid }); err != nil {
		t.Fatal(err)
	}
	a.start()
	if again := check("after an agent restart with the hub down"); again == pid {
		t.Errorf("the workload kept pid %d: it was not started again", pid)
	}
	f.logf("app got its secret again from the stored plan, hub down")

	for _, dir := range []string{a.dir, f.hubDir} {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			b, err := os.ReadFile(p)
			if errors.Is(err, fs.ErrNotExist) {
				return nil // gone meanwhile (a socket, a temporary file)
			}
			if err != nil {
				return err
			}
			if bytes.Contains(b, []byte(value)) || bytes.Contains(b, []byte(old)) {
				t.Errorf("%s holds a secret in plaintext", p)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
