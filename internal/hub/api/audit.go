package api

// GET /v1/audit: the audit log of the API's changing calls, which package
// hub/authz records and package hub/audit stores.

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"atoll.dev/atoll/internal/httpjson"
)

// AuditPath is where WithAudit serves.
const AuditPath = "/v1/audit"

// DefaultAuditLimit and MaxAuditLimit bound GET /v1/audit.
const (
	DefaultAuditLimit = 100
	MaxAuditLimit     = 1000
)

// AuditEntry is one changing call to the API (any method but GET and
// HEAD), allowed or refused: who made it, what it asked, when, from where
// and how it ended. It never holds a request body, which may carry
// secrets.
type AuditEntry struct {
	// ID is unique per call.
	ID string `json:"id"`
	// Time is when the hub received the call, by the hub's clock.
	Time time.Time `json:"time"`
	// User, Role and Serial name the caller's client certificate: its
	// CommonName, its Organization[0] and its serial number (hex).
	User   string `json:"user"`
	Role   string `json:"role"`
	Serial string `json:"serial"`
	Method string `json:"method"`
	Path   string `json:"path"`
	// Query is the raw query string, without "?".
	Query string `json:"query,omitempty"`
	// Objects names what an apply call's body held ("workload/web").
	Objects []string `json:"objects,omitempty"`
	// Status is the HTTP status of the answer; 0 means the call was let
	// through but its outcome was not recorded (it was still running, or
	// the hub stopped or lost its audit stream before it ended).
	Status int `json:"status"`
	// Remote is the caller's address.
	Remote string `json:"remote"`
	// Error is why the call was refused; empty when it was let through.
	Error string `json:"error,omitempty"`
}

// AuditQuery selects audit entries for GET /v1/audit.
type AuditQuery struct {
	// Since drops the entries of calls received before it; zero keeps
	// every one.
	Since time.Time
	// Limit is the most entries to return, the newest (required, > 0).
	Limit int
}

// AuditLog is what GET /v1/audit reads: package hub/audit's Log.
type AuditLog interface {
	// List returns the newest q.Limit entries q selects, newest last.
	List(ctx context.Context, q AuditQuery) ([]AuditEntry, error)
}

// WithAudit serves GET /v1/audit?since=RFC3339&limit=N from l; log
// receives its server errors (nil discards them). Who may call it is
// package hub/authz's business (admins only).
func WithAudit(l AuditLog, log *slog.Logger) Option {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	s := &server{log: log}
	return func(mux *http.ServeMux) {
		mux.Handle(AuditPath, httpjson.Methods{http.MethodGet: func(w http.ResponseWriter, r *http.Request) {
			q, ok := query(w, r, "since", "limit")
			if !ok {
				return
			}
			var aq AuditQuery
			if aq.Since, ok = sinceParam(w, q); !ok {
				return
			}
			if aq.Limit, ok = limitParam(w, q, DefaultAuditLimit, MaxAuditLimit); !ok {
				return
			}
			es, err := l.List(r.Context(), aq)
			if err != nil {
				s.fail(w, r, err)
				return
			}
			httpjson.WriteJSON(w, http.StatusOK, nonNil(es))
		}})
	}
}

// sinceParam reads since= (zero when absent); it answers 400 and returns
// false when it is not an RFC 3339 time.
func sinceParam(w http.ResponseWriter, q url.Values) (time.Time, bool) {
	v := q.Get("since")
	if v == "" {
		return time.Time{}, true
	}
	t, err := time.Parse(time.RFC3339, v)
	if err != nil {
		httpjson.WriteError(w, http.StatusBadRequest, fmt.Sprintf("since=%q: want an RFC 3339 time such as 2026-11-23T10:00:00Z", v))
		return time.Time{}, false
	}
	return t, true
}
