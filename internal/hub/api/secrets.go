package api

// The secrets endpoints. No answer ever carries a secret's values.

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"atoll.dev/atoll/internal/httpjson"
	"atoll.dev/atoll/internal/manifest"
)

// Secret is a secret as the API shows it: never its values.
type Secret struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	// Keys are the names of the secret's data keys, sorted.
	Keys         []string          `json:"keys"`
	NodeSelector map[string]string `json:"nodeSelector,omitempty"`
	Nodes        []string          `json:"nodes,omitempty"`
	// Targets are the nodes the secret may be delivered to now, sorted.
	Targets []string `json:"targets"`
	// Version grows by one with every change to the data.
	Version uint64    `json:"version"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
}

// SecretBackend keeps secrets. ApplySecrets answers like Backend.Apply:
// manifest.FieldErrors for invalid secrets, with nothing stored.
type SecretBackend interface {
	ApplySecrets(ctx context.Context, ss []manifest.Secret) ([]ApplyResult, error)
	Secrets(ctx context.Context) ([]Secret, error)
	DeleteSecret(ctx context.Context, name string) error
}

// WithSecrets serves the secrets endpoints from b; log receives server
// errors (nil discards them):
//
//	POST   /v1/secrets:apply   []manifest.Secret → []ApplyResult
//	GET    /v1/secrets         → []Secret (names, keys, targets: never values)
//	DELETE /v1/secrets/{name}  → 204
func WithSecrets(b SecretBackend, log *slog.Logger) Option {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return func(mux *http.ServeMux) {
		s := &secretServer{b: b, srv: &server{log: log}}
		mux.Handle("/v1/secrets:apply", httpjson.Methods{http.MethodPost: s.apply})
		mux.Handle("/v1/secrets", httpjson.Methods{http.MethodGet: s.list})
		mux.Handle("/v1/secrets/{name}", httpjson.Methods{http.MethodDelete: s.delete})
	}
}

type secretServer struct {
	b   SecretBackend
	srv *server // for fail
}

func (s *secretServer) apply(w http.ResponseWriter, r *http.Request) {
	var ss []manifest.Secret
	if err := decodeBody(w, r, MaxApplyBody, &ss, false); err != nil {
		s.srv.fail(w, r, err)
		return
	}
	for i := range ss {
		ss[i].Source = fmt.Sprintf("request#%d", i+1)
	}
	res, err := s.b.ApplySecrets(r.Context(), ss)
	if err != nil {
		s.srv.fail(w, r, err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, nonNil(res))
}

func (s *secretServer) list(w http.ResponseWriter, r *http.Request) {
	if !noQuery(w, r) {
		return
	}
	ss, err := s.b.Secrets(r.Context())
	if err != nil {
		s.srv.fail(w, r, err)
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, nonNil(ss))
}

func (s *secretServer) delete(w http.ResponseWriter, r *http.Request) {
	n, ok := name(w, r, "name", "secret")
	if !ok {
		return
	}
	if err := s.b.DeleteSecret(r.Context(), n); err != nil {
		s.srv.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
