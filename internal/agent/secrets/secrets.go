// Package secrets opens the sealed secrets of a node's plan, in memory,
// with the node's key, and delivers them to one workload: as environment
// variables, and as files in a private directory on tmpfs, so that no
// secret is ever written to the node's disk in plaintext.
//
// Layout (directories 0700, files 0400):
//
//	<tmpfs>/atoll-<node>/<workload>/<secret>/<key>
package secrets

import (
	"crypto/ecdh"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/seal"
	"atoll.dev/atoll/internal/wire"
)

// ReasonNoKey is why a workload that references secrets cannot start on
// a node without a key.
const ReasonNoKey = "node not enrolled: no key to open secrets"

// candidates are where New looks for tmpfs, in order, when not told.
func candidates() []string {
	c := []string{"/dev/shm"}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		c = append(c, d)
	}
	return append(c, "/run")
}

// Opener delivers secrets to the workloads of one node.
type Opener struct {
	node string
	key  *ecdh.PrivateKey
	// base is <tmpfs>/atoll-<node>; empty when there is no tmpfs, and
	// noTmpfs says why.
	base    string
	noTmpfs string
}

// New returns the opener of node. key is the node's private key; nil
// blocks every workload that references secrets (ReasonNoKey). parents
// are the directories to try, in order, for the secret files: the first
// on tmpfs is used (nil: /dev/shm, $XDG_RUNTIME_DIR, /run). Without one, file secrets are
// refused; environment secrets still work.
func New(node string, key *ecdh.PrivateKey, parents []string) *Opener {
	if parents == nil {
		parents = candidates()
	}
	o := &Opener{node: node, key: key}
	for _, p := range parents {
		if isTmpfs(p) {
			o.base = filepath.Join(p, "atoll-"+node)
			return o
		}
	}
	o.noTmpfs = fmt.Sprintf("no tmpfs to hold secret files (tried %v); they are never written to disk", parents)
	return o
}

func isTmpfs(dir string) bool {
	var st unix.Statfs_t
	return unix.Statfs(dir, &st) == nil && st.Type == unix.TMPFS_MAGIC
}

// Open opens the secrets refs name, from sealed (the plan's), and returns
// the environment variables they set and the directory holding the
// workload's secret files ("" when it has none), which it (re)writes. An
// error says why the workload cannot have its secrets.
func (o *Opener) Open(workload string, refs []manifest.SecretRef, sealed []wire.SealedSecret) (env map[string]string, dir string, err error) {
	if len(refs) == 0 {
		return nil, "", nil
	}
	if o.key == nil {
		return nil, "", errors.New(ReasonNoKey)
	}
	byName := make(map[string]wire.SealedSecret, len(sealed))
	for _, s := range sealed {
		byName[s.Name] = s
	}
	env = map[string]string{}
	files := map[string]map[string]string{} // secret → key → value
	for _, r := range refs {
		s, ok := byName[r.Name]
		if !ok {
			return nil, "", fmt.Errorf("secret %s is not in this node's plan", r.Name)
		}
		data, err := o.open(s)
		if err != nil {
			return nil, "", err
		}
		for v, k := range r.Env {
			val, ok := data[k]
			if !ok {
				return nil, "", fmt.Errorf("secret %s has no key %s", r.Name, k)
			}
			env[v] = val
		}
		for _, k := range r.Files {
			val, ok := data[k]
			if !ok {
				return nil, "", fmt.Errorf("secret %s has no key %s", r.Name, k)
			}
			if files[r.Name] == nil {
				files[r.Name] = map[string]string{}
			}
			files[r.Name][k] = val
		}
	}
	if len(files) == 0 {
		return env, "", o.Remove(workload)
	}
	if o.base == "" {
		return nil, "", errors.New(o.noTmpfs)
	}
	dir, err = o.write(workload, files)
	if err != nil {
		return nil, "", err
	}
	return env, dir, nil
}

// open opens one sealed secret with the node's key.
func (o *Opener) open(s wire.SealedSecret) (map[string]string, error) {
	b, err := seal.Open(o.key, s.Sealed, wire.SecretAAD(o.node, s.Name, s.Version))
	if err != nil {
		return nil, fmt.Errorf("secret %s version %d: %w (sealed to another key?)", s.Name, s.Version, err)
	}
	var data map[string]string
	if err := json.Unmarshal(b, &data); err != nil {
		return nil, fmt.Errorf("secret %s version %d: decode: %w", s.Name, s.Version, err)
	}
	return data, nil
}

// write replaces the workload's secret directory by one holding files.
func (o *Opener) write(workload string, files map[string]map[string]string) (string, error) {
	if err := o.Remove(workload); err != nil {
		return "", err
	}
	dir := o.dir(workload)
	if err := os.MkdirAll(o.base, 0o700); err != nil {
		return "", fmt.Errorf("secret files: %w", err)
	}
	// MkdirAll leaves an existing base's mode alone: insist on 0700.
	if err := os.Chmod(o.base, 0o700); err != nil {
		return "", fmt.Errorf("secret files: %w", err)
	}
	for secret, kv := range files {
		sd := filepath.Join(dir, secret)
		if err := os.MkdirAll(sd, 0o700); err != nil {
			return "", fmt.Errorf("secret files: %w", err)
		}
		for k, v := range kv {
			if err := writeFile(filepath.Join(sd, k), v); err != nil {
				return "", fmt.Errorf("secret files: %w", err)
			}
		}
	}
	return dir, nil
}

func writeFile(path, value string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|unix.O_NOFOLLOW, 0o400)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(value); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func (o *Opener) dir(workload string) string { return filepath.Join(o.base, workload) }

// Remove deletes the workload's secret files, if any.
func (o *Opener) Remove(workload string) error {
	if o.base == "" {
		return nil
	}
	if err := os.RemoveAll(o.dir(workload)); err != nil {
		return fmt.Errorf("remove secret files of %s: %w", workload, err)
	}
	return nil
}
