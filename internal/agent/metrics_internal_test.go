package agent

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"atoll.dev/atoll/internal/agent/store"
	"atoll.dev/atoll/internal/wire"
)

var m0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// smp is a sample at m0+sec with avail bytes of memory available, one
// workload using rss bytes and cpu seconds, and the link up or not.
func smp(sec int, avail, rss int64, cpu float64, up bool) metricsSample {
	return metricsSample{
		at: m0.Add(time.Duration(sec) * time.Second), memTotal: 1000, memAvail: avail,
		diskTotal: 500, diskAvail: 400 - int64(sec), loadOK: true, load: [3]float64{float64(sec), 2, 3},
		outboxOK: true, outbox: sec, outboxCapacity: store.DefaultEventRetention, link: "eth0", linkUp: up, linkChanges: int64(sec),
		workloads: map[string]wire.WorkloadMetrics{"web": {RSS: rss, CPUSeconds: cpu}},
	}
}

// TestMetricsSampler_Window checks a window's summary: worst gauges,
// last counters and load, the link up only if up at every sample.
func TestMetricsSampler_Window(t *testing.T) {
	s := &metricsSampler{every: 10 * time.Second}
	avail := []int64{700, 300, 900, 500, 600, 800}
	rss := []int64{10, 50, 20, 40, 30, 5}
	for i := range 6 {
		s.add(smp(10*i, avail[i], rss[i], float64(i), i != 3), 0)
		if m, _ := s.latest(); m != nil {
			t.Fatalf("a summary after %d samples of a 60s window: %+v", i+1, m)
		}
	}
	s.add(smp(60, 100, 1, 9, true), 0) // closes the first window, opens the next
	m, released := s.latest()
	if m == nil {
		t.Fatal("no summary once the window's length has passed")
	}
	want := wire.Metrics{
		Start: m0, End: m0.Add(50 * time.Second), Samples: 6,
		Node: wire.NodeMetrics{MemTotal: 1000, MemAvailable: 300, DiskTotal: 500, DiskAvailable: 350,
			Load1: 50, Load5: 2, Load15: 3, Outbox: 50, OutboxCapacity: store.DefaultEventRetention,
			Link: "eth0", LinkUp: false, LinkChanges: 50},
		Workloads: map[string]wire.WorkloadMetrics{"web": {RSS: 50, CPUSeconds: 5}},
	}
	if !equalMetrics(*m, want) {
		t.Fatalf("summary =\n%+v, want\n%+v", *m, want)
	}
	if released != 0 {
		t.Fatalf("released %d summaries in the first window, want none before %d windows", released, metricsFirstRelease)
	}
}

func equalMetrics(a, b wire.Metrics) bool {
	if !a.Start.Equal(b.Start) || !a.End.Equal(b.End) || a.Samples != b.Samples || a.Node != b.Node ||
		len(a.Workloads) != len(b.Workloads) {
		return false
	}
	for k, v := range a.Workloads {
		if b.Workloads[k] != v {
			return false
		}
	}
	return true
}

// TestMetricsSampler_Releases checks when summaries are released: first
// after metricsFirstRelease windows, then every ⌈size/budget⌉ windows,
// never for a window that ended before a gap, and at once for the first
// fresh window after one when a release is overdue.
func TestMetricsSampler_Releases(t *testing.T) {
	s := &metricsSampler{every: 10 * time.Second}
	// Samples of one size, so that every summary is as long.
	fixed := func(sec int) metricsSample {
		x := smp(0, 500, 10, 1, true)
		x.at = m0.Add(time.Duration(sec) * time.Second)
		return x
	}
	var releasedAt []int // seconds
	var last uint64
	run := func(from, to, statusBytes int) {
		for sec := from; sec <= to; sec += 10 {
			s.add(fixed(sec), statusBytes)
			if _, n := s.latest(); n != last {
				if n != last+1 {
					t.Fatalf("at %ds the release count went from %d to %d", sec, last, n)
				}
				last = n
				releasedAt = append(releasedAt, sec)
			}
		}
	}
	// The size: the status given, the framing, and the summary itself.
	m, _ := func() (*wire.Metrics, uint64) {
		p := &metricsSampler{every: 10 * time.Second}
		for sec := 0; sec <= 60; sec += 10 {
			p.add(fixed(sec), 0)
		}
		return p.latest()
	}()
	const statusBytes = 1000
	period := (statusBytes + statusFraming + metricsSize(m) + metricsBudgetPerWindow - 1) / metricsBudgetPerWindow
	if period < 2 || period > metricsMaxPeriod {
		t.Fatalf("test set-up: period %d windows", period)
	}
	run(0, 3600, statusBytes)
	if len(releasedAt) < 3 {
		t.Fatalf("released at %v (s), want several in an hour", releasedAt)
	}
	if releasedAt[0] != metricsFirstRelease*60 {
		t.Errorf("first release at %ds, want %ds", releasedAt[0], metricsFirstRelease*60)
	}
	for i := 1; i < len(releasedAt); i++ {
		if d := releasedAt[i] - releasedAt[i-1]; d != period*60 {
			t.Errorf("releases at %v: %ds apart, want %d windows (%ds)", releasedAt, d, period, period*60)
		}
	}
	// A tiny status is released every window, a huge one every
	// metricsMaxPeriod windows.
	if got := s.period(1); got != time.Minute {
		t.Errorf("period of 1 byte = %v, want one window", got)
	}
	if got := s.period(1 << 30); got != metricsMaxPeriod*time.Minute {
		t.Errorf("period of 1 GiB = %v, want %d windows", got, metricsMaxPeriod)
	}

	// A gap of ten minutes (the link was down): the window before it
	// closes, unreleased though a release is overdue; the first window
	// after it is released as soon as it closes.
	before := last
	gapFrom := 3600 + 600
	s.add(fixed(gapFrom), statusBytes)
	m, n := s.latest()
	if n != before || !m.End.Equal(m0.Add(3600*time.Second)) {
		t.Fatalf("after the gap: released %d (was %d), summary ending %v; want the pre-gap window, unreleased", n, before, m.End)
	}
	releasedAt = nil
	run(gapFrom+10, gapFrom+60, statusBytes)
	if len(releasedAt) != 1 || releasedAt[0] != gapFrom+60 {
		t.Fatalf("released at %v after the gap, want once at %ds", releasedAt, gapFrom+60)
	}
	if m, _ := s.latest(); !m.Start.Equal(m0.Add(time.Duration(gapFrom)*time.Second)) || m.Samples != 6 {
		t.Fatalf("first window after the gap = %+v", m)
	}
}

func TestMetricsSampler_Due(t *testing.T) {
	s := &metricsSampler{every: 10 * time.Second}
	if !s.due(m0) {
		t.Fatal("first sample not due")
	}
	s.add(smp(0, 1, 1, 1, true), 0)
	for _, c := range []struct {
		after time.Duration
		due   bool
	}{{time.Second, false}, {8 * time.Second, false}, {9 * time.Second, true}, {time.Hour, true}} {
		if got := s.due(m0.Add(c.after)); got != c.due {
			t.Errorf("due %v after the last sample = %v, want %v", c.after, got, c.due)
		}
	}
}

func TestMetrics_Parsers(t *testing.T) {
	rss, err := parseVmRSS([]byte("Name:\tsleep\nVmPeak:\t 8000 kB\nVmRSS:\t    1234 kB\nVmHWM:\t 2000 kB\n"))
	if err != nil || rss != 1234*1024 {
		t.Errorf("parseVmRSS = %d, %v; want %d", rss, err, 1234*1024)
	}
	if rss, err := parseVmRSS([]byte("Name:\tkworker\n")); err != nil || rss != 0 {
		t.Errorf("parseVmRSS without VmRSS = %d, %v; want 0", rss, err)
	}
	if _, err := parseVmRSS([]byte("VmRSS:\t12 MB\n")); err == nil {
		t.Error("parseVmRSS accepted a unit other than kB")
	}

	// Fields 14 and 15 (utime, stime) after a command name with spaces
	// and parentheses.
	stat := "4242 (my (odd) cmd) S 1 4242 4242 0 -1 4194560 100 0 0 0 250 125 0 0 20 0 1 0 999 1000 100"
	cpu, err := parseCPUSeconds([]byte(stat))
	if err != nil || cpu != 3.75 {
		t.Errorf("parseCPUSeconds = %v, %v; want 3.75", cpu, err)
	}
	if _, err := parseCPUSeconds([]byte("4242 (x) S 1 2")); err == nil {
		t.Error("parseCPUSeconds accepted a short stat")
	}

	dir := t.TempDir()
	write := func(name, content string) string {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	routes := write("route", "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"+
		"wwan0\t00000000\t0101A8C0\t0003\t0\t0\t700\t00000000\t0\t0\t0\n"+
		"eth0\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n"+
		"eth1\t00000000\t010300C0\t0002\t0\t0\t0\t00000000\t0\t0\t0\n"+ // not up
		"eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\t0\t0\t0\n")
	if link, err := defaultRouteLink(routes); err != nil || link != "eth0" {
		t.Errorf("defaultRouteLink = %q, %v; want eth0 (lowest metric of the up default routes)", link, err)
	}
	none := write("route-none", "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\n"+
		"eth0\t000200C0\t00000000\t0001\t0\t0\t0\t00FFFFFF\n")
	if link, err := defaultRouteLink(none); err != nil || link != "" {
		t.Errorf("defaultRouteLink without a default route = %q, %v; want none", link, err)
	}

	write("net/eth0/operstate", "up\n")
	write("net/eth0/carrier_changes", "7\n")
	write("net/wg0/operstate", "unknown\n")
	write("net/wg0/carrier", "1\n")
	write("net/eth1/operstate", "down\n")
	for _, c := range []struct {
		link    string
		up      bool
		changes int64
	}{{"eth0", true, 7}, {"wg0", true, 0}, {"eth1", false, 0}, {"gone0", false, 0}} {
		if up, changes := readLink(filepath.Join(dir, "net", c.link)); up != c.up || changes != c.changes {
			t.Errorf("readLink(%s) = %v, %d; want %v, %d", c.link, up, changes, c.up, c.changes)
		}
	}

	load, err := readLoadAvg(write("loadavg", "0.52 1.25 3.00 2/360 10018\n"))
	if err != nil || load != [3]float64{0.52, 1.25, 3} {
		t.Errorf("readLoadAvg = %v, %v", load, err)
	}
	if _, err := readLoadAvg(write("loadavg-bad", "x y z\n")); err == nil {
		t.Error("readLoadAvg accepted garbage")
	}
}
