// Package fleet_test runs end-to-end tests of a whole fleet: one hub and
// several node agents, each a real OS process, every agent's NATS link to
// the hub passing through its own linkproxy so that a test can cut and
// restore one node's network. The tests drive the fleet through the real
// CLI (fleet verbs against the hub, node verbs against one agent) and the
// typed clients, kill the hub and agents with SIGKILL, and check the real
// workload processes through /proc.
//
// Every test cleans up what it started: hub and agent process groups,
// workload process groups (found through a per-test token in their
// environment), proxies, cgroup directories and temporary directories.
package fleet_test

import (
	"fmt"
	"os"
	"testing"

	"atoll.dev/atoll/internal/atolltest/atollbin"
	"atoll.dev/atoll/internal/atolltest/testtask"
)

var (
	// atollBin is the atoll binary built by TestMain: the hub and the CLI.
	atollBin string
	// agentBin runs `atoll agent`: atollBin, or with -race a build of it
	// with the race detector (a race-built CLI would make every command a
	// second slower, and the hub is covered by its own packages' -race
	// tests, hence a race build for agents only).
	agentBin string
	// repoRoot is the module root (the directory of go.mod).
	repoRoot string
	// raceEnabled is set by race_test.go when the tests run with -race.
	raceEnabled bool
)

func TestMain(m *testing.M) {
	testtask.Run() // when the binary runs as a workload
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	bins, err := atollbin.Build(raceEnabled)
	if err != nil {
		fmt.Fprintln(os.Stderr, "test/fleet:", err)
		return 1
	}
	defer bins.Close()
	repoRoot, atollBin, agentBin = bins.Root, bins.Atoll, bins.Agent
	if raceEnabled {
		readyTimeout, waitTimeout, cliTimeout = 3*readyTimeout, 3*waitTimeout, 3*cliTimeout
	}
	return m.Run()
}
