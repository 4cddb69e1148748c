package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/wire"
)

// fake is a Backend that records its calls and returns err.
type fake struct {
	err     error
	created bool
	calls   []string
	query   api.EventQuery
	tmQuery api.TelemetryQuery
	req     api.CommandRequest
	tail    int
	sources []string
}

func (f *fake) call(s string) error { f.calls = append(f.calls, s); return f.err }

func (f *fake) Apply(_ context.Context, ws []manifest.Workload) ([]api.ApplyResult, error) {
	for _, w := range ws {
		f.sources = append(f.sources, w.Source)
	}
	return nil, f.call("apply")
}
func (f *fake) Workloads(context.Context) ([]api.Workload, error) { return nil, f.call("workloads") }
func (f *fake) Workload(_ context.Context, n string) (api.Workload, error) {
	return api.Workload{Name: n}, f.call("workload " + n)
}
func (f *fake) DeleteWorkload(_ context.Context, n string) error { return f.call("delete " + n) }
func (f *fake) Nodes(context.Context) ([]api.Node, error)        { return nil, f.call("nodes") }
func (f *fake) Node(_ context.Context, n string) (api.Node, error) {
	return api.Node{Name: n}, f.call("node " + n)
}
func (f *fake) Events(_ context.Context, q api.EventQuery) ([]wire.Event, error) {
	f.query = q
	return nil, f.call("events")
}
func (f *fake) Telemetry(_ context.Context, q api.TelemetryQuery) ([]api.TelemetryRecord, error) {
	f.tmQuery = q
	return nil, f.call("telemetry")
}
func (f *fake) Logs(_ context.Context, node, w string, tail int) ([]byte, error) {
	f.tail = tail
	return []byte("log\n"), f.call("logs " + node + " " + w)
}
func (f *fake) Restart(_ context.Context, node, w string, req api.CommandRequest) (api.Command, bool, error) {
	f.req = req
	return api.Command{Node: node}, f.created, f.call("restart " + node + " " + w)
}
func (f *fake) Commands(_ context.Context, node string) ([]api.Command, error) {
	return nil, f.call("commands " + node)
}
func (f *fake) PutArtifact(_ context.Context, ref string, r io.Reader) error {
	if _, err := io.Copy(io.Discard, r); err != nil {
		return err
	}
	return f.call("artifact " + ref)
}

func serve(t *testing.T, f *fake, method, path, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	rec := httptest.NewRecorder()
	api.NewHandler(f, nil).ServeHTTP(rec, req)
	resp := rec.Result()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestServer_ErrorKinds(t *testing.T) {
	for _, tc := range []struct {
		err  error
		code int
	}{
		{api.Errorf(api.ErrInvalid, "bad %s", "x"), 400},
		{api.Errorf(api.ErrNotFound, "workload w not found"), 404},
		{api.Errorf(api.ErrConflict, "node n disconnected since then"), 409},
		{api.Errorf(api.ErrBadGateway, "node n: boom"), 502},
		{api.Errorf(api.ErrUnavailable, "no agent"), 503},
		{api.Errorf(api.ErrTimeout, "slow"), 504},
		{errors.New("disk on fire"), 500},
	} {
		resp, body := serve(t, &fake{err: tc.err}, "GET", "/v1/workloads/w", "")
		var er api.ErrorResponse
		if resp.StatusCode != tc.code || json.Unmarshal([]byte(body), &er) != nil || er.Error != tc.err.Error() {
			t.Errorf("%v: %d %s, want %d with the message alone", tc.err, resp.StatusCode, body, tc.code)
		}
	}
}

func TestServer_ApplyFieldErrors(t *testing.T) {
	f := &fake{err: manifest.FieldErrors{{Source: "request#1", Path: "spec.runtime", Msg: "required"}}}
	resp, body := serve(t, f, "POST", "/v1/workloads:apply", `[{"apiVersion":"atoll.dev/v1"},{}]`)
	var er api.ErrorResponse
	if resp.StatusCode != 400 || json.Unmarshal([]byte(body), &er) != nil || len(er.Fields) != 1 ||
		er.Fields[0] != (api.FieldError{Source: "request#1", Path: "spec.runtime", Message: "required"}) {
		t.Fatalf("apply with field errors = %d %s", resp.StatusCode, body)
	}
	if strings.Join(f.sources, ",") != "request#1,request#2" {
		t.Fatalf("sources = %v, want each workload named by its place in the request", f.sources)
	}
}

func TestServer_Restart(t *testing.T) {
	f := &fake{created: true}
	resp, _ := serve(t, f, "POST", "/v1/nodes/n1/workloads/web:restart", "", api.IdempotencyKeyHeader, "k1")
	if resp.StatusCode != http.StatusAccepted || f.req.IdempotencyKey != "k1" || f.calls[0] != "restart n1 web" {
		t.Fatalf("restart = %d, req %+v, calls %v", resp.StatusCode, f.req, f.calls)
	}
	f = &fake{created: false}
	resp, _ = serve(t, f, "POST", "/v1/nodes/n1/workloads/web:restart", `{"ttl":"5m","idempotencyKey":"k1"}`, api.IdempotencyKeyHeader, "k1")
	if resp.StatusCode != http.StatusOK || f.req != (api.CommandRequest{IdempotencyKey: "k1", TTL: "5m"}) {
		t.Fatalf("repeat = %d, req %+v", resp.StatusCode, f.req)
	}
	for _, path := range []string{"/v1/nodes/n1/workloads/Web:restart", "/v1/nodes/N1/workloads/web:restart"} {
		f = &fake{}
		if resp, _ := serve(t, f, "POST", path, ""); resp.StatusCode != 400 || len(f.calls) != 0 {
			t.Fatalf("%s = %d, calls %v; want 400 before the backend", path, resp.StatusCode, f.calls)
		}
	}
}

func TestServer_Queries(t *testing.T) {
	f := &fake{}
	resp, body := serve(t, f, "GET", "/v1/events?node=n1&since=2026-03-01T12:00:00Z&limit=7", "")
	want := api.EventQuery{Node: "n1", Since: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), Limit: 7}
	if resp.StatusCode != 200 || strings.TrimSpace(body) != "[]" || f.query.Node != want.Node ||
		!f.query.Since.Equal(want.Since) || f.query.Limit != want.Limit {
		t.Fatalf("events = %d %s, query %+v", resp.StatusCode, body, f.query)
	}
	f = &fake{}
	serve(t, f, "GET", "/v1/events", "")
	if f.query.Limit != api.DefaultEventLimit || !f.query.Since.IsZero() {
		t.Fatalf("default query = %+v", f.query)
	}
	f = &fake{}
	resp, body = serve(t, f, "GET", "/v1/nodes/n1/workloads/web/logs?tail=20", "")
	if resp.StatusCode != 200 || body != "log\n" || f.tail != 20 || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/plain") {
		t.Fatalf("logs = %d %q %v tail %d", resp.StatusCode, body, resp.Header, f.tail)
	}
}

func TestServer_PutArtifact(t *testing.T) {
	f := &fake{}
	resp, body := serve(t, f, "PUT", "/v1/artifacts/sha256:abc", "bytes")
	if resp.StatusCode != http.StatusNoContent || body != "" || f.calls[0] != "artifact sha256:abc" {
		t.Fatalf("put = %d %q, calls %v", resp.StatusCode, body, f.calls)
	}
	resp, _ = serve(t, f, "PUT", "/v1/artifacts/sha256:abc", "bytes")
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("second put = %d", resp.StatusCode)
	}
	// A backend without the ability answers 501.
	req := httptest.NewRequest("PUT", "/v1/artifacts/sha256:abc", strings.NewReader("x"))
	rec := httptest.NewRecorder()
	api.NewHandler(struct{ api.Backend }{&fake{}}, nil).ServeHTTP(rec, req)
	if rec.Code != http.StatusNotImplemented {
		t.Fatalf("put without an artifact store = %d, want 501", rec.Code)
	}
	big := strings.Repeat("x", api.MaxArtifactBody+1)
	resp, body = serve(t, &fake{}, "PUT", "/v1/artifacts/sha256:abc", big)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(body, "larger than") {
		t.Fatalf("oversized put = %d %s, want 413", resp.StatusCode, body)
	}
}

func TestServer_Telemetry(t *testing.T) {
	f := &fake{}
	resp, body := serve(t, f, "GET", "/v1/telemetry?node=n1&subject=sensors.>&after=0&limit=7", "")
	q := f.tmQuery
	if resp.StatusCode != 200 || strings.TrimSpace(body) != "[]" || q.Node != "n1" || q.Subject != "sensors.>" ||
		q.After == nil || *q.After != 0 || q.Limit != 7 {
		t.Fatalf("telemetry = %d %s, query %+v", resp.StatusCode, body, q)
	}
	f = &fake{}
	serve(t, f, "GET", "/v1/telemetry", "")
	if q := f.tmQuery; q.Limit != api.DefaultTelemetryLimit || q.After != nil || q.Node != "" || q.Subject != "" {
		t.Fatalf("default query = %+v", q)
	}
	for _, tc := range []struct{ query, msg string }{
		{"limit=0", `limit=\"0\": want a whole number from 1 to 1000`},
		{"limit=1001", "from 1 to 1000"},
		{"limit=ten", "from 1 to 1000"},
		{"after=-1", `after=\"-1\": want a stream sequence`},
		{"node=N1", `node=\"N1\": not a valid node name`},
		{"nodes=n1", `query parameter \"nodes\": unknown (known: node, subject, after, limit)`},
		{"limit=1&limit=2", "given 2 times"},
	} {
		f := &fake{}
		resp, body := serve(t, f, "GET", "/v1/telemetry?"+tc.query, "")
		var er api.ErrorResponse
		if resp.StatusCode != 400 || json.Unmarshal([]byte(body), &er) != nil || !strings.Contains(body, tc.msg) || len(f.calls) != 0 {
			t.Errorf("?%s = %d %s, calls %v; want 400 with %s", tc.query, resp.StatusCode, body, f.calls, tc.msg)
		}
	}
	// The backend's verdict on a subject pattern is a 400 too.
	resp, body = serve(t, &fake{err: api.Errorf(api.ErrInvalid, "invalid telemetry query: subject %q has an empty token", "a..b")}, "GET", "/v1/telemetry?subject=a..b", "")
	if resp.StatusCode != 400 || !strings.Contains(body, "empty token") {
		t.Fatalf("bad subject = %d %s", resp.StatusCode, body)
	}
}

func TestServer_ImagesWithoutStore(t *testing.T) {
	for _, method := range []string{"GET", "POST"} {
		resp, body := serve(t, &fake{}, method, "/v1/images", `{"names":["a:1"],"ref":"sha256:abc"}`)
		if resp.StatusCode != http.StatusNotImplemented || !strings.Contains(body, "this hub has no image store") {
			t.Errorf("%s /v1/images without an image store = %d %s; want 501", method, resp.StatusCode, body)
		}
	}
}
