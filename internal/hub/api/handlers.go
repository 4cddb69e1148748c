package api

import (
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"atoll.dev/atoll/internal/httpjson"

	"atoll.dev/atoll/internal/manifest"
)

func (s *server) apply(w http.ResponseWriter, r *http.Request) {
	var ws []manifest.Workload
	if err := decodeBody(w, r, MaxApplyBody, &ws, false); err != nil {
		s.fail(w, r, err)
		return
	}
	for i := range ws {
		ws[i].Source = fmt.Sprintf("request#%d", i+1)
	}
	res, err := s.b.Apply(r.Context(), ws)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, nonNil(res))
}

func (s *server) workloads(w http.ResponseWriter, r *http.Request) {
	if !noQuery(w, r) {
		return
	}
	ws, err := s.b.Workloads(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, nonNil(ws))
}

func (s *server) workload(w http.ResponseWriter, r *http.Request) {
	n, ok := name(w, r, "name", "workload")
	if !ok {
		return
	}
	wl, err := s.b.Workload(r.Context(), n)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, wl)
}

func (s *server) deleteWorkload(w http.ResponseWriter, r *http.Request) {
	n, ok := name(w, r, "name", "workload")
	if !ok {
		return
	}
	if err := s.b.DeleteWorkload(r.Context(), n); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) nodes(w http.ResponseWriter, r *http.Request) {
	if !noQuery(w, r) {
		return
	}
	ns, err := s.b.Nodes(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, nonNil(ns))
}

func (s *server) node(w http.ResponseWriter, r *http.Request) {
	n, ok := name(w, r, "node", "node")
	if !ok {
		return
	}
	node, err := s.b.Node(r.Context(), n)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, node)
}

func (s *server) commands(w http.ResponseWriter, r *http.Request) {
	n, ok := name(w, r, "node", "node")
	if !ok {
		return
	}
	cmds, err := s.b.Commands(r.Context(), n)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, nonNil(cmds))
}

// action serves POST /v1/nodes/{node}/workloads/{name}:{verb}.
func (s *server) action(w http.ResponseWriter, r *http.Request) {
	node, ok := name(w, r, "node", "node")
	if !ok {
		return
	}
	workload, verb, found := strings.Cut(r.PathValue("action"), ":")
	if !found || verb != "restart" {
		httpjson.WriteError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s %s (the action is {name}:restart)", r.Method, r.URL.Path))
		return
	}
	if !isDNSLabel(workload) {
		httpjson.WriteError(w, http.StatusBadRequest, fmt.Sprintf("%q is not a valid workload name (a DNS label: lowercase letters, digits and '-', at most 63)", workload))
		return
	}
	var req CommandRequest
	if err := decodeBody(w, r, MaxCommandBody, &req, true); err != nil {
		s.fail(w, r, err)
		return
	}
	if h := r.Header.Get(IdempotencyKeyHeader); h != "" {
		if req.IdempotencyKey != "" && req.IdempotencyKey != h {
			httpjson.WriteError(w, http.StatusBadRequest, fmt.Sprintf("the %s header (%q) and idempotencyKey (%q) differ", IdempotencyKeyHeader, h, req.IdempotencyKey))
			return
		}
		req.IdempotencyKey = h
	}
	cmd, created, err := s.b.Restart(r.Context(), node, workload, req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	code := http.StatusOK
	if created {
		code = http.StatusAccepted
	}
	httpjson.WriteJSON(w, code, cmd)
}

func (s *server) logs(w http.ResponseWriter, r *http.Request) {
	node, ok := name(w, r, "node", "node")
	if !ok {
		return
	}
	workload, ok := name(w, r, "name", "workload")
	if !ok {
		return
	}
	q, ok := query(w, r, "tail")
	if !ok {
		return
	}
	tail := 0
	if v := q.Get("tail"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 || n > MaxTail {
			httpjson.WriteError(w, http.StatusBadRequest, fmt.Sprintf("tail=%q: want a whole number of lines from 0 to %d (0: the agent's default)", v, MaxTail))
			return
		}
		tail = n
	}
	data, err := s.b.Logs(r.Context(), node, workload, tail)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	w.Write(data)
}

func (s *server) events(w http.ResponseWriter, r *http.Request) {
	q, ok := query(w, r, "node", "since", "limit")
	if !ok {
		return
	}
	eq := EventQuery{Node: q.Get("node")}
	if !nodeParam(w, eq.Node) {
		return
	}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			httpjson.WriteError(w, http.StatusBadRequest, fmt.Sprintf("since=%q: want an RFC 3339 time such as 2026-11-23T10:00:00Z", v))
			return
		}
		eq.Since = t
	}
	if eq.Limit, ok = limitParam(w, q, DefaultEventLimit, MaxEventLimit); !ok {
		return
	}
	evs, err := s.b.Events(r.Context(), eq)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, nonNil(evs))
}

func (s *server) telemetry(w http.ResponseWriter, r *http.Request) {
	q, ok := query(w, r, "node", "subject", "after", "limit")
	if !ok {
		return
	}
	tq := TelemetryQuery{Node: q.Get("node"), Subject: q.Get("subject")}
	if !nodeParam(w, tq.Node) {
		return
	}
	if v := q.Get("after"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			httpjson.WriteError(w, http.StatusBadRequest, fmt.Sprintf("after=%q: want a stream sequence, a whole number from 0", v))
			return
		}
		tq.After = &n
	}
	if tq.Limit, ok = limitParam(w, q, DefaultTelemetryLimit, MaxTelemetryLimit); !ok {
		return
	}
	recs, err := s.b.Telemetry(r.Context(), tq)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, nonNil(recs))
}

// nodeParam checks a node= parameter (empty: every node); it answers 400
// and returns false when it is not a node name.
func nodeParam(w http.ResponseWriter, node string) bool {
	if node != "" && !isDNSLabel(node) {
		httpjson.WriteError(w, http.StatusBadRequest, fmt.Sprintf("node=%q: not a valid node name (a DNS label)", node))
		return false
	}
	return true
}

// limitParam reads limit= (def when absent); it answers 400 and returns
// false when it is not from 1 to max.
func limitParam(w http.ResponseWriter, q url.Values, def, max int) (int, bool) {
	v := q.Get("limit")
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > max {
		httpjson.WriteError(w, http.StatusBadRequest, fmt.Sprintf("limit=%q: want a whole number from 1 to %d", v, max))
		return 0, false
	}
	return n, true
}

// query parses the query string, answering 400 for a malformed one, a
// parameter given twice or one not in allowed.
func query(w http.ResponseWriter, r *http.Request, allowed ...string) (url.Values, bool) {
	q, err := url.ParseQuery(r.URL.RawQuery)
	if err != nil {
		httpjson.WriteError(w, http.StatusBadRequest, fmt.Sprintf("query: %v", err))
		return nil, false
	}
	for k, vs := range q {
		known := false
		for _, a := range allowed {
			known = known || a == k
		}
		switch {
		case !known && len(allowed) == 0:
			httpjson.WriteError(w, http.StatusBadRequest, fmt.Sprintf("query parameter %q: this endpoint takes none", k))
			return nil, false
		case !known:
			httpjson.WriteError(w, http.StatusBadRequest, fmt.Sprintf("query parameter %q: unknown (known: %s)", k, strings.Join(allowed, ", ")))
			return nil, false
		case len(vs) > 1:
			httpjson.WriteError(w, http.StatusBadRequest, fmt.Sprintf("query parameter %q given %d times", k, len(vs)))
			return nil, false
		}
	}
	return q, true
}

func noQuery(w http.ResponseWriter, r *http.Request) bool {
	_, ok := query(w, r)
	return ok
}

func (s *server) putArtifact(w http.ResponseWriter, r *http.Request) {
	ab, ok := s.b.(ArtifactBackend)
	if !ok {
		httpjson.WriteError(w, http.StatusNotImplemented, "this hub has no artifact store")
		return
	}
	ref := r.PathValue("ref")
	if err := ab.PutArtifact(r.Context(), ref, http.MaxBytesReader(w, r.Body, MaxArtifactBody)); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *server) imageBackend(w http.ResponseWriter) (ImageBackend, bool) {
	ib, ok := s.b.(ImageBackend)
	if !ok {
		httpjson.WriteError(w, http.StatusNotImplemented, "this hub has no image store")
	}
	return ib, ok
}

func (s *server) pushImage(w http.ResponseWriter, r *http.Request) {
	ib, ok := s.imageBackend(w)
	if !ok {
		return
	}
	var req ImagePush
	if err := decodeBody(w, r, MaxApplyBody, &req, false); err != nil {
		s.fail(w, r, err)
		return
	}
	res, err := ib.PushImage(r.Context(), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, nonNil(res))
}

func (s *server) images(w http.ResponseWriter, r *http.Request) {
	ib, ok := s.imageBackend(w)
	if !ok || !noQuery(w, r) {
		return
	}
	res, err := ib.Images(r.Context())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, nonNil(res))
}
