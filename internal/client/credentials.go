package client

import (
	"crypto/tls"
	"errors"
	"fmt"

	"atoll.dev/atoll/internal/pki"
)

// Credentials are how a CLI user reaches the hub: its URL, the fleet's CA
// and the user's certificate and key, all PEM. The hub writes the admin's
// to DIR/admin.conf on its first start; `atoll user create` prints others.
// They are fields of the CLI's configuration file.
type Credentials struct {
	Hub  string `yaml:"hub,omitempty"`
	CA   string `yaml:"ca,omitempty"`
	Cert string `yaml:"cert,omitempty"`
	Key  string `yaml:"key,omitempty"`
}

// TLS is the client TLS configuration for c; nil when c holds no CA (a hub
// run with --insecure, over plain HTTP).
func (c Credentials) TLS() (*tls.Config, error) {
	if c.CA == "" {
		if c.Cert != "" || c.Key != "" {
			return nil, errors.New("credentials: a certificate without the hub's CA (ca:)")
		}
		return nil, nil
	}
	var pair *tls.Certificate
	if c.Cert != "" || c.Key != "" {
		p, err := tls.X509KeyPair([]byte(c.Cert), []byte(c.Key))
		if err != nil {
			return nil, fmt.Errorf("credentials: %w", err)
		}
		pair = &p
	}
	return pki.ClientTLS([]byte(c.CA), "", func() (*tls.Certificate, error) {
		if pair == nil {
			return &tls.Certificate{}, nil
		}
		return pair, nil
	})
}
