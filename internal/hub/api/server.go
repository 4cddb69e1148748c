package api

// The server side of the contract: NewHandler maps the endpoints onto a
// Backend, validates paths, queries and bodies, and turns errors into
// ErrorResponse answers with the status of their kind.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"time"

	"atoll.dev/atoll/internal/httpjson"

	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/wire"
)

// Request limits.
const (
	// MaxApplyBody bounds an apply request's body.
	MaxApplyBody = 8 << 20
	// MaxCommandBody bounds a command request's body.
	MaxCommandBody = 64 << 10
	// DefaultEventLimit and MaxEventLimit bound GET /v1/events.
	DefaultEventLimit = 100
	MaxEventLimit     = 1000
	// DefaultTelemetryLimit and MaxTelemetryLimit bound GET /v1/telemetry.
	DefaultTelemetryLimit = 100
	MaxTelemetryLimit     = 1000
	// MaxTail bounds the tail parameter of the logs endpoint.
	MaxTail = 100000
	// MaxArtifactBody bounds an artifact upload.
	MaxArtifactBody = 256 << 20
)

// IdempotencyKeyHeader carries CommandRequest.IdempotencyKey.
const IdempotencyKeyHeader = "Idempotency-Key"

// EventQuery selects events for GET /v1/events.
type EventQuery struct {
	// Node is empty for every node.
	Node string
	// Since is zero for the latest Limit events.
	Since time.Time
	Limit int
}

// Backend is what the server needs from the hub. Errors made with Errorf
// carry their HTTP status; manifest.FieldErrors from Apply answer 400 with
// Fields; anything else is a 500.
type Backend interface {
	Apply(ctx context.Context, ws []manifest.Workload) ([]ApplyResult, error)
	Workloads(ctx context.Context) ([]Workload, error)
	Workload(ctx context.Context, name string) (Workload, error)
	DeleteWorkload(ctx context.Context, name string) error
	Nodes(ctx context.Context) ([]Node, error)
	Node(ctx context.Context, name string) (Node, error)
	Events(ctx context.Context, q EventQuery) ([]wire.Event, error)
	// Telemetry returns an ErrInvalid error for a malformed subject.
	Telemetry(ctx context.Context, q TelemetryQuery) ([]TelemetryRecord, error)
	Logs(ctx context.Context, node, workload string, tail int) ([]byte, error)
	// Restart returns created=false when the idempotency key named a
	// command queued before.
	Restart(ctx context.Context, node, workload string, req CommandRequest) (cmd Command, created bool, err error)
	Commands(ctx context.Context, node string) ([]Command, error)
}

// ArtifactBackend is the optional ability of a Backend to store
// artifacts; without it PUT /v1/artifacts/{ref} answers 501.
type ArtifactBackend interface {
	// PutArtifact stores r's bytes as ref ("sha256:<hex>") once they hash
	// to it.
	PutArtifact(ctx context.Context, ref string, r io.Reader) error
}

// ImageBackend is the optional ability of a Backend to keep an image
// store; without it /v1/images answers 501.
type ImageBackend interface {
	// PushImage returns an ErrInvalid error for a bad name or reference
	// and an ErrNotFound error when the archive is not an artifact.
	PushImage(ctx context.Context, req ImagePush) ([]Image, error)
	Images(ctx context.Context) ([]Image, error)
}

type server struct {
	b   Backend
	log *slog.Logger
}

// Option adds an optional endpoint to NewHandler's.
type Option func(*http.ServeMux)

// MetricsPath is where WithMetrics serves.
const MetricsPath = "/metrics"

// WithMetrics serves GET /metrics from h: the Prometheus exposition of
// package hub/metrics.
func WithMetrics(h http.Handler) Option {
	return func(mux *http.ServeMux) {
		mux.Handle(MetricsPath, httpjson.Methods{http.MethodGet: h.ServeHTTP})
	}
}

// NewHandler serves the /v1 API from b, and the endpoints opts add. log
// receives server errors; nil discards them.
func NewHandler(b Backend, log *slog.Logger, opts ...Option) http.Handler {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &server{b: b, log: log}
	mux := http.NewServeMux()
	// Paths are routed by the mux and methods by httpjson.Methods, so that a wrong
	// method gets a JSON 405 rather than the mux's plain-text one.
	mux.Handle("/v1/workloads:apply", httpjson.Methods{http.MethodPost: s.apply})
	mux.Handle("/v1/workloads", httpjson.Methods{http.MethodGet: s.workloads})
	mux.Handle("/v1/workloads/{name}", httpjson.Methods{http.MethodGet: s.workload, http.MethodDelete: s.deleteWorkload})
	mux.Handle("/v1/nodes", httpjson.Methods{http.MethodGet: s.nodes})
	mux.Handle("/v1/nodes/{node}", httpjson.Methods{http.MethodGet: s.node})
	mux.Handle("/v1/nodes/{node}/commands", httpjson.Methods{http.MethodGet: s.commands})
	// ServeMux wildcards span whole segments, so "{name}:restart" is split
	// by s.action.
	mux.Handle("/v1/nodes/{node}/workloads/{action}", httpjson.Methods{http.MethodPost: s.action})
	mux.Handle("/v1/nodes/{node}/workloads/{name}/logs", httpjson.Methods{http.MethodGet: s.logs})
	mux.Handle("/v1/events", httpjson.Methods{http.MethodGet: s.events})
	mux.Handle("/v1/telemetry", httpjson.Methods{http.MethodGet: s.telemetry})
	mux.Handle("/v1/artifacts/{ref}", httpjson.Methods{http.MethodPut: s.putArtifact})
	mux.Handle("/v1/images", httpjson.Methods{http.MethodGet: s.images, http.MethodPost: s.pushImage})
	for _, o := range opts {
		o(mux)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		httpjson.WriteError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s %s", r.Method, r.URL.Path))
	})
	return mux
}

func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	if fields := httpjson.FieldErrors(err); fields != nil {
		httpjson.WriteJSON(w, http.StatusBadRequest, ErrorResponse{Error: err.Error(), Fields: fields})
		return
	}
	if mb, ok := errors.AsType[*http.MaxBytesError](err); ok {
		httpjson.WriteError(w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body larger than %d bytes", mb.Limit))
		return
	}
	code := statusOf(err)
	if code == http.StatusInternalServerError {
		s.log.Error("api", "method", r.Method, "path", r.URL.Path, "err", err)
	}
	httpjson.WriteError(w, code, err.Error())
}

// decodeBody reads exactly one JSON value of at most limit bytes,
// rejecting unknown fields, so that a misspelt field is an error rather
// than silently ignored. An empty body leaves v alone when emptyOK.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, v any, emptyOK bool) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, limit))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) && emptyOK {
			return nil
		}
		if mb, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return mb
		}
		return Errorf(ErrInvalid, "decode request body: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		if mb, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return mb
		}
		return Errorf(ErrInvalid, "decode request body: more than one JSON value")
	}
	return nil
}

// name reads a path wildcard that must be a DNS label (a node or
// workload name); it answers 400 and returns false otherwise.
func name(w http.ResponseWriter, r *http.Request, wildcard, what string) (string, bool) {
	v := r.PathValue(wildcard)
	if !isDNSLabel(v) {
		httpjson.WriteError(w, http.StatusBadRequest, fmt.Sprintf("%q is not a valid %s name (a DNS label: lowercase letters, digits and '-', at most 63)", v, what))
		return "", false
	}
	return v, true
}

func isDNSLabel(s string) bool {
	if len(s) == 0 || len(s) > 63 || s[0] == '-' || s[len(s)-1] == '-' {
		return false
	}
	for _, c := range []byte(s) {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
