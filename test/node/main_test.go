// Package node_test runs end-to-end tests of one atoll node agent as a real
// OS process: the tests build cmd/atoll once, start `atoll agent` on a
// temporary data directory, drive it through the real CLI and the typed
// local client, kill it with SIGKILL, corrupt its store and start it again,
// and check what happened to real workload processes through /proc (and to
// container workloads through the Docker engine, from an image the test
// builds and loads).
//
// Every test cleans up what it started: agent process groups, workload
// process groups (found through a per-test token in their environment),
// cgroup directories, containers and test images, and temporary directories.
package node_test

import (
	"fmt"
	"os"
	"testing"

	"atoll.dev/atoll/internal/atolltest/atollbin"

	"atoll.dev/atoll/internal/atolltest/testtask"
)

var (
	// atollBin is the atoll binary built by TestMain, for CLI commands.
	atollBin string
	// agentBin runs `atoll agent`: atollBin, or with -race a build of it
	// with the race detector (which would make every CLI call a second
	// slower, hence two binaries).
	agentBin string
	// repoRoot is the module root (the directory of go.mod).
	repoRoot string
	// raceEnabled is set by race_test.go when the tests run with -race; the
	// agent is then built with -race too and a data race in it fails the test.
	raceEnabled bool
)

func TestMain(m *testing.M) {
	// The test binary doubles as a workload (ATOLL_TESTTASK=sleep|exit:N|http:PORT).
	testtask.Run()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	bins, err := atollbin.Build(raceEnabled)
	if err != nil {
		fmt.Fprintln(os.Stderr, "test/node:", err)
		return 1
	}
	defer bins.Close()
	repoRoot, atollBin, agentBin = bins.Root, bins.Atoll, bins.Agent
	if raceEnabled {
		readyTimeout, waitTimeout, cliTimeout = 3*readyTimeout, 3*waitTimeout, 3*cliTimeout
	}
	return m.Run()
}
