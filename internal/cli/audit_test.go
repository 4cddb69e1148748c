package cli

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"atoll.dev/atoll/internal/hub/api"
)

// auditLog answers the hub's GET /v1/audit with entries and keeps the
// queries.
type auditLog struct {
	entries []api.AuditEntry
	queries []api.AuditQuery
}

func (l *auditLog) List(_ context.Context, q api.AuditQuery) ([]api.AuditEntry, error) {
	l.queries = append(l.queries, q)
	return l.entries, nil
}

// serveAudit serves l through the hub API's real /v1/audit handler.
func serveAudit(t *testing.T, l *auditLog) string {
	t.Helper()
	srv := httptest.NewServer(api.NewHandler(nil, nil, api.WithAudit(l, nil)))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestAudit_Table(t *testing.T) {
	at := time.Date(2026, 3, 1, 11, 0, 0, 0, time.UTC)
	l := &auditLog{entries: []api.AuditEntry{
		{ID: "a", Time: at, User: "alice", Role: "operator", Method: "POST", Path: "/v1/workloads:apply",
			Objects: []string{"workload/web"}, Status: 201, Remote: "10.0.0.7:51234"},
		{ID: "b", Time: at.Add(time.Minute), User: "bob-the-viewer", Role: "viewer", Method: "DELETE", Path: "/v1/workloads/web",
			Query: "force=1", Status: 403, Remote: "10.0.0.8:40000", Error: "needs role operator"},
		{ID: "c", Time: at.Add(2 * time.Minute), User: "alice", Role: "operator", Method: "PUT", Path: "/v1/artifacts/sha256:00", Remote: "10.0.0.7:51235"},
	}}
	env := hubEnv(serveAudit(t, l))

	code, out, errOut := atoll(t, env, "audit", "--since", "1h", "--limit", "3")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || len(lines) != 4 {
		t.Fatalf("audit = %d, %q, %q", code, out, errOut)
	}
	cols := []string{"WHEN", "WHO", "ROLE", "METHOD", "PATH", "STATUS", "FROM"}
	checkAligned(t, lines, cols)
	for i, want := range [][]string{
		{formatTime(at), "alice", "operator", "POST", "/v1/workloads:apply", "201", "10.0.0.7:51234"},
		{formatTime(at.Add(time.Minute)), "bob-the-viewer", "viewer", "DELETE", "/v1/workloads/web?force=1", "403", "10.0.0.8:40000"},
		{formatTime(at.Add(2 * time.Minute)), "alice", "operator", "PUT", "/v1/artifacts/sha256:00", "-", "10.0.0.7:51235"},
	} {
		if got := cells(lines[0], lines[i+1], cols); !slices.Equal(got, want) {
			t.Errorf("row %d = %q, want %q", i+1, got, want)
		}
	}
	if len(l.queries) != 1 || !l.queries[0].Since.Equal(testNow.Add(-time.Hour)) || l.queries[0].Limit != 3 {
		t.Errorf("queries = %+v; want since %v, limit 3", l.queries, testNow.Add(-time.Hour))
	}

	_, out, _ = atoll(t, env, "audit", "-o", "json")
	var es []api.AuditEntry
	if err := json.Unmarshal([]byte(out), &es); err != nil || len(es) != 3 || es[0].Objects[0] != "workload/web" || es[1].Error == "" {
		t.Errorf("audit -o json = %q, %v", out, err)
	}
	if q := l.queries[1]; !q.Since.IsZero() || q.Limit != api.DefaultAuditLimit {
		t.Errorf("query without flags = %+v; want no bound and the default limit", q)
	}
}

func TestAudit_EmptyAndBadFlags(t *testing.T) {
	l := &auditLog{}
	env := hubEnv(serveAudit(t, l))
	if code, out, _ := atoll(t, env, "audit", "-o", "json"); code != 0 || out != "[]\n" {
		t.Errorf("audit -o json = %d, %q; want []", code, out)
	}
	for _, args := range [][]string{{"audit", "--since", "yesterday"}, {"audit", "-o", "wide"}, {"audit", "--limit", "5000"}} {
		if code, _, errOut := atoll(t, env, args...); code != 1 || !strings.Contains(errOut, "error: ") {
			t.Errorf("%q = %d, %q; want an error", args, code, errOut)
		}
	}
	if len(l.queries) != 1 {
		t.Errorf("queries = %+v; bad flags must read nothing", l.queries)
	}
}

func TestAudit_Refused(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte(`{"error":"GET /v1/audit needs role admin; \"bob\" has role viewer"}` + "\n"))
	}))
	t.Cleanup(srv.Close)
	code, _, errOut := atoll(t, hubEnv(srv.URL), "audit")
	if code != 1 || errOut != "error: GET /v1/audit needs role admin; \"bob\" has role viewer\n" {
		t.Errorf("refused audit = %d, %q", code, errOut)
	}
}
