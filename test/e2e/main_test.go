// Package e2e is atoll's multi-host fault suite: a hub and three agents,
// each in its own Docker container with its own address on a private
// network made for the run, every agent reaching the hub's NATS through a
// fault proxy (Toxiproxy, in this test process) that can cut, slow, or
// half-open that one node's link. The scenarios partition nodes, kill the
// hub, SIGKILL agents, reboot node containers and put a node on a
// satellite link, and end with the same invariant checks (invariants_test.go):
// nothing on a disconnected node is evicted, moved or restarted; every change
// the hub accepted reaches every targeted node after the heal; the hub shows
// partitioned nodes disconnected, never failed; and every node event reaches
// the hub exactly once.
//
// TestMain builds the static atoll binary and an image FROM scratch holding
// it and a static busybox (Debian's busybox-static; the suite fails, not
// skips, without it). Every Docker object carries the label atoll.e2e.run
// with this run's id and is removed by that label at the end, on failure too.
//
// The soak (soak_test.go) runs only with -soak=DURATION:
//
//	go test ./test/e2e -run TestSoak -soak=30m -seed=N -timeout 0
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"debug/elf"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

var (
	soakFor  = flag.Duration("soak", 0, "run TestSoak for this long (e.g. 30m); without it TestSoak skips")
	soakSeed = flag.Int64("seed", 0, "seed of TestSoak's random faults (0: pick one and print it)")
)

var (
	// runID names this run's Docker objects (label runLabel=runID).
	runID string
	// image is the FROM scratch image with /atoll and /bin/busybox.
	image string
	// atollBin is the same static binary, for the CLI on the test host.
	atollBin string
	// repoRoot is the module root.
	repoRoot string
	// binDir holds atollBin and the image's build context.
	binDir string
)

// runLabel is on every Docker object the suite creates; its value is runID.
const runLabel = "atoll.e2e.run"

func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(runMain(m))
}

func runMain(m *testing.M) (code int) {
	runID = randHex(5)
	if err := setup(); err != nil {
		fmt.Fprintln(os.Stderr, "test/e2e:", err)
		removeRun()
		return 1
	}
	defer func() {
		removeRun()
		os.RemoveAll(binDir)
	}()
	// An interrupted run (Ctrl-C, kill) still removes its containers.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "test/e2e: %v: removing run %s\n", s, runID)
		removeRun()
		os.Exit(1)
	}()
	return m.Run()
}

func setup() error {
	if _, err := exec.LookPath("docker"); err != nil {
		return fmt.Errorf("docker is required (the suite runs each host in a container): %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := dockerCtx(ctx, "version", "--format", "{{.Server.APIVersion}}"); err != nil {
		return fmt.Errorf("the Docker engine is not answering: %w", err)
	}
	busybox, err := findBusybox()
	if err != nil {
		return err
	}
	out, err := exec.Command("go", "env", "GOMOD").Output()
	gomod := strings.TrimSpace(string(out))
	if err != nil || gomod == "" || gomod == os.DevNull {
		return fmt.Errorf("cannot find the module root (go env GOMOD = %q): %v", gomod, err)
	}
	repoRoot = filepath.Dir(gomod)
	if binDir, err = os.MkdirTemp("", "atoll-e2e-"); err != nil {
		return err
	}
	root := filepath.Join(binDir, "rootfs")
	for _, d := range []string{"bin", "tmp", "data"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.Chmod(filepath.Join(root, "tmp"), 0o1777); err != nil {
		return err
	}
	atollBin = filepath.Join(root, "atoll")
	build := exec.CommandContext(ctx, "go", "build", "-trimpath", "-o", atollBin, "./cmd/atoll")
	build.Dir = repoRoot
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if b, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build atoll: %v\n%s", err, b)
	}
	bb, err := os.ReadFile(busybox)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(root, "bin", "busybox"), bb, 0o755); err != nil {
		return err
	}
	// The applets the harness and the workloads call by name.
	for _, a := range []string{"sh", "sleep", "kill", "cat", "ps", "echo", "true"} {
		if err := os.Symlink("busybox", filepath.Join(root, "bin", a)); err != nil {
			return err
		}
	}
	dockerfile := "FROM scratch\nCOPY rootfs/ /\nENV PATH=/bin\n"
	if err := os.WriteFile(filepath.Join(binDir, "Dockerfile"), []byte(dockerfile), 0o644); err != nil {
		return err
	}
	image = "atoll-e2e:" + runID
	if _, err := dockerCtx(ctx, "build", "-q", "-t", image, "--label", runLabel+"="+runID, binDir); err != nil {
		return fmt.Errorf("build image: %w", err)
	}
	return nil
}

// findBusybox returns the path of a statically linked busybox, or an error
// that says how to get one: the image is FROM scratch, so a dynamically
// linked one would not run in it.
func findBusybox() (string, error) {
	const hint = "install it with `apt-get install -y busybox-static` (.ci/run does)"
	p, err := exec.LookPath("busybox")
	if err != nil {
		return "", fmt.Errorf("busybox not found: the e2e image needs a static busybox; %s", hint)
	}
	f, err := elf.Open(p)
	if err != nil {
		return "", fmt.Errorf("busybox at %s: %v; %s", p, err, hint)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return "", fmt.Errorf("busybox at %s is dynamically linked and cannot run in a FROM scratch image; %s", p, hint)
		}
	}
	return p, nil
}

// removeRun removes every Docker object of this run, by label. It is
// idempotent and also what each cluster's cleanup does for its own objects.
func removeRun() {
	removeByLabel(runLabel + "=" + runID)
}

func removeByLabel(label string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if ids := dockerLines(ctx, "ps", "-aq", "--filter", "label="+label); len(ids) > 0 {
		_, _ = dockerCtx(ctx, append([]string{"rm", "-f", "-v"}, ids...)...)
	}
	if ids := dockerLines(ctx, "network", "ls", "-q", "--filter", "label="+label); len(ids) > 0 {
		_, _ = dockerCtx(ctx, append([]string{"network", "rm"}, ids...)...)
	}
	if ids := dockerLines(ctx, "image", "ls", "-q", "--filter", "label="+label); len(ids) > 0 {
		_, _ = dockerCtx(ctx, append([]string{"rmi", "-f"}, ids...)...)
	}
}

// dockerCtx runs the docker CLI and returns its trimmed stdout; the error
// carries stderr.
func dockerCtx(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "docker", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("docker %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return strings.TrimSpace(stdout.String()), nil
}

func dockerLines(ctx context.Context, args ...string) []string {
	out, err := dockerCtx(ctx, args...)
	if err != nil || out == "" {
		return nil
	}
	return strings.Fields(out)
}

func randHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}
