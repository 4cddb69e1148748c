package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/manifest"
)

// ApplySecrets creates or updates secrets; for invalid ones the error is
// an *APIError with Fields, and nothing is stored.
func (c *Hub) ApplySecrets(ctx context.Context, ss []manifest.Secret) ([]api.ApplyResult, error) {
	body, err := json.Marshal(ss)
	if err != nil {
		return nil, fmt.Errorf("encode secrets: %w", err)
	}
	var res []api.ApplyResult
	if _, err := c.do(ctx, http.MethodPost, "/v1/secrets:apply", body, &res); err != nil {
		return nil, err
	}
	return orEmpty(res), nil
}

// Secrets lists the secrets (names, keys, targets; never values); empty
// and non-nil when there are none.
func (c *Hub) Secrets(ctx context.Context) ([]api.Secret, error) {
	var ss []api.Secret
	if _, err := c.do(ctx, http.MethodGet, "/v1/secrets", nil, &ss); err != nil {
		return nil, err
	}
	return orEmpty(ss), nil
}

// DeleteSecret removes a secret.
func (c *Hub) DeleteSecret(ctx context.Context, name string) error {
	_, err := c.do(ctx, http.MethodDelete, "/v1/secrets/"+url.PathEscape(name), nil, nil)
	return err
}
