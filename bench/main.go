// Command bench measures atoll on the machine it runs on and prints each
// figure beside its target and the figure HashiCorp Nomad 2.0.5 reached on
// the same kind of machine: restart latency after a crash, start-up of 50
// workloads (fresh and after a power cut), agent memory and idle CPU,
// binary size, and WASM start with a cold and a warm compilation cache
// (the agent figures); apply → running through a hub, bytes on the wire of
// an idle node, and convergence after a reconnect with queued changes (the
// hub figures); one hub with 1,000 simulated agents (the fleet figure);
// telemetry through a node's outbox; and an image archive distributed to
// ten agents, and resumed after a cut (the image figures).
//
// Run it from the repository root:
//
//	go run ./bench                           # print the table
//	go run ./bench -o markdown               # print it as markdown
//	go run ./bench -only hub                 # only the hub figures (agent, hub, fleet, telemetry, images)
//	go run ./bench -write docs/benchmarks.md # regenerate the benchmarks page
//
// It builds a stripped atoll binary into a temporary directory, runs real
// agents and hubs as separate processes on temporary data directories, and
// removes every process, directory and cgroup it made before it exits. It
// uses only local resources (loopback TCP included) and stops by itself.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"atoll.dev/atoll/internal/wire"
)

// deadline bounds a whole run; every wait inside has its own, shorter bound.
const deadline = 20 * time.Minute

type options struct {
	runs  int
	reps  int
	out   string
	write string
	// The hub figures (hub.go, fleet.go).
	only    string // comma-separated groups to run: agent, hub, fleet
	hubRuns int
	idle    time.Duration
	fleet   int
}

// groups of figures, for -only.
var groups = []string{"agent", "hub", "fleet", "telemetry", "images", "container"}

// runs reports whether group g is to be measured.
func (o options) runsGroup(g string) bool {
	return o.only == "" || slices.Contains(strings.Split(o.only, ","), g)
}

func main() {
	os.Exit(run())
}

func run() int {
	var o options
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.IntVar(&o.runs, "runs", 200, "crashes timed for the restart latency")
	fs.IntVar(&o.reps, "reps", 5, "repetitions of each start-up figure (the median is reported)")
	fs.StringVar(&o.out, "o", "text", "table format: text or markdown")
	fs.StringVar(&o.write, "write", "", "also write the benchmarks page (intro, command, machine, table, method, notes) to this file")
	fs.StringVar(&o.only, "only", "", "measure only these groups of figures, comma-separated: agent, hub, fleet, telemetry, images, container (default all)")
	fs.IntVar(&o.hubRuns, "hub-runs", 30, "applies timed for apply → running on a connected node")
	fs.DurationVar(&o.idle, "idle", 60*time.Second, "window of the idle-node bytes figure")
	fs.IntVar(&o.fleet, "fleet", 1000, "simulated agents of the fleet figure")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: go run ./bench [-runs N] [-reps N] [-hub-runs N] [-idle D] [-fleet N] [-only agent,hub,fleet,telemetry,images,container] [-o text|markdown] [-write docs/benchmarks.md]\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	switch {
	case fs.NArg() > 0:
		fmt.Fprintf(os.Stderr, "bench: unexpected arguments %q\n", fs.Args())
		return 2
	case o.runs < 1 || o.reps < 1 || o.hubRuns < 1 || o.fleet < 1:
		fmt.Fprintln(os.Stderr, "bench: -runs, -reps, -hub-runs and -fleet must be at least 1")
		return 2
	case o.idle < 10*time.Second:
		fmt.Fprintln(os.Stderr, "bench: -idle must be at least 10s (one heartbeat)")
		return 2
	case o.write != "" && o.only != "":
		fmt.Fprintln(os.Stderr, "bench: -write needs every figure: drop -only")
		return 2
	case o.only != "" && slices.ContainsFunc(strings.Split(o.only, ","), func(g string) bool { return !slices.Contains(groups, g) }):
		fmt.Fprintf(os.Stderr, "bench: -only %q: want a comma-separated list of %s\n", o.only, strings.Join(groups, ", "))
		return 2
	case o.out != "text" && o.out != "markdown":
		fmt.Fprintf(os.Stderr, "bench: -o %q: want text or markdown\n", o.out)
		return 2
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, deadline)
	defer cancel()

	r, err := measure(ctx, o)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	if o.out == "markdown" {
		err = r.writeMarkdown(os.Stdout)
	} else {
		err = r.writeText(os.Stdout)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	if o.write != "" {
		var doc bytes.Buffer
		if err := r.writeDoc(&doc); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
		if err := os.WriteFile(o.write, doc.Bytes(), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
		fmt.Fprintf(os.Stderr, "bench: wrote %s\n", o.write)
	}
	return 0
}

// measure takes every figure. Whatever happens, it removes what it made.
func measure(ctx context.Context, o options) (r results, err error) {
	root, err := moduleRoot(ctx)
	if err != nil {
		return r, err
	}
	h, err := newHarness(root, os.Stderr)
	if err != nil {
		return r, err
	}
	defer func() {
		if cerr := h.cleanup(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("cleanup: %w", cerr))
		}
	}()
	r.when, r.runs, r.reps, r.opts = time.Now(), o.runs, o.reps, o

	step := func(what string) { fmt.Fprintf(h.log, "bench: %s\n", what) }
	step("building atoll (stripped) into " + h.tmp)
	if err := h.build(ctx); err != nil {
		return r, err
	}
	fi, err := os.Stat(h.bin)
	if err != nil {
		return r, err
	}
	r.binSize = fi.Size()
	r.machine = describeMachine(h.bin, h.tmp)

	if o.runsGroup("agent") {
		step(fmt.Sprintf("restart latency: %d crashes", o.runs))
		if r.restart, err = h.measureRestart(ctx, o.runs); err != nil {
			return r, fmt.Errorf("restart latency: %w", err)
		}
		step(fmt.Sprintf("start-up: %d workloads, fresh and after a power cut, %d times", startCount, o.reps))
		if r.start, err = h.measureStart(ctx, o.reps); err != nil {
			return r, fmt.Errorf("start-up: %w", err)
		}
		step(fmt.Sprintf("memory and idle CPU (about %v)", settleIdle+settleBusy+cpuWindow))
		if r.mem, err = h.measureMemory(ctx); err != nil {
			return r, fmt.Errorf("memory: %w", err)
		}
		step(fmt.Sprintf("wasm start, cold and warm compilation cache, %d times", o.reps))
		if r.wasm, err = h.measureWASM(ctx, o.reps); err != nil {
			return r, fmt.Errorf("wasm: %w", err)
		}
	}
	if o.runsGroup("hub") {
		step(fmt.Sprintf("hub: apply → running on a connected node, %d times", o.hubRuns))
		if r.hubApply, err = h.measureHubApply(ctx, o.hubRuns); err != nil {
			return r, fmt.Errorf("hub apply: %w", err)
		}
		step(fmt.Sprintf("hub: idle bytes over %v, then reconnect after %d changes (about %v)",
			o.idle, linkCount*linkRounds, hubSettle+o.idle+wire.DisconnectedAfter))
		if r.link, err = h.measureHubLink(ctx, o.idle); err != nil {
			return r, fmt.Errorf("hub link: %w", err)
		}
	}
	if o.runsGroup("fleet") {
		step(fmt.Sprintf("fleet: %d simulated agents on one hub (about %v)", o.fleet, fleetSettle+fleetIdle+20*time.Second))
		if r.fleet, err = h.measureFleet(ctx, o.fleet); err != nil {
			return r, fmt.Errorf("fleet: %w", err)
		}
	}
	if o.runsGroup("telemetry") {
		step(fmt.Sprintf("telemetry: %d records into a cut-off node's outbox, twice, then the drain", telemetryRecords))
		if r.telemetry, err = h.measureTelemetry(ctx); err != nil {
			return r, fmt.Errorf("telemetry: %w", err)
		}
	}
	if o.runsGroup("images") {
		step(fmt.Sprintf("images: a %d MB image to %d nodes, then a download cut halfway", imageLayer/1_000_000, imageNodes))
		if r.images, err = h.measureImages(ctx); err != nil {
			return r, fmt.Errorf("images: %w", err)
		}
	}
	if o.runsGroup("container") {
		step(fmt.Sprintf("container: apply → running with the image present, %d times", o.reps))
		if r.container, err = h.measureContainerStart(ctx, o.reps); err != nil {
			return r, fmt.Errorf("container: %w", err)
		}
	}
	return r, nil
}

// moduleRoot is the directory of the go.mod of the current module, where
// ./cmd/atoll and examples/ are.
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the atoll module: run from the repository root")
	}
	root := filepath.Dir(gomod)
	if _, err := os.Stat(filepath.Join(root, "cmd", "atoll")); err != nil {
		return "", fmt.Errorf("%s has no cmd/atoll: run from the atoll repository", root)
	}
	return root, nil
}
