package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// results is everything measured in one run.
type results struct {
	when    time.Time
	machine machine
	runs    int
	reps    int
	restart restartResult
	start   startResult
	mem     memResult
	binSize int64
	wasm    wasmResult
	// The hub figures (hub.go, fleet.go); opts says which groups ran.
	opts     options
	hubApply hubApplyResult
	link     linkResult
	fleet    fleetResult
	// telemetry.go, container.go
	telemetry telemetryResult
	container containerResult
	// images.go
	images imagesResult
}

// Targets.
const (
	targetRestartP50 = 20 * time.Millisecond
	targetStart      = time.Second
	targetAgentRSS   = 20_000_000 // bytes: 20 MB
)

// row is one line of the table.
type row struct {
	figure, value, target, nomad string
	// verdict is "met", "MISSED" or "" when the figure has no target.
	verdict string
}

func verdict(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}

func ms(d time.Duration) string  { return fmt.Sprintf("%.1f ms", float64(d)/float64(time.Millisecond)) }
func sec(d time.Duration) string { return fmt.Sprintf("%.3f s", d.Seconds()) }
func mib(b int64) string         { return fmt.Sprintf("%.1f", float64(b)/(1<<20)) }

// spread formats the median of ds and, with more than one value, the range.
func spread(ds []time.Duration, f func(time.Duration) string) string {
	med := quantile(ds, 0.5)
	if len(ds) < 2 {
		return f(med)
	}
	lo, hi := minMax(ds)
	return fmt.Sprintf("%s (%s–%s)", f(med), strings.TrimSuffix(f(lo), " s"), f(hi))
}

func (r results) rows() []row {
	rs := r.restart
	p50, p99 := quantile(rs.proc, 0.5), quantile(rs.proc, 0.99)
	apiP50, apiP99 := quantile(rs.api, 0.5), quantile(rs.api, 0.99)
	lo, hi := minMax(rs.proc)
	startMed, coldMed := quantile(r.start.apply, 0.5), quantile(r.start.cold, 0.5)
	m := r.mem
	var out []row
	if r.opts.runsGroup("agent") {
		out = append(out, r.agentRows(rs, p50, p99, apiP50, apiP99, lo, hi, startMed, coldMed, m)...)
	}
	if r.opts.runsGroup("hub") {
		out = append(out, r.hubRows()...)
	}
	if r.opts.runsGroup("fleet") {
		out = append(out, r.fleetRows()...)
	}
	if r.opts.runsGroup("telemetry") {
		out = append(out, r.telemetryRows()...)
	}
	if r.opts.runsGroup("container") {
		out = append(out, r.containerRows()...)
	}
	if r.opts.runsGroup("images") {
		out = append(out, r.imagesRows()...)
	}
	return out
}

func (r results) agentRows(rs restartResult, p50, p99, apiP50, apiP99, lo, hi, startMed, coldMed time.Duration, m memResult) []row {
	return []row{
		{
			figure: fmt.Sprintf("Restart: SIGKILL → new process running, p50 of %d", len(rs.proc)),
			value:  ms(p50), target: "≤ 20 ms", verdict: verdict(p50 <= targetRestartP50),
			nomad: "70.7 ms (median of 10)",
		},
		{
			figure: "Restart: SIGKILL → new process running, p99 (min–max)",
			value:  fmt.Sprintf("%s (%s–%s)", ms(p99), strings.TrimSuffix(ms(lo), " ms"), ms(hi)),
			nomad:  "95.5 ms (max of 10; min 47.9 ms)",
		},
		{
			figure: "Restart: SIGKILL → API shows the new PID running, p50 / p99",
			value:  ms(apiP50) + " / " + ms(apiP99), nomad: "—",
		},
		{
			figure: fmt.Sprintf("Apply %d workloads → all running (API), median of %d", startCount, len(r.start.apply)),
			value:  spread(r.start.apply, sec), target: "≤ 1 s", verdict: verdict(startMed <= targetStart),
			nomad: "0.929 s for 10 allocations (processes at 0.546 s)",
		},
		{
			figure: fmt.Sprintf("Power cut: agent and workloads killed; new agent process start → all %d running, median", startCount),
			value:  spread(r.start.cold, sec), target: "≤ 1 s", verdict: verdict(coldMed <= targetStart),
			nomad: "not restarted while the server is unreachable (18.8 s after it returns)",
		},
		{
			figure: "Agent process start → local API answering, no workloads, median",
			value:  spread(r.start.apiUp, sec), nomad: "0.26 s (client restart, API up)",
		},
		{
			figure: "Agent memory, idle, no workloads: VmRSS / PSS / private",
			value:  fmt.Sprintf("%s / %s / %s MiB", mib(m.idle.vmRSS), mib(m.idle.pss), mib(m.idle.private)),
			nomad:  "85.2 / 53.8 / — MiB",
		},
		{
			figure: fmt.Sprintf("Agent memory, %d workloads: VmRSS / PSS / private", memCount),
			value:  fmt.Sprintf("%s / %s / %s MiB", mib(m.busy.vmRSS), mib(m.busy.pss), mib(m.busy.private)),
			target: "RSS ≤ 20 MB", verdict: verdict(m.busy.vmRSS <= targetAgentRSS),
			nomad: "104.5 MiB VmRSS",
		},
		{
			figure: fmt.Sprintf("All processes, %d workloads (%d processes: agent + %d workloads + %d helpers): PSS / private",
				memCount, m.procs, m.procs-1-m.helpers, m.helpers),
			value: fmt.Sprintf("%s / %s MiB", mib(m.all.pss), mib(m.all.private)),
			nomad: fmt.Sprintf("~387 MiB PSS (agent + %d executors + %d logmons)", memCount, memCount),
		},
		{
			figure: fmt.Sprintf("Idle CPU of the agent with %d workloads, over %.0f s", memCount, m.cpuWindow.Seconds()),
			value: fmt.Sprintf("%.2f %% of one core (%s); %.3f %% by schedstat", m.cpuPercent, plural(int(m.cpuTicks), "tick"),
				m.cpuExact.Seconds()/m.cpuWindow.Seconds()*100),
			nomad: "0.28 % (client alone; helpers add ~1.7 % with 10 tasks)",
		},
		{
			figure: "Binary size, stripped (-trimpath -ldflags \"-s -w\")",
			value:  fmt.Sprintf("%.1f MB", float64(r.binSize)/1e6), nomad: "118.2 MB (161.9 MB unstripped)",
		},
		{
			figure: fmt.Sprintf("WASM: agent process start → sensor running, cold compilation cache, median of %d", len(r.wasm.cold)),
			value:  spread(r.wasm.cold, sec), nomad: "— (no WASM runtime)",
		},
		{
			figure: "WASM: same, warm compilation cache (any later agent start)",
			value:  spread(r.wasm.warm, sec), nomad: "—",
		},
	}
}

func (rw row) targetCell(markdown bool) string {
	switch {
	case rw.target == "":
		return "—"
	case rw.verdict == "MISSED" && markdown:
		return rw.target + ": **MISSED**"
	default:
		return rw.target + ": " + rw.verdict
	}
}

// writeText prints the table with aligned columns.
func (r results) writeText(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "machine: %s\ncommand: %s\n\n", r.machine, r.command())
	fmt.Fprintln(tw, "FIGURE\tATOLL\tTARGET\tNOMAD 2.0.5")
	for _, rw := range r.rows() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", rw.figure, rw.value, rw.targetCell(false), rw.nomad)
	}
	return tw.Flush()
}

// writeTable prints the table as markdown.
func (r results) writeTable(w io.Writer) error {
	var b strings.Builder
	b.WriteString("| Figure | atoll | Target | Nomad 2.0.5 |\n|---|---|---|---|\n")
	for _, rw := range r.rows() {
		fmt.Fprintf(&b, "| %s | %s | %s | %s |\n", rw.figure, rw.value, rw.targetCell(true), rw.nomad)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// writeMarkdown prints the table preceded by the machine, as `-o markdown`
// does.
func (r results) writeMarkdown(w io.Writer) error {
	if _, err := fmt.Fprintf(w, "Machine: %s\n\nCommand: `%s`\n\n", r.machine, r.command()); err != nil {
		return err
	}
	return r.writeTable(w)
}

// writeDoc writes docs/benchmarks.md: intro, command, machine, table, how
// each figure is measured, notes.
func (r results) writeDoc(w io.Writer) error {
	var b strings.Builder
	m, rs := r.machine, r.restart
	b.WriteString(`# Benchmarks

How fast atoll brings workloads back and how little it costs to run, measured
on real agent and hub processes, beside the targets we set and the figures
HashiCorp Nomad 2.0.5 reached on the same kind of machine (from ` + "`PEERS.md`" + `,
measured by the same methods where possible; published figures of other
systems are marked as such). This file is generated: do not edit it by hand,
run the command below again.

## Command

From the repository root:

` + "```sh" + `
go run ./bench -write docs/benchmarks.md
` + "```" + `

` + "`go run ./bench`" + ` alone prints the table; ` + "`-o markdown`" + ` prints it as markdown;
` + "`-runs N`" + ` sets the number of crashes timed for the restart latency (default
200); ` + "`-reps N`" + ` the repetitions of each start-up figure (default 5, median
reported); ` + "`-hub-runs N`" + ` the applies timed through the hub (default 30);
` + "`-idle D`" + ` the idle-bytes window (default 60s); ` + "`-fleet N`" + ` the simulated
agents of the fleet figure (default 1000). ` + "`-only agent`" + `, ` + "`-only hub`" + ` or
` + "`-only fleet`" + ` (comma-separated) measures only those groups of figures; it
cannot be combined with ` + "`-write`" + `.
The bench builds a stripped atoll binary into a temporary directory, runs
each agent and hub as a separate process on a temporary data directory, uses
only local resources (a unix socket, loopback TCP, /proc, the temporary
directory), and removes every process, directory and cgroup it created before
it exits. Once the Go build cache is warm it takes about a minute for the
agent figures, two and a half for the hub figures (most of it the 60 s idle
window and the 30 s until the hub shows a cut node disconnected) and one for
the fleet.

## Machine

`)
	fmt.Fprintf(&b, "- CPU: %s, %d cores\n- Memory: %s\n- Kernel: Linux %s, %s\n- Go: %s\n- Agent data directories on: %s\n- 1-minute load average when the bench started: %s\n- Measured: %s\n\n",
		m.cpu, m.cores, m.memory, m.kernel, m.cgroups, m.goVer, m.tempFS, m.load, r.when.UTC().Format("2006-01-02 15:04 MST"))
	b.WriteString("## Results\n\n")
	if err := r.writeTable(&b); err != nil {
		return err
	}
	var missed []string
	for _, rw := range r.rows() {
		if rw.verdict == "MISSED" {
			missed = append(missed, rw.figure)
		}
	}
	if len(missed) > 0 {
		b.WriteString("\nMissed targets on this run: " + strings.Join(missed, "; ") + ".\n")
	}

	fmt.Fprintf(&b, `
## How each figure is measured

Every agent is `+"`atoll agent --data DIR --name NODE`"+` with default settings,
started fresh on its own empty data directory unless said otherwise. Exec
workloads run `+"`sleep 100000`"+` with restart policy `+"`always`"+` and no resource
limits. Durations are wall-clock times taken by the bench process.

1. **Restart latency.** One workload with `+"`restart.backoff.initial: 0s`"+`. The bench
   SIGKILLs its process %d times (as Nomad's figure was measured) and, after each
   kill, scans /proc every %v for a process whose /proc/PID/environ holds
   `+"`ATOLL_WORKLOAD=<name>`"+` and whose PID differs from the killed one. The figure is
   kill → that process exists (after exec). The API figure is kill → the local API's
   status (`+"`GET /v1/workloads`"+`, polled every %v once the process exists)
   shows the workload running with the new PID. The next kill follows %v later. Detection
   adds at most one poll interval plus one scan (a scan took %s on average), so
   the figure is the agent's, not the poller's. p50 and p99 are nearest-rank.
2. **Start-up.** Apply %d workloads in one call to a fresh agent and poll the
   status every %v until all are running; the time runs from the start of the
   apply call. Then the agent is SIGKILLed and every workload's process group
   SIGKILLed (a power cut; the store still holds the %d workloads and the
   handles of their dead processes), a new agent process is started on the
   same data directory, and the time runs from its process start until the
   status shows all %d running with new PIDs. This is the reboot path: the
   agent needs no server to bring its workloads back. "API answering" is agent
   process start → the first successful status call. Each is repeated %d
   times; the table shows the median and the range.
3. **Memory.** VmRSS from /proc/PID/status; PSS and private
   (Private_Clean + Private_Dirty) from /proc/PID/smaps_rollup. Idle: %v after
   the API of a fresh agent first answers. With workloads: %d workloads
   applied, %v after all are running. "All processes" sums the agent and every
   descendant process of the agent found in /proc; a descendant that is not a
   workload is counted as a helper. One second after it starts, the agent gives
   back the program pages its start-up touched (`+"`MADV_PAGEOUT`"+` on the binary's
   read-only mappings, docs/agent.md "Memory"): both readings come after that;
   without it they were 22.3 and 25.3 MiB VmRSS on this machine.
4. **Idle CPU.** utime + stime of the agent from /proc/PID/stat (clock ticks of
   1/%d s) over %v with the %d workloads running, right after the memory
   figure, as a percentage of one core. The resolution is one tick over the
   window (%.2f %%), so the table also gives the agent's on-CPU time over the
   same window from /proc/PID/task/*/schedstat (nanoseconds, summed over its
   threads).
5. **Binary size.** The size of `+"`go build -trimpath -ldflags \"-s -w\" ./cmd/atoll`"+`,
   in MB (10^6 bytes).
6. **WASM.** The example module `+"`examples/wasm/sensor.wasm`"+` (%.1f MiB) as a `+"`wasm`"+`
   workload with a 32Mi memory limit. An agent is started, the workload
   applied and seen running, the agent stopped, and its on-disk compilation
   cache (DATA/cache/wasm) deleted. Then: agent process start → status shows
   the sensor running with the cache cold (compiled from scratch, as on the
   first start ever), then the same again with the cache warm (every later
   start). WASM workloads run inside the agent, so they always restart with
   it. Repeated %d times; median and range.
`, len(rs.proc), procPoll, procPoll, killSpacing, fmtDur(rs.scanMean),
		startCount, apiPoll, startCount, startCount, len(r.start.apply),
		settleIdle, memCount, settleBusy, clockTicks, r.mem.cpuWindow.Round(time.Second), memCount,
		1/float64(clockTicks)/r.mem.cpuWindow.Seconds()*100,
		float64(r.wasm.module)/(1<<20), len(r.wasm.cold))
	b.WriteString(r.hubMethod(7))
	b.WriteString(r.telemetryMethod(11))
	b.WriteString(r.imagesMethod(12))
	b.WriteString(r.containerMethod(13))

	b.WriteString("\n## Notes\n\n")
	fmt.Fprintf(&b, "- atoll starts no helper process per workload: an exec workload is one process, a child of the agent, writing\n"+
		"  its output straight to its log file, and a WASM workload runs inside the agent. Nomad starts an executor and a\n"+
		"  logmon per task (~27 MiB private memory together), hence the gap in the all-processes figure. The bench counted\n"+
		"  %s.\n", plural(r.mem.helpers, "helper process"))
	fmt.Fprintf(&b, "- The %d workloads used %s of CPU together during the idle-CPU window.\n", memCount, plural(int(r.mem.workloadCPU), "clock tick"))
	if rs.eventsPerCrash > 0 {
		types := make([]string, 0, len(rs.eventTypes))
		for t := range rs.eventTypes {
			types = append(types, t)
		}
		sort.Strings(types)
		parts := make([]string, len(types))
		for i, t := range types {
			parts[i] = fmt.Sprintf("%s %.2f", t, rs.eventTypes[t])
		}
		fmt.Fprintf(&b, "- Per crash the agent wrote %.2f events to its store (%s); each event is one bbolt commit, which\n"+
			"  fsyncs. The agent reported %d restarts after the %d kills.\n", rs.eventsPerCrash, strings.Join(parts, ", "), rs.restarts, len(rs.proc))
	}
	b.WriteString("- Nomad's figures are from `PEERS.md`: Nomad 2.0.5 built from its tag, `nomad agent -dev`, raw_exec tasks running\n" +
		"  `/bin/sleep`, on a 2 vCPU machine of this kind with cgroups v1. Its restart figure is the median of 10 kills\n" +
		"  (47.9–95.5 ms), its start-up figure the median of 5 `nomad job run` of 10 allocations.\n")
	b.WriteString("- Other systems, for scale (published figures, not measured here): KubeEdge's edgecore needs at least 70 MB of\n" +
		"  memory; a K3s agent at least 275 MB.\n")
	b.WriteString("- Memory is in MiB (2^20 bytes) like Nomad's figures; the 20 MB target is checked against 20,000,000 bytes.\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// plural returns "1 tick" or "n ticks": unit is the singular, adding "s"
// (or "es" after an s) makes the plural.
func plural(n int, unit string) string {
	switch {
	case n == 1:
		return "1 " + unit
	case strings.HasSuffix(unit, "s"):
		return fmt.Sprintf("%d %ses", n, unit)
	default:
		return fmt.Sprintf("%d %ss", n, unit)
	}
}

func fmtDur(d time.Duration) string {
	return fmt.Sprintf("%.3f ms", float64(d)/float64(time.Millisecond))
}
