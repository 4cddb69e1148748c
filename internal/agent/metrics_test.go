package agent_test

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"atoll.dev/atoll/internal/agent/store"
	"atoll.dev/atoll/internal/atolltest"
	"atoll.dev/atoll/internal/wire"
)

// procKB reads a "Key:  N kB" line of a /proc file, in bytes.
func procKB(t *testing.T, path, key string) int64 {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, key+":"); ok {
			f := strings.Fields(rest)
			n, err := strconv.ParseInt(f[0], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n * 1024
		}
	}
	t.Fatalf("no %s in %s", key, path)
	return 0
}

// metricsStatuses returns the statuses the fake hub received that carry a
// summary, and how many heartbeats it has answered.
func metricsStatuses(h *fakeHub) (sts []wire.Status, heartbeats int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, st := range h.statuses {
		if st.Metrics != nil {
			sts = append(sts, st)
		}
	}
	return sts, len(h.heartbeats)
}

// TestAgent_Metrics_ReachHub runs a real agent with a `sleep` workload
// against a fake hub (heartbeat 50ms, so a window is 300ms) and checks
// that the summaries it sends measure the real process and node, ride in
// the status outside the digest, and do not make the agent send its
// status every heartbeat.
func TestAgent_Metrics_ReachHub(t *testing.T) {
	hub, url := newFakeHub(t)
	hub.setPlan("n1", 10, sleeper("web", nil))
	dir := t.TempDir()
	c, _ := runAgent(t, dir, url)
	_, pid := envOf(t, c, "web", "X") // running

	var first wire.Status
	atolltest.WaitFor(t, wait, func() error {
		sts, _ := metricsStatuses(hub)
		for _, st := range sts {
			if st.Metrics.Workloads["web"].RSS > 0 {
				first = st
				return nil
			}
		}
		return fmt.Errorf("no status with a summary measuring web among %d", len(sts))
	})
	m := first.Metrics
	// The process's real RSS; a sleep's hardly moves between samples.
	rss := procKB(t, fmt.Sprintf("/proc/%d/status", pid), "VmRSS")
	if got := m.Workloads["web"].RSS; got < rss/2 || got > 2*rss {
		t.Errorf("web RSS = %d, /proc says %d", got, rss)
	}
	if cpu := m.Workloads["web"].CPUSeconds; cpu < 0 || cpu > 5 {
		t.Errorf("web CPU = %vs for a sleep", cpu)
	}
	if memTotal := procKB(t, "/proc/meminfo", "MemTotal"); m.Node.MemTotal != memTotal ||
		m.Node.MemAvailable <= 0 || m.Node.MemAvailable > memTotal {
		t.Errorf("memory = %d of %d, /proc/meminfo says a total of %d", m.Node.MemAvailable, m.Node.MemTotal, memTotal)
	}
	var fs unix.Statfs_t
	if err := unix.Statfs(dir, &fs); err != nil {
		t.Fatal(err)
	}
	if total := int64(fs.Blocks) * int64(fs.Bsize); m.Node.DiskTotal != total || m.Node.DiskAvailable <= 0 || m.Node.DiskAvailable > total {
		t.Errorf("disk = %d of %d, statfs says a total of %d", m.Node.DiskAvailable, m.Node.DiskTotal, total)
	}
	if m.Node.OutboxCapacity != store.DefaultEventRetention || m.Node.Outbox < 0 || m.Node.Outbox > m.Node.OutboxCapacity {
		t.Errorf("outbox = %d of %d", m.Node.Outbox, m.Node.OutboxCapacity)
	}
	if m.Samples < 2 || !m.End.After(m.Start) || m.End.Sub(m.Start) > 2*time.Second || m.End.After(first.Time) {
		t.Errorf("window %v → %v (%d samples), status at %v", m.Start, m.End, m.Samples, first.Time)
	}

	// The hub can tell the status it has from the heartbeat's digest.
	atolltest.WaitFor(t, wait, func() error {
		if d := hub.lastHeartbeat().StatusDigest; d != first.Digest {
			sts, _ := metricsStatuses(hub)
			if sts[len(sts)-1].Digest == d {
				return nil // a newer release already
			}
			return fmt.Errorf("heartbeat digest %s, last status %s", d, sts[len(sts)-1].Digest)
		}
		return nil
	})

	// Over the next 120 heartbeats (20 windows of six samples) a status
	// goes up per release, carrying a newer summary each time: a handful,
	// not one per heartbeat, though every sample changes the summary.
	sts0, hb0 := metricsStatuses(hub)
	atolltest.WaitFor(t, wait, func() error {
		if _, hb := metricsStatuses(hub); hb < hb0+120 {
			return fmt.Errorf("%d heartbeats so far", hb-hb0)
		}
		return nil
	})
	sts, hb := metricsStatuses(hub)
	sent := sts[len(sts0):]
	if len(sent) < 1 || len(sent) > 8 {
		t.Fatalf("%d statuses with summaries in %d heartbeats, want one per release (a period of several windows)", len(sent), hb-hb0)
	}
	prev := sts0[len(sts0)-1]
	for _, st := range sent {
		if !st.Metrics.End.After(prev.Metrics.End) || st.Digest == prev.Digest {
			t.Errorf("status %s (summary ending %v) after %s (ending %v): want a new summary and digest per release",
				st.Digest, st.Metrics.End, prev.Digest, prev.Metrics.End)
		}
		if st.Metrics.Workloads["web"].RSS <= 0 {
			t.Errorf("summary ending %v has no RSS for web", st.Metrics.End)
		}
		prev = st
	}
}
