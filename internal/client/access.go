package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"atoll.dev/atoll/internal/hub/api"
)

// CreateToken makes an enrollment token; the answer's Token is the only
// copy of its secret.
func (c *Hub) CreateToken(ctx context.Context, req api.TokenRequest) (api.TokenCreated, error) {
	var out api.TokenCreated
	err := c.post(ctx, "/v1/tokens", req, &out)
	return out, err
}

// Tokens lists the enrollment tokens, without their secrets.
func (c *Hub) Tokens(ctx context.Context) ([]api.TokenInfo, error) {
	var out []api.TokenInfo
	_, err := c.do(ctx, http.MethodGet, "/v1/tokens", nil, &out)
	return orEmpty(out), err
}

// RevokeToken stops a token from enrolling more nodes.
func (c *Hub) RevokeToken(ctx context.Context, id string) (api.TokenInfo, error) {
	var out api.TokenInfo
	_, err := c.do(ctx, http.MethodDelete, "/v1/tokens/"+url.PathEscape(id), nil, &out)
	return out, err
}

// CreateUser has the hub sign a user's certificate for the key of csr.
func (c *Hub) CreateUser(ctx context.Context, req api.UserRequest) (api.UserCert, error) {
	var out api.UserCert
	err := c.post(ctx, "/v1/users", req, &out)
	return out, err
}

// RevokeNode revokes an enrolled node.
func (c *Hub) RevokeNode(ctx context.Context, node string) (api.NodeRevoked, error) {
	var out api.NodeRevoked
	_, err := c.do(ctx, http.MethodPost, "/v1/nodes/"+url.PathEscape(node)+"/revoke", nil, &out)
	return out, err
}

func (c *Hub) post(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("encode request: %w", err)
	}
	_, err = c.do(ctx, http.MethodPost, path, body, out)
	return err
}

// Users lists the API users and their certificates.
func (c *Hub) Users(ctx context.Context) ([]api.UserInfo, error) {
	var out []api.UserInfo
	_, err := c.do(ctx, http.MethodGet, "/v1/users", nil, &out)
	return orEmpty(out), err
}

// RevokeUser revokes every certificate of a user.
func (c *Hub) RevokeUser(ctx context.Context, name string) (api.UserRevoked, error) {
	var out api.UserRevoked
	_, err := c.do(ctx, http.MethodPost, "/v1/users/"+url.PathEscape(name)+"/revoke", nil, &out)
	return out, err
}
