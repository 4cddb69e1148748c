package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/hub/artifacts"
	"atoll.dev/atoll/internal/hub/events"
	"atoll.dev/atoll/internal/wire"
)

// Logs asks node's agent for the last tail lines of workload's log. A node
// that is not connected is answered at once, without asking: with when it
// was last seen, or that it never was.
func (c *Controller) Logs(ctx context.Context, node, workload string, tail int) ([]byte, error) {
	known, state, lastSeen, err := c.nodeLink(ctx, node)
	if err != nil {
		return nil, fmt.Errorf("logs of %s on %s: %w", workload, node, err)
	}
	switch {
	case !known:
		return nil, api.Errorf(api.ErrNotFound, "node %s not found", node)
	case state == api.NodeNeverSeen:
		return nil, api.Errorf(api.ErrConflict, "node %s has never connected", node)
	case state == api.NodeDisconnected:
		return nil, api.Errorf(api.ErrConflict, "node %s disconnected since %s", node, lastSeen.UTC().Format(time.RFC3339))
	}
	ctx, cancel := context.WithTimeout(ctx, c.logsTimeout)
	defer cancel()
	reply, err := c.link.RequestLogs(ctx, node, wire.LogsRequest{Workload: workload, Tail: tail})
	switch {
	case errors.Is(err, ErrUnreachable):
		return nil, api.Errorf(api.ErrUnavailable, "node %s: no agent is answering log requests (last seen %s)",
			node, lastSeen.UTC().Format(time.RFC3339))
	case errors.Is(err, context.DeadlineExceeded):
		return nil, api.Errorf(api.ErrTimeout, "node %s did not answer within %v", node, c.logsTimeout)
	case err != nil:
		return nil, fmt.Errorf("logs of %s on %s: %w", workload, node, err)
	case reply.Error != "":
		return nil, api.Errorf(api.ErrBadGateway, "node %s: %s", node, reply.Error)
	}
	return reply.Data, nil
}

// PutArtifact stores an artifact nodes can fetch once its bytes hash to
// ref.
func (c *Controller) PutArtifact(ctx context.Context, ref string, r io.Reader) error {
	if c.artifacts == nil {
		return errors.New("put artifact: this hub has no artifact store")
	}
	err := c.artifacts.Put(ctx, ref, r)
	if errors.Is(err, artifacts.ErrBadRef) || errors.Is(err, artifacts.ErrDigestMismatch) {
		return api.Errorf(api.ErrInvalid, "%v", err)
	}
	return err
}

// Events returns the events q selects, oldest first.
func (c *Controller) Events(ctx context.Context, q api.EventQuery) ([]wire.Event, error) {
	return c.events.Find(ctx, events.Query{Node: q.Node, Since: q.Since, Limit: q.Limit})
}
