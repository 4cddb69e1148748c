package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"

	"atoll.dev/atoll/internal/agent/supervisor"
	"atoll.dev/atoll/internal/httpjson"
	"atoll.dev/atoll/internal/manifest"
)

// APIError is an error answer from the agent or the hub.
type APIError struct {
	// StatusCode is the HTTP status of the answer.
	StatusCode int
	// Message is the server's explanation. For an invalid manifest it lists
	// every problem, one per line.
	Message string
	// Fields lists the problems of an invalid manifest, one per field.
	Fields []httpjson.FieldError
}

func (e *APIError) Error() string { return e.Message }

// Is reports a 404 answer as supervisor.ErrWorkloadNotFound, so callers can
// use errors.Is as they would with the agent's own errors.
func (e *APIError) Is(target error) bool {
	return target == supervisor.ErrWorkloadNotFound && e.StatusCode == http.StatusNotFound
}

// exchange sends req and returns a 2xx response, whose body the caller
// closes. A transport failure goes through explain; any other answer
// becomes an *APIError, its message naming every field problem, one per
// line. who names the server in messages ("agent", "hub").
func exchange(hc *http.Client, req *http.Request, who string, explain func(error) error) (*http.Response, error) {
	resp, err := hc.Do(req)
	if err != nil {
		return nil, explain(err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var body httpjson.ErrorResponse
	if err := json.Unmarshal(b, &body); err != nil || body.Error == "" {
		msg := strings.TrimSpace(string(b))
		if msg == "" {
			msg = "no explanation"
		}
		return nil, &APIError{StatusCode: resp.StatusCode, Message: fmt.Sprintf("%s answered %s: %s", who, resp.Status, msg)}
	}
	e := &APIError{StatusCode: resp.StatusCode, Message: body.Error, Fields: body.Fields}
	for _, f := range body.Fields {
		line := manifest.FieldError{Source: f.Source, Path: f.Path, Msg: f.Message}.Error()
		if !strings.Contains(e.Message, line) {
			e.Message += "\n" + line
		}
	}
	return nil, e
}

// UnreachableError means no agent listens on the socket: the file is missing
// or nobody accepts connections on it.
type UnreachableError struct {
	Socket string
	Err    error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach the agent at %s: is `atoll agent --data %s` running?",
		e.Socket, filepath.Dir(e.Socket))
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// transportError explains a failure to exchange a request with the agent.
func (c *Local) transportError(err error) error {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		switch {
		case errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ENOTDIR), errors.Is(err, syscall.ECONNREFUSED):
			return &UnreachableError{Socket: c.socket, Err: err}
		case errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
			return fmt.Errorf("no permission to use the agent socket %s (mode 0600): run as the agent's user: %w",
				c.socket, err)
		}
	}
	return fmt.Errorf("talk to the agent at %s: %w", c.socket, err)
}
