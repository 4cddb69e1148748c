package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"atoll.dev/atoll/internal/wire"
)

// Targets of the hub figures.
const (
	targetHubApplyP50 = 50 * time.Millisecond
	targetIdleBytes   = 100_000 // bytes per hour: 100 KB
	targetFleet       = 10 * time.Second
)

// command is the command line that reproduces this table.
func (r results) command() string {
	return strings.Join(append([]string{"go run ./bench"}, os.Args[1:]...), " ")
}

// perHour scales bytes counted over d to an hour.
func perHour(bytes int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(bytes) / d.Seconds() * 3600
}

func kb(b float64) string { return fmt.Sprintf("%.1f KB", b/1000) }

// commas writes n with thousands separators: 1,000.
func commas(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// idleBytes returns the idle node's bytes per hour: payload, and payload
// plus an IP/TCP header per segment.
func (l linkResult) idleBytes() (payload, wire float64) {
	p := l.idleUp + l.idleDown
	w := p + int64(l.idleSegsIn+l.idleSegsOut)*ipTCPHeaders
	return perHour(p, l.idleWindow), perHour(w, l.idleWindow)
}

func (r results) hubRows() []row {
	a, l := r.hubApply, r.link
	p50, p99 := quantile(a.api, 0.5), quantile(a.api, 0.99)
	payload, onWire := l.idleBytes()
	return []row{
		{
			figure: fmt.Sprintf("Hub: apply → running on a connected node (hub API), p50 / p99 of %d", len(a.api)),
			value:  ms(p50) + " / " + ms(p99), target: "p50 ≤ 50 ms", verdict: verdict(p50 <= targetHubApplyP50),
			nomad: "1.197 s for 10 allocations, separate server and client (0.929 s with `-dev`)",
		},
		{
			figure: "Hub: apply → the process exists on the node (/proc), p50 / p99",
			value:  ms(quantile(a.proc, 0.5)) + " / " + ms(quantile(a.proc, 0.99)),
			nomad:  "0.546 s for 10 allocations (`-dev`)",
		},
		{
			figure: fmt.Sprintf("Hub: bytes on the wire per idle node per hour (%d workloads; NATS payload incl. PING/PONG)", linkCount),
			value: fmt.Sprintf("%s/h: up %s, down %s (≈ %s/h with IP+TCP headers)", kb(payload),
				kb(perHour(l.idleUp, l.idleWindow)), kb(perHour(l.idleDown, l.idleWindow)), kb(onWire)),
			target: "≤ 100 KB/h", verdict: verdict(payload <= targetIdleBytes),
			nomad: "— (KubeEdge ≈ 110 KB/h uplink, published)",
		},
		{
			figure: fmt.Sprintf("Hub: %d changes queued while disconnected; link restored → hub shows them applied and all %d workloads restarted",
				l.changes, linkCount),
			value: fmt.Sprintf("%s (reconnect %s, then %s)", sec(l.converged), sec(l.reconnect), sec(l.converged-l.reconnect)),
			nomad: "—",
		},
	}
}

func (r results) fleetRows() []row {
	f := r.fleet
	n := commas(f.nodes)
	hb := ""
	if f.heartbeat != wire.HeartbeatInterval {
		hb = fmt.Sprintf(", heartbeat %v", f.heartbeat)
	}
	return []row{
		{
			figure: fmt.Sprintf("Fleet: %s simulated agents%s, apply one workload → every node stored the plan, p50 / p99 / last", n, hb),
			value:  fmt.Sprintf("%s / %s / %s", sec(quantile(f.stored, 0.5)), sec(quantile(f.stored, 0.99)), sec(quantile(f.stored, 1))),
			nomad:  "—",
		},
		{
			figure: fmt.Sprintf("Fleet: apply → hub API shows all %s instances running at the current revision", n),
			value:  sec(f.hubAPI), target: "≤ 10 s", verdict: verdict(f.hubAPI <= targetFleet),
			nomad: "— (KubeEdge pod start at 100,000 nodes: p50 1.69 s, p99 4.09 s, published)",
		},
		{
			figure: fmt.Sprintf("Fleet: %s agents enroll (token → key, CSR, certificate; 8 at a time)", n),
			value:  sec(f.enroll), nomad: "—",
		},
		{
			figure: fmt.Sprintf("Fleet: %s agents start → hub shows all connected (mutual TLS)", n),
			value:  sec(f.join), nomad: "—",
		},
		{
			figure: fmt.Sprintf("Fleet: hub memory, %s connected, idle: VmRSS / PSS (after the apply)", n),
			value: fmt.Sprintf("%s / %s MiB (%s / %s MiB)", mib(f.idleMem.vmRSS), mib(f.idleMem.pss),
				mib(f.busyMem.vmRSS), mib(f.busyMem.pss)),
			nomad: "—",
		},
		{
			figure: fmt.Sprintf("Fleet: hub CPU, %s connected, idle, over %.0f s", n, fleetIdle.Seconds()),
			value: fmt.Sprintf("%.1f %% of one core (join %.0f %%, apply → all running %.0f %%, whole run %.1f %%)",
				f.idleCPU, f.joinCPU, f.applyCPU, f.runCPU),
			nomad: "—",
		},
	}
}

// hubMethod is the part of "How each figure is measured" about the hub
// figures, numbered from first.
func (r results) hubMethod(first int) string {
	a, l, f := r.hubApply, r.link, r.fleet
	var b strings.Builder
	fmt.Fprintf(&b, `%d. **Hub: apply → running.** `+"`atoll hub --data DIR --listen 127.0.0.1:P --nats-listen 127.0.0.1:Q`"+`
   (hub process start → API answering took %s) and one agent started with
   `+"`--hub nats://127.0.0.1:Q --token T --labels bench=RUN`"+` (enrolled with a token made through the API; TLS and client certificates on both links, as by default), connected (the hub shows it
   `+"`connected`"+`). %d times, after one untimed warm-up (which took %s to the process
   and %s to the API): a new workload with
   `+"`spec.placement.nodes: [NODE]`"+` is applied with `+"`POST /v1/workloads:apply`"+`;
   from the start of that call, `+"`GET /v1/workloads/NAME`"+` is polled every %v until
   the instance on the node is `+"`running`"+` (the API figure), and, in another
   goroutine, /proc is scanned every %v for the workload's process as in the
   restart figure (a scan took %s on average). Then the workload is deleted
   (`+"`DELETE /v1/workloads/NAME`"+`) and the next repetition waits until the process
   is gone and the node has acknowledged the deletion. One GET took %s on average
   (%d GETs), which bounds the API figure's resolution. Where the time goes
   (medians, from the start of the apply call; the agent's times are those of its
   own events): the apply call returned at %s; the agent had stored the plan at
   %s (notify, heartbeat, plan request, plan written to its store) and recorded
   the workload started at %s (process forked, its handle persisted); the hub's
   API showed it running at %s. That last step is the agent's status report,
   which includes the uplink's status debounce (statusDebounce in
   internal/agent/uplink/uplink.go, 20 ms at the time of writing), then a
   heartbeat and the status to the hub, which stores it. Delete → process gone
   took %s (median). Reproduce with `+"`go run ./bench -only hub`"+`.
%d. **Hub: idle bytes.** A second hub and agent, the agent joined to the hub's NATS
   through a TCP proxy in the bench process that forwards both ways and counts
   the bytes it forwards. %d workloads applied through the hub and running; %v
   later, the bytes forwarded both ways over %v, scaled to an hour. This is TCP
   payload, i.e. NATS protocol bytes: heartbeat requests and replies (every %v),
   the client's PING/PONG (every 20 s) and the server's. With headers: the kernel's
   segment counters (TCP_INFO segs_in + segs_out, which include pure ACKs) of the
   agent's connection to the proxy, times %d bytes of IPv4 + TCP headers with the
   timestamp option, added to the payload; Ethernet framing is not included. In
   this run: %d B up, %d B down, %d segments in %v, i.e. %.0f bytes per heartbeat
   interval. Nearly all of it is the heartbeat round trip: a request (a
   `+"`PUB atoll.hb.NODE _INBOX.…`"+` line and a JSON body of about 100 bytes with the
   node's name, revisions and status digest) and a reply (a `+"`MSG`"+` line and
   `+"`{\"planRevision\":N}`"+`). KB is 1,000 bytes. KubeEdge's published figure (≈ 0.25 kbit/s) is the
   uplink only: compare it with "up".
%d. **Hub: reconnect.** Right after the idle window the proxy cuts the link: it
   closes the agent's connection and refuses new ones. The hub showed the node
   `+"`disconnected`"+` %s after the cut (wire.DisconnectedAfter is %v after the last
   heartbeat). While cut, %d changes are applied at the hub, one apply call each
   (%d rounds of a new environment variable value for each of the %d workloads),
   in %s; they made %d plan revisions. %d of %d workloads were still running with
   their PIDs just before the link came back. Then the proxy accepts again, and
   `+"`GET /v1/nodes/NODE`"+` is polled every %v from that moment until the hub shows
   appliedRevision == planRevision and every workload running with a new PID.
   The agent's NATS client reconnected %s after the restore (its reconnect wait is
   1 s plus up to 0.5 s of jitter), the hub showed the node connected at %s and
   at the current revision at %s, all restarted at %s. Catching up took %d bytes
   both ways. Each new process was checked in /proc to carry the last value.
   Reproduce with `+"`go run ./bench -only hub`"+`.
`,
		first, fmtDur(a.hubUp), len(a.api), fmtDur(a.warmProc), fmtDur(a.warmAPI), hubPoll, procPoll, fmtDur(a.scanMean),
		fmtDur(a.getTime/time.Duration(max(a.gets, 1))), a.gets, fmtDur(quantile(a.call, 0.5)),
		fmtDur(quantile(a.planStored, 0.5)), fmtDur(quantile(a.started, 0.5)), fmtDur(quantile(a.api, 0.5)),
		fmtDur(quantile(a.del, 0.5)),
		first+1, linkCount, hubSettle, l.idleWindow.Round(time.Second), wire.HeartbeatInterval, ipTCPHeaders,
		l.idleUp, l.idleDown, l.idleSegsIn+l.idleSegsOut, l.idleWindow.Round(time.Second),
		float64(l.idleUp+l.idleDown)/(l.idleWindow.Seconds()/wire.HeartbeatInterval.Seconds()),
		first+2, sec(l.cutToDisconnected), wire.DisconnectedAfter, l.changes, linkRounds, linkCount,
		sec(l.applyWhileCut), l.revisions, l.keptRunning, linkCount, nodePoll,
		sec(l.reconnect), sec(l.connected), sec(l.applied), sec(l.converged), l.catchUpBytes)
	fmt.Fprintf(&b, `%d. **Fleet.** One hub process; %s simulated agents inside the bench process,
   each a real `+"`uplink.Uplink`"+` (the agent's protocol client) with its own NATS
   connection to the hub, over an in-memory node that keeps the plan in memory
   and reports each of its workloads running as soon as the plan is stored.
   Labels fleet=sim and site=s0…s9; heartbeat %v (the default). They all start at
   once, so their heartbeats come in bursts rather than spread over the
   interval, the harder case for the hub. The bench raises
   its RLIMIT_NOFILE soft limit to %d, which the hub inherits. The hub's `+"`GET /v1/nodes`"+` is polled every 250 ms until it shows them
   all connected. %v later, the hub's CPU (utime + stime from /proc/PID/stat)
   is taken over %v, and its VmRSS and PSS. Then one workload with
   `+"`nodeSelector: {fleet: sim}`"+` is applied (the apply call took %s: it writes
   every node's plan); each simulated node records when it stored a plan holding
   it, and `+"`GET /v1/workloads/NAME`"+` is polled every %v until all %s instances are
   running at the new revision (one such GET took %s; a `+"`GET /v1/nodes`"+` %s).
   The list of nodes is then checked for appliedRevision == planRevision on every
   node. The simulated agents themselves used %.0f %% of one core while idle. CPU
   figures are percentages of one core; "whole run" is from the hub's process
   start to the convergence (%s). Reproduce with `+"`go run ./bench -only fleet`"+`.
`,
		first+3, commas(f.nodes), f.heartbeat, f.rlimit, fleetSettle, fleetIdle, sec(f.applyCall), fleetPoll, commas(f.nodes),
		sec(f.getMean), sec(f.nodesGet), f.idleSim, sec(f.runWall))
	return b.String()
}
