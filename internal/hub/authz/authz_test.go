package authz_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"atoll.dev/atoll/internal/httpjson"
	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/hub/authz"
	"atoll.dev/atoll/internal/hub/hubtest"
)

var testTime = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// recorder is an audit log in memory; set fail to make it refuse.
type recorder struct {
	mu      sync.Mutex
	entries []api.AuditEntry
	fail    error
}

func (r *recorder) Record(_ context.Context, e api.AuditEntry) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.entries = append(r.entries, e)
	return nil
}

func (r *recorder) all() []api.AuditEntry {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.entries)
}

// backend stands for the API: it notes every call it gets and answers
// 201 with the body it read.
type backend struct {
	mu    sync.Mutex
	calls []string
}

func (b *backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	b.mu.Lock()
	b.calls = append(b.calls, r.Method+" "+r.URL.Path)
	b.mu.Unlock()
	w.WriteHeader(http.StatusCreated)
	w.Write(body)
}

func (b *backend) called() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.calls)
}

// fixture is a guarded backend served over TLS with client certificates
// of every role.
type fixture struct {
	srv     *httptest.Server
	ca      *testCA
	rec     *recorder
	backend *backend
	certs   map[string]tls.Certificate // by role
	revoked *x509.Certificate
}

func newFixture(t *testing.T, audit authz.Recorder) *fixture {
	t.Helper()
	f := &fixture{ca: newTestCA(t), backend: &backend{}, certs: map[string]tls.Certificate{}}
	if audit == nil {
		f.rec = &recorder{}
		audit = f.rec
	}
	for _, role := range []string{"viewer", "operator", "admin", "node", ""} {
		f.certs[role] = f.ca.issue(t, "user-"+role, role)
	}
	revoked := f.ca.issue(t, "mallory", "admin")
	f.certs["revoked"] = revoked
	f.revoked = revoked.Leaf
	h := authz.Wrap(f.backend, authz.Config{
		Audit:   audit,
		Revoked: func(c *x509.Certificate) bool { return c.SerialNumber.Cmp(f.revoked.SerialNumber) == 0 },
		Clock:   hubtest.NewClock(testTime),
	})
	f.srv = serveTLS(t, h, f.ca)
	return f
}

// call makes one request as role ("none": without a certificate) and
// returns the status and the decoded error message, if any.
func (f *fixture) call(t *testing.T, role, method, path, body string) (int, string) {
	t.Helper()
	var cert *tls.Certificate
	if c, ok := f.certs[role]; ok {
		cert = &c
	}
	req, err := http.NewRequest(method, f.srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := clientOf(f.srv, cert).Do(req)
	if err != nil {
		t.Fatalf("%s %s as %s: %v", method, path, role, err)
	}
	defer resp.Body.Close()
	var e httpjson.ErrorResponse
	if resp.StatusCode >= 400 && method != http.MethodHead {
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil || e.Error == "" {
			t.Errorf("%s %s as %s: %d without a JSON error body (%v)", method, path, role, resp.StatusCode, err)
		}
	}
	return resp.StatusCode, e.Error
}

// routes are the API's endpoints (package api's, the lead's token, user
// and revoke ones, and /metrics) and the role each needs.
var routes = []struct {
	method, path, need string
}{
	{"GET", "/v1/workloads", "viewer"},
	{"GET", "/v1/workloads/web", "viewer"},
	{"HEAD", "/v1/workloads", "viewer"},
	{"POST", "/v1/workloads:apply", "operator"},
	{"DELETE", "/v1/workloads/web", "operator"},
	{"GET", "/v1/nodes", "viewer"},
	{"GET", "/v1/nodes/pi-1", "viewer"},
	{"GET", "/v1/nodes/pi-1/commands", "viewer"},
	{"POST", "/v1/nodes/pi-1/workloads/web:restart", "operator"},
	{"GET", "/v1/nodes/pi-1/workloads/web/logs", "viewer"},
	{"GET", "/v1/events", "viewer"},
	{"GET", "/v1/telemetry", "viewer"},
	{"PUT", "/v1/artifacts/sha256:00", "operator"},
	{"GET", "/v1/images", "viewer"},
	{"POST", "/v1/images", "operator"},
	{"PATCH", "/v1/workloads/web", "operator"},
	{"GET", "/v1/secrets", "viewer"},
	{"POST", "/v1/secrets:apply", "operator"},
	{"DELETE", "/v1/secrets/db", "operator"},
	{"GET", "/metrics", "viewer"},
	{"GET", "/v1/audit", "admin"},
	{"GET", "/v1/tokens", "admin"},
	{"POST", "/v1/tokens", "admin"},
	{"DELETE", "/v1/tokens/t1", "admin"},
	{"GET", "/v1/users", "admin"},
	{"POST", "/v1/users/alice/revoke", "admin"},
	{"POST", "/v1/nodes/pi-1/revoke", "admin"},
	{"POST", "/v1/nodes/pi-1/revoke/", "admin"},
	{"POST", "/v1/./tokens", "admin"},
}

func TestWrap_Roles(t *testing.T) {
	f := newFixture(t, nil)
	rank := map[string]int{"viewer": 1, "operator": 2, "admin": 3}
	for _, rt := range routes {
		for _, role := range []string{"viewer", "operator", "admin", "node", ""} {
			t.Run(rt.method+rt.path+"/"+role, func(t *testing.T) {
				code, msg := f.call(t, role, rt.method, rt.path, "")
				allowed := rank[role] >= rank[rt.need]
				switch {
				case allowed && code != http.StatusCreated:
					t.Errorf("%s %s as %q = %d %q; want it let through", rt.method, rt.path, role, code, msg)
				case !allowed && code != http.StatusForbidden:
					t.Errorf("%s %s as %q = %d; want 403", rt.method, rt.path, role, code)
				}
			})
		}
	}
}

func TestWrap_RefusalSaysWhichRoles(t *testing.T) {
	f := newFixture(t, nil)
	for _, tc := range []struct{ role, method, path, want string }{
		{"viewer", "POST", "/v1/workloads:apply", `POST /v1/workloads:apply needs role operator; "user-viewer" has role viewer`},
		{"operator", "POST", "/v1/tokens", `POST /v1/tokens needs role admin; "user-operator" has role operator`},
		{"node", "GET", "/v1/nodes", `"user-node" has role "node", which is not a user role`},
		{"", "GET", "/v1/nodes", `"user-" has role "", which is not a user role`},
	} {
		code, msg := f.call(t, tc.role, tc.method, tc.path, "")
		if code != http.StatusForbidden || !strings.Contains(msg, tc.want) {
			t.Errorf("%s %s as %s = %d %q; want 403 with %q", tc.method, tc.path, tc.role, code, msg, tc.want)
		}
	}
	if got := f.backend.called(); len(got) != 0 {
		t.Errorf("refused calls reached the API: %q", got)
	}
}

func TestWrap_Unauthenticated(t *testing.T) {
	f := newFixture(t, nil)
	for _, method := range []string{"GET", "POST"} {
		if code, msg := f.call(t, "none", method, "/v1/workloads", ""); code != http.StatusUnauthorized || !strings.Contains(msg, "no verified client certificate") {
			t.Errorf("%s without a certificate = %d %q; want 401", method, code, msg)
		}
		if code, msg := f.call(t, "revoked", method, "/v1/workloads", ""); code != http.StatusUnauthorized || !strings.Contains(msg, `"mallory"`) || !strings.Contains(msg, "revoked") {
			t.Errorf("%s with a revoked certificate = %d %q; want 401", method, code, msg)
		}
	}
	if got := f.backend.called(); len(got) != 0 {
		t.Errorf("unauthenticated calls reached the API: %q", got)
	}
	// The revoked caller is known and recorded; the anonymous one is not.
	es := f.rec.all()
	if len(es) != 1 || es[0].User != "mallory" || es[0].Status != http.StatusUnauthorized || es[0].Method != "POST" {
		t.Errorf("audit = %+v; want the revoked POST alone", es)
	}
}

// A server that asks for a certificate without verifying it must not let
// the middleware trust one.
func TestWrap_UnverifiedCertificate(t *testing.T) {
	ca := newTestCA(t)
	b := &backend{}
	srv := serveTLS(t, authz.Wrap(b, authz.Config{Audit: &recorder{}}), nil)
	cert := ca.issue(t, "eve", "admin")
	resp, err := clientOf(srv, &cert).Get(srv.URL + "/v1/nodes")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || len(b.called()) != 0 {
		t.Errorf("unverified certificate = %d, calls %q; want 401 and none", resp.StatusCode, b.called())
	}
}

func TestWrap_AuditsChangesOnly(t *testing.T) {
	f := newFixture(t, nil)
	body := `[{"apiVersion":"atoll.dev/v1","kind":"Workload","metadata":{"name":"web"},"spec":{"env":{"TOKEN":"s3cret"}}}]`
	f.call(t, "viewer", "GET", "/v1/workloads", "")
	f.call(t, "operator", "POST", "/v1/workloads:apply?dry=1", body)
	f.call(t, "viewer", "DELETE", "/v1/workloads/web", "")
	f.call(t, "admin", "GET", "/v1/audit", "")

	es := f.rec.all()
	if len(es) != 3 {
		t.Fatalf("audit = %+v; want intent and outcome of the apply, then the refused delete", es)
	}
	intent, outcome, refused := es[0], es[1], es[2]
	want := api.AuditEntry{
		ID: intent.ID, Time: testTime, User: "user-operator", Role: "operator", Serial: f.certs["operator"].Leaf.SerialNumber.Text(16),
		Method: "POST", Path: "/v1/workloads:apply", Query: "dry=1", Objects: []string{"workload/web"}, Remote: intent.Remote,
	}
	if intent.ID == "" || intent.Remote == "" || !equal(intent, want) {
		t.Errorf("intent = %+v\nwant     %+v", intent, want)
	}
	want.Status = http.StatusCreated
	if !equal(outcome, want) {
		t.Errorf("outcome = %+v\nwant      %+v", outcome, want)
	}
	if refused.User != "user-viewer" || refused.Status != http.StatusForbidden || refused.Method != "DELETE" ||
		!strings.Contains(refused.Error, "needs role operator") || refused.ID == intent.ID {
		t.Errorf("refusal = %+v", refused)
	}
	for _, e := range es {
		if b, _ := json.Marshal(e); strings.Contains(string(b), "s3cret") {
			t.Errorf("an audit entry holds the body: %s", b)
		}
	}
}

func equal(a, b api.AuditEntry) bool {
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

func TestWrap_ApplyBodyReachesTheAPIWhole(t *testing.T) {
	f := newFixture(t, nil)
	body := `[{"kind":"Workload","metadata":{"name":"a"}},{"kind":"Workload","metadata":{"name":"b"}}]`
	req, _ := http.NewRequest("POST", f.srv.URL+"/v1/workloads:apply", strings.NewReader(body))
	c := f.certs["operator"]
	resp, err := clientOf(f.srv, &c).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(got) != body {
		t.Errorf("the API read %q; want %q", got, body)
	}
	if es := f.rec.all(); len(es) != 2 || !slices.Equal(es[1].Objects, []string{"workload/a", "workload/b"}) {
		t.Errorf("audit = %+v; want objects workload/a, workload/b", es)
	}
	f.call(t, "operator", "POST", "/v1/secrets:apply", `[{"kind":"Secret","metadata":{"name":"db"},"data":{"pw":"s3cret"}}]`)
	if es := f.rec.all(); len(es) != 4 || !slices.Equal(es[3].Objects, []string{"secret/db"}) {
		t.Errorf("audit = %+v; want objects secret/db", es)
	}
}

func TestWrap_AuditFailureRefusesTheChange(t *testing.T) {
	rec := &recorder{fail: errors.New("stream gone")}
	f := newFixture(t, rec)
	code, msg := f.call(t, "admin", "POST", "/v1/workloads:apply", "[]")
	if code != http.StatusServiceUnavailable || !strings.Contains(msg, "audit log") || !strings.Contains(msg, "stream gone") {
		t.Errorf("apply with a failing audit log = %d %q; want 503", code, msg)
	}
	if got := f.backend.called(); len(got) != 0 {
		t.Errorf("the change ran: %q", got)
	}
	// Reading needs no audit record.
	if code, _ := f.call(t, "viewer", "GET", "/v1/nodes", ""); code != http.StatusCreated {
		t.Errorf("GET with a failing audit log = %d; want it let through", code)
	}
}
