package cli

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/wire"
)

// fakeHub is a minimal hub API: it serves the nodes, workloads, events and
// logs it is given, keeps applied workloads, queues restarts and records
// every request, one at a time. Set Fail to answer everything with that
// error.
type fakeHub struct {
	Nodes     []api.Node
	Workloads []api.Workload
	Events    []wire.Event
	Telemetry []api.TelemetryRecord
	Images    []api.Image
	Logs      string
	Fail      *api.ErrorResponse
	FailCode  int

	mu       sync.Mutex
	requests []string
	commands map[string]api.Command // by idempotency key
	lastBody []byte
	// artifacts are "<ref> <bytes>" of every artifact uploaded.
	artifacts []string
}

// serveHub serves h and returns its URL.
func serveHub(t *testing.T, h *fakeHub) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/workloads:apply", h.apply)
	mux.HandleFunc("GET /v1/workloads", func(w http.ResponseWriter, _ *http.Request) { fakeAnswer(w, 200, h.Workloads) })
	mux.HandleFunc("GET /v1/workloads/{name}", h.workload)
	mux.HandleFunc("DELETE /v1/workloads/{name}", h.deleteWorkload)
	mux.HandleFunc("GET /v1/nodes", func(w http.ResponseWriter, _ *http.Request) { fakeAnswer(w, 200, h.Nodes) })
	mux.HandleFunc("GET /v1/nodes/{name}", h.node)
	mux.HandleFunc("GET /v1/events", func(w http.ResponseWriter, _ *http.Request) { fakeAnswer(w, 200, h.Events) })
	mux.HandleFunc("GET /v1/telemetry", h.telemetry)
	mux.HandleFunc("GET /v1/nodes/{node}/workloads/{name}/logs", func(w http.ResponseWriter, _ *http.Request) {
		w.Write([]byte(h.Logs))
	})
	mux.HandleFunc("POST /v1/nodes/{node}/workloads/{action}", h.restart)
	mux.HandleFunc("GET /v1/images", func(w http.ResponseWriter, _ *http.Request) { fakeAnswer(w, 200, h.Images) })
	mux.HandleFunc("PUT /v1/artifacts/{ref}", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.artifacts = append(h.artifacts, r.PathValue("ref")+" "+strconv.Itoa(len(b)))
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("POST /v1/images", func(w http.ResponseWriter, r *http.Request) {
		var req api.ImagePush
		json.NewDecoder(r.Body).Decode(&req)
		var out []api.Image
		for _, n := range req.Names {
			out = append(out, api.Image{Name: n, Ref: req.Ref, Size: 3 << 20})
		}
		fakeAnswer(w, 200, out)
	})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.mu.Lock()
		defer h.mu.Unlock()
		line := r.Method + " " + r.URL.Path
		if r.URL.RawQuery != "" {
			line += "?" + r.URL.RawQuery
		}
		h.requests = append(h.requests, line)
		if h.Fail != nil {
			fakeAnswer(w, h.FailCode, h.Fail)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

// AddTelemetry stores more records, as nodes forwarding them would.
func (h *fakeHub) AddTelemetry(recs ...api.TelemetryRecord) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.Telemetry = append(h.Telemetry, recs...)
}

// Requests returns "METHOD /path?query" for every request so far.
func (h *fakeHub) Requests() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.requests)
}

// LastBody returns the request of the last restart.
func (h *fakeHub) LastBody() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lastBody
}

func fakeAnswer(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func (h *fakeHub) apply(w http.ResponseWriter, r *http.Request) {
	var ws []manifest.Workload
	if err := json.NewDecoder(r.Body).Decode(&ws); err != nil {
		fakeAnswer(w, 400, api.ErrorResponse{Error: err.Error()})
		return
	}
	var res []api.ApplyResult
	for _, wl := range ws {
		action := api.ActionCreated
		if slices.ContainsFunc(h.Workloads, func(x api.Workload) bool { return x.Name == wl.Metadata.Name }) {
			action = api.ActionConfigured
		} else {
			h.Workloads = append(h.Workloads, api.Workload{Name: wl.Metadata.Name, Targets: len(h.Nodes)})
		}
		res = append(res, api.ApplyResult{Name: wl.Metadata.Name, Action: action, Targets: len(h.Nodes)})
	}
	fakeAnswer(w, 200, res)
}

func (h *fakeHub) workload(w http.ResponseWriter, r *http.Request) {
	i := slices.IndexFunc(h.Workloads, func(x api.Workload) bool { return x.Name == r.PathValue("name") })
	if i < 0 {
		fakeAnswer(w, 404, api.ErrorResponse{Error: `workload "` + r.PathValue("name") + `" not found`})
		return
	}
	fakeAnswer(w, 200, h.Workloads[i])
}

func (h *fakeHub) deleteWorkload(w http.ResponseWriter, r *http.Request) {
	n := len(h.Workloads)
	h.Workloads = slices.DeleteFunc(h.Workloads, func(x api.Workload) bool { return x.Name == r.PathValue("name") })
	if len(h.Workloads) == n {
		fakeAnswer(w, 404, api.ErrorResponse{Error: `workload "` + r.PathValue("name") + `" not found`})
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// telemetry answers the latest limit records, or with after= the first
// limit of those stored after that stream sequence.
func (h *fakeHub) telemetry(w http.ResponseWriter, r *http.Request) {
	limit := api.DefaultTelemetryLimit
	if v := r.URL.Query().Get("limit"); v != "" {
		limit, _ = strconv.Atoi(v)
	}
	recs := h.Telemetry
	if v := r.URL.Query().Get("after"); v != "" {
		after, _ := strconv.ParseUint(v, 10, 64)
		recs = slices.DeleteFunc(slices.Clone(recs), func(x api.TelemetryRecord) bool { return x.StreamSeq <= after })
		recs = recs[:min(limit, len(recs))]
	} else {
		recs = recs[max(len(recs)-limit, 0):]
	}
	fakeAnswer(w, 200, recs)
}

func (h *fakeHub) node(w http.ResponseWriter, r *http.Request) {
	i := slices.IndexFunc(h.Nodes, func(x api.Node) bool { return x.Name == r.PathValue("name") })
	if i < 0 {
		fakeAnswer(w, 404, api.ErrorResponse{Error: `node "` + r.PathValue("name") + `" not found`})
		return
	}
	fakeAnswer(w, 200, h.Nodes[i])
}

// restart queues a command that expires TTL after testNow; a known
// idempotency key returns the first command with 200 instead of 202.
func (h *fakeHub) restart(w http.ResponseWriter, r *http.Request) {
	name, ok := strings.CutSuffix(r.PathValue("action"), ":restart")
	if !ok {
		http.NotFound(w, r)
		return
	}
	var req api.CommandRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		fakeAnswer(w, 400, api.ErrorResponse{Error: err.Error()})
		return
	}
	h.lastBody, _ = json.Marshal(req)
	if cmd, ok := h.commands[req.IdempotencyKey]; ok && req.IdempotencyKey != "" {
		fakeAnswer(w, http.StatusOK, cmd)
		return
	}
	ttl, err := time.ParseDuration(req.TTL)
	if err != nil {
		fakeAnswer(w, 400, api.ErrorResponse{Error: "ttl: " + err.Error()})
		return
	}
	id := req.IdempotencyKey
	if id == "" {
		id = "generated-1"
	}
	cmd := api.Command{Command: wire.Command{ID: id, Kind: "restart", Workload: name, Created: testNow,
		Expires: testNow.Add(ttl)}, Node: r.PathValue("node"), State: "queued"}
	if h.commands == nil {
		h.commands = map[string]api.Command{}
	}
	h.commands[req.IdempotencyKey] = cmd
	fakeAnswer(w, http.StatusAccepted, cmd)
}
