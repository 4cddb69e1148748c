package control

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"atoll.dev/atoll/internal/hub/events"
	"atoll.dev/atoll/internal/hub/fleet"
	"atoll.dev/atoll/internal/hub/intent"
	"atoll.dev/atoll/internal/wire"
)

// ErrUnknownNode is the HeartbeatReply.Error (and the reason a Status is
// dropped) for a node that has not sent Hello: the agent should send Hello
// again.
const ErrUnknownNode = "unknown node: send hello first"

// Hello records a node's (re)connection: its labels, capacity and version
// are stored, its plan is brought up to date (a node first seen with
// labels gets its selector-matched workloads now), and the reply carries
// the plan's revision. A protocol version this hub does not speak is
// refused.
func (c *Controller) Hello(ctx context.Context, h wire.Hello) wire.HelloReply {
	if h.ProtocolVersion < 1 || h.ProtocolVersion > wire.ProtocolVersion {
		return wire.HelloReply{ProtocolVersion: wire.ProtocolVersion, Error: fmt.Sprintf(
			"protocol version %d is not supported: this hub speaks 1 to %d", h.ProtocolVersion, wire.ProtocolVersion)}
	}
	now := c.clock.Now()
	_, _, err := c.store.Nodes.Update(ctx, h.Node, func(cur intent.Node, exists bool) (intent.Node, bool, error) {
		next := cur
		next.Labels = nilIfEmpty(c.enrolledLabels(h.Node, h.Labels))
		next.CapacityMemory, next.CapacityMilliCPU = h.CapacityMemory, h.CapacityMilliCPU
		next.Runtimes, next.Version = slices.Clip(nilIfNone(h.Runtimes)), h.Version
		if next.FirstSeen.IsZero() {
			next.FirstSeen = now
		}
		if now.After(next.LastSeen) {
			next.LastSeen = now
		}
		return next, !exists || !sameNode(next, cur), nil
	})
	if err != nil {
		c.log.Error("hello", "node", h.Node, "err", err)
		return wire.HelloReply{ProtocolVersion: wire.ProtocolVersion, Error: "hub could not record the node; retry"}
	}
	c.contact(ctx, h.Node, fleet.Session{LastSeen: now}, true)
	if err := c.Reconcile(ctx, []string{h.Node}); err != nil {
		c.log.Error("hello: plan", "node", h.Node, "err", err)
	}
	rev, err := c.planRevision(ctx, h.Node)
	if err != nil {
		c.log.Error("hello", "node", h.Node, "err", err)
		return wire.HelloReply{ProtocolVersion: wire.ProtocolVersion, Error: "hub could not read the plan; retry"}
	}
	last, err := c.events.LastFromNode(ctx, h.Node)
	if err != nil {
		// Only an optimisation: the agent resends, and the stream's
		// duplicate window still applies.
		c.log.Warn("hello: last event", "node", h.Node, "err", err)
	}
	return wire.HelloReply{ProtocolVersion: wire.ProtocolVersion, PlanRevision: rev, LastEventID: last, QuietHeartbeats: true}
}

func sameNode(a, b intent.Node) bool {
	return maps.Equal(a.Labels, b.Labels) && a.CapacityMemory == b.CapacityMemory &&
		a.CapacityMilliCPU == b.CapacityMilliCPU && slices.Equal(a.Runtimes, b.Runtimes) &&
		a.Version == b.Version && a.FirstSeen.Equal(b.FirstSeen) && a.LastSeen.Equal(b.LastSeen) &&
		a.StoredRevision == b.StoredRevision && a.AppliedRevision == b.AppliedRevision
}

func nilIfNone(s []string) []string {
	if len(s) == 0 {
		return nil
	}
	return s
}

func nilIfEmpty(m map[string]string) map[string]string {
	if len(m) == 0 {
		return nil
	}
	return maps.Clone(m)
}

// contact records a message from node at this hub: the fleet's session,
// the connect event on a transition, the stored lastSeen when stale
// (persisted: the caller wrote it already), and the other hubs.
func (c *Controller) contact(ctx context.Context, node string, s fleet.Session, persisted bool) {
	ct := c.fleet.Seen(node, s)
	if persisted {
		c.fleet.Persisted(node, s.LastSeen)
	} else if ct.Persist {
		c.persistSeen(ctx, node)
	}
	if ct.Connected {
		if !ct.Since.IsZero() && !ct.Swept && s.LastSeen.Sub(ct.Since) >= c.fleet.Timeout() {
			// Back before the sweep noticed the silence: record it now. The
			// id is the sweep's (another hub's sweep may have recorded it:
			// the stream keeps one). After this hub's sweep, nothing: an
			// outage longer than the duplicate window would store it twice.
			c.disconnected(ctx, node, ct.Since)
		}
		msg := "node connected for the first time"
		if !ct.Since.IsZero() {
			msg = "node connected; last contact before this was " + ct.Since.UTC().Format(time.RFC3339)
		}
		c.event(ctx, wire.Event{Node: node, Type: events.TypeNodeConnected, Time: s.LastSeen,
			ID: fmt.Sprintf("hub.%s.%s.%d", events.TypeNodeConnected, node, s.LastSeen.UnixNano()), Message: msg})
	}
	if err := c.link.AnnounceSeen(node, s); err != nil {
		c.log.Warn("announce contact to other hubs", "node", node, "err", err)
	}
}

// persistSeen writes the fleet's view of node's link to its record.
func (c *Controller) persistSeen(ctx context.Context, node string) {
	s, _ := c.fleet.Get(node)
	_, _, err := c.store.Nodes.Update(ctx, node, func(cur intent.Node, exists bool) (intent.Node, bool, error) {
		if !exists {
			return cur, false, nil // the record is Hello's to create
		}
		next := cur
		if s.LastSeen.After(next.LastSeen) {
			next.LastSeen = s.LastSeen
		}
		next.StoredRevision = max(next.StoredRevision, s.StoredRevision)
		next.AppliedRevision = max(next.AppliedRevision, s.AppliedRevision)
		return next, next.LastSeen != cur.LastSeen || next.StoredRevision != cur.StoredRevision ||
			next.AppliedRevision != cur.AppliedRevision, nil
	})
	if err != nil {
		c.log.Warn("persist node contact", "node", node, "err", err)
		return
	}
	c.fleet.Persisted(node, s.LastSeen)
}

// PersistContacts writes every contact the store does not have yet (when
// the hub stops, so that a restarted hub starts from fresh lastSeen times).
func (c *Controller) PersistContacts(ctx context.Context) {
	for _, n := range c.fleet.Unpersisted() {
		c.persistSeen(ctx, n)
	}
}

// known reports whether node has a record (has sent Hello).
func (c *Controller) known(ctx context.Context, node string) (bool, error) {
	if _, ok := c.fleet.Get(node); ok {
		return true, nil
	}
	_, err := c.store.Nodes.Get(ctx, node)
	if errors.Is(err, intent.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (c *Controller) planRevision(ctx context.Context, node string) (uint64, error) {
	p, err := c.store.Plans.Get(ctx, node)
	if errors.Is(err, intent.ErrNotFound) {
		return 0, nil
	}
	return p.Value.Revision, err
}

// Heartbeat records the node's contact and acknowledgements and answers
// with its plan revision, whether its status is wanted, and its queued
// commands. Replaying a heartbeat changes nothing but lastSeen.
func (c *Controller) Heartbeat(ctx context.Context, hb wire.Heartbeat) wire.HeartbeatReply {
	known, err := c.known(ctx, hb.Node)
	if err != nil {
		c.log.Error("heartbeat", "node", hb.Node, "err", err)
		return wire.HeartbeatReply{Error: "hub could not read the node; retry"}
	}
	if !known {
		return wire.HeartbeatReply{Error: ErrUnknownNode}
	}
	now := c.clock.Now()
	c.contact(ctx, hb.Node, fleet.Session{LastSeen: now, StoredRevision: hb.StoredRevision,
		AppliedRevision: hb.AppliedRevision}, false)
	cmds, err := c.deliver(ctx, hb.Node, hb.DoneCommands, now)
	if err != nil {
		c.log.Error("heartbeat: commands", "node", hb.Node, "err", err)
		return wire.HeartbeatReply{Error: "hub could not read the commands; retry"}
	}
	rev, err := c.planRevision(ctx, hb.Node)
	if err != nil {
		c.log.Error("heartbeat: plan", "node", hb.Node, "err", err)
		return wire.HeartbeatReply{Error: "hub could not read the plan; retry"}
	}
	st, err := c.store.Statuses.Get(ctx, hb.Node)
	if err != nil && !errors.Is(err, intent.ErrNotFound) {
		c.log.Error("heartbeat: status", "node", hb.Node, "err", err)
		return wire.HeartbeatReply{Error: "hub could not read the status; retry"}
	}
	// A quiet heartbeat without a digest means the status has not changed
	// since a heartbeat this hub (or another) answered.
	return wire.HeartbeatReply{PlanRevision: rev, Commands: cmds,
		NeedStatus: err != nil || (hb.StatusDigest != "" && st.Value.Digest != hb.StatusDigest)}
}

// Plan answers a PlanRequest: the plan when it is newer than req.Have.
func (c *Controller) Plan(ctx context.Context, req wire.PlanRequest) wire.PlanReply {
	p, err := c.store.Plans.Get(ctx, req.Node)
	switch {
	case errors.Is(err, intent.ErrNotFound):
		return wire.PlanReply{}
	case err != nil:
		c.log.Error("plan request", "node", req.Node, "err", err)
		return wire.PlanReply{Error: "hub could not read the plan; retry"}
	case p.Value.Revision <= req.Have:
		return wire.PlanReply{}
	}
	if req.Gzip {
		b, err := wire.EncodePlanGzip(&p.Value)
		if err != nil {
			c.log.Error("plan request", "node", req.Node, "err", err)
			return wire.PlanReply{Error: "hub could not encode the plan; retry"}
		}
		return wire.PlanReply{PlanGzip: b}
	}
	return wire.PlanReply{Plan: &p.Value}
}

// Status stores a node's full status, unless it is one the hub has (same
// digest) or older than the one it has.
func (c *Controller) Status(ctx context.Context, st wire.Status) {
	known, err := c.known(ctx, st.Node)
	if err != nil || !known {
		c.log.Warn("status dropped", "node", st.Node, "err", err, "known", known)
		return
	}
	c.contact(ctx, st.Node, fleet.Session{LastSeen: c.clock.Now(), StoredRevision: st.StoredRevision,
		AppliedRevision: st.AppliedRevision}, false)
	_, _, err = c.store.Statuses.Update(ctx, st.Node, func(cur wire.Status, exists bool) (wire.Status, bool, error) {
		if exists && (cur.Digest == st.Digest || st.Time.Before(cur.Time)) {
			return cur, false, nil
		}
		return st, true, nil
	})
	if err != nil {
		c.log.Error("store status", "node", st.Node, "err", err)
	}
}

// ObserveSeen records a contact another hub handled.
func (c *Controller) ObserveSeen(node string, s fleet.Session) { c.fleet.Observe(node, s) }

// Sweep reports the nodes that fell silent since the last sweep: their
// lastSeen is persisted and a node-disconnected event recorded (with an id
// every hub derives alike, so the stream keeps one). Nothing else happens
// to them: their plans and workloads stay.
func (c *Controller) Sweep(ctx context.Context) {
	for _, l := range c.fleet.Sweep() {
		c.persistSeen(ctx, l.Node)
		c.log.Info("node disconnected", "node", l.Node, "lastSeen", l.LastSeen)
		c.disconnected(ctx, l.Node, l.LastSeen)
	}
}

// disconnected records that node fell silent after lastSeen.
func (c *Controller) disconnected(ctx context.Context, node string, lastSeen time.Time) {
	c.event(ctx, wire.Event{Node: node, Type: events.TypeNodeDisconnected,
		ID:      fmt.Sprintf("hub.%s.%s.%d", events.TypeNodeDisconnected, node, lastSeen.UnixNano()),
		Message: fmt.Sprintf("no contact for %v since %s; shown as disconnected, its workloads stay", c.fleet.Timeout(), lastSeen.UTC().Format(time.RFC3339))})
}

// enrolledLabels are the labels a node says it has, with those its
// enrollment token gave it in place of any the node says otherwise.
func (c *Controller) enrolledLabels(node string, said map[string]string) map[string]string {
	if c.nodeKeys == nil {
		return said
	}
	bound := c.nodeKeys.Labels(node)
	if len(bound) == 0 {
		return said
	}
	out := maps.Clone(said)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, bound)
	return out
}
