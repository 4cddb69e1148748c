// Package identity is a node's identity: the key it made itself (it never
// leaves the device), the certificate the hub issued for it at enrollment
// and renews before it expires, and the fleet's CA. They live in
// DATA/identity, 0600:
//
//	node.key   the node's ECDSA P-256 key (PEM)
//	node.crt   its certificate (PEM)
//	ca.crt     the fleet's CA (PEM)
//	node.json  the name and labels the hub enrolled it with
//	revoked    present once the hub said the node was revoked
package identity

import (
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"atoll.dev/atoll/internal/atomicfile"
	"atoll.dev/atoll/internal/pki"
	"atoll.dev/atoll/internal/wire"
)

const (
	keyFile     = "node.key"
	certFile    = "node.crt"
	caFile      = "ca.crt"
	nodeFile    = "node.json"
	revokedFile = "revoked"
)

// Identity is an enrolled node's. Its methods are safe for concurrent use.
type Identity struct {
	dir    string
	key    *ecdsa.PrivateKey
	caPEM  []byte
	name   string
	labels map[string]string

	mu   sync.Mutex
	pair *tls.Certificate // guarded by mu
}

type nodeInfo struct {
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
}

// Dir is the identity directory inside an agent's data directory.
func Dir(dataDir string) string { return filepath.Join(dataDir, "identity") }

// Load reads the identity in dir; (nil, nil) when the node was never
// enrolled.
func Load(dir string) (*Identity, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, certFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, keyFile))
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	caPEM, err := os.ReadFile(filepath.Join(dir, caFile))
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, nodeFile))
	if err != nil {
		return nil, fmt.Errorf("identity: %w", err)
	}
	var ni nodeInfo
	if err := json.Unmarshal(b, &ni); err != nil {
		return nil, fmt.Errorf("identity %s: %w", filepath.Join(dir, nodeFile), err)
	}
	key, err := pki.ParseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("identity %s: %w", filepath.Join(dir, keyFile), err)
	}
	id := &Identity{dir: dir, key: key, caPEM: caPEM, name: ni.Name, labels: ni.Labels}
	if err := id.setCert(certPEM); err != nil {
		return nil, fmt.Errorf("identity %s: %w", filepath.Join(dir, certFile), err)
	}
	return id, nil
}

// ErrRefused is an enrollment the hub refused (a token malformed, unknown,
// expired, used up or revoked, a name taken): trying again will not help.
var ErrRefused = errors.New("enrollment refused")

// Enroll joins the hub at url with token, asking for name, and stores the
// identity in dir. The hub's certificate must chain to the CA the token
// pins. The key is made (and stored) before anything is sent: an
// enrollment cut off before its answer arrived is asked again with the
// same key, and the hub answers it again without using the token twice.
func Enroll(ctx context.Context, dir, url, token, name string) (*Identity, error) {
	tok, err := wire.ParseToken(token)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrRefused, err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	key, err := loadOrMakeKey(filepath.Join(dir, keyFile))
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	csr, err := pki.NewCSR(key, name)
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	tlsCfg, err := pki.ClientTLS(nil, tok.Pin, nil)
	if err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	nc, err := nats.Connect(url, nats.Name("atoll-enroll-"+name), nats.Secure(tlsCfg), nats.Token(token),
		nats.CustomInboxPrefix(wire.EnrollInboxPrefix+tok.ID), nats.NoReconnect(), nats.Timeout(10*time.Second))
	if errors.Is(err, nats.ErrAuthorization) {
		return nil, fmt.Errorf("enroll at %s: %w: %w (the token is expired, revoked or not this hub's)", url, ErrRefused, err)
	}
	if err != nil {
		return nil, fmt.Errorf("enroll at %s: %w", url, err)
	}
	defer nc.Close()
	var rep wire.EnrollReply
	if err := request(ctx, nc, wire.SubjectEnroll, wire.EnrollRequest{Token: token, Name: name, CSR: csr}, &rep); err != nil {
		return nil, fmt.Errorf("enroll at %s: %w", url, err)
	}
	if rep.Error != "" {
		return nil, fmt.Errorf("enroll at %s: %w: %s", url, ErrRefused, rep.Error)
	}
	id := &Identity{dir: dir, key: key, caPEM: rep.CA, name: rep.Name, labels: rep.Labels}
	if err := id.setCert(rep.Cert); err != nil {
		return nil, fmt.Errorf("enroll: the hub's certificate: %w", err)
	}
	info, _ := json.Marshal(nodeInfo{Name: rep.Name, Labels: rep.Labels})
	for file, b := range map[string][]byte{caFile: rep.CA, nodeFile: info} {
		if err := atomicfile.Replace(filepath.Join(dir, file), b); err != nil {
			return nil, fmt.Errorf("enroll: %w", err)
		}
	}
	// The certificate last: its presence says the node is enrolled.
	if err := atomicfile.Replace(filepath.Join(dir, certFile), rep.Cert); err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	_ = os.Remove(filepath.Join(dir, revokedFile))
	return id, nil
}

func loadOrMakeKey(path string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return pki.ParseKey(b)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	key, err := pki.NewKey()
	if err != nil {
		return nil, err
	}
	pemKey, err := pki.EncodeKey(key)
	if err != nil {
		return nil, err
	}
	return key, atomicfile.Replace(path, pemKey)
}

func (id *Identity) setCert(certPEM []byte) error {
	keyPEM, err := pki.EncodeKey(id.key)
	if err != nil {
		return err
	}
	pair, err := pki.KeyPair(certPEM, keyPEM, nil)
	if err != nil {
		return err
	}
	if pair.Leaf == nil {
		if pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0]); err != nil {
			return err
		}
	}
	id.mu.Lock()
	id.pair = &pair
	id.mu.Unlock()
	return nil
}

// Name is the node's name as enrolled.
func (id *Identity) Name() string { return id.name }

// Labels are the labels the node was enrolled with (its token's).
func (id *Identity) Labels() map[string]string { return id.labels }

// SecretKey is the node's key as an ECDH key: secrets are sealed to it.
func (id *Identity) SecretKey() (*ecdh.PrivateKey, error) { return id.key.ECDH() }

func (id *Identity) leaf() *x509.Certificate {
	id.mu.Lock()
	defer id.mu.Unlock()
	return id.pair.Leaf
}

// NotAfter is when the current certificate expires.
func (id *Identity) NotAfter() time.Time { return id.leaf().NotAfter }

// Expired reports whether the certificate has expired at now.
func (id *Identity) Expired(now time.Time) bool { return !now.Before(id.leaf().NotAfter) }

// RenewDue reports whether two thirds of the certificate's life have
// passed at now: renewal starts then, leaving a third to retry in.
func (id *Identity) RenewDue(now time.Time) bool {
	l := id.leaf()
	return !now.Before(l.NotBefore.Add(l.NotAfter.Sub(l.NotBefore) * 2 / 3))
}

// TLS is the configuration for connections to the hub: its certificate
// must chain to the fleet's CA; the node's current certificate is given at
// every handshake, so a renewed one is used from the next (re)connection.
func (id *Identity) TLS() (*tls.Config, error) {
	return pki.ClientTLS(id.caPEM, "", func() (*tls.Certificate, error) {
		id.mu.Lock()
		defer id.mu.Unlock()
		return id.pair, nil
	})
}

// Renew asks the hub over nc for a fresh certificate for the node's key
// and stores it.
func (id *Identity) Renew(ctx context.Context, nc *nats.Conn) error {
	csr, err := pki.NewCSR(id.key, id.name)
	if err != nil {
		return err
	}
	var rep wire.RenewReply
	if err := request(ctx, nc, wire.SubjectRenew+id.name, wire.RenewRequest{CSR: csr}, &rep); err != nil {
		return fmt.Errorf("renew certificate: %w", err)
	}
	if rep.Error != "" {
		return fmt.Errorf("renew certificate: the hub refused: %s", rep.Error)
	}
	if err := id.setCert(rep.Cert); err != nil {
		return fmt.Errorf("renew certificate: %w", err)
	}
	if err := atomicfile.Replace(filepath.Join(id.dir, certFile), rep.Cert); err != nil {
		return fmt.Errorf("renew certificate: %w", err)
	}
	return nil
}

// MarkRevoked records that the hub revoked the node.
func (id *Identity) MarkRevoked() error {
	return atomicfile.Replace(filepath.Join(id.dir, revokedFile), []byte(time.Now().UTC().Format(time.RFC3339)+"\n"))
}

// Revoked reports whether the hub said the node was revoked.
func (id *Identity) Revoked() bool {
	_, err := os.Stat(filepath.Join(id.dir, revokedFile))
	return err == nil
}

func request(ctx context.Context, nc *nats.Conn, subject string, req, rep any) error {
	b, err := json.Marshal(req)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	m, err := nc.RequestWithContext(ctx, subject, b)
	if err != nil {
		return err
	}
	return json.Unmarshal(m.Data, rep)
}
