package fleet_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"atoll.dev/atoll/internal/atolltest"
	"atoll.dev/atoll/internal/atolltest/testtask"
	"atoll.dev/atoll/internal/wire"
)

// TestFleet_TelemetryOnceInOrderAcrossAgentKillsAndACut checks DESIGN
// invariant 6 for application messages: a workload publishes 10,000
// readings on its node's broker while the node's agent (and with it the
// broker) is SIGKILLed twice and the node's link is cut and restored; the
// hub's stream holds each reading exactly once, in the order published.
func TestFleet_TelemetryOnceInOrderAcrossAgentKillsAndACut(t *testing.T) {
	const count = 10000
	f := newFleet(t)
	f.startHub()
	a := f.addNode("a", "", "--broker", fmt.Sprintf("127.0.0.1:%d", atolltest.FreePort(t)), "--forward-rate", "16Mi")
	f.apply([]wl{{
		name: "publisher", nodes: []string{a.name}, forward: []string{"sensors.>"},
		script: "exec " + os.Args[0], env: map[string]string{testtask.Env: fmt.Sprintf("publish:sensors.line1:%d", count)},
	}}, "workload/publisher created (1 node)")
	published := func(what string) {
		t.Helper()
		f.waitFor(0, func() error {
			b, err := os.ReadFile(filepath.Join(a.dir, "logs", "publisher.log"))
			if err != nil || !strings.Contains(string(b), "published "+what+"\n") {
				return fmt.Errorf("the publisher has not published %s yet: %q", what, lastLine(b))
			}
			return nil
		})
	}
	published("500")
	a.kill9()
	a.start()
	f.logf("agent of %s SIGKILLed and restarted while the publisher ran", a.name)
	published("2000")
	a.cut()
	f.logf("link of %s cut", a.name)
	published("4000")
	a.kill9()
	a.start()
	f.logf("agent SIGKILLed and restarted again, the link still cut")
	published("6000")
	a.proxy.Restore()
	f.logf("link restored")
	published("all")
	f.logf("the publisher has published all %d readings", count)

	js := f.hubJetStream()
	var got []string
	f.waitFor(0, func() error {
		var err error
		got, err = hubReadings(js, wire.TelemetrySubjectPrefix+a.name+".sensors.line1")
		if err != nil {
			return err
		}
		if len(got) < count {
			return fmt.Errorf("the hub holds %d of %d readings", len(got), count)
		}
		return nil
	})
	if len(got) != count {
		t.Fatalf("the hub holds %d readings, want %d: some stored twice", len(got), count)
	}
	for i, v := range got {
		if v != strconv.Itoa(i) {
			t.Fatalf("reading %d at the hub is %q, want %d: lost, doubled or out of order", i, v, i)
		}
	}
	f.logf("the hub holds readings 0..%d once each, in order", count-1)
}

// hubJetStream is a JetStream client of the hub's NATS, closed when the
// test ends.
func (f *fleet) hubJetStream() jetstream.JetStream {
	f.t.Helper()
	nc, err := nats.Connect("nats://"+f.natsAddr, nats.Secure(f.admin))
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		f.t.Fatal(err)
	}
	return js
}

// hubReadings reads the data of every record on subj from the hub's
// telemetry stream, oldest first, as users may: straight from NATS.
func hubReadings(js jetstream.JetStream, subj string) ([]string, error) {
	recs, err := hubRecords(js, subj)
	out := make([]string, len(recs))
	for i, r := range recs {
		out[i] = r.data
	}
	return out, err
}

// hubRecord is one record at the hub: its subject, its number in the
// node's outbox (header Atoll-Seq) and its data.
type hubRecord struct {
	subject, data string
	seq           uint64
}

// hubRecords reads every record on subj (a pattern) from the hub's
// telemetry stream, oldest first.
func hubRecords(js jetstream.JetStream, subj string) ([]hubRecord, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cons, err := js.OrderedConsumer(ctx, wire.TelemetryStream, jetstream.OrderedConsumerConfig{FilterSubjects: []string{subj}})
	if err != nil {
		return nil, err
	}
	info, err := cons.Info(ctx)
	if err != nil {
		return nil, err
	}
	var out []hubRecord
	for pending := info.NumPending; uint64(len(out)) < pending; {
		batch, err := cons.Fetch(1000, jetstream.FetchMaxWait(5*time.Second))
		if err != nil {
			return out, err
		}
		n := 0
		for m := range batch.Messages() {
			seq, err := strconv.ParseUint(m.Headers().Get(wire.HeaderSeq), 10, 64)
			if err != nil {
				return out, fmt.Errorf("record on %s: header %s: %w", m.Subject(), wire.HeaderSeq, err)
			}
			out = append(out, hubRecord{subject: m.Subject(), data: string(m.Data()), seq: seq})
			n++
		}
		if err := batch.Error(); err != nil {
			return out, err
		}
		if n == 0 {
			break
		}
	}
	return out, nil
}

func lastLine(b []byte) string {
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return lines[len(lines)-1]
}

// TestFleet_TelemetryOverBudgetDropsOldestAndReports checks the end of
// DESIGN invariant 6 for application messages: readings published while
// the link is down, more than the outbox's disk budget holds, lose the
// oldest first; once the link returns the hub gets the newest, each once
// and in order, and a telemetry-dropped event counting exactly the others.
func TestFleet_TelemetryOverBudgetDropsOldestAndReports(t *testing.T) {
	const count = 30000
	f := newFleet(t)
	f.startHub()
	a := f.addNode("a", "", "--broker", fmt.Sprintf("127.0.0.1:%d", atolltest.FreePort(t)), "--outbox-bytes", "1Mi")
	a.cut()
	f.apply([]wl{{
		name: "publisher", nodes: []string{a.name}, forward: []string{"sensors.>"},
		script: "exec " + os.Args[0], env: map[string]string{testtask.Env: fmt.Sprintf("publish:sensors.line1:%d", count)},
	}}, "workload/publisher created (1 node)")
	// The plan is queued at the hub: let it through, then cut again
	// before the readings.
	a.proxy.Restore()
	a.waitRunning("publisher")
	a.cut()
	f.waitFor(0, func() error {
		b, err := os.ReadFile(filepath.Join(a.dir, "logs", "publisher.log"))
		if err != nil || !strings.Contains(string(b), "published all\n") {
			return fmt.Errorf("the publisher has not published all yet: %q", lastLine(b))
		}
		return nil
	})
	f.logf("%d readings published with the link cut, into a 1 MiB outbox", count)
	a.proxy.Restore()

	js := f.hubJetStream()
	// The outbox numbers every record it keeps (the readings, and the
	// agent's own metrics summaries): once the hub holds the last reading,
	// every number up to the highest it holds is there once or was
	// reported dropped, and the readings are in order with one gap.
	var recs []hubRecord
	dropped := 0
	f.waitFor(0, func() error {
		var err error
		if recs, err = hubRecords(js, wire.TelemetrySubjectPrefix+a.name+".>"); err != nil {
			return err
		}
		if len(recs) == 0 || !slices.ContainsFunc(recs, func(r hubRecord) bool { return r.data == strconv.Itoa(count-1) }) {
			return fmt.Errorf("the hub does not hold the last reading yet (%d records)", len(recs))
		}
		evs, err := f.hubEvents(a.name)
		if err != nil {
			return err
		}
		dropped = 0
		for _, e := range evs {
			var n int
			if e.Type == "telemetry-dropped" {
				if _, err := fmt.Sscanf(e.Message, "%d messages", &n); err != nil || n <= 0 {
					t.Fatalf("telemetry-dropped says %q", e.Message)
				}
				dropped += n
			}
		}
		if dropped == 0 {
			return fmt.Errorf("no telemetry-dropped event at the hub:%s", briefEvents(evs))
		}
		return nil
	})
	held := map[uint64]bool{}
	var last uint64
	var readings []int
	for _, r := range recs {
		if held[r.seq] {
			t.Fatalf("record %d is at the hub twice", r.seq)
		}
		held[r.seq], last = true, max(last, r.seq)
		if strings.HasSuffix(r.subject, ".sensors.line1") {
			n, err := strconv.Atoi(r.data)
			if err != nil {
				t.Fatalf("reading %q", r.data)
			}
			readings = append(readings, n)
		}
	}
	if missing := int(last) - len(held); missing != dropped {
		t.Fatalf("%d of the records up to %d are not at the hub, %d were reported dropped", missing, last, dropped)
	}
	next, gaps := 0, 0
	for i, n := range readings {
		if n < next {
			t.Fatalf("reading %d at the hub is %d after %d: doubled or out of order", i, n, next-1)
		}
		if n > next {
			gaps++
		}
		next = n + 1
	}
	if gaps != 1 || next != count {
		t.Fatalf("%d gaps in the readings at the hub, the last %d; want one gap and the last %d", gaps, next-1, count-1)
	}
	f.logf("the hub holds %d of the outbox's %d records once each (readings in order, one gap); %d reported dropped",
		len(held), last, dropped)
}

// TestFleet_MetricsHistorySurvivesAnOutage: a node with a broker keeps
// every one-minute resource summary (here 6 heartbeats of 200 ms) in its
// outbox, sampling on its own while the link is down, and forwards them:
// the hub holds summaries for the whole outage, in order, none twice.
func TestFleet_MetricsHistorySurvivesAnOutage(t *testing.T) {
	f := newFleet(t)
	f.startHub()
	a := f.addNode("a", "", "--broker", fmt.Sprintf("127.0.0.1:%d", atolltest.FreePort(t)))
	js := f.hubJetStream()
	subj := wire.TelemetrySubjectPrefix + a.name + ".atoll.node.metrics"
	summaries := func() ([]wire.Metrics, error) {
		data, err := hubReadings(js, subj)
		out := make([]wire.Metrics, len(data))
		for i, d := range data {
			if err := json.Unmarshal([]byte(d), &out[i]); err != nil {
				return nil, fmt.Errorf("summary %d: %w", i, err)
			}
		}
		return out, err
	}
	f.waitFor(0, func() error {
		ms, err := summaries()
		if err == nil && len(ms) == 0 {
			err = errors.New("no summary at the hub yet")
		}
		return err
	})
	cut := a.cut()
	f.waitFor(0, func() error { // five windows go by with the link down
		if d := time.Since(cut); d < 6*time.Second {
			return fmt.Errorf("cut for %v", d)
		}
		return nil
	})
	healed := time.Now()
	a.proxy.Restore()
	f.logf("link of %s cut %v, restored", a.name, healed.Sub(cut).Round(time.Millisecond))
	var during int
	f.waitFor(0, func() error {
		ms, err := summaries()
		if err != nil {
			return err
		}
		during = 0
		for i, m := range ms {
			if i > 0 && m.Start.Before(ms[i-1].End) {
				t.Fatalf("summary %d starts at %v, before the previous one ends (%v): doubled or out of order", i, m.Start, ms[i-1].End)
			}
			if m.Start.After(cut) && m.End.Before(healed) {
				during++
			}
		}
		if during < 3 {
			return fmt.Errorf("the hub holds %d summaries of windows inside the outage", during)
		}
		return nil
	})
	f.logf("the hub holds %d summaries of windows inside the %v outage", during, healed.Sub(cut).Round(time.Second))
}
