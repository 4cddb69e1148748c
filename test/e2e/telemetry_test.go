package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"testing"

	"atoll.dev/atoll/internal/atolltest"
)

// readings is how many readings TestTelemetry_RebootWhilePartitioned's
// workload publishes.
const readings = 200

// TestTelemetry_RebootWhilePartitioned: a workload on node-1 publishes
// numbered readings through the node's broker, keeping its progress on the
// node's disk and naming each reading (atoll publish --id), as an app that
// must not lose one does. node-1's link is cut, the node is rebooted
// (container restarted: agent, broker and workload gone at once) while the
// link is down, and the link returns: the hub holds every reading once, in
// order — stored on the node while it was cut off, across the reboot, and
// forwarded when the link came back (DESIGN invariants 2 and 6).
func TestTelemetry_RebootWhilePartitioned(t *testing.T) {
	c := newCluster(t, 2, withBroker)
	n1 := c.nodes[0]
	script := fmt.Sprintf(`f=/data/readings.next; i=$(cat $f 2>/dev/null || echo 0)
while [ "$i" -lt %d ]; do
  if /atoll publish --id reading-$i plant.line1.temp "$i" >/dev/null 2>&1; then i=$((i+1)); echo $i > $f; else busybox sleep 0.2; fi
  busybox sleep 0.05
done
echo published all; exec busybox sleep 1000000`, readings)
	c.apply(workload{name: "readings", command: []string{"busybox", "sh", "-c", script}, nodes: []string{n1.name},
		forward: []string{"plant.>"}})
	progress := func() int {
		out, _ := n1.exec("cat", "/data/readings.next")
		n, _ := strconv.Atoi(strings.TrimSpace(out))
		return n
	}
	waitProgress := func(atLeast int) {
		t.Helper()
		atolltest.WaitFor(t, convergeTimeout, func() error {
			if p := progress(); p < atLeast {
				return fmt.Errorf("node-1 has published %d readings", p)
			}
			return nil
		})
	}
	waitProgress(20)
	n1.link.Down()
	c.logf("node-1: link cut after %d readings", progress())
	waitProgress(80)
	n1.reboot()
	c.logf("node-1: rebooted while cut off, %d readings published", progress())
	waitProgress(readings)
	c.logf("node-1: all %d readings published, link still cut", readings)
	if err := n1.link.Up(); err != nil {
		t.Fatal(err)
	}
	c.logf("node-1: link back")

	var got []string
	atolltest.WaitFor(t, convergeTimeout, func() error {
		var recs []struct {
			Seq  uint64 `json:"seq"`
			Text string `json:"text"`
		}
		if err := c.cliJSON(&recs, "telemetry", "tail", "--node", n1.name, "--subject", "plant.>", "-n", "1000"); err != nil {
			return err
		}
		got = got[:0]
		for _, r := range recs {
			got = append(got, r.Text)
		}
		if len(got) < readings {
			return fmt.Errorf("the hub holds %d of %d readings", len(got), readings)
		}
		return nil
	})
	if len(got) != readings {
		t.Fatalf("the hub holds %d readings, want %d", len(got), readings)
	}
	for i, v := range got {
		if v != strconv.Itoa(i) {
			t.Fatalf("reading %d at the hub is %q: lost, doubled or out of order (all: %v)", i, v, got)
		}
	}
	c.logf("the hub holds readings 0..%d once each, in order", readings-1)
	c.checkInvariants(expect{})
}
