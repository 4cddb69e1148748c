package access

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"atoll.dev/atoll/internal/httpjson"
	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/pki"
)

// maxBody bounds the requests of these endpoints.
const maxBody = 64 << 10

// Routes adds the endpoints of api/access.go to mux. The caller checks
// roles (package authz): they are all the admin's.
func (s *Service) Routes(mux *http.ServeMux) {
	mux.Handle("/v1/tokens", httpjson.Methods{http.MethodGet: s.listTokens, http.MethodPost: s.createToken})
	mux.Handle("/v1/tokens/{id}", httpjson.Methods{http.MethodDelete: s.revokeToken})
	mux.Handle("/v1/users", httpjson.Methods{http.MethodGet: s.listUsers, http.MethodPost: s.createUser})
	mux.Handle("/v1/users/{name}/revoke", httpjson.Methods{http.MethodPost: s.revokeUser})
	mux.Handle("/v1/nodes/{node}/revoke", httpjson.Methods{http.MethodPost: s.revokeNode})
}

func (s *Service) createToken(w http.ResponseWriter, r *http.Request) {
	var req api.TokenRequest
	if !decode(w, r, &req) {
		return
	}
	t, str, err := s.CreateToken(r.Context(), req)
	if err != nil {
		fail(w, err)
		return
	}
	httpjson.WriteJSON(w, http.StatusCreated, api.TokenCreated{TokenInfo: info(t), Token: str})
}

// badRequest is an error in what the caller sent.
type badRequest struct{ msg string }

func (e badRequest) Error() string { return e.msg }

func badf(format string, a ...any) error { return badRequest{fmt.Sprintf(format, a...)} }

// CreateToken makes and stores a token; it returns the token string, the
// only copy of its secret.
func (s *Service) CreateToken(ctx context.Context, req api.TokenRequest) (Token, string, error) {
	ttl := 24 * time.Hour
	if req.TTL != "" {
		d, err := time.ParseDuration(req.TTL)
		if err != nil || d <= 0 {
			return Token{}, "", badf("ttl: %q is not a positive duration (like 30m, 24h)", req.TTL)
		}
		ttl = d
	}
	uses := req.Uses
	if uses == 0 {
		uses = 1
	}
	if uses < 0 {
		return Token{}, "", badf("uses: %d is not a positive number", req.Uses)
	}
	if req.NamePrefix != "" && !manifest.IsDNSLabel(req.NamePrefix+"x") {
		return Token{}, "", badf("namePrefix: %q cannot start a node name (lowercase letters, digits and '-')", req.NamePrefix)
	}
	for k, v := range req.Labels {
		if k == "" || strings.ContainsAny(k+v, ",=\n") {
			return Token{}, "", badf("labels: %q=%q is not a label (key=value, no ',' or '=')", k, v)
		}
	}
	t, str := newToken(s.cfg.CA.Fingerprint())
	now := s.cfg.Clock.Now()
	t.Labels, t.NamePrefix, t.Uses, t.Created, t.Expires = req.Labels, req.NamePrefix, uses, now, now.Add(ttl)
	b, _ := json.Marshal(t)
	if _, err := s.tokens.Create(ctx, t.ID, b); err != nil {
		return Token{}, "", fmt.Errorf("store token: %w", err)
	}
	s.cfg.Auth.setToken(t, false)
	return t, str, nil
}

func (s *Service) listTokens(w http.ResponseWriter, r *http.Request) {
	keys, err := s.tokens.Keys(r.Context())
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		fail(w, err)
		return
	}
	out := []api.TokenInfo{}
	for _, k := range keys {
		e, err := s.tokens.Get(r.Context(), k)
		if err != nil {
			continue // deleted meanwhile
		}
		var t Token
		if json.Unmarshal(e.Value(), &t) == nil {
			out = append(out, info(t))
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.Before(out[j].Created) })
	httpjson.WriteJSON(w, http.StatusOK, out)
}

func (s *Service) revokeToken(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	e, err := s.tokens.Get(r.Context(), id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		httpjson.WriteError(w, http.StatusNotFound, fmt.Sprintf("no token %q", id))
		return
	}
	if err != nil {
		fail(w, err)
		return
	}
	var t Token
	if err := json.Unmarshal(e.Value(), &t); err != nil {
		fail(w, err)
		return
	}
	t.Revoked = true
	b, _ := json.Marshal(t)
	if _, err := s.tokens.Update(r.Context(), id, b, e.Revision()); err != nil {
		fail(w, err)
		return
	}
	s.cfg.Auth.setToken(t, false)
	httpjson.WriteJSON(w, http.StatusOK, info(t))
}

func (s *Service) createUser(w http.ResponseWriter, r *http.Request) {
	var req api.UserRequest
	if !decode(w, r, &req) {
		return
	}
	if !manifest.IsDNSLabel(req.Name) {
		httpjson.WriteError(w, http.StatusBadRequest, fmt.Sprintf("name: %q is not a user name (a DNS label: lowercase letters, digits and '-')", req.Name))
		return
	}
	if !slices.Contains(pki.UserRoles, req.Role) {
		httpjson.WriteError(w, http.StatusBadRequest, fmt.Sprintf("role: %q is not a role (one of %s)", req.Role, strings.Join(pki.UserRoles, ", ")))
		return
	}
	csr, err := pki.ParseCSR(req.CSR)
	if err != nil {
		httpjson.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	cert, pemCert, err := s.cfg.CA.Issue(pki.Request{Name: req.Name, Role: req.Role, Lifetime: s.cfg.UserCertLifetime, Now: s.cfg.Clock.Now()}, csr.PublicKey)
	if err != nil {
		fail(w, err)
		return
	}
	if err := s.RecordUser(r.Context(), cert); err != nil {
		fail(w, err)
		return
	}
	httpjson.WriteJSON(w, http.StatusCreated, api.UserCert{Cert: pemCert, CA: s.cfg.CA.PEM, Expires: cert.NotAfter})
}

func (s *Service) revokeNode(w http.ResponseWriter, r *http.Request) {
	node := r.PathValue("node")
	ok, err := s.Revoke(r.Context(), node)
	if err != nil {
		fail(w, err)
		return
	}
	if !ok {
		httpjson.WriteError(w, http.StatusNotFound, fmt.Sprintf("no enrolled node %q", node))
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, api.NodeRevoked{Node: node, Revoked: true})
}

func info(t Token) api.TokenInfo {
	return api.TokenInfo{ID: t.ID, Labels: t.Labels, NamePrefix: t.NamePrefix, Uses: t.Uses, Used: t.Used,
		Nodes: t.Nodes, Created: t.Created, Expires: t.Expires, Revoked: t.Revoked}
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		httpjson.WriteError(w, http.StatusBadRequest, "bad request body: "+err.Error())
		return false
	}
	return true
}

func fail(w http.ResponseWriter, err error) {
	var bad badRequest
	if errors.As(err, &bad) {
		httpjson.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	httpjson.WriteError(w, http.StatusInternalServerError, err.Error())
}
