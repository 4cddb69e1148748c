package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
)

// ServerTLS is the hub's listener configuration: cert (with the CA
// appended, so a client that pins the CA finds it in the chain); client
// certificates are asked for and, with verify, checked against ca. NATS
// verifies them itself (an expired node may still renew), the HTTP API
// lets the TLS layer do it.
func ServerTLS(cert tls.Certificate, ca *CA, verify bool) *tls.Config {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequestClientCert,
	}
	if verify {
		cfg.ClientAuth = tls.VerifyClientCertIfGiven
	}
	return cfg
}

// ClientTLS is a client's configuration for the hub: the hub's
// certificate must chain to caPEM (or, when caPEM is empty, to a CA in the
// chain whose fingerprint is pin) and be a server certificate; host names
// are not checked (see the package comment). cert, when not nil, is asked
// for the client certificate at every handshake, so a renewed one is used
// from the next connection on.
func ClientTLS(caPEM []byte, pin string, cert func() (*tls.Certificate, error)) (*tls.Config, error) {
	var roots *x509.CertPool
	if len(caPEM) > 0 {
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(caPEM) {
			return nil, errors.New("tls: no PEM certificate in the CA")
		}
	} else if pin == "" {
		return nil, errors.New("tls: neither a CA nor a CA fingerprint to check the hub by")
	}
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Checked in VerifyConnection, by chain and usage, not host name.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			return verifyHub(cs.PeerCertificates, roots, pin)
		},
	}
	if cert != nil {
		cfg.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return cert() }
	}
	return cfg, nil
}

func verifyHub(chain []*x509.Certificate, roots *x509.CertPool, pin string) error {
	if len(chain) == 0 {
		return errors.New("tls: the hub sent no certificate")
	}
	if roots == nil {
		roots = x509.NewCertPool()
		for _, c := range chain[1:] {
			if c.IsCA && Fingerprint(c) == pin {
				roots.AddCert(c)
			}
		}
	}
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		inter.AddCert(c)
	}
	_, err := chain[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if err != nil {
		if pin != "" {
			return fmt.Errorf("tls: the hub's certificate does not chain to the CA pinned as %s: %w", pin, err)
		}
		return fmt.Errorf("tls: the hub's certificate is not from this fleet's CA: %w", err)
	}
	return nil
}

// KeyPair assembles a tls.Certificate from PEM certificate and key, with
// the CA appended to the chain when ca is not nil.
func KeyPair(certPEM, keyPEM []byte, ca *CA) (tls.Certificate, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("key pair: %w", err)
	}
	if ca != nil {
		pair.Certificate = append(pair.Certificate, ca.Cert.Raw)
	}
	return pair, nil
}
