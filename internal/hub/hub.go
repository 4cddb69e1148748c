// Package hub wires the hub together: NATS (embedded with JetStream on
// disk, or external), the intent store, the event and telemetry streams,
// the controller, the agents' protocol over NATS and the HTTP API. It
// holds no logic of its own; package control does the work.
package hub

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"atoll.dev/atoll/internal/clock"
	"atoll.dev/atoll/internal/hlc"
	"atoll.dev/atoll/internal/hub/access"
	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/hub/artifacts"
	"atoll.dev/atoll/internal/hub/audit"
	"atoll.dev/atoll/internal/hub/authz"
	"atoll.dev/atoll/internal/hub/control"
	"atoll.dev/atoll/internal/hub/events"
	"atoll.dev/atoll/internal/hub/fleet"
	"atoll.dev/atoll/internal/hub/intent"
	"atoll.dev/atoll/internal/hub/metrics"
	"atoll.dev/atoll/internal/hub/nodesync"
	"atoll.dev/atoll/internal/hub/telemetry"
	"atoll.dev/atoll/internal/natsembed"
	"atoll.dev/atoll/internal/pki"
	"atoll.dev/atoll/internal/seal"
)

// Defaults.
const (
	DefaultListen     = "127.0.0.1:7070"
	DefaultNATSListen = natsembed.DefaultListen
	// SweepInterval is how often the hub looks for nodes gone silent.
	SweepInterval = 5 * time.Second
	// ExpireInterval is how often it drops expired commands of every node.
	ExpireInterval = time.Minute
)

// The controller is what both transports serve.
var (
	_ api.Backend         = (*control.Controller)(nil)
	_ api.ArtifactBackend = (*control.Controller)(nil)
	_ nodesync.Handler    = (*control.Controller)(nil)
)

// Config says how to run a hub.
type Config struct {
	// DataDir holds the embedded NATS's JetStream store (DataDir/nats) and
	// uploads being verified (DataDir/tmp).
	// Required unless NATSURL is set.
	DataDir string
	// Listen is the HTTP API's address; port 0 picks a free one. Empty
	// means DefaultListen.
	Listen string
	// NATSListen is the embedded NATS's client address; port 0 picks a
	// free one. Empty means DefaultNATSListen.
	NATSListen string
	// NATSURL, when set, is an external NATS with JetStream to use instead
	// of the embedded one; several hubs may share it.
	NATSURL string
	// NATSConfigure adjusts the embedded server's options (TLS, auth, leaf
	// nodes) until atoll's configuration has fields for them.
	NATSConfigure func(*server.Options)
	// Replicas is how many copies a clustered JetStream keeps of the
	// store and the event stream; 0 means 1.
	Replicas int
	// TelemetryMaxAge and TelemetryMaxBytes bound the telemetry stream
	// (the oldest records go first); 0 means telemetry.DefaultMaxAge (7
	// days) and telemetry.DefaultMaxBytes (1 GiB).
	TelemetryMaxAge   time.Duration
	TelemetryMaxBytes int64
	// Insecure turns TLS and authentication off: plain HTTP and NATS,
	// anyone may do anything. For labs and tests of other things; the
	// only way to use an external NATS.
	Insecure bool
	// NodeCertLifetime is how long a node certificate lasts (renewed at
	// two thirds); 0 means access.DefaultNodeCertLifetime.
	NodeCertLifetime time.Duration
	// RenewGrace is how long after its certificate expired a node may
	// still renew it (an outage longer than the certificate); 0 means
	// access.DefaultRenewGrace.
	RenewGrace time.Duration
	// NodeTimeout is how long a node may stay silent before the hub shows
	// it disconnected; 0 means wire.DisconnectedAfter (30 s).
	NodeTimeout time.Duration
	// Clock is the time source; nil means the wall clock.
	Clock clock.Clock
	// Logger receives the hub's logs; nil discards them.
	Logger *slog.Logger
}

// Hub is one hub process.
type Hub struct {
	cfg   Config
	log   *slog.Logger
	ready chan struct{}

	mu       sync.Mutex
	httpAddr string // guarded by mu
	natsURL  string // guarded by mu
}

// New checks cfg and returns a hub ready to Run.
func New(cfg Config) (*Hub, error) {
	if cfg.DataDir == "" && cfg.NATSURL == "" {
		return nil, errors.New("new hub: no data directory (or external NATS URL)")
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if cfg.NATSListen == "" {
		cfg.NATSListen = DefaultNATSListen
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.RenewGrace <= 0 {
		cfg.RenewGrace = access.DefaultRenewGrace
	}
	return &Hub{cfg: cfg, log: cfg.Logger, ready: make(chan struct{})}, nil
}

// Ready is closed once the hub serves NATS and HTTP.
func (h *Hub) Ready() <-chan struct{} { return h.ready }

// HTTPAddr is the API's address ("127.0.0.1:7070"); empty before Ready.
func (h *Hub) HTTPAddr() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.httpAddr
}

// NATSURL is the URL agents connect to; empty before Ready.
func (h *Hub) NATSURL() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.natsURL
}

// Run runs the hub until ctx ends, then stops it cleanly and returns nil;
// it returns an error if the hub cannot start or its API server fails.
// Call it once.
func (h *Hub) Run(ctx context.Context) error {
	sec, err := h.security()
	if err != nil {
		return fmt.Errorf("run hub: %w", err)
	}
	url := h.cfg.NATSURL
	var ns *natsembed.Server
	if url == "" {
		ns, err = h.startNATS(sec)
		if err != nil {
			return err
		}
		defer ns.Shutdown()
		url = ns.ClientURL()
	}
	connOpts := []nats.Option{nats.Name("atoll-hub"), nats.MaxReconnects(-1)}
	var nc *nats.Conn
	if sec != nil {
		nc, err = sec.connect(ns.NATS(), connOpts...)
	} else {
		nc, err = nats.Connect(url, connOpts...)
	}
	if err != nil {
		return fmt.Errorf("run hub: connect to nats %s: %w", url, err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return fmt.Errorf("run hub: %w", err)
	}
	if _, err := js.AccountInfo(ctx); err != nil {
		return fmt.Errorf("run hub: nats %s has no jetstream: %w", url, err)
	}
	var acc *access.Service
	if sec != nil {
		acc, err = access.Start(ctx, access.Config{
			CA: sec.ca, Auth: sec.auth, Conn: nc, JS: js, Replicas: h.cfg.Replicas,
			NodeCertLifetime: h.cfg.NodeCertLifetime, Clock: h.cfg.Clock, Logger: h.log.With("component", "access"),
			Kick: func(user string) int { return kick(ns.NATS(), user) },
		})
		if err != nil {
			return fmt.Errorf("run hub: %w", err)
		}
		defer acc.Stop()
	}
	ctl, store, err := h.controller(ctx, nc, js, acc)
	if err != nil {
		return fmt.Errorf("run hub: %w", err)
	}
	if acc != nil {
		acc.OnEnrolled(func(node string) {
			if err := ctl.Reconcile(context.WithoutCancel(ctx), []string{node}); err != nil {
				h.log.Warn("plan newly enrolled node", "node", node, "err", err)
			}
		})
	}
	auditLog, err := audit.Open(ctx, js, audit.Config{Replicas: h.cfg.Replicas})
	if err != nil {
		return fmt.Errorf("run hub: %w", err)
	}
	agents, err := nodesync.Serve(nodesync.Config{Conn: nc, Handler: ctl, Logger: h.log.With("component", "nodesync")})
	if err != nil {
		return fmt.Errorf("run hub: %w", err)
	}
	defer func() {
		agents.Stop() // no more contacts, then write the fresh ones down
		h.persist(ctl)
	}()

	ln, err := net.Listen("tcp", h.cfg.Listen)
	if err != nil {
		return fmt.Errorf("run hub: listen %s: %w", h.cfg.Listen, err)
	}
	srv := &http.Server{Handler: h.handler(ctl, store, auditLog, acc, sec), ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	if sec != nil {
		srv.TLSConfig = pki.ServerTLS(sec.cert, sec.ca, true)
		go func() { served <- srv.ServeTLS(ln, "", "") }()
		path, err := sec.writeAdminConfig(h.cfg.DataDir, ln.Addr().String(), func(c *x509.Certificate) error { return acc.RecordUser(ctx, c) })
		if err != nil {
			_ = srv.Close()
			return fmt.Errorf("run hub: %w", err)
		}
		h.log.Info("admin credentials", "config", path)
	} else {
		h.log.Warn("TLS and authentication are off (--insecure): anyone who reaches the hub may do anything")
		go func() { served <- srv.Serve(ln) }()
	}

	h.mu.Lock()
	h.httpAddr, h.natsURL = ln.Addr().String(), url
	h.mu.Unlock()
	close(h.ready)
	h.log.Info("hub ready", "http", ln.Addr().String(), "nats", url)

	loopDone := make(chan struct{})
	loopCtx, stopLoop := context.WithCancel(ctx)
	go func() { defer close(loopDone); h.maintain(loopCtx, ctl) }()
	defer func() { stopLoop(); <-loopDone }()

	select {
	case err := <-served:
		return fmt.Errorf("run hub: http: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		h.log.Warn("http shutdown", "err", err)
	}
	return nil
}

func (h *Hub) startNATS(sec *security) (*natsembed.Server, error) {
	dir := filepath.Join(h.cfg.DataDir, "nats")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("run hub: %w", err)
	}
	configure := func(o *server.Options) {
		if sec != nil {
			sec.configureNATS(o)
		}
		if h.cfg.NATSConfigure != nil {
			h.cfg.NATSConfigure(o)
		}
	}
	ns, err := natsembed.Start(natsembed.Config{
		DataDir: dir, Listen: h.cfg.NATSListen, Configure: configure,
		Logger: h.log.With("component", "nats"),
	})
	if err != nil {
		return nil, fmt.Errorf("run hub: %w", err)
	}
	return ns, nil
}

// handler is the HTTP API: the controller's endpoints and, with TLS on,
// those of access, behind role checks that record every change.
func (h *Hub) handler(ctl *control.Controller, store *intent.Store, auditLog *audit.Log, acc *access.Service, sec *security) http.Handler {
	apiHandler := api.NewHandler(ctl, h.log.With("component", "api"),
		api.WithMetrics(metrics.NewHandler(metrics.StoreSource{NodeLister: ctl, Store: store}, h.log.With("component", "metrics"))),
		api.WithAudit(auditLog, h.log.With("component", "audit")),
		api.WithSecrets(ctl, h.log.With("component", "api")))
	if sec == nil {
		return apiHandler
	}
	mux := http.NewServeMux()
	acc.Routes(mux)
	mux.Handle("/", apiHandler)
	return authz.Wrap(mux, authz.Config{
		Audit: auditLog, Revoked: sec.auth.RevokedCert, Clock: h.cfg.Clock, Logger: h.log.With("component", "authz"),
	})
}

// controller opens the store and the event and telemetry streams and starts the
// controller over them; it returns the store too, which the metrics read.
func (h *Hub) controller(ctx context.Context, nc *nats.Conn, js jetstream.JetStream, acc *access.Service) (*control.Controller, *intent.Store, error) {
	store, err := intent.Open(ctx, js, intent.Config{Replicas: h.cfg.Replicas})
	if err != nil {
		return nil, nil, err
	}
	evlog, err := events.Open(ctx, js, events.Config{Replicas: h.cfg.Replicas})
	if err != nil {
		return nil, nil, err
	}
	tm, err := telemetry.Open(ctx, js, telemetry.Config{
		Replicas: h.cfg.Replicas, MaxAge: h.cfg.TelemetryMaxAge, MaxBytes: h.cfg.TelemetryMaxBytes,
	})
	if err != nil {
		return nil, nil, err
	}
	arts, err := artifacts.Open(ctx, js, artifacts.Config{Replicas: h.cfg.Replicas, TempDir: h.tempDir()})
	if err != nil {
		return nil, nil, err
	}
	last, err := store.LatestStamp(ctx)
	if err != nil {
		return nil, nil, err
	}
	var secretKey []byte
	if h.cfg.DataDir != "" {
		if secretKey, err = seal.LoadOrCreateKey(filepath.Join(h.cfg.DataDir, "secrets.key")); err != nil {
			return nil, nil, err
		}
	}
	var keys control.NodeKeys
	if acc != nil {
		keys = acc
	}
	ctl := control.New(control.Config{
		NodeKeys: keys, SecretKey: secretKey,
		Store: store, Fleet: fleet.New(h.cfg.Clock, h.cfg.NodeTimeout), Events: evlog, Artifacts: arts, Telemetry: tm, Link: nodesync.NewLink(nc),
		Clock: h.cfg.Clock, HLC: hlc.New(h.cfg.Clock, last), Logger: h.log.With("component", "control"),
	})
	if err := ctl.Start(ctx); err != nil {
		return nil, nil, err
	}
	return ctl, store, nil
}

// tempDir holds uploads being verified: DataDir/tmp, or the system's
// temporary directory for a hub without a data directory.
func (h *Hub) tempDir() string {
	if h.cfg.DataDir == "" {
		return ""
	}
	dir := filepath.Join(h.cfg.DataDir, "tmp")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return ""
	}
	return dir
}

// maintain sweeps for silent nodes and expired commands until ctx ends.
func (h *Hub) maintain(ctx context.Context, ctl *control.Controller) {
	sinceExpire := time.Duration(0)
	for {
		t := h.cfg.Clock.NewTimer(SweepInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		ctl.Sweep(ctx)
		if sinceExpire += SweepInterval; sinceExpire >= ExpireInterval {
			sinceExpire = 0
			if err := ctl.ExpireCommands(ctx); err != nil {
				h.log.Warn("expire commands", "err", err)
			}
		}
	}
}

// persist writes the fleet's fresh contacts before the hub stops.
func (h *Hub) persist(ctl *control.Controller) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ctl.PersistContacts(ctx)
}
