// Package control is what the hub does: it applies intent, keeps every
// node's plan in step with it, answers the agents' sync loop, queues
// one-off commands and assembles the fleet views the API shows. Transport
// lives elsewhere (package nodesync for NATS, package api for HTTP); the
// state lives in package intent, placement in package planner, sessions in
// package fleet.
//
// # Several hubs
//
// Any number of hubs may share one NATS and one store. Every
// read-modify-write is a compare-and-set on the KV revision (intent.Table
// Update/Put), so two hubs cannot both turn plan revision N into N+1: the
// loser re-reads the intent and the plan and plans again, and writes only
// if the content still differs. A plan is always computed from intent read
// after the plan it replaces, so the last writer never undoes a change it
// did not see.
package control

import (
	"context"
	"crypto/ecdh"
	"errors"
	"io"
	"log/slog"
	"time"

	"atoll.dev/atoll/internal/clock"
	"atoll.dev/atoll/internal/hlc"
	"atoll.dev/atoll/internal/hub/events"
	"atoll.dev/atoll/internal/hub/fleet"
	"atoll.dev/atoll/internal/hub/intent"
	"atoll.dev/atoll/internal/wire"
)

// ErrUnreachable is what Link.RequestLogs wraps when no agent of the node
// is listening.
var ErrUnreachable = errors.New("no agent listening")

// Link reaches agents and the other hubs.
type Link interface {
	// Notify tells a connected agent to heartbeat now.
	Notify(node string, n wire.Notify) error
	// RequestLogs asks node's agent for logs; it returns an error wrapping
	// ErrUnreachable when no agent listens, and ctx's error on timeout.
	RequestLogs(ctx context.Context, node string, req wire.LogsRequest) (wire.LogsReply, error)
	// AnnounceSeen tells the other hubs about a contact this hub handled.
	AnnounceSeen(node string, s fleet.Session) error
}

// EventLog is the event stream.
type EventLog interface {
	Publish(ctx context.Context, ev wire.Event) error
	Find(ctx context.Context, q events.Query) ([]wire.Event, error)
	// LastFromNode is the id of the last event stored from node itself.
	LastFromNode(ctx context.Context, node string) (string, error)
}

// Artifacts is the artifact store.
type Artifacts interface {
	Put(ctx context.Context, ref string, r io.Reader) error
	// Size is the size of the artifact ref, and whether it is stored.
	Size(ctx context.Context, ref string) (int64, bool, error)
}

// NodeKeys is what the hub knows of enrolled nodes: their public keys, to
// seal secrets to, and the labels their tokens gave them.
type NodeKeys interface {
	// NodeKey is node's key; (nil, nil) when the node is not enrolled.
	NodeKey(ctx context.Context, node string) (*ecdh.PublicKey, error)
	// Labels are the labels node was enrolled with; they override what
	// the node itself says under the same keys (a node cannot move itself
	// into another site's placement).
	Labels(node string) map[string]string
}

// DefaultLogsTimeout bounds a logs request to an agent.
const DefaultLogsTimeout = 5 * time.Second

// Config is what a Controller works with.
type Config struct {
	Store     *intent.Store
	Fleet     *fleet.Fleet
	Events    EventLog
	Artifacts Artifacts
	// Telemetry is the telemetry stream; nil refuses telemetry.
	Telemetry TelemetryLog
	Link      Link
	Clock     clock.Clock
	// HLC stamps spec changes and plans; it must start after the store's
	// intent.Store.LatestStamp.
	HLC    *hlc.Clock
	Logger *slog.Logger
	// LogsTimeout bounds a logs request; 0 means DefaultLogsTimeout.
	LogsTimeout time.Duration
	// NodeKeys finds the nodes' keys secrets are sealed to; nil: no node
	// has one, and workloads that reference secrets cannot start.
	NodeKeys NodeKeys
	// SecretKey is the hub's seal.KeySize-byte key
	// (seal.LoadOrCreateKey): secrets are encrypted at rest with a key
	// derived from it, and sealed with seeds derived from it. Nil refuses
	// secrets.
	SecretKey []byte
}

// Controller carries out the hub's operations. Its methods are safe for
// concurrent use; it holds no lock of its own (the fleet has one, the
// store is compare-and-set).
type Controller struct {
	store       *intent.Store
	fleet       *fleet.Fleet
	events      EventLog
	artifacts   Artifacts
	telemetry   TelemetryLog
	link        Link
	clock       clock.Clock
	hlc         *hlc.Clock
	log         *slog.Logger
	logsTimeout time.Duration
	nodeKeys    NodeKeys
	secretKeys  *secretKeys // nil without Config.SecretKey
}

// New returns a controller over cfg.
func New(cfg Config) *Controller {
	c := &Controller{
		store: cfg.Store, fleet: cfg.Fleet, events: cfg.Events, artifacts: cfg.Artifacts, telemetry: cfg.Telemetry, link: cfg.Link,
		clock: cfg.Clock, hlc: cfg.HLC, log: cfg.Logger, logsTimeout: cfg.LogsTimeout, nodeKeys: cfg.NodeKeys,
		secretKeys: deriveSecretKeys(cfg.SecretKey),
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.logsTimeout <= 0 {
		c.logsTimeout = DefaultLogsTimeout
	}
	return c
}

// Start loads the fleet from the stored node records and brings every
// plan in step with the intent (finishing the work of a hub that stopped
// between a change and its plans).
func (c *Controller) Start(ctx context.Context) error {
	nodes, err := c.store.Nodes.All(ctx)
	if err != nil {
		return err
	}
	for _, n := range nodes {
		c.fleet.Restore(n.Key, fleet.Session{
			LastSeen:        n.Value.LastSeen,
			StoredRevision:  n.Value.StoredRevision,
			AppliedRevision: n.Value.AppliedRevision,
		})
	}
	return c.Reconcile(ctx, nil)
}

// event publishes one of the hub's events; failing to is logged, not
// returned: the event records an outcome, it does not decide one.
func (c *Controller) event(ctx context.Context, ev wire.Event) {
	if ev.Time.IsZero() {
		ev.Time = c.clock.Now()
	}
	if err := c.events.Publish(ctx, ev); err != nil {
		c.log.Warn("publish hub event", "type", ev.Type, "node", ev.Node, "err", err)
	}
}

// notify tells node to heartbeat now; a failure only delays the node
// until its next heartbeat.
func (c *Controller) notify(node string, rev uint64) {
	if err := c.link.Notify(node, wire.Notify{PlanRevision: rev}); err != nil {
		c.log.Warn("notify node", "node", node, "err", err)
	}
}
