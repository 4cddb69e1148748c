package agent

// Node and workload metrics for the hub (docs/metrics.md).
//
// The uplink asks for the node's Status once per sync round: every
// heartbeat, and sooner when something changed. Each of those calls takes
// at most one sample per heartbeat interval; six samples make a window
// (one minute at the default 10 s heartbeat), summarised into a
// wire.Metrics. The latest summary rides in every Status, outside the
// digest. To send a summary the agent *releases* it: the release count is
// mixed into the digest, so the uplink publishes the status once per
// release and never because a sample changed. Releases are spaced so that
// metrics cost an idle node about metricsBudgetPerWindow bytes per window
// (6 KB an hour by default): a status of S bytes is released every
// ⌈S/100⌉ windows, at least one and at most sixty, the first five windows
// after the agent's first sample.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"atoll.dev/atoll/internal/agent/broker"
	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/wire"
)

const (
	// metricsWindowSamples is a window's length in sample intervals.
	metricsWindowSamples = 6
	// metricsFirstRelease is how many windows after its first sample the
	// agent releases its first summary.
	metricsFirstRelease = 5
	// metricsMaxPeriod bounds the windows between two releases.
	metricsMaxPeriod = 60
	// metricsBudgetPerWindow is what metrics may cost an idle node per
	// window, in bytes of status sent.
	metricsBudgetPerWindow = 100
	// statusFraming is what a status costs beyond the JSON that
	// updateMetrics is given: its digest and time, and the NATS PUB line.
	statusFraming = 120
	// metricsGap is how many sample intervals without a sample (the link
	// was down, or the agent stopped) end a window early: a window only
	// summarises contiguous samples. A whole window's length, so that a
	// slow sync round is not taken for an outage.
	metricsGap = metricsWindowSamples
	// clockTicks is USER_HZ, the unit of /proc/PID/stat's CPU times; 100
	// on every architecture Go runs Linux on.
	clockTicks = 100
)

// Where the samples come from.
const (
	procDir    = "/proc"
	sysNetDir  = "/sys/class/net"
	routesPath = "/proc/net/route"
)

// updateMetrics samples the node and ws, the workloads of the status
// being built, if a sample is due, and returns the latest summary (nil
// before the first window closes) and how many summaries have been
// released. statusBytes is the size of that status without its metrics,
// which sets how often a summary may be released.
func (h hubNode) updateMetrics(ws []wire.WorkloadStatus, statusBytes int) (*wire.Metrics, uint64) {
	s := h.a.metrics
	now := time.Now()
	if s.due(now) {
		if closed := s.add(h.sample(now, ws), statusBytes); closed != nil && h.a.broker != nil {
			h.keepMetrics(closed)
		}
	}
	return s.latest()
}

// metricsSample is one reading of the node and its exec workloads. A
// reading that failed is zero (totals) or false (ok flags).
type metricsSample struct {
	at                   time.Time
	memTotal, memAvail   int64
	diskTotal, diskAvail int64
	loadOK               bool
	load                 [3]float64
	outboxOK             bool
	outbox               int
	outboxDropped        uint64
	outboxCapacity       int
	telemetry            *wire.TelemetryMetrics
	link                 string
	linkUp               bool
	linkChanges          int64
	workloads            map[string]wire.WorkloadMetrics
}

// sample reads everything a window summarises. Failures leave their
// fields empty: a node without /sys, or a process that just exited, is
// not an error worth more than a debug line.
func (h hubNode) sample(now time.Time, ws []wire.WorkloadStatus) metricsSample {
	s := metricsSample{at: now, workloads: map[string]wire.WorkloadMetrics{}}
	var errs []error
	if total, avail, err := readMemInfo(h.a.cfg.MemInfoPath); err == nil {
		s.memTotal, s.memAvail = total, avail
	} else {
		errs = append(errs, err)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(h.a.cfg.DataDir, &fs); err == nil {
		s.diskTotal, s.diskAvail = int64(fs.Blocks)*int64(fs.Bsize), int64(fs.Bavail)*int64(fs.Bsize)
	} else {
		errs = append(errs, fmt.Errorf("statfs %s: %w", h.a.cfg.DataDir, err))
	}
	if load, err := readLoadAvg(filepath.Join(procDir, "loadavg")); err == nil {
		s.load, s.loadOK = load, true
	} else {
		errs = append(errs, err)
	}
	if n, err := h.outboxDepth(); err == nil {
		s.outbox, s.outboxOK, s.outboxCapacity = n, true, h.a.cfg.EventRetention
	} else {
		errs = append(errs, err)
	}
	if n, err := h.a.store.DroppedEvents(); err == nil {
		s.outboxDropped = n
	} else {
		errs = append(errs, err)
	}
	if h.a.broker != nil {
		if tm, err := h.telemetryMetrics(); err == nil {
			s.telemetry = &tm
		} else {
			errs = append(errs, err)
		}
	}
	if link, err := defaultRouteLink(routesPath); err == nil && link != "" {
		s.link = link
		s.linkUp, s.linkChanges = readLink(filepath.Join(sysNetDir, link))
	} else if err != nil {
		errs = append(errs, err)
	}
	for _, w := range ws {
		if w.Runtime != string(manifest.RuntimeExec) || w.State != wire.StateRunning || w.PID <= 0 {
			continue
		}
		wm, err := readProcUsage(procDir, w.PID)
		if err != nil {
			errs = append(errs, fmt.Errorf("workload %s: %w", w.Name, err))
			continue
		}
		s.workloads[w.Name] = wm
	}
	if err := errors.Join(errs...); err != nil {
		h.a.log.Debug("metrics sample incomplete", "err", err)
	}
	return s
}

// outboxDepth is how many stored events the hub has not acknowledged.
func (h hubNode) outboxDepth() (int, error) {
	cursor, err := h.EventCursor()
	if err != nil {
		return 0, fmt.Errorf("outbox: %w", err)
	}
	evs, err := h.a.store.Events(cursor, h.a.cfg.EventRetention)
	if err != nil {
		return 0, fmt.Errorf("outbox: %w", err)
	}
	return len(evs), nil
}

// metricsSampler turns samples into windows and decides when a summary is
// released. It is safe for concurrent use.
type metricsSampler struct {
	every time.Duration // the sample interval

	mu          sync.Mutex
	last        time.Time      // the latest sample; guarded by mu
	cur         *metricsWindow // the open window; guarded by mu
	closed      *wire.Metrics  // the latest closed window; guarded by mu
	released    uint64         // summaries released; guarded by mu
	nextRelease time.Time      // guarded by mu
}

func (s *metricsSampler) window() time.Duration { return metricsWindowSamples * s.every }

// due reports whether a sample taken at now is one the sampler wants: the
// uplink calls more often than once per interval when statuses change.
// A tenth of the interval is tolerated, for timers that fire early.
func (s *metricsSampler) due(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.last.IsZero() || now.Sub(s.last) >= s.every-s.every/10
}

// add folds a sample in. A window closes at the first sample a window's
// length after its start, or after a gap; a closed window is released
// when a release is due and the window is fresh (it ended at the previous
// sample, not before a gap).
func (s *metricsSampler) add(smp metricsSample, statusBytes int) (closed *wire.Metrics) {
	s.mu.Lock()
	defer s.mu.Unlock()
	gap := !s.last.IsZero() && smp.at.Sub(s.last) > metricsGap*s.every
	if s.cur != nil && (gap || smp.at.Sub(s.cur.m.Start) >= s.window()) {
		m := s.cur.m
		s.closed, s.cur = &m, nil
		closed = &m
		if !gap && !smp.at.Before(s.nextRelease) {
			s.released++
			s.nextRelease = smp.at.Add(s.period(statusBytes + statusFraming + metricsSize(&m)))
		}
	}
	if s.nextRelease.IsZero() {
		s.nextRelease = smp.at.Add(metricsFirstRelease * s.window())
	}
	if s.cur == nil {
		s.cur = &metricsWindow{m: wire.Metrics{Start: smp.at.UTC()}}
	}
	s.cur.add(smp)
	s.last = smp.at
	return closed
}

// keepMetrics keeps a closed window in the broker's outbox, which
// forwards it to the hub like any record: the node's resource history
// survives an outage, where the status carries only the latest window.
func (h hubNode) keepMetrics(m *wire.Metrics) {
	b, err := json.Marshal(m)
	if err == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = h.a.broker.Keep(ctx, broker.MetricsSubject, b)
		cancel()
	}
	if err != nil {
		h.a.log.Warn("keep metrics summary", "err", err)
	}
}

// sampleAlways takes the metrics samples on its own while the node has a
// broker, connected or not (otherwise the uplink's status requests drive
// them, which stop while the link is down), until ctx is done.
func (a *Agent) sampleAlways(ctx context.Context) {
	t := time.NewTicker(a.metrics.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			hubNode{a}.Status()
		}
	}
}

// period is the time between releases for a status of size bytes.
func (s *metricsSampler) period(size int) time.Duration {
	n := min(max((size+metricsBudgetPerWindow-1)/metricsBudgetPerWindow, 1), metricsMaxPeriod)
	return time.Duration(n) * s.window()
}

// latest returns a copy of the latest closed window and the release count.
func (s *metricsSampler) latest() (*wire.Metrics, uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed == nil {
		return nil, s.released
	}
	m := *s.closed
	return &m, s.released
}

// metricsWindow is the open window's running summary.
type metricsWindow struct {
	m wire.Metrics
}

// add folds one sample into the window: gauges keep their worst value,
// counters and load averages their last.
func (w *metricsWindow) add(smp metricsSample) {
	m, n := &w.m, &w.m.Node
	m.Samples++
	m.End = smp.at.UTC()
	if smp.memTotal > 0 {
		if n.MemTotal == 0 || smp.memAvail < n.MemAvailable {
			n.MemAvailable = smp.memAvail
		}
		n.MemTotal = smp.memTotal
	}
	if smp.diskTotal > 0 {
		if n.DiskTotal == 0 || smp.diskAvail < n.DiskAvailable {
			n.DiskAvailable = smp.diskAvail
		}
		n.DiskTotal = smp.diskTotal
	}
	if smp.loadOK {
		n.Load1, n.Load5, n.Load15 = smp.load[0], smp.load[1], smp.load[2]
	}
	if smp.outboxOK {
		n.Outbox, n.OutboxCapacity = smp.outbox, smp.outboxCapacity
		n.OutboxDropped = smp.outboxDropped
	}
	if smp.telemetry != nil {
		n.Telemetry = smp.telemetry
	}
	if smp.link != "" {
		if n.Link == "" {
			n.LinkUp = smp.linkUp
		} else {
			n.LinkUp = n.LinkUp && smp.linkUp
		}
		n.Link, n.LinkChanges = smp.link, smp.linkChanges
	}
	for name, u := range smp.workloads {
		if m.Workloads == nil {
			m.Workloads = map[string]wire.WorkloadMetrics{}
		}
		cur := m.Workloads[name]
		cur.RSS = max(cur.RSS, u.RSS)
		cur.CPUSeconds = u.CPUSeconds
		m.Workloads[name] = cur
	}
}

// metricsSize is the JSON size of m inside a status.
func metricsSize(m *wire.Metrics) int {
	b, _ := json.Marshal(m)
	return len(`,"metrics":`) + len(b)
}

// readLoadAvg parses the three load averages of a /proc/loadavg file.
func readLoadAvg(path string) ([3]float64, error) {
	var out [3]float64
	b, err := os.ReadFile(path)
	if err != nil {
		return out, fmt.Errorf("read load average: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return out, fmt.Errorf("read load average %s: %d fields", path, len(f))
	}
	for i := range out {
		if out[i], err = strconv.ParseFloat(f[i], 64); err != nil {
			return out, fmt.Errorf("read load average %s: %w", path, err)
		}
	}
	return out, nil
}

// defaultRouteLink returns the interface of the IPv4 default route with
// the lowest metric in a /proc/net/route file, "" when there is none.
func defaultRouteLink(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read routes: %w", err)
	}
	const rtfUp = 0x1
	best, bestMetric := "", uint64(math.MaxUint64)
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Scan() // header
	for sc.Scan() {
		// Iface Destination Gateway Flags RefCnt Use Metric Mask ...
		f := strings.Fields(sc.Text())
		if len(f) < 8 || f[1] != "00000000" || f[7] != "00000000" {
			continue
		}
		flags, err1 := strconv.ParseUint(f[3], 16, 32)
		metric, err2 := strconv.ParseUint(f[6], 10, 64)
		if err1 != nil || err2 != nil || flags&rtfUp == 0 {
			continue
		}
		if metric < bestMetric {
			best, bestMetric = f[0], metric
		}
	}
	return best, sc.Err()
}

// readLink reads a /sys/class/net/IFACE directory: whether the link is up
// (operstate "up", or "unknown" with a carrier, as tunnels report) and
// its carrier-change counter.
func readLink(dir string) (up bool, changes int64) {
	state, _ := os.ReadFile(filepath.Join(dir, "operstate"))
	carrier, _ := os.ReadFile(filepath.Join(dir, "carrier"))
	switch strings.TrimSpace(string(state)) {
	case "up":
		up = true
	case "unknown":
		up = strings.TrimSpace(string(carrier)) == "1"
	}
	if b, err := os.ReadFile(filepath.Join(dir, "carrier_changes")); err == nil {
		changes, _ = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	}
	return up, changes
}

// readProcUsage reads a process's VmRSS (/proc/PID/status) and its user
// plus system CPU time (/proc/PID/stat fields 14 and 15).
func readProcUsage(proc string, pid int) (wire.WorkloadMetrics, error) {
	var out wire.WorkloadMetrics
	dir := filepath.Join(proc, strconv.Itoa(pid))
	status, err := os.ReadFile(filepath.Join(dir, "status"))
	if err != nil {
		return out, fmt.Errorf("read process usage: %w", err)
	}
	stat, err := os.ReadFile(filepath.Join(dir, "stat"))
	if err != nil {
		return out, fmt.Errorf("read process usage: %w", err)
	}
	if out.RSS, err = parseVmRSS(status); err != nil {
		return out, fmt.Errorf("read process usage of %d: %w", pid, err)
	}
	if out.CPUSeconds, err = parseCPUSeconds(stat); err != nil {
		return out, fmt.Errorf("read process usage of %d: %w", pid, err)
	}
	return out, nil
}

// parseVmRSS returns VmRSS in bytes from a /proc/PID/status file; a
// process without one (a zombie, a kernel thread) has 0.
func parseVmRSS(status []byte) (int64, error) {
	for line := range strings.Lines(string(status)) {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("VmRSS line %q", strings.TrimSpace(line))
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("VmRSS: %w", err)
		}
		return kb * 1024, nil
	}
	return 0, nil
}

// parseCPUSeconds returns utime+stime in seconds from a /proc/PID/stat
// file. The command name (field 2) may hold spaces and parentheses, so
// fields are counted from the last ')'.
func parseCPUSeconds(stat []byte) (float64, error) {
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, errors.New("stat: no command name")
	}
	f := strings.Fields(string(stat[i+1:]))
	const utime, stime = 14 - 3, 15 - 3 // f[0] is field 3
	if len(f) <= stime {
		return 0, fmt.Errorf("stat: %d fields after the command name", len(f))
	}
	u, err1 := strconv.ParseUint(f[utime], 10, 64)
	s, err2 := strconv.ParseUint(f[stime], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("stat: %w", err)
	}
	return float64(u+s) / clockTicks, nil
}
