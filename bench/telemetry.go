package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/wire"
)

// The telemetry figures.
const (
	// telemetryRecords is how many records each ingest figure publishes.
	telemetryRecords = 10_000
	// telemetrySize is each record's data, in bytes: a sensor reading.
	telemetrySize = 100
	// telemetryWindow bounds the asynchronous publisher's unacknowledged
	// publishes.
	telemetryWindow = 256
	// telemetryRate is the agent's --forward-rate here: high enough that
	// the drain figure is the mechanism's, not the default pacing's.
	telemetryRate = "64Mi"
	drainTimeout  = 5 * time.Minute
)

type telemetryResult struct {
	syncIngest, asyncIngest time.Duration // telemetryRecords each
	drain                   time.Duration // link restored → the hub holds every record
	drainUp                 int64         // bytes agent → hub while draining
	rssBroker               mem           // the agent with its broker, after the ingest
}

// measureTelemetry starts a hub and an agent with a broker, whose link
// goes through a proxy, and a workload forwarding bench.>; cuts the link;
// publishes telemetryRecords records one at a time and as many again with
// up to telemetryWindow in flight, each acknowledged by the outbox; then
// restores the link and times the drain until the hub's stream holds them.
func (h *harness) measureTelemetry(ctx context.Context) (r telemetryResult, err error) {
	brokerAddr, err := freeAddr()
	if err != nil {
		return r, err
	}
	hub, a, px, err := h.startHubAgentBehindProxy(ctx, "telemetry", "--broker", brokerAddr, "--forward-rate", telemetryRate)
	if px != nil {
		defer px.Close()
	}
	if err != nil {
		return r, err
	}
	alive := aliveBoth(hub, a)
	ws, err := manifest.Decode("bench-telemetry.yaml", fmt.Appendf(nil, `apiVersion: atoll.dev/v1
kind: Workload
metadata:
  name: %s
spec:
  runtime: exec
  exec:
    command: [sleep, "100000"]
    env: {ATOLL_BENCH: %q}
  forward: ["bench.>"]
  placement: {nodes: [%s]}
`, h.name("forwarder"), h.runID, h.node))
	if err != nil {
		return r, err
	}
	if err := hub.apply(ctx, ws); err != nil {
		return r, err
	}
	nc, err := nats.Connect("nats://"+brokerAddr, nats.MaxReconnects(-1))
	if err != nil {
		return r, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return r, err
	}
	if err := poll(ctx, 20*time.Millisecond, startTimeout, "the outbox captures bench.>", alive, func() (bool, error) {
		_, err := js.StreamNameBySubject(ctx, "bench.x")
		return err == nil, err
	}); err != nil {
		return r, err
	}

	px.Cut()
	t0 := time.Now()
	for i := range telemetryRecords {
		if _, err := js.Publish(ctx, "bench.sync", reading(i)); err != nil {
			return r, fmt.Errorf("publish %d: %w", i, err)
		}
	}
	r.syncIngest = time.Since(t0)
	ajs, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(telemetryWindow))
	if err != nil {
		return r, err
	}
	t0 = time.Now()
	for i := range telemetryRecords {
		if _, err := ajs.PublishAsync("bench.async", reading(i)); err != nil {
			return r, fmt.Errorf("publish async %d: %w", i, err)
		}
	}
	select {
	case <-ajs.PublishAsyncComplete():
	case <-ctx.Done():
		return r, ctx.Err()
	}
	r.asyncIngest = time.Since(t0)
	if r.rssBroker, err = readMem(a.pid()); err != nil {
		return r, err
	}

	hc, err := nats.Connect(hub.natsURL, nats.Secure(hub.admin))
	if err != nil {
		return r, err
	}
	defer hc.Close()
	hjs, err := jetstream.New(hc)
	if err != nil {
		return r, err
	}
	s0 := px.Stats()
	t0 = time.Now()
	px.Restore()
	want := uint64(2 * telemetryRecords)
	if err := poll(ctx, 20*time.Millisecond, drainTimeout, fmt.Sprintf("the hub holds %d records", want), alive, func() (bool, error) {
		st, err := hjs.Stream(ctx, wire.TelemetryStream)
		if err != nil {
			return false, err
		}
		info, err := st.Info(ctx, jetstream.WithSubjectFilter(wire.TelemetrySubjectPrefix+h.node+".bench.>"))
		if err != nil {
			return false, err
		}
		var n uint64
		for _, c := range info.State.Subjects {
			n += c
		}
		return n >= want, fmt.Errorf("%d records", n)
	}); err != nil {
		return r, err
	}
	r.drain = time.Since(t0)
	r.drainUp = px.Stats().Up - s0.Up
	return r, nil
}

// reading is record i: a sensor reading as JSON, telemetrySize bytes, its
// numbers varying as measurements do (so compression is not flattered).
func reading(i int) []byte {
	b := fmt.Appendf(nil, `{"seq":%d,"time":%d,"celsius":%.3f,"humidity":%.2f,"vibration":%.4f}`,
		i, 1_780_000_000_000+int64(i)*997, 20+float64(i*7919%1000)/100, 40+float64(i*104729%5000)/100, float64(i*15485863%100000)/1e4)
	for len(b) < telemetrySize {
		b = append(b, ' ')
	}
	return b[:telemetrySize]
}

func rate(n int, d time.Duration) string {
	if d <= 0 {
		return "—"
	}
	return commas(int(float64(n)/d.Seconds())) + " records/s"
}

func (r results) telemetryRows() []row {
	t := r.telemetry
	raw := 2 * telemetryRecords * telemetrySize
	return []row{
		{
			figure: fmt.Sprintf("Telemetry: outbox ingest, %d-byte records, one publish at a time, each acknowledged", telemetrySize),
			value:  rate(telemetryRecords, t.syncIngest),
		},
		{
			figure: fmt.Sprintf("Telemetry: outbox ingest, up to %d publishes in flight", telemetryWindow),
			value:  rate(telemetryRecords, t.asyncIngest),
		},
		{
			figure: fmt.Sprintf("Telemetry: drain after reconnect, %s records (%s KB of data) → held by the hub", commas(2*telemetryRecords), commas(raw/1000)),
			value: fmt.Sprintf("%s (%s); %s KB sent, %.0f %% of the data", sec(t.drain), rate(2*telemetryRecords, t.drain),
				commas(int(t.drainUp/1000)), float64(t.drainUp)/float64(raw)*100),
		},
		{
			figure: fmt.Sprintf("Agent memory with its (opt-in) broker, after %s records: VmRSS / PSS / private", commas(2*telemetryRecords)),
			value:  fmt.Sprintf("%s / %s / %s MiB", mib(t.rssBroker.vmRSS), mib(t.rssBroker.pss), mib(t.rssBroker.private)),
		},
	}
}

func (r results) telemetryMethod(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `%d. **Telemetry.** A hub and an agent started with `+"`--broker 127.0.0.1:P --forward-rate %s`"+`
   (so that the drain shows the mechanism, not the default pacing of 256 KiB/s),
   its link to the hub through the proxy, and a workload with `+"`forward: [bench.>]`"+`.
   The link is cut. The bench, as a workload would, publishes %s records of %d
   bytes (a sensor reading as JSON, its numbers varying) on the node's broker with JetStream, waiting for the outbox's
   acknowledgement of each (stored in the outbox's file store, which fsyncs in
   batches every 100 ms), then as many again with up to %d in flight. The
   agent's memory is read then. The link is restored and the time runs until the
   hub's `+"`ATOLL_TELEMETRY`"+` stream holds all %s records of the node (its stream
   info, every 20 ms); "sent" is what went up the link meanwhile, compressed
   batches and the heartbeats beside them.
`, n, telemetryRate, commas(telemetryRecords), telemetrySize, telemetryWindow, commas(2*telemetryRecords))
	return b.String()
}
