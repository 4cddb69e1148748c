package client_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"atoll.dev/atoll/internal/client"
	"atoll.dev/atoll/internal/hub/api"
)

func TestHub_Audit(t *testing.T) {
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	c, rc := testHub(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("limit") == "7" {
			w.WriteHeader(http.StatusForbidden)
			json.NewEncoder(w).Encode(api.ErrorResponse{Error: `GET /v1/audit needs role admin; "bob" has role viewer`})
			return
		}
		json.NewEncoder(w).Encode([]api.AuditEntry{{ID: "a", Time: at, User: "alice", Status: 201}})
	})
	ctx := context.Background()
	es, err := c.Audit(ctx, time.Time{}, 0)
	if err != nil || len(es) != 1 || es[0].User != "alice" || !es[0].Time.Equal(at) {
		t.Fatalf("Audit = %+v, %v", es, err)
	}
	since := time.Date(2026, 3, 1, 13, 0, 0, 0, time.FixedZone("CET", 3600))
	_, err = c.Audit(ctx, since, 7)
	if ae, ok := errors.AsType[*client.APIError](err); !ok || ae.StatusCode != http.StatusForbidden || ae.Message == "" {
		t.Errorf("refused Audit = %v; want the hub's 403", err)
	}
	reqs := rc.all()
	if len(reqs) != 2 || reqs[0].Path != "/v1/audit" || reqs[0].Query != "" || reqs[1].Query != "limit=7&since=2026-03-01T12%3A00%3A00Z" {
		t.Errorf("requests = %+v", reqs)
	}
}
