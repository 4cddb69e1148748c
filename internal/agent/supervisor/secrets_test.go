package supervisor_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"atoll.dev/atoll/internal/agent/secrets"
	"atoll.dev/atoll/internal/agent/supervisor"
	"atoll.dev/atoll/internal/atolltest"
	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/seal"
	"atoll.dev/atoll/internal/wire"

	"golang.org/x/sys/unix"
)

const (
	envValue  = "env-s3cret-value"
	fileValue = "file-s3cret-value"
)

// sealFor seals db's data to key as the hub does for node.
func sealFor(t *testing.T, key *ecdh.PrivateKey, node string) wire.SealedSecret {
	t.Helper()
	data, _ := json.Marshal(map[string]string{"password": envValue, "cert": fileValue})
	b, err := seal.Seal(key.PublicKey(), data, wire.SecretAAD(node, "db", 1), []byte("seed"))
	if err != nil {
		t.Fatal(err)
	}
	return wire.SealedSecret{Name: "db", Version: 1, Sealed: b}
}

// secretWorkload writes what it sees (the variable, then the file) to
// out, and sleeps.
func secretWorkload(out string, sealed ...wire.SealedSecret) supervisor.Workload {
	script := fmt.Sprintf(`printf '%%s\n' "$DB_PASSWORD" > %[1]s.tmp; cat "$ATOLL_SECRETS_DIR/db/cert" >> %[1]s.tmp; mv %[1]s.tmp %[1]s; exec sleep 1000`, out)
	return supervisor.Workload{Name: "app", Secrets: sealed, Spec: manifest.WorkloadSpec{
		Runtime: manifest.RuntimeExec,
		Exec:    &manifest.ExecSpec{Command: []string{"/bin/sh", "-c", script}},
		Restart: manifest.Restart{Policy: manifest.RestartAlways},
		Secrets: []manifest.SecretRef{{Name: "db", Env: map[string]string{"DB_PASSWORD": "password"}, Files: []string{"cert"}}},
	}}
}

func newKey(t *testing.T) *ecdh.PrivateKey {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestSupervisor_Secrets_Delivered: an exec workload sees its env and
// file secrets; the files are on tmpfs with modes 0700/0400, are gone once
// it stops, and no file of the agent's data directory holds a value.
func TestSupervisor_Secrets_Delivered(t *testing.T) {
	key := newKey(t)
	var st unix.Statfs_t
	if unix.Statfs("/dev/shm", &st) != nil || st.Type != unix.TMPFS_MAGIC {
		t.Fatal("no tmpfs at /dev/shm: the test needs one")
	}
	node := "node-" + filepath.Base(t.TempDir())
	opener := secrets.New(node, key, []string{"/dev/shm"})
	h := newHarness(t, func(c *supervisor.Config) { c.Secrets = opener })
	out := filepath.Join(t.TempDir(), "seen")
	h.sync(secretWorkload(out, sealFor(t, key, node)))
	h.waitState("app", supervisor.StateRunning, nil)
	want := envValue + "\n" + fileValue
	if got := atolltest.WaitForFile(t, wait, out, want); got != want {
		t.Fatalf("the workload saw %q, want %q", got, want)
	}
	dir := filepath.Join("/dev/shm", "atoll-"+node, "app")
	for path, want := range map[string]fs.FileMode{
		filepath.Join("/dev/shm", "atoll-"+node): 0o700, dir: 0o700,
		filepath.Join(dir, "db"): 0o700, filepath.Join(dir, "db", "cert"): 0o400,
	} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
	scanForValues(t, h.dir)

	h.sync()
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("secret files remain after the workload was deleted: %v", err)
	}
	os.Remove(filepath.Join("/dev/shm", "atoll-"+node))
}

// scanForValues fails if any file under dir holds a secret value.
func scanForValues(t *testing.T, dir string) {
	t.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil // a socket or a file gone meanwhile
		}
		for _, v := range []string{envValue, fileValue} {
			if bytes.Contains(b, []byte(v)) {
				t.Errorf("%s holds the secret value %q in plaintext", p, v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestSupervisor_Secrets_Blocked: what keeps a workload's secrets from it
// blocks it with the reason.
func TestSupervisor_Secrets_Blocked(t *testing.T) {
	key := newKey(t)
	tests := []struct {
		name   string
		opener supervisor.SecretOpener
		w      func(out string) supervisor.Workload
		want   string
	}{
		{"no key", secrets.New("n1", nil, []string{"/dev/shm"}),
			func(out string) supervisor.Workload { return secretWorkload(out, sealFor(t, key, "n1")) },
			"secrets: " + secrets.ReasonNoKey},
		{"no tmpfs", secrets.New("n1", key, []string{os.TempDir()}),
			func(out string) supervisor.Workload { return secretWorkload(out, sealFor(t, key, "n1")) },
			"secrets: no tmpfs to hold secret files"},
		{"sealed to another node", secrets.New("n1", key, []string{"/dev/shm"}),
			func(out string) supervisor.Workload { return secretWorkload(out, sealFor(t, key, "n2")) },
			"secrets: secret db version 1: open: wrong key"},
		{"blocked by the plan", secrets.New("n1", key, []string{"/dev/shm"}),
			func(out string) supervisor.Workload {
				w := secretWorkload(out)
				w.SecretsBlocked = "secret db not found"
				return w
			},
			"secrets: secret db not found"},
		{"no opener", nil,
			func(out string) supervisor.Workload { return secretWorkload(out, sealFor(t, key, "n1")) },
			"secrets: this agent cannot open secrets"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(c *supervisor.Config) {
				if tt.opener != nil {
					c.Secrets = tt.opener
				}
			})
			out := filepath.Join(t.TempDir(), "seen")
			h.sync(tt.w(out))
			h.waitState("app", supervisor.StateBlocked, func(st supervisor.Status) error {
				if !strings.HasPrefix(st.Reason, tt.want) {
					return fmt.Errorf("reason %q, want %q", st.Reason, tt.want)
				}
				return nil
			})
			if _, err := os.Stat(out); !os.IsNotExist(err) {
				t.Fatalf("the blocked workload ran: %v", err)
			}
		})
	}
}
