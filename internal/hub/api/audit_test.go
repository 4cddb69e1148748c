package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"atoll.dev/atoll/internal/hub/api"
)

// auditLog answers List with entries (or err) and keeps the query.
type auditLog struct {
	entries []api.AuditEntry
	err     error
	got     []api.AuditQuery
}

func (l *auditLog) List(_ context.Context, q api.AuditQuery) ([]api.AuditEntry, error) {
	l.got = append(l.got, q)
	return l.entries, l.err
}

func TestWithAudit(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	l := &auditLog{entries: []api.AuditEntry{{ID: "a", Time: at, User: "alice", Method: "POST", Path: "/v1/workloads:apply", Status: 201}}}
	h := api.NewHandler(nil, nil, api.WithAudit(l, nil))
	for _, tc := range []struct {
		target string
		code   int
	}{
		{"/v1/audit", 200},
		{"/v1/audit?since=2026-03-01T11:00:00Z&limit=5", 200},
		{"/v1/audit?since=yesterday", 400},
		{"/v1/audit?limit=0", 400},
		{"/v1/audit?limit=1001", 400},
		{"/v1/audit?node=pi-1", 400},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("GET", tc.target, nil))
		if rec.Code != tc.code {
			t.Errorf("GET %s = %d %s; want %d", tc.target, rec.Code, rec.Body, tc.code)
		}
	}
	want := []api.AuditQuery{{Limit: api.DefaultAuditLimit}, {Since: at.Add(-time.Hour), Limit: 5}}
	if len(l.got) != 2 || l.got[0] != want[0] || !l.got[1].Since.Equal(want[1].Since) || l.got[1].Limit != 5 {
		t.Errorf("queries = %+v; want %+v", l.got, want)
	}

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/audit", nil))
	var es []api.AuditEntry
	if err := json.Unmarshal(rec.Body.Bytes(), &es); err != nil || len(es) != 1 || es[0].User != "alice" || !es[0].Time.Equal(at) {
		t.Errorf("answer = %s, %v", rec.Body, err)
	}

	l.entries, l.err = nil, errors.New("stream gone")
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/audit", nil))
	if rec.Code != http.StatusInternalServerError {
		t.Errorf("failing log = %d %s; want 500", rec.Code, rec.Body)
	}
	l.err = nil
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/v1/audit", nil))
	if rec.Body.String() != "[]\n" {
		t.Errorf("empty log = %q; want []", rec.Body)
	}
}
