// Package pki is the hub's certificate authority and the certificates it
// issues: one CA per fleet, made on the hub's first start; a server
// certificate for the hub's listeners; client certificates for nodes (role
// "node", the node's name) and for API users (their role, their name).
//
// Keys are ECDSA P-256. Who a certificate names is in its subject:
// CommonName is the node or user name, Organization[0] the role. Peers check
// the hub by its chain to the fleet's CA and the server-auth usage, not by
// host name: an edge hub is reached by whatever address the site gives it,
// and only the hub holds a certificate with that usage.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"atoll.dev/atoll/internal/atomicfile"
)

// Roles a certificate can carry (Subject.Organization[0]).
const (
	RoleAdmin    = "admin"
	RoleOperator = "operator"
	RoleViewer   = "viewer"
	RoleNode     = "node"
	// RoleHub is the hub's own server certificate.
	RoleHub = "hub"
)

// UserRoles are the roles of API users, most privileged first.
var UserRoles = []string{RoleAdmin, RoleOperator, RoleViewer}

// CA is the fleet's certificate authority.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	// PEM is Cert, PEM-encoded.
	PEM []byte
}

// File names in a CA directory.
const (
	caCertFile = "ca.crt"
	caKeyFile  = "ca.key"
)

// caLifetime is how long a CA made by LoadOrCreateCA is valid.
const caLifetime = 20 * 365 * 24 * time.Hour

// LoadOrCreateCA loads the CA in dir (ca.crt, ca.key), or makes one there
// (key 0600) when dir holds neither. An operator supplies their own CA by
// putting both files there before the hub's first start.
func LoadOrCreateCA(dir, name string) (*CA, error) {
	certPEM, err := os.ReadFile(filepath.Join(dir, caCertFile))
	if errors.Is(err, fs.ErrNotExist) {
		if _, kerr := os.Stat(filepath.Join(dir, caKeyFile)); kerr == nil {
			return nil, fmt.Errorf("ca: %s has %s but no %s", dir, caKeyFile, caCertFile)
		}
		return createCA(dir, name)
	}
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	keyPEM, err := os.ReadFile(filepath.Join(dir, caKeyFile))
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	cert, err := ParseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("ca %s: %w", filepath.Join(dir, caCertFile), err)
	}
	key, err := ParseKey(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("ca %s: %w", filepath.Join(dir, caKeyFile), err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("ca %s: not a CA certificate", filepath.Join(dir, caCertFile))
	}
	if !samePublicKey(cert.PublicKey, key.Public()) {
		return nil, fmt.Errorf("ca: %s does not match %s", caKeyFile, caCertFile)
	}
	return &CA{Cert: cert, Key: key, PEM: certPEM}, nil
}

func createCA(dir, name string) (*CA, error) {
	key, err := NewKey()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name + " CA", Organization: []string{"atoll"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caLifetime),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	certPEM := EncodeCert(der)
	keyPEM, err := EncodeKey(key)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	if err := atomicfile.Replace(filepath.Join(dir, caKeyFile), keyPEM); err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	if err := atomicfile.Replace(filepath.Join(dir, caCertFile), certPEM); err != nil {
		return nil, fmt.Errorf("ca: %w", err)
	}
	return &CA{Cert: cert, Key: key, PEM: certPEM}, nil
}

// Fingerprint is the CA's pin: "sha256:<hex of its DER>".
func (ca *CA) Fingerprint() string { return Fingerprint(ca.Cert) }

// Fingerprint is "sha256:<hex>" of cert's DER.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Request is what a certificate says and how long it lasts.
type Request struct {
	// Name is the node or user name (CommonName).
	Name string
	// Role is one of the Role constants (Organization[0]).
	Role string
	// Lifetime is how long the certificate is valid from now.
	Lifetime time.Duration
	// Hosts are DNS names and IP addresses for a server certificate.
	Hosts []string
	// Now is when it is issued; zero means time.Now() (the hub passes its
	// clock's).
	Now time.Time
}

// Issue signs a certificate for pub. RoleHub certificates are for servers
// (server auth), every other role's for clients (client auth).
func (ca *CA) Issue(r Request, pub crypto.PublicKey) (*x509.Certificate, []byte, error) {
	if r.Name == "" || r.Role == "" || r.Lifetime <= 0 {
		return nil, nil, errors.New("issue certificate: name, role and lifetime are required")
	}
	now := r.Now
	if now.IsZero() {
		now = time.Now()
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: r.Name, Organization: []string{r.Role}},
		// A minute of slack for clocks a little behind the hub's.
		NotBefore: now.Add(-time.Minute),
		NotAfter:  now.Add(r.Lifetime),
		KeyUsage:  x509.KeyUsageDigitalSignature,
	}
	if tmpl.NotAfter.After(ca.Cert.NotAfter) {
		tmpl.NotAfter = ca.Cert.NotAfter
	}
	if r.Role == RoleHub {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		addHosts(tmpl, r.Hosts)
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, nil, fmt.Errorf("issue certificate for %s: %w", r.Name, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, fmt.Errorf("issue certificate for %s: %w", r.Name, err)
	}
	return cert, EncodeCert(der), nil
}

// Identity is who a verified certificate names.
type Identity struct {
	Name   string
	Role   string
	Serial string
}

// IdentityOf reads the name and role from a certificate's subject.
func IdentityOf(cert *x509.Certificate) Identity {
	id := Identity{Name: cert.Subject.CommonName, Serial: cert.SerialNumber.Text(16)}
	if len(cert.Subject.Organization) > 0 {
		id.Role = cert.Subject.Organization[0]
	}
	return id
}

// Verify checks that cert was issued by ca for a client and is valid at t
// (the zero time: now).
func (ca *CA) Verify(cert *x509.Certificate, t time.Time) error {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	_, err := cert.Verify(x509.VerifyOptions{
		Roots: pool, CurrentTime: t, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	return err
}

// NewKey makes an ECDSA P-256 key.
func NewKey() (*ecdsa.PrivateKey, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("new key: %w", err)
	}
	return k, nil
}

// NewCSR makes a certificate signing request for key, naming name.
func NewCSR(key crypto.Signer, name string) ([]byte, error) {
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: name}}, key)
	if err != nil {
		return nil, fmt.Errorf("csr: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// ParseCSR reads a PEM CSR and checks its signature: the sender holds the
// key. Only the key is used; the hub decides what the certificate says.
func ParseCSR(b []byte) (*x509.CertificateRequest, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE REQUEST" {
		return nil, errors.New("csr: not a PEM certificate request")
	}
	csr, err := x509.ParseCertificateRequest(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("csr: %w", err)
	}
	if _, ok := csr.PublicKey.(*ecdsa.PublicKey); !ok {
		return nil, errors.New("csr: the key must be ECDSA P-256")
	}
	return csr, nil
}

// EncodeCert PEM-encodes a DER certificate.
func EncodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// ParseCert reads the first PEM certificate in b.
func ParseCert(b []byte) (*x509.Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "CERTIFICATE" {
		return nil, errors.New("not a PEM certificate")
	}
	return x509.ParseCertificate(blk.Bytes)
}

// EncodeKey PEM-encodes a private key (PKCS #8).
func EncodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseKey reads a PEM ECDSA private key (PKCS #8 or SEC 1).
func ParseKey(b []byte) (*ecdsa.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("not a PEM private key")
	}
	if blk.Type == "EC PRIVATE KEY" {
		return x509.ParseECPrivateKey(blk.Bytes)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	ek, ok := k.(*ecdsa.PrivateKey)
	if !ok {
		return nil, errors.New("private key is not ECDSA")
	}
	return ek, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic("pki: no randomness: " + err.Error())
	}
	return n.Add(n, big.NewInt(1))
}

func samePublicKey(a, b crypto.PublicKey) bool {
	ak, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ak.Equal(b)
}

func addHosts(tmpl *x509.Certificate, hosts []string) {
	for _, h := range hosts {
		h = strings.TrimSpace(h)
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
}
