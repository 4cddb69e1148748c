package hub

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	yaml "go.yaml.in/yaml/v2"

	"atoll.dev/atoll/internal/atomicfile"
	"atoll.dev/atoll/internal/client"
	"atoll.dev/atoll/internal/hub/access"
	"atoll.dev/atoll/internal/pki"
)

// AdminConfigFile is the admin's CLI config the hub writes in its data
// directory on first start (and points at its API at every start).
const AdminConfigFile = "admin.conf"

// hubCertLifetime: the hub makes a new server certificate at every start.
const hubCertLifetime = 365 * 24 * time.Hour

// security is what a hub with TLS on (the default) holds: the fleet's CA,
// its own server certificate, the NATS's authentication, and the secret of
// its own NATS connection.
type security struct {
	ca       *pki.CA
	cert     tls.Certificate
	auth     *access.Auth
	hubToken string
}

func (h *Hub) security() (*security, error) {
	if h.cfg.Insecure {
		return nil, nil
	}
	if h.cfg.NATSURL != "" {
		return nil, errors.New("an external NATS (--nats) is not secured by the hub: run with --insecure and secure that NATS yourself")
	}
	ca, err := pki.LoadOrCreateCA(filepath.Join(h.cfg.DataDir, "ca"), "atoll")
	if err != nil {
		return nil, err
	}
	key, err := pki.NewKey()
	if err != nil {
		return nil, err
	}
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if name, err := os.Hostname(); err == nil {
		hosts = append(hosts, name)
	}
	_, certPEM, err := ca.Issue(pki.Request{Name: "atoll-hub", Role: pki.RoleHub, Lifetime: hubCertLifetime, Hosts: hosts}, key.Public())
	if err != nil {
		return nil, err
	}
	keyPEM, err := pki.EncodeKey(key)
	if err != nil {
		return nil, err
	}
	cert, err := pki.KeyPair(certPEM, keyPEM, ca)
	if err != nil {
		return nil, err
	}
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	token := hex.EncodeToString(secret)
	return &security{ca: ca, cert: cert, hubToken: token,
		auth: access.NewAuth(ca, token, h.cfg.Clock, h.cfg.RenewGrace)}, nil
}

// configureNATS turns on TLS and the hub's authentication on the
// embedded NATS. Client certificates are asked for, not required by the
// TLS layer: Auth checks them itself (an expired one may still renew) and
// lets a device with an enrollment token in without one.
func (s *security) configureNATS(o *server.Options) {
	o.TLSConfig = pki.ServerTLS(s.cert, s.ca, false)
	o.TLS = true
	// Slow, lossy links: the default 2 s is short for a handshake there.
	o.TLSTimeout = 10
	o.CustomClientAuthentication = s.auth
}

// connect opens the hub's own connection to the embedded server.
func (s *security) connect(srv *server.Server, opts ...nats.Option) (*nats.Conn, error) {
	tlsCfg, err := pki.ClientTLS(s.ca.PEM, "", nil)
	if err != nil {
		return nil, err
	}
	return nats.Connect(srv.ClientURL(), append(opts, nats.InProcessServer(srv), nats.Token(s.hubToken), nats.Secure(tlsCfg))...)
}

// kick closes every connection of the NATS user; it returns how many.
func kick(srv *server.Server, user string) int {
	cz, err := srv.Connz(&server.ConnzOptions{User: user, Limit: 1 << 16})
	if err != nil {
		return 0
	}
	n := 0
	for _, c := range cz.Conns {
		if srv.DisconnectClientByID(c.Cid) == nil {
			n++
		}
	}
	return n
}

// writeAdminConfig writes (first start) or updates (the API's address)
// DIR/admin.conf: the admin's CLI config, 0600. A new admin certificate
// is recorded with record, so that it can be revoked like any user's.
func (s *security) writeAdminConfig(dir, httpAddr string, record func(*x509.Certificate) error) (string, error) {
	path := filepath.Join(dir, AdminConfigFile)
	var c client.Credentials
	b, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		key, err := pki.NewKey()
		if err != nil {
			return "", err
		}
		cert, certPEM, err := s.ca.Issue(pki.Request{Name: "admin", Role: pki.RoleAdmin, Lifetime: access.DefaultUserCertLifetime}, key.Public())
		if err != nil {
			return "", err
		}
		if err := record(cert); err != nil {
			return "", fmt.Errorf("admin config: %w", err)
		}
		keyPEM, err := pki.EncodeKey(key)
		if err != nil {
			return "", err
		}
		c = client.Credentials{CA: string(s.ca.PEM), Cert: string(certPEM), Key: string(keyPEM)}
	case err != nil:
		return "", fmt.Errorf("admin config: %w", err)
	default:
		if err := yaml.UnmarshalStrict(b, &c); err != nil {
			return "", fmt.Errorf("admin config %s: %w", path, err)
		}
	}
	url := "https://" + loopbackIfUnspecified(httpAddr)
	if c.Hub == url && b != nil {
		return path, nil
	}
	c.Hub = url
	out, err := yaml.Marshal(c)
	if err != nil {
		return "", err
	}
	if err := atomicfile.Replace(path, out); err != nil {
		return "", fmt.Errorf("admin config: %w", err)
	}
	return path, nil
}

// loopbackIfUnspecified replaces 0.0.0.0 or :: in addr by 127.0.0.1.
func loopbackIfUnspecified(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return net.JoinHostPort("127.0.0.1", port)
	}
	return addr
}
