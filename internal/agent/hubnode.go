package agent

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"atoll.dev/atoll/internal/agent/artifact"
	"atoll.dev/atoll/internal/agent/uplink"
	"atoll.dev/atoll/internal/logfile"
	"atoll.dev/atoll/internal/version"
	"atoll.dev/atoll/internal/wire"
)

// hubNode is the agent's side of the hub protocol: what package uplink
// asks of the node. It is a type of its own because some of its method
// names (Status, Run, Events) mean other things on the Agent.
type hubNode struct{ a *Agent }

const (
	keyDoneCmds = "commands.done"
	// doneCmdMemory is how long a carried-out command's id is remembered
	// after its expiry, so a late redelivery is still recognised.
	doneCmdMemory = 24 * time.Hour
)

// Hello describes the node to the hub.
func (h hubNode) Hello() wire.Hello {
	return wire.Hello{
		ProtocolVersion: wire.ProtocolVersion, Node: h.a.cfg.Name, Labels: h.a.cfg.Labels,
		CapacityMemory: h.a.cfg.CapacityMemory, CapacityMilliCPU: h.a.cfg.CapacityMilliCPU,
		Runtimes: h.a.runtimes.names(), Version: version.Version + " " + runtime.Version(),
	}
}

// Revisions returns the stored and applied plan revisions.
func (h hubNode) Revisions() (stored, applied uint64) { return h.a.stored.Load(), h.a.applied.Load() }

// Status is the node's status for the hub, with a digest of its content
// and the latest metrics summary (metrics.go).
func (h hubNode) Status() wire.Status {
	h.a.mu.Lock()
	ovs := slices.Clone(h.a.overrides)
	images := h.a.cachedImages()
	h.a.mu.Unlock()
	st := wire.Status{
		Node: h.a.cfg.Name, StoredRevision: h.a.stored.Load(), AppliedRevision: h.a.applied.Load(),
		Workloads: h.a.sup.Status(), Overrides: ovs, Images: images,
	}
	b, _ := json.Marshal(st)
	// The metrics summary stays out of the digest, all but the count of
	// summaries released: a summary sends the status once per release.
	m, released := h.updateMetrics(st.Workloads, len(b))
	if released > 0 {
		b = fmt.Appendf(b, "\nmetrics released %d", released)
	}
	sum := sha256.Sum256(b)
	st.Digest = hex.EncodeToString(sum[:12])
	st.Time = time.Now().UTC()
	st.Metrics = m
	return st
}

// Changed is signalled when the status may have changed.
func (h hubNode) Changed() <-chan struct{} { return h.a.changed }

// Run carries out a hub command at most once per id.
func (h hubNode) Run(ctx context.Context, c wire.Command) error {
	h.a.cmdMu.Lock()
	defer h.a.cmdMu.Unlock()
	done := map[string]time.Time{}
	if b, err := h.a.store.Value(keyDoneCmds); err != nil {
		return err
	} else if b != nil {
		if err := json.Unmarshal(b, &done); err != nil {
			return fmt.Errorf("decode done commands: %w", err)
		}
	}
	if _, seen := done[c.ID]; seen {
		return nil
	}
	now := time.Now()
	var runErr error
	switch {
	case now.After(c.Expires):
		h.a.event(c.Workload, "command-expired", fmt.Sprintf("command %s (%s) expired at %s before it reached the node; not carried out",
			c.ID, c.Kind, c.Expires.Format(time.RFC3339)))
	case c.Kind == wire.CommandRestart:
		runErr = h.a.sup.Restart(ctx, c.Workload)
		if runErr == nil {
			h.a.event(c.Workload, "command", fmt.Sprintf("restart requested by the hub (command %s)", c.ID))
		}
	default:
		runErr = fmt.Errorf("unknown command kind %q", c.Kind)
	}
	if runErr != nil {
		h.a.event(c.Workload, "command-failed", fmt.Sprintf("command %s (%s): %v", c.ID, c.Kind, runErr))
	}
	done[c.ID] = c.Expires
	for _, id := range slices.Collect(maps.Keys(done)) {
		if now.Sub(done[id]) > doneCmdMemory {
			delete(done, id)
		}
	}
	b, err := json.Marshal(done)
	if err != nil {
		return err
	}
	if _, err := h.a.store.PutValue(keyDoneCmds, b); err != nil {
		return err
	}
	return runErr
}

// Events returns stored events after seq, led by a report of the events
// the retention dropped before the hub had them, if any.
func (h hubNode) Events(afterSeq uint64, limit int) ([]wire.Event, error) {
	if e, ok, err := h.a.store.ReportDroppedEvents(); err != nil {
		return nil, err
	} else if ok {
		h.a.log.Warn(e.Message, "event", e.Type)
	}
	return h.a.store.Events(afterSeq, limit)
}

// keyTelemetryCursor holds the last outbox record the hub holds.
const keyTelemetryCursor = "telemetry.cursor"

type telemetryCursor struct {
	Epoch string `json:"epoch"`
	Seq   uint64 `json:"seq"`
}

// TelemetryCursor is the last record of the outbox epoch the hub holds.
func (h hubNode) TelemetryCursor(epoch string) (uint64, error) {
	b, err := h.a.store.Value(keyTelemetryCursor)
	if err != nil || b == nil {
		return 0, err
	}
	var c telemetryCursor
	if err := json.Unmarshal(b, &c); err != nil || c.Epoch != epoch {
		return 0, err
	}
	return c.Seq, nil
}

// SetTelemetryCursor records the last record the hub holds.
func (h hubNode) SetTelemetryCursor(epoch string, seq uint64) error {
	b, _ := json.Marshal(telemetryCursor{Epoch: epoch, Seq: seq})
	_, err := h.a.store.PutValue(keyTelemetryCursor, b)
	return err
}

// keyTelemetryDropped counts the outbox records ever dropped before the
// hub had them.
const keyTelemetryDropped = "telemetry.dropped"

// TelemetryDropped reports outbox records dropped before the hub had
// them, and counts them.
func (h hubNode) TelemetryDropped(n uint64) {
	h.a.event("", "telemetry-dropped", fmt.Sprintf(
		"%d messages for the hub were dropped, oldest first: the outbox's disk budget (--outbox-bytes) was full", n))
	total, err := h.telemetryDroppedTotal()
	if err == nil {
		_, err = h.a.store.PutValue(keyTelemetryDropped, strconv.AppendUint(nil, total+n, 10))
	}
	if err != nil {
		h.a.log.Error("count dropped telemetry", "err", err)
	}
}

func (h hubNode) telemetryDroppedTotal() (uint64, error) {
	b, err := h.a.store.Value(keyTelemetryDropped)
	if err != nil || b == nil {
		return 0, err
	}
	return strconv.ParseUint(string(b), 10, 64)
}

// telemetryMetrics reads the outbox's depth and drop count.
func (h hubNode) telemetryMetrics() (wire.TelemetryMetrics, error) {
	var m wire.TelemetryMetrics
	var err error
	if m.Pending, err = h.a.broker.Pending(context.Background()); err != nil {
		return m, err
	}
	m.Dropped, err = h.telemetryDroppedTotal()
	return m, err
}

// EventCursor is the last event the hub acknowledged.
func (h hubNode) EventCursor() (uint64, error) { return h.a.store.EventCursor() }

// SetEventCursor records the last event the hub acknowledged.
func (h hubNode) SetEventCursor(seq uint64) error { return h.a.store.SetEventCursor(seq) }

// Logs returns the tail of a workload's log.
func (h hubNode) Logs(workload string, tail int) ([]byte, error) {
	path, err := h.a.LogPath(workload)
	if err != nil {
		return nil, err
	}
	return logfile.Tail(path, tail)
}

// StorePlan stores a plan from the hub, then converges to it.
func (h hubNode) StorePlan(ctx context.Context, p *wire.Plan) error { return h.a.storePlan(ctx, p) }

// MissingArtifacts lists the artifacts the desired state names that are
// not in the node's cache: modules first, then image archives, smallest
// first. Outside the fetch window, archives over 1 MiB are left out.
func (h hubNode) MissingArtifacts() []string {
	h.a.mu.Lock()
	wanted := h.a.wantedArtifacts()
	h.a.mu.Unlock()
	hold := h.a.fetchHold() != ""
	var out []string
	for ref, size := range wanted {
		if !h.a.hasArtifact(ref) && !(hold && size > largeArtifact) {
			out = append(out, ref)
		}
	}
	slices.SortFunc(out, func(x, y string) int {
		return cmp.Or(cmp.Compare(wanted[x], wanted[y]), strings.Compare(x, y))
	})
	return out
}

// ResumeArtifact opens the download of an artifact from the hub; its
// Commit starts what waited for the artifact.
func (h hubNode) ResumeArtifact(ref string) (uplink.Download, error) {
	d, err := h.a.artifacts().Resume(ref)
	if err != nil {
		return nil, err
	}
	return &hubDownload{Download: d, a: h.a}, nil
}

// progressEvery is how often a download refreshes the pending reason of
// the workloads waiting for it.
const progressEvery = time.Second

// hubDownload is an artifact download that shows its progress in the
// reason of the workloads waiting for it, retries them once it is stored,
// and keeps the cache within its budget.
type hubDownload struct {
	*artifact.Download
	a        *Agent
	reported time.Time
}

func (d *hubDownload) Append(b []byte, cursor string) error {
	if err := d.Download.Append(b, cursor); err != nil {
		return err
	}
	if time.Since(d.reported) >= progressEvery {
		d.reported = time.Now()
		return d.a.sup.Retry(context.Background())
	}
	return nil
}

func (d *hubDownload) Commit() error {
	if err := d.Download.Commit(); err != nil {
		return err
	}
	d.a.evictArtifacts()
	return d.a.sup.Retry(context.Background())
}
