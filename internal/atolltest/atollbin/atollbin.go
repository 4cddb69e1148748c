// Package atollbin builds the atoll binary for end-to-end test packages:
// TestMain builds once, the tests run real processes of it.
package atollbin

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Binaries are the builds a test package runs.
type Binaries struct {
	// Root is the module root (the directory of go.mod).
	Root string
	// Atoll is the binary for the hub and the CLI.
	Atoll string
	// Agent runs `atoll agent`: Atoll, or under -race a race-enabled build
	// (a race-built CLI would make every command a second slower, so only
	// the agents, whose races the tests can provoke, get one).
	Agent string
	dir   string
}

// Build builds ./cmd/atoll into a temporary directory, and a race-enabled
// build for agents when race is true. Close removes them.
func Build(race bool) (*Binaries, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return nil, fmt.Errorf("find the module root (go env GOMOD = %q): %v", gomod, err)
	}
	dir, err := os.MkdirTemp("", "atoll-bin-")
	if err != nil {
		return nil, err
	}
	b := &Binaries{Root: filepath.Dir(gomod), Atoll: filepath.Join(dir, "atoll"), dir: dir}
	b.Agent = b.Atoll
	if err := b.build(b.Atoll); err != nil {
		b.Close()
		return nil, err
	}
	if race {
		b.Agent = filepath.Join(dir, "atoll-race")
		if err := b.build(b.Agent, "-race"); err != nil {
			b.Close()
			return nil, err
		}
	}
	return b, nil
}

// Close removes the builds.
func (b *Binaries) Close() { os.RemoveAll(b.dir) }

func (b *Binaries) build(out string, flags ...string) error {
	args := append(append([]string{"build", "-o", out}, flags...), "./cmd/atoll")
	cmd := exec.Command("go", args...)
	cmd.Dir = b.Root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %q: %v\n%s", args, err, out)
	}
	return nil
}
