package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/wire"
)

// Hub is a client of the hub's HTTP API (package api). Its methods are safe
// for concurrent use. Error answers are *APIError; a hub that cannot be
// dialled is *HubUnreachableError.
type Hub struct {
	base string
	hc   *http.Client
}

// NewHub returns a client for the hub at baseURL ("https://127.0.0.1:7070"),
// over TLS with tlsCfg (Credentials.TLS) when not nil.
// It connects lazily, on each call. Connecting and waiting for an answer's
// headers time out; reading a body (a long log) is bounded only by ctx.
func NewHub(baseURL string, tlsCfg *tls.Config) *Hub {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	tr.DialContext = (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	tr.TLSHandshakeTimeout = 10 * time.Second
	// The hub may have to ask a node (logs), so allow it some time.
	tr.ResponseHeaderTimeout = 30 * time.Second
	return &Hub{base: strings.TrimRight(baseURL, "/"), hc: &http.Client{Transport: tr}}
}

// Apply creates or updates ws on the hub, which plans them onto the nodes
// they target.
func (c *Hub) Apply(ctx context.Context, ws []manifest.Workload) ([]api.ApplyResult, error) {
	body, err := json.Marshal(ws)
	if err != nil {
		return nil, fmt.Errorf("encode workloads: %w", err)
	}
	var res []api.ApplyResult
	if _, err := c.do(ctx, http.MethodPost, "/v1/workloads:apply", body, &res); err != nil {
		return nil, err
	}
	return orEmpty(res), nil
}

// Workloads lists every workload; empty and non-nil when there are none.
func (c *Hub) Workloads(ctx context.Context) ([]api.Workload, error) {
	var ws []api.Workload
	if _, err := c.do(ctx, http.MethodGet, "/v1/workloads", nil, &ws); err != nil {
		return nil, err
	}
	return orEmpty(ws), nil
}

// Workload returns the named workload with its instances. A missing one is
// an *APIError with StatusCode 404.
func (c *Hub) Workload(ctx context.Context, name string) (api.Workload, error) {
	var w api.Workload
	_, err := c.do(ctx, http.MethodGet, "/v1/workloads/"+url.PathEscape(name), nil, &w)
	return w, err
}

// DeleteWorkload removes the named workload from the hub's intent; the
// nodes stop it as their plans arrive.
func (c *Hub) DeleteWorkload(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/workloads/"+url.PathEscape(name), nil, nil)
	return err
}

// Nodes lists every node; empty and non-nil when there are none.
func (c *Hub) Nodes(ctx context.Context) ([]api.Node, error) {
	var ns []api.Node
	if _, err := c.do(ctx, http.MethodGet, "/v1/nodes", nil, &ns); err != nil {
		return nil, err
	}
	return orEmpty(ns), nil
}

// Node returns the named node with its instances and overrides.
func (c *Hub) Node(ctx context.Context, name string) (api.Node, error) {
	var n api.Node
	_, err := c.do(ctx, http.MethodGet, "/v1/nodes/"+url.PathEscape(name), nil, &n)
	return n, err
}

// Events returns the events q selects, oldest first; a zero Limit asks for
// the hub's default (api.DefaultEventLimit).
func (c *Hub) Events(ctx context.Context, q api.EventQuery) ([]wire.Event, error) {
	v := url.Values{}
	if q.Node != "" {
		v.Set("node", q.Node)
	}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var evs []wire.Event
	if _, err := c.do(ctx, http.MethodGet, withQuery("/v1/events", v), nil, &evs); err != nil {
		return nil, err
	}
	return orEmpty(evs), nil
}

// Telemetry returns the records q selects, oldest first; a zero Limit
// asks for the hub's default (api.DefaultTelemetryLimit).
func (c *Hub) Telemetry(ctx context.Context, q api.TelemetryQuery) ([]api.TelemetryRecord, error) {
	v := url.Values{}
	if q.Node != "" {
		v.Set("node", q.Node)
	}
	if q.Subject != "" {
		v.Set("subject", q.Subject)
	}
	if q.After != nil {
		v.Set("after", strconv.FormatUint(*q.After, 10))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	var recs []api.TelemetryRecord
	if _, err := c.do(ctx, http.MethodGet, withQuery("/v1/telemetry", v), nil, &recs); err != nil {
		return nil, err
	}
	return orEmpty(recs), nil
}

// Logs copies the last tail lines of a workload's output on node to w, as
// the hub fetches them from the node; tail <= 0 asks for the node's default
// (wire.LogsRequest). The node sends at most wire.MaxLogsReply bytes.
func (c *Hub) Logs(ctx context.Context, node, workload string, tail int, w io.Writer) error {
	v := url.Values{}
	if tail > 0 {
		v.Set("tail", strconv.Itoa(tail))
	}
	resp, err := c.send(ctx, http.MethodGet, withQuery(instancePath(node, workload)+"/logs", v), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if _, err := io.Copy(w, resp.Body); err != nil {
		return fmt.Errorf("logs of %s on %s: %w", workload, node, err)
	}
	return nil
}

// RestartWorkload queues a restart of workload on node, to be carried out
// when the node next hears from the hub, unless it expires first. existing
// reports that req's idempotency key matched a command queued before, which
// the hub returns (200 OK) instead of queueing another (202 Accepted).
func (c *Hub) RestartWorkload(ctx context.Context, node, workload string, req api.CommandRequest) (cmd api.Command, existing bool, err error) {
	body, err := json.Marshal(req)
	if err != nil {
		return cmd, false, fmt.Errorf("encode command: %w", err)
	}
	code, err := c.do(ctx, http.MethodPost, instancePath(node, workload)+":restart", body, &cmd)
	return cmd, code == http.StatusOK, err
}

// PutArtifact uploads the bytes of r into the hub's artifact store under
// ref ("sha256:<hex>"), which the hub verifies; nodes fetch it from there.
func (c *Hub) PutArtifact(ctx context.Context, ref string, r io.Reader) error {
	resp, err := c.send(ctx, http.MethodPut, "/v1/artifacts/"+url.PathEscape(ref), r)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// PushImage records an image archive, uploaded with PutArtifact, under
// the image names it holds.
func (c *Hub) PushImage(ctx context.Context, req api.ImagePush) ([]api.Image, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode image push: %w", err)
	}
	var out []api.Image
	if _, err := c.do(ctx, http.MethodPost, "/v1/images", body, &out); err != nil {
		return nil, err
	}
	return orEmpty(out), nil
}

// Images lists the hub's image store with the nodes that have each image.
func (c *Hub) Images(ctx context.Context) ([]api.Image, error) {
	var out []api.Image
	if _, err := c.do(ctx, http.MethodGet, "/v1/images", nil, &out); err != nil {
		return nil, err
	}
	return orEmpty(out), nil
}

// Commands lists the one-off commands queued for node and their fate.
func (c *Hub) Commands(ctx context.Context, node string) ([]api.Command, error) {
	var cmds []api.Command
	if _, err := c.do(ctx, http.MethodGet, "/v1/nodes/"+url.PathEscape(node)+"/commands", nil, &cmds); err != nil {
		return nil, err
	}
	return orEmpty(cmds), nil
}

// orEmpty makes a list the hub answered as null (or not at all) empty.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func instancePath(node, workload string) string {
	return "/v1/nodes/" + url.PathEscape(node) + "/workloads/" + url.PathEscape(workload)
}

func withQuery(path string, v url.Values) string {
	if len(v) == 0 {
		return path
	}
	return path + "?" + v.Encode()
}

// do sends one request and decodes a 2xx answer into out (if non-nil). It
// returns the answer's status code.
func (c *Hub) do(ctx context.Context, method, path string, body []byte, out any) (int, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	resp, err := c.send(ctx, method, path, rd)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if out == nil {
		return resp.StatusCode, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return resp.StatusCode, fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return resp.StatusCode, nil
}

// send sends one request and returns a 2xx response, whose body the caller
// closes; any other answer becomes an *APIError.
func (c *Hub) send(ctx context.Context, method, path string, body io.Reader) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	return exchange(c.hc, req, "hub", c.transportError)
}

// HubUnreachableError means nothing answered at the hub's address.
type HubUnreachableError struct {
	URL string
	Err error
}

func (e *HubUnreachableError) Error() string {
	return fmt.Sprintf("cannot reach the hub at %s: is `atoll hub` (or `atoll dev`) running?", e.URL)
}

func (e *HubUnreachableError) Unwrap() error { return e.Err }

// transportError explains a failure to exchange a request with the hub.
func (c *Hub) transportError(err error) error {
	if op, ok := errors.AsType[*net.OpError](err); ok && op.Op == "dial" {
		return &HubUnreachableError{URL: c.base, Err: err}
	}
	return fmt.Errorf("talk to the hub at %s: %w", c.base, err)
}
