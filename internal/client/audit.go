package client

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"atoll.dev/atoll/internal/hub/api"
)

// Audit returns the hub's audit log (admins only): the newest limit
// changing calls received at or after since, newest last. A zero since
// means no bound, a zero limit the hub's default (api.DefaultAuditLimit).
func (c *Hub) Audit(ctx context.Context, since time.Time, limit int) ([]api.AuditEntry, error) {
	v := url.Values{}
	if !since.IsZero() {
		v.Set("since", since.UTC().Format(time.RFC3339))
	}
	if limit > 0 {
		v.Set("limit", strconv.Itoa(limit))
	}
	var es []api.AuditEntry
	if _, err := c.do(ctx, http.MethodGet, withQuery(api.AuditPath, v), nil, &es); err != nil {
		return nil, err
	}
	return orEmpty(es), nil
}
