package pki

import (
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadOrCreateCA(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreateCA(dir, "fleet")
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(filepath.Join(dir, caKeyFile)); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("ca.key: %v, %v; want mode 0600", fi.Mode(), err)
	}
	again, err := LoadOrCreateCA(dir, "fleet")
	if err != nil || again.Fingerprint() != ca.Fingerprint() {
		t.Fatalf("reload: %v, %s; want the same CA %s", err, again.Fingerprint(), ca.Fingerprint())
	}
	// Someone else's key beside this certificate.
	other, err := LoadOrCreateCA(t.TempDir(), "other")
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := EncodeKey(other.Key)
	if err := os.WriteFile(filepath.Join(dir, caKeyFile), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateCA(dir, "fleet"); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("mismatched key: %v", err)
	}
	lone := t.TempDir()
	if err := os.WriteFile(filepath.Join(lone, caKeyFile), keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreateCA(lone, "fleet"); err == nil || !strings.Contains(err.Error(), "no ca.crt") {
		t.Errorf("a key without its certificate: %v", err)
	}
}

func TestIssue_RolesAndUsages(t *testing.T) {
	ca, err := LoadOrCreateCA(t.TempDir(), "fleet")
	if err != nil {
		t.Fatal(err)
	}
	key, _ := NewKey()
	node, _, err := ca.Issue(Request{Name: "gw-1", Role: RoleNode, Lifetime: time.Hour}, key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if id := IdentityOf(node); id.Name != "gw-1" || id.Role != RoleNode {
		t.Errorf("identity %+v", id)
	}
	if err := ca.Verify(node, time.Time{}); err != nil {
		t.Errorf("a node certificate does not verify as a client: %v", err)
	}
	if err := ca.Verify(node, time.Now().Add(2*time.Hour)); err == nil {
		t.Error("an expired node certificate verified")
	}
	hub, _, err := ca.Issue(Request{Name: "hub", Role: RoleHub, Lifetime: time.Hour, Hosts: []string{"localhost", "10.0.0.1"}}, key.Public())
	if err != nil {
		t.Fatal(err)
	}
	if err := ca.Verify(hub, time.Time{}); err == nil {
		t.Error("the hub's server certificate verified as a client's")
	}
	if len(hub.IPAddresses) != 1 || len(hub.DNSNames) != 1 {
		t.Errorf("hosts: %v %v", hub.IPAddresses, hub.DNSNames)
	}
	if _, _, err := ca.Issue(Request{Name: "x", Role: RoleNode}, key.Public()); err == nil {
		t.Error("a certificate without a lifetime was issued")
	}
}

func TestParseCSR(t *testing.T) {
	key, _ := NewKey()
	csr, err := NewCSR(key, "gw-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseCSR(csr); err != nil {
		t.Fatal(err)
	}
	if _, err := ParseCSR([]byte("not pem")); err == nil {
		t.Error("garbage parsed as a CSR")
	}
}

// TestClientTLS_ChecksTheHubByCAAndUsage: a client reaches a hub whose
// certificate chains to its CA (or to the pinned one), whatever the host
// name; another CA's server, or a client certificate used as a server's,
// is refused.
func TestClientTLS_ChecksTheHubByCAAndUsage(t *testing.T) {
	ca, _ := LoadOrCreateCA(t.TempDir(), "fleet")
	other, _ := LoadOrCreateCA(t.TempDir(), "other")
	serve := func(ca *CA, role string) string {
		key, _ := NewKey()
		_, certPEM, err := ca.Issue(Request{Name: "hub", Role: role, Lifetime: time.Hour, Hosts: []string{"hub.invalid"}}, key.Public())
		if err != nil {
			t.Fatal(err)
		}
		keyPEM, _ := EncodeKey(key)
		pair, err := KeyPair(certPEM, keyPEM, ca)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewUnstartedServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
		srv.TLS = ServerTLS(pair, ca, true)
		srv.StartTLS()
		t.Cleanup(srv.Close)
		return srv.URL
	}
	get := func(cfg *tls.Config, url string) error {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 5 * time.Second}
		resp, err := c.Get(url)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	byCA, err := ClientTLS(ca.PEM, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	byPin, err := ClientTLS(nil, ca.Fingerprint(), nil)
	if err != nil {
		t.Fatal(err)
	}
	good := serve(ca, RoleHub)
	for what, cfg := range map[string]*tls.Config{"by CA": byCA, "by pin": byPin} {
		if err := get(cfg, good); err != nil {
			t.Errorf("%s: the fleet's hub (another host name) refused: %v", what, err)
		}
		if err := get(cfg, serve(other, RoleHub)); err == nil {
			t.Errorf("%s: another CA's hub accepted", what)
		}
		if err := get(cfg, serve(ca, RoleNode)); err == nil {
			t.Errorf("%s: a node's certificate accepted as the hub's", what)
		}
	}
	if _, err := ClientTLS(nil, "", nil); err == nil {
		t.Error("a client TLS with neither CA nor pin")
	}
}
