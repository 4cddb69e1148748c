// Package client holds typed Go clients for atoll's APIs. Local talks to a
// node agent's local API over its unix socket.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"

	"atoll.dev/atoll/internal/agent/localapi"
	"atoll.dev/atoll/internal/agent/store"
	"atoll.dev/atoll/internal/agent/supervisor"
	"atoll.dev/atoll/internal/manifest"
)

// Local is a client of one agent's local API. Its methods are safe for
// concurrent use.
type Local struct {
	socket string
	hc     *http.Client
}

// NewLocal returns a client for the agent listening on socketPath (see
// localapi.SocketPath). It connects lazily, on each call.
func NewLocal(socketPath string) *Local {
	var d net.Dialer
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", socketPath)
		},
		MaxIdleConns: 2,
	}
	// No overall timeout: followed logs stream for as long as ctx allows.
	return &Local{socket: socketPath, hc: &http.Client{Transport: tr}}
}

// Apply creates or updates ws on the node; a Change may set the priority of
// the resulting local overrides.
func (c *Local) Apply(ctx context.Context, ws []manifest.Workload, ch ...localapi.Change) ([]localapi.ApplyResult, error) {
	body, err := json.Marshal(ws)
	if err != nil {
		return nil, fmt.Errorf("encode workloads: %w", err)
	}
	var res []localapi.ApplyResult
	if err := c.do(ctx, http.MethodPost, "/v1/workloads:apply"+priorityQuery(ch), body, &res); err != nil {
		return nil, err
	}
	return res, nil
}

// Delete stops and removes the named workload. The error matches
// supervisor.ErrWorkloadNotFound (errors.Is) when the node has no such
// workload.
func (c *Local) Delete(ctx context.Context, name string, ch ...localapi.Change) error {
	return c.do(ctx, http.MethodDelete, "/v1/workloads/"+url.PathEscape(name)+priorityQuery(ch), nil, nil)
}

// Set overrides (or, with unset, removes) environment variables of the
// named workload; errors as for Delete.
func (c *Local) Set(ctx context.Context, name string, req localapi.SetRequest) error {
	body, err := json.Marshal(req)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	return c.do(ctx, http.MethodPost, "/v1/workloads/"+url.PathEscape(name)+":set", body, nil)
}

// priorityQuery renders the optional Change as a query string.
func priorityQuery(ch []localapi.Change) string {
	if len(ch) == 0 || ch[0].Priority == 0 {
		return ""
	}
	return "?priority=" + strconv.Itoa(ch[0].Priority)
}

// Restart stops and starts the named workload; errors as for Delete.
func (c *Local) Restart(ctx context.Context, name string) error {
	return c.do(ctx, http.MethodPost, "/v1/workloads/"+url.PathEscape(name)+":restart", nil, nil)
}

// Status reports every workload on the node, sorted by name. It returns an
// empty, non-nil slice when there are none.
func (c *Local) Status(ctx context.Context) ([]supervisor.Status, error) {
	st := []supervisor.Status{}
	if err := c.do(ctx, http.MethodGet, "/v1/workloads", nil, &st); err != nil {
		return nil, err
	}
	return st, nil
}

// Events returns the node's events with a sequence number above after,
// oldest first.
func (c *Local) Events(ctx context.Context, after uint64) ([]store.Event, error) {
	evs := []store.Event{}
	path := "/v1/events?after=" + strconv.FormatUint(after, 10)
	if err := c.do(ctx, http.MethodGet, path, nil, &evs); err != nil {
		return nil, err
	}
	return evs, nil
}

// Node describes the node.
func (c *Local) Node(ctx context.Context) (localapi.NodeInfo, error) {
	var info localapi.NodeInfo
	err := c.do(ctx, http.MethodGet, "/v1/node", nil, &info)
	return info, err
}

// PutArtifact uploads the bytes of r into the agent's artifact cache under
// ref ("sha256:<hex>"), which the agent verifies.
func (c *Local) PutArtifact(ctx context.Context, ref string, r io.Reader) error {
	resp, err := c.send(ctx, http.MethodPut, "/v1/artifacts/"+url.PathEscape(ref), r, "application/octet-stream")
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// do sends one request and decodes a 2xx answer into out (if non-nil) or an
// error answer into an *APIError.
func (c *Local) do(ctx context.Context, method, path string, body []byte, out any) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	resp, err := c.send(ctx, method, path, rd, "application/json")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// send sends one request and returns a 2xx response, whose body the caller
// closes; any other answer becomes an error.
func (c *Local) send(ctx context.Context, method, path string, body io.Reader, contentType string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, "http://agent"+path, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	return exchange(c.hc, req, "agent", c.transportError)
}
