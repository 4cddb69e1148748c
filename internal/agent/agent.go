package agent

import (
	"context"
	"crypto/ecdh"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"atoll.dev/atoll/internal/agent/artifact"
	"atoll.dev/atoll/internal/agent/broker"
	"atoll.dev/atoll/internal/agent/localapi"
	"atoll.dev/atoll/internal/agent/secrets"
	"atoll.dev/atoll/internal/agent/store"
	"atoll.dev/atoll/internal/agent/supervisor"
	"atoll.dev/atoll/internal/agent/trim"
	"atoll.dev/atoll/internal/agent/uplink"
	"atoll.dev/atoll/internal/driver"
	"atoll.dev/atoll/internal/driver/container"
	"atoll.dev/atoll/internal/driver/exec"
	"atoll.dev/atoll/internal/driver/wasm"
	"atoll.dev/atoll/internal/hlc"
	"atoll.dev/atoll/internal/logfile"
	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/version"
	"atoll.dev/atoll/internal/wire"
)

// Agent is a running node agent.
type Agent struct {
	cfg      Config
	log      *slog.Logger
	store    *store.Store
	sup      *supervisor.Supervisor
	hlc      *hlc.Clock
	uplink   *uplink.Uplink // nil without a hub
	recovery string
	limits   string
	runtimes runtimes      // detected at start
	changed  chan struct{} // signalled when Status may have changed
	metrics  *metricsSampler
	broker   *broker.Broker // nil without Config.Broker

	// mu serialises changes of desired state (local changes, new plans),
	// so each settles against the whole picture.
	mu        sync.Mutex
	effective map[string]manifest.Workload  // what the node runs; guarded by mu
	images    map[string]wire.ImageArtifact // the plan's image archives by name; guarded by mu
	window    *FetchWindow                  // nil: fetch at any time
	overrides []wire.Override               // in force; guarded by mu
	stored    atomic.Uint64                 // plan revision in the store
	applied   atomic.Uint64                 // plan revision handed to the supervisor

	cmdMu sync.Mutex // serialises Run of hub commands
}

// New checks cfg, fills defaults and prepares an agent; nothing runs until
// Run.
func New(cfg Config) (*Agent, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("agent: a data directory is required")
	}
	abs, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("agent: data directory %s: %w", cfg.DataDir, err)
	}
	cfg.DataDir = abs
	if cfg.Name == "" {
		if cfg.Name, err = os.Hostname(); err != nil {
			return nil, fmt.Errorf("agent: node name: %w", err)
		}
	}
	if cfg.MemInfoPath == "" {
		cfg.MemInfoPath = "/proc/meminfo"
	}
	if cfg.StopGrace <= 0 {
		cfg.StopGrace = 10 * time.Second
	}
	if cfg.EventRetention <= 0 {
		cfg.EventRetention = store.DefaultEventRetention
	}
	if cfg.LogMaxBytes <= 0 {
		cfg.LogMaxBytes = 10 << 20
	}
	if cfg.CgroupParent == "" {
		cfg.CgroupParent = "atoll-" + cfg.Name
	}
	if cfg.ImageCacheBytes <= 0 {
		cfg.ImageCacheBytes = DefaultImageCacheBytes
	}
	var window *FetchWindow
	if cfg.FetchWindow != "" {
		w, err := ParseFetchWindow(cfg.FetchWindow)
		if err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		window = &w
	}
	total, _, err := readMemInfo(cfg.MemInfoPath)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	if cfg.CapacityMemory <= 0 {
		cfg.CapacityMemory = total
	}
	if cfg.CapacityMilliCPU <= 0 {
		cfg.CapacityMilliCPU = int64(runtime.NumCPU()) * 1000
	}
	if cfg.PressureThreshold == 0 {
		cfg.PressureThreshold = total / 20
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	every := cfg.Heartbeat
	if every <= 0 {
		every = wire.HeartbeatInterval
	}
	return &Agent{cfg: cfg, log: log.With("node", cfg.Name), changed: make(chan struct{}, 1),
		metrics: &metricsSampler{every: every}, window: window}, nil
}

// Run opens the store, adopts or starts the stored workloads, serves the
// local API and supervises until ctx is done. It needs no network. Exec
// workloads keep running after Run returns; the next agent adopts them.
func (a *Agent) Run(ctx context.Context) error {
	if err := os.MkdirAll(a.cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("agent: create data directory: %w", err)
	}
	st, rec, err := store.Open(a.cfg.DataDir, store.Options{EventRetention: a.cfg.EventRetention})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	defer st.Close()
	a.store = st
	if rec.Happened() {
		a.recovery = describeRecovery(rec)
		a.log.Warn("store recovered", "detail", a.recovery)
		if _, err := st.AppendEvent(store.Event{Time: time.Now(), Type: "store-recovered", Message: a.recovery}); err != nil {
			a.log.Error("record event", "err", err)
		}
	}

	execDrv := exec.New(exec.Config{CgroupParent: a.cfg.CgroupParent})
	a.limits = execDrv.LimitsMode()
	wasmDrv, err := wasm.New(wasm.Config{CacheDir: filepath.Join(a.cfg.DataDir, "cache", "wasm")})
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	defer wasmDrv.Close(context.Background())
	drivers := map[manifest.Runtime]driver.Driver{
		manifest.RuntimeExec: execDrv,
		manifest.RuntimeWASM: wasmDrv,
	}
	unavailable := map[manifest.Runtime]string{}
	if ctr, err := a.containerDriver(ctx); err != nil {
		unavailable[manifest.RuntimeContainer] = err.Error()
		a.log.Warn("container runtime unavailable", "err", err)
	} else {
		drivers[manifest.RuntimeContainer] = ctr
		defer ctr.Close()
	}
	a.runtimes = runtimes{available: drivers, unavailable: unavailable}

	env := maps.Clone(a.cfg.WorkloadEnv)
	if env == nil {
		env = map[string]string{}
	}
	if a.cfg.Broker != "" {
		b, err := broker.Start(ctx, broker.Config{DataDir: a.cfg.DataDir, Listen: a.cfg.Broker, MQTTListen: a.cfg.MQTT,
			MaxBytes: a.cfg.OutboxBytes, Name: a.cfg.Name, Logger: a.log})
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		defer b.Close()
		a.broker = b
		// A power cut can cost the outbox its last records (it fsyncs in
		// batches), ones the hub may already hold: numbering new records
		// like them would make the hub skip them. Start past the last
		// record the hub is known to hold, before any workload publishes.
		cur, err := hubNode{a}.TelemetryCursor(b.Epoch())
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		if err := b.Forwarded(ctx, cur); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		env["ATOLL_NATS_URL"] = b.URL()
		if b.MQTTAddr() != "" {
			env["ATOLL_MQTT_ADDR"] = b.MQTTAddr()
		}
	}
	var secretKey *ecdh.PrivateKey
	if a.cfg.Identity != nil {
		if secretKey, err = a.cfg.Identity.SecretKey(); err != nil {
			return fmt.Errorf("agent: %w", err)
		}
	}
	sup := supervisor.New(supervisor.Config{
		Secrets:           secrets.New(a.cfg.Name, secretKey, a.cfg.SecretsDirs),
		Env:               env,
		Drivers:           drivers,
		Unavailable:       unavailable,
		Store:             st,
		LogDir:            a.logDir(),
		Artifacts:         a.artifacts(),
		FetchHold:         a.fetchHold,
		CapacityMemory:    a.cfg.CapacityMemory,
		CapacityMilliCPU:  a.cfg.CapacityMilliCPU,
		MemAvailable:      a.memAvailable,
		PressureThreshold: a.cfg.PressureThreshold,
		PressureInterval:  a.cfg.PressureInterval,
		StopGrace:         a.cfg.StopGrace,
		Logger:            a.log,
	})
	a.sup = sup
	sup.Start()
	defer sup.Close()

	if err := a.restore(ctx); err != nil {
		return fmt.Errorf("agent: restore workloads: %w", err)
	}
	a.log.Info("agent started", "data", a.cfg.DataDir, "workloads", len(sup.Status()), "hub", a.cfg.Hub)
	go a.trimAfterStart(ctx)

	go a.rotateLogs(ctx)
	go a.forwardChanges(ctx)
	if a.broker != nil {
		go a.sampleAlways(ctx)
	}
	if a.cfg.Hub != "" {
		if err := a.startUplink(ctx); err != nil {
			return err
		}
	}
	err = localapi.Serve(ctx, localapi.SocketPath(a.cfg.DataDir), a)
	if a.cfg.StopWorkloadsOnExit {
		sctx, cancel := context.WithTimeout(context.Background(), a.cfg.StopGrace+5*time.Second)
		defer cancel()
		if serr := sup.Shutdown(sctx); serr != nil {
			err = errors.Join(err, fmt.Errorf("agent: stop workloads: %w", serr))
		}
	}
	return err
}

// startUplink starts the link to the hub, unless the hub revoked the node:
// then the node runs on its own, as without a hub.
func (a *Agent) startUplink(ctx context.Context) error {
	ucfg := uplink.Config{URL: a.cfg.Hub, Node: hubNode{a}, Heartbeat: a.cfg.Heartbeat, ForwardRate: a.cfg.ForwardRate, Logger: a.log}
	if a.broker != nil {
		ucfg.Outbox = a.broker
	}
	if id := a.cfg.Identity; id != nil {
		if id.Revoked() {
			a.log.Warn("the hub revoked this node: running on its own; enroll again with a new token (--token) to rejoin")
			return nil
		}
		tlsCfg, err := id.TLS()
		if err != nil {
			return fmt.Errorf("agent: %w", err)
		}
		ucfg.TLS, ucfg.Identity = tlsCfg, id
	}
	a.uplink = uplink.New(ucfg)
	go func() {
		err := a.uplink.Run(ctx)
		switch {
		case errors.Is(err, uplink.ErrRevoked):
			a.log.Warn("the hub revoked this node: link closed, workloads go on running")
		case err != nil:
			a.log.Error("uplink stopped", "err", err)
		}
	}()
	return nil
}

// engineTimeout bounds the engine detection at start.
const engineTimeout = 3 * time.Second

// containerDriver connects to the Docker engine; the error says why there
// is none.
func (a *Agent) containerDriver(ctx context.Context) (*container.Driver, error) {
	ctx, cancel := context.WithTimeout(ctx, engineTimeout)
	defer cancel()
	return container.New(ctx, container.Config{
		Host:     a.cfg.DockerHost,
		Node:     a.cfg.Name,
		Owner:    a.cfg.DataDir,
		StateDir: filepath.Join(a.cfg.DataDir, "containers"),
	})
}

// runtimes are the node's runtimes as detected at start.
type runtimes struct {
	available   map[manifest.Runtime]driver.Driver
	unavailable map[manifest.Runtime]string
}

// names lists the available runtimes in a fixed order.
func (r runtimes) names() []string {
	var out []string
	for _, rt := range []manifest.Runtime{manifest.RuntimeExec, manifest.RuntimeWASM, manifest.RuntimeContainer} {
		if r.available[rt] != nil {
			out = append(out, string(rt))
		}
	}
	return out
}

// problems says why each unavailable runtime is.
func (r runtimes) problems() map[string]string {
	if len(r.unavailable) == 0 {
		return nil
	}
	out := make(map[string]string, len(r.unavailable))
	for rt, why := range r.unavailable {
		out[string(rt)] = why
	}
	return out
}

func (a *Agent) logDir() string { return filepath.Join(a.cfg.DataDir, "logs") }

// Restart replaces a workload's running instance.
func (a *Agent) Restart(ctx context.Context, name string) error { return a.sup.Restart(ctx, name) }

// Status reports every workload.
func (a *Agent) Status() []supervisor.Status { return a.sup.Status() }

// Events returns stored events after afterSeq.
func (a *Agent) Events(afterSeq uint64) ([]store.Event, error) { return a.store.Events(afterSeq, 0) }

// LogPath returns the log file of a known workload.
func (a *Agent) LogPath(name string) (string, error) {
	for _, s := range a.sup.Status() {
		if s.Name == name {
			return supervisor.LogPath(a.logDir(), name), nil
		}
	}
	return "", fmt.Errorf("logs %s: %w", name, supervisor.ErrWorkloadNotFound)
}

// PutArtifact stores an artifact in the node's content-addressed cache.
func (a *Agent) PutArtifact(ref string, r io.Reader) error {
	_, err := a.artifacts().Put(r, ref)
	return err
}

func (a *Agent) artifacts() artifact.Cache {
	return artifact.Cache{Dir: filepath.Join(a.cfg.DataDir, "artifacts")}
}

// Info describes the node.
func (a *Agent) Info() localapi.NodeInfo {
	info := localapi.NodeInfo{
		Name: a.cfg.Name, Labels: a.cfg.Labels,
		CapacityMemory: a.cfg.CapacityMemory, CapacityMilliCPU: a.cfg.CapacityMilliCPU,
		Limits: a.limits, StoreRecovery: a.recovery, Version: version.Version,
		Runtimes: a.runtimes.names(), UnavailableRuntimes: a.runtimes.problems(),
		Hub: a.cfg.Hub, StoredRevision: a.stored.Load(), AppliedRevision: a.applied.Load(),
	}
	if a.uplink != nil {
		info.HubConnected = a.uplink.Connected()
	}
	if id := a.cfg.Identity; id != nil {
		info.Revoked = id.Revoked()
		info.CertExpires = id.NotAfter()
	}
	if a.broker != nil {
		info.Broker, info.MQTT = a.broker.URL(), a.broker.MQTTAddr()
		info.Outbox, _ = a.broker.Pending(context.Background())
	}
	return info
}

// trimDelay is how long after its start the agent gives back the program
// pages its start-up touched (package trim): by then the start-up work
// (initialisation, restore, the first convergence) is done, and what the
// agent keeps running faults its pages back in.
const trimDelay = time.Second

func (a *Agent) trimAfterStart(ctx context.Context) {
	t := time.NewTimer(trimDelay)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return
	case <-t.C:
	}
	if n, err := trim.Program(); err != nil {
		a.log.Debug("trim program pages", "err", err)
	} else {
		a.log.Debug("trimmed program pages", "bytes", n)
	}
}

// forwardChanges turns supervisor status changes into a.changed signals.
func (a *Agent) forwardChanges(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-a.sup.Changes():
			a.signalChanged()
		}
	}
}

func (a *Agent) signalChanged() {
	select {
	case a.changed <- struct{}{}:
	default:
	}
}

func (a *Agent) memAvailable() (int64, error) {
	_, avail, err := readMemInfo(a.cfg.MemInfoPath)
	return avail, err
}

// rotateLogs copy-truncates workload logs past LogMaxBytes, keeping three.
func (a *Agent) rotateLogs(ctx context.Context) {
	t := time.NewTicker(5 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, s := range a.sup.Status() {
			if _, err := logfile.Rotate(supervisor.LogPath(a.logDir(), s.Name), a.cfg.LogMaxBytes, 3); err != nil && !errors.Is(err, os.ErrNotExist) {
				a.log.Error("rotate log", "workload", s.Name, "err", err)
			}
		}
	}
}

func describeRecovery(r store.Recovery) string {
	msg := fmt.Sprintf("state.db was corrupt (%s); moved to %s; ", r.Reason, r.MovedTo)
	if r.RestoredFrom == "" {
		return msg + "no good snapshot existed, started empty"
	}
	return msg + fmt.Sprintf("restored the last good state from %s (written %s)", r.RestoredFrom, r.SnapshotAt.Format(time.RFC3339))
}
