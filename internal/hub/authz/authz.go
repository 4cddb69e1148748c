// Package authz guards the hub's HTTP API: it names the caller by the
// verified client certificate of the TLS connection, lets the call through
// only if the caller's role may make it, and records every changing call,
// allowed or refused, in the audit log (package hub/audit).
//
// Roles (Organization[0] of the certificate): a viewer may read (GET,
// HEAD) everything but the admin-only paths; an operator may also change
// (any other method) everything but those; an admin may do everything.
// Admin-only: /v1/tokens, /v1/users, /v1/audit and POST
// /v1/nodes/{node}/revoke (the table adminOnly). No path is exempt:
// Prometheus scrapes /metrics with a viewer certificate.
//
// Answers: no verified certificate, or a revoked one, is 401; a role that
// is not a user role (a node's certificate), or one too weak for the call,
// is 403; an audit log that cannot record a changing call before it runs
// is 503, and the call does not run. Calls without a certificate are not
// recorded, only logged: anyone could send them, and with the log bounded
// by size, a flood of them would push real entries out.
package authz

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"atoll.dev/atoll/internal/clock"
	"atoll.dev/atoll/internal/httpjson"
	"atoll.dev/atoll/internal/hub/api"
)

// Recorder is where the audit entries go: package hub/audit's Log.
type Recorder interface {
	// Record returns nil once e is stored.
	Record(ctx context.Context, e api.AuditEntry) error
}

// Config is what Wrap needs.
type Config struct {
	// Audit records the changing calls (required).
	Audit Recorder
	// Revoked reports whether a verified certificate was revoked; nil
	// means none is.
	Revoked func(cert *x509.Certificate) bool
	// Clock stamps the entries; nil means the wall clock.
	Clock clock.Clock
	// Logger receives what cannot be recorded; nil discards it.
	Logger *slog.Logger
}

// recordTimeout bounds writing one audit record; it does not end when the
// caller goes away, so that the outcome of a call is still recorded.
const recordTimeout = 5 * time.Second

// Wrap returns next guarded by the roles and the audit log.
func Wrap(next http.Handler, cfg Config) http.Handler {
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &guard{next: next, cfg: cfg}
}

type guard struct {
	next http.Handler
	cfg  Config
}

func (g *guard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.TLS == nil || len(r.TLS.VerifiedChains) == 0 || len(r.TLS.VerifiedChains[0]) == 0 {
		g.cfg.Logger.Warn("api call without a verified client certificate", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
		httpjson.WriteError(w, http.StatusUnauthorized, "no verified client certificate: the hub's API needs one issued by the hub's CA")
		return
	}
	cert := r.TLS.VerifiedChains[0][0]
	e := g.entry(r, cert)
	need := needed(r.Method, r.URL.Path)
	switch {
	case g.cfg.Revoked != nil && g.cfg.Revoked(cert):
		g.refuse(w, r, e, http.StatusUnauthorized,
			fmt.Sprintf("the certificate of %q (serial %s) was revoked", e.User, e.Serial))
	case rank[Role(e.Role)] == 0:
		g.refuse(w, r, e, http.StatusForbidden,
			fmt.Sprintf("the certificate of %q has role %q, which is not a user role (admin, operator or viewer)", e.User, e.Role))
	case !Role(e.Role).covers(need):
		g.refuse(w, r, e, http.StatusForbidden,
			fmt.Sprintf("%s %s needs role %s; %q has role %s", r.Method, r.URL.Path, need, e.User, e.Role))
	case !changes(r.Method):
		g.next.ServeHTTP(w, r)
	default:
		g.change(w, r, e)
	}
}

// change runs a changing call between its two audit records.
func (g *guard) change(w http.ResponseWriter, r *http.Request, e api.AuditEntry) {
	e.Objects = objectNames(r)
	if err := g.record(r.Context(), e); err != nil {
		g.cfg.Logger.Error("audit log: intent not recorded, call refused", "id", e.ID, "method", e.Method, "path", e.Path, "err", err)
		httpjson.WriteError(w, http.StatusServiceUnavailable,
			fmt.Sprintf("the audit log cannot record this call, so it was not run: %v", err))
		return
	}
	sw := &statusWriter{ResponseWriter: w}
	g.next.ServeHTTP(sw, r)
	e.Status = sw.status()
	if err := g.record(r.Context(), e); err != nil {
		g.cfg.Logger.Error("audit log: outcome not recorded", "id", e.ID, "method", e.Method, "path", e.Path, "status", e.Status, "err", err)
	}
}

// refuse answers code with msg, recording the refusal if the call would
// have changed something.
func (g *guard) refuse(w http.ResponseWriter, r *http.Request, e api.AuditEntry, code int, msg string) {
	if changes(r.Method) {
		e.Status, e.Error = code, msg
		if err := g.record(r.Context(), e); err != nil {
			g.cfg.Logger.Error("audit log: refusal not recorded", "id", e.ID, "method", e.Method, "path", e.Path, "err", err)
		}
	}
	httpjson.WriteError(w, code, msg)
}

func (g *guard) record(ctx context.Context, e api.AuditEntry) error {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), recordTimeout)
	defer cancel()
	return g.cfg.Audit.Record(ctx, e)
}

// entry is the audit entry of a call by cert's holder, without outcome.
func (g *guard) entry(r *http.Request, cert *x509.Certificate) api.AuditEntry {
	e := api.AuditEntry{
		ID:     newID(),
		Time:   g.cfg.Clock.Now(),
		User:   cert.Subject.CommonName,
		Serial: cert.SerialNumber.Text(16),
		Method: r.Method,
		Path:   r.URL.Path,
		Query:  r.URL.RawQuery,
		Remote: r.RemoteAddr,
	}
	if len(cert.Subject.Organization) > 0 {
		e.Role = cert.Subject.Organization[0]
	}
	return e
}

// newID is 16 random bytes in hex.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// statusWriter remembers the status of the answer.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// status is the answer's status; a handler that wrote nothing answered 200.
func (w *statusWriter) status() int {
	if w.code == 0 {
		return http.StatusOK
	}
	return w.code
}
