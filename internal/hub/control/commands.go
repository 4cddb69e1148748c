package control

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"time"

	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/hub/events"
	"atoll.dev/atoll/internal/hub/intent"
	"atoll.dev/atoll/internal/wire"
)

// Command limits.
const (
	DefaultCommandTTL = time.Hour
	MaxCommandTTL     = 7 * 24 * time.Hour
	// KeepFinished is how long a done or expired command stays listed
	// (and its idempotency key remembered).
	KeepFinished = 24 * time.Hour
	// MaxQueued bounds the commands waiting for one node.
	MaxQueued = 100
	// MaxKeyLen bounds an idempotency key.
	MaxKeyLen = 200
)

// Restart queues a restart of workload on node, to be delivered in the
// node's heartbeats until it reports it done or it expires. With an
// idempotency key already used on this node for the same restart, it
// returns the command queued then and created=false.
func (c *Controller) Restart(ctx context.Context, node, workload string, req api.CommandRequest) (api.Command, bool, error) {
	ttl := DefaultCommandTTL
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d <= 0 || d > MaxCommandTTL {
			return api.Command{}, false, api.Errorf(api.ErrInvalid,
				"ttl %q: want a positive Go duration up to %v, such as 30m", req.TTL, MaxCommandTTL)
		}
		ttl = d
	}
	if len(req.IdempotencyKey) > MaxKeyLen {
		return api.Command{}, false, api.Errorf(api.ErrInvalid, "idempotency key: at most %d bytes", MaxKeyLen)
	}
	if err := c.checkTarget(ctx, node, workload); err != nil {
		return api.Command{}, false, err
	}
	now := c.clock.Now()
	var (
		out     intent.Command
		created bool
		expired []intent.Command
	)
	_, _, err := c.store.Commands.Update(ctx, node, func(q intent.Commands, _ bool) (intent.Commands, bool, error) {
		created = false
		expired = expire(&q, now)
		if req.IdempotencyKey != "" {
			for _, cmd := range q.Commands {
				if cmd.IdempotencyKey != req.IdempotencyKey {
					continue
				}
				if cmd.Kind != wire.CommandRestart || cmd.Workload != workload {
					return q, false, api.Errorf(api.ErrConflict,
						"idempotency key %q was used on node %s for %s of %s", req.IdempotencyKey, node, cmd.Kind, cmd.Workload)
				}
				out = cmd
				return q, len(expired) > 0, nil
			}
		}
		if queued(q) >= MaxQueued {
			return q, false, api.Errorf(api.ErrConflict,
				"node %s has %d commands queued already; they go when it reconnects or expire", node, MaxQueued)
		}
		out = intent.Command{
			Command: wire.Command{ID: newID(), Kind: wire.CommandRestart, Workload: workload,
				Created: now, Expires: now.Add(ttl)},
			State: intent.CommandQueued, IdempotencyKey: req.IdempotencyKey,
		}
		q.Commands = append(prune(q.Commands, now), out)
		created = true
		return q, true, nil
	})
	if err != nil {
		if errors.Is(err, api.ErrConflict) {
			return api.Command{}, false, err
		}
		return api.Command{}, false, fmt.Errorf("queue restart of %s on %s: %w", workload, node, err)
	}
	c.expired(ctx, node, expired)
	if created {
		c.log.Info("command queued", "node", node, "id", out.ID, "kind", out.Kind, "workload", workload, "expires", out.Expires)
		rev, _ := c.planRevision(ctx, node)
		c.notify(node, rev)
	}
	return toAPI(node, out, now), created, nil
}

// checkTarget answers 404 unless node is known and workload is in its
// plan or its last status (a workload added locally on the node).
func (c *Controller) checkTarget(ctx context.Context, node, workload string) error {
	known, _, _, err := c.nodeLink(ctx, node)
	if err != nil {
		return err
	}
	if !known {
		return api.Errorf(api.ErrNotFound, "node %s not found", node)
	}
	p, err := c.store.Plans.Get(ctx, node)
	if err != nil && !errors.Is(err, intent.ErrNotFound) {
		return err
	}
	for _, pw := range p.Value.Workloads {
		if pw.Workload.Metadata.Name == workload {
			return nil
		}
	}
	st, err := c.store.Statuses.Get(ctx, node)
	if err != nil && !errors.Is(err, intent.ErrNotFound) {
		return err
	}
	for _, ws := range st.Value.Workloads {
		if ws.Name == workload {
			return nil
		}
	}
	return api.Errorf(api.ErrNotFound, "workload %s is not on node %s (neither in its plan nor in its last status)", workload, node)
}

// Commands lists node's commands, oldest first: queued ones and those done
// or expired within KeepFinished.
func (c *Controller) Commands(ctx context.Context, node string) ([]api.Command, error) {
	known, _, _, err := c.nodeLink(ctx, node)
	if err != nil {
		return nil, fmt.Errorf("list commands of %s: %w", node, err)
	}
	if !known {
		return nil, api.Errorf(api.ErrNotFound, "node %s not found", node)
	}
	q, err := c.store.Commands.Get(ctx, node)
	if err != nil && !errors.Is(err, intent.ErrNotFound) {
		return nil, fmt.Errorf("list commands of %s: %w", node, err)
	}
	now := c.clock.Now()
	out := make([]api.Command, 0, len(q.Value.Commands))
	for _, cmd := range prune(q.Value.Commands, now) {
		out = append(out, toAPI(node, cmd, now))
	}
	return out, nil
}

// deliver marks the commands the node reports done, drops the expired
// ones (with an event each) and returns those still queued, oldest first.
func (c *Controller) deliver(ctx context.Context, node string, done []string, now time.Time) ([]wire.Command, error) {
	var (
		pending []wire.Command
		expired []intent.Command
	)
	_, wrote, err := c.store.Commands.Update(ctx, node, func(q intent.Commands, exists bool) (intent.Commands, bool, error) {
		pending, expired = nil, nil
		if !exists {
			return q, false, nil
		}
		changed := false
		for i := range q.Commands {
			cmd := &q.Commands[i]
			if cmd.State == intent.CommandQueued && slices.Contains(done, cmd.ID) {
				cmd.State, cmd.Finished = intent.CommandDone, now
				changed = true
			}
		}
		expired = expire(&q, now)
		n := len(q.Commands)
		q.Commands = prune(q.Commands, now)
		for _, cmd := range q.Commands {
			if cmd.State == intent.CommandQueued {
				pending = append(pending, cmd.Command)
			}
		}
		return q, changed || len(expired) > 0 || len(q.Commands) != n, nil
	})
	if err != nil {
		return nil, err
	}
	if wrote {
		c.expired(ctx, node, expired)
	}
	return pending, nil
}

// ExpireCommands drops the expired commands of every node, with an event
// each, so that a command for a node that never comes back is recorded as
// dropped.
func (c *Controller) ExpireCommands(ctx context.Context) error {
	qs, err := c.store.Commands.All(ctx)
	if err != nil {
		return fmt.Errorf("expire commands: %w", err)
	}
	now := c.clock.Now()
	var errs []error
	for _, q := range qs {
		if !slices.ContainsFunc(q.Value.Commands, func(cmd intent.Command) bool { return isExpired(cmd, now) }) {
			continue
		}
		var expired []intent.Command
		_, wrote, err := c.store.Commands.Update(ctx, q.Key, func(q intent.Commands, _ bool) (intent.Commands, bool, error) {
			expired = expire(&q, now)
			return q, len(expired) > 0, nil
		})
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if wrote {
			c.expired(ctx, q.Key, expired)
		}
	}
	return errors.Join(errs...)
}

func (c *Controller) expired(ctx context.Context, node string, cmds []intent.Command) {
	for _, cmd := range cmds {
		c.log.Info("command expired", "node", node, "id", cmd.ID, "workload", cmd.Workload)
		c.event(ctx, wire.Event{Node: node, Workload: cmd.Workload, Type: events.TypeCommandExpired,
			ID: fmt.Sprintf("hub.%s.%s.%s", events.TypeCommandExpired, node, cmd.ID),
			Message: fmt.Sprintf("%s command %s (queued %s) expired at %s before the node carried it out; dropped",
				cmd.Kind, cmd.ID, cmd.Created.UTC().Format(time.RFC3339), cmd.Expires.UTC().Format(time.RFC3339))})
	}
}

func isExpired(cmd intent.Command, now time.Time) bool {
	return cmd.State == intent.CommandQueued && !now.Before(cmd.Expires)
}

// expire marks the queued commands past their expiry and returns them.
func expire(q *intent.Commands, now time.Time) []intent.Command {
	var out []intent.Command
	for i := range q.Commands {
		if cmd := &q.Commands[i]; isExpired(*cmd, now) {
			cmd.State, cmd.Finished = intent.CommandExpired, cmd.Expires
			out = append(out, *cmd)
		}
	}
	return out
}

// prune drops the commands finished more than KeepFinished ago.
func prune(cmds []intent.Command, now time.Time) []intent.Command {
	return slices.DeleteFunc(slices.Clone(cmds), func(cmd intent.Command) bool {
		return cmd.State != intent.CommandQueued && now.Sub(cmd.Finished) > KeepFinished
	})
}

func queued(q intent.Commands) int {
	n := 0
	for _, cmd := range q.Commands {
		if cmd.State == intent.CommandQueued {
			n++
		}
	}
	return n
}

func toAPI(node string, cmd intent.Command, now time.Time) api.Command {
	state := cmd.State
	if isExpired(cmd, now) {
		state = intent.CommandExpired
	}
	return api.Command{Command: cmd.Command, Node: node, State: state}
}

// newID returns a random command id.
func newID() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	return "c" + hex.EncodeToString(b[:])
}
