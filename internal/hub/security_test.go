package hub_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"crypto/rand"

	"github.com/nats-io/nats.go"
	yaml "go.yaml.in/yaml/v2"

	"atoll.dev/atoll/internal/agent/identity"
	"atoll.dev/atoll/internal/atolltest"
	"atoll.dev/atoll/internal/client"
	"atoll.dev/atoll/internal/hub"
	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/hub/hubtest"
	"atoll.dev/atoll/internal/pki"
	"atoll.dev/atoll/internal/wire"
)

// secureHub is a hub run as by default (TLS, authentication), with its
// admin's credentials and its CA.
type secureHub struct {
	*testHub
	dir   string
	clock *hubtest.Clock
	admin client.Credentials
	api   *client.Hub
	ca    *pki.CA
}

func startSecureHub(t *testing.T) *secureHub {
	t.Helper()
	dir := t.TempDir()
	c := hubtest.NewClock(time.Now())
	h := runHub(t, hub.Config{DataDir: dir, Clock: c, NodeCertLifetime: time.Hour, RenewGrace: 48 * time.Hour})
	b, err := os.ReadFile(filepath.Join(dir, hub.AdminConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(filepath.Join(dir, hub.AdminConfigFile)); fi.Mode().Perm() != 0o600 {
		t.Errorf("admin.conf mode %v, want 0600", fi.Mode().Perm())
	}
	var creds client.Credentials
	if err := yaml.Unmarshal(b, &creds); err != nil {
		t.Fatal(err)
	}
	if creds.Hub != "https://"+h.HTTPAddr() {
		t.Errorf("admin.conf hub %q, want https://%s", creds.Hub, h.HTTPAddr())
	}
	tlsCfg, err := creds.TLS()
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadOrCreateCA(filepath.Join(dir, "ca"), "unused")
	if err != nil {
		t.Fatal(err)
	}
	return &secureHub{testHub: h, dir: dir, clock: c, admin: creds, api: client.NewHub(creds.Hub, tlsCfg), ca: ca}
}

func (h *secureHub) token(t *testing.T, req api.TokenRequest) string {
	t.Helper()
	tok, err := h.api.CreateToken(hubtest.Context(t), req)
	if err != nil {
		t.Fatal(err)
	}
	return tok.Token
}

// enroll enrolls a node as its agent does and returns its identity.
func (h *secureHub) enroll(t *testing.T, token, name string) *identity.Identity {
	t.Helper()
	id, err := identity.Enroll(hubtest.Context(t), t.TempDir(), h.NATSURL(), token, name)
	if err != nil {
		t.Fatalf("enroll %s: %v", name, err)
	}
	return id
}

// nodeConn connects as an enrolled node; violations collects the
// permission errors the server sends it.
type nodeConn struct {
	*nats.Conn
	mu         sync.Mutex
	violations []string
}

func (h *secureHub) connect(t *testing.T, id *identity.Identity) (*nodeConn, error) {
	t.Helper()
	tlsCfg, err := id.TLS()
	if err != nil {
		t.Fatal(err)
	}
	c := &nodeConn{}
	nc, err := nats.Connect(h.NATSURL(), nats.Secure(tlsCfg), nats.CustomInboxPrefix(wire.NodeInboxPrefix+id.Name()),
		nats.NoReconnect(), nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			c.mu.Lock()
			c.violations = append(c.violations, err.Error())
			c.mu.Unlock()
		}))
	if err != nil {
		return nil, err
	}
	t.Cleanup(nc.Close)
	c.Conn = nc
	return c, nil
}

// refused waits for a permission violation naming subject.
func (c *nodeConn) refused(t *testing.T, what, subject string) {
	t.Helper()
	atolltest.WaitFor(t, 10*time.Second, func() error {
		c.mu.Lock()
		defer c.mu.Unlock()
		for _, v := range c.violations {
			if strings.Contains(strings.ToLower(v), "permissions violation") && strings.Contains(v, subject) {
				return nil
			}
		}
		return errors.New(what + ": no permissions violation for " + subject)
	})
}

func planOf(t *testing.T, nc *nats.Conn, node string) (*nats.Msg, error) {
	t.Helper()
	b, _ := json.Marshal(wire.PlanRequest{Node: node})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return nc.RequestWithContext(ctx, wire.SubjectPlan+node, b)
}

func TestSecurity_NodeIsolation(t *testing.T) {
	h := startSecureHub(t)
	tok := h.token(t, api.TokenRequest{Uses: 2})
	a, b := h.enroll(t, tok, "a"), h.enroll(t, tok, "b")
	ca, err := h.connect(t, a)
	if err != nil {
		t.Fatal(err)
	}
	// Its own plan: answered.
	if _, err := planOf(t, ca.Conn, "a"); err != nil {
		t.Fatalf("node a asking its own plan: %v", err)
	}
	// B's plan (and the secrets sealed in it): refused.
	if m, err := planOf(t, ca.Conn, "b"); err == nil {
		t.Fatalf("node a read node b's plan: %s", m.Data)
	}
	ca.refused(t, "read b's plan", wire.SubjectPlan+"b")
	for _, subj := range []string{wire.SubjectNotify + "b", wire.SubjectLogs + "b", wire.NodeInboxPrefix + "b.>", "$KV.atoll-secrets.>", ">"} {
		if _, err := ca.SubscribeSync(subj); err != nil {
			t.Fatal(err)
		}
		ca.refused(t, "subscribe "+subj, subj)
	}
	// The secrets' bucket through JetStream's API: refused.
	if _, err := ca.Request("$JS.API.STREAM.MSG.GET.KV_atoll-secrets", []byte(`{"last_by_subj":"$KV.atoll-secrets.db"}`), time.Second); err == nil {
		t.Error("node a read the secrets bucket")
	}
	ca.refused(t, "read the secrets bucket", "$JS.API.STREAM.MSG.GET.KV_atoll-secrets")
	// Publishing as b: refused, and the hub never hears of it.
	st, _ := json.Marshal(wire.Status{Node: "b"})
	if err := ca.Publish(wire.SubjectStatus+"b", st); err != nil {
		t.Fatal(err)
	}
	ca.refused(t, "publish b's status", wire.SubjectStatus+"b")
	hello, _ := json.Marshal(wire.Hello{ProtocolVersion: wire.ProtocolVersion, Node: "b"})
	if _, err := ca.Request(wire.SubjectHello+"b", hello, time.Second); err == nil {
		t.Error("node a said hello as node b")
	}
	ca.refused(t, "hello as b", wire.SubjectHello+"b")
	if ns := h.nodes(); ns["b"].Name != "" {
		t.Errorf("the hub knows node b from a's messages: %+v", ns["b"])
	}
	// B itself is fine.
	cb, err := h.connect(t, b)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := planOf(t, cb.Conn, "b"); err != nil {
		t.Fatalf("node b asking its own plan: %v", err)
	}
}

// nodes is the hub's view of its nodes, by name.
func (h *secureHub) nodes() map[string]api.Node {
	ns, err := h.api.Nodes(context.Background())
	if err != nil {
		h.t.Fatal(err)
	}
	m := map[string]api.Node{}
	for _, n := range ns {
		m[n.Name] = n
	}
	return m
}

// strangers are clients the hub must refuse: certificates it did not
// issue, one it issued that has expired.
func strangers(t *testing.T, h *secureHub, role string) map[string]*tls.Certificate {
	t.Helper()
	other, err := pki.LoadOrCreateCA(t.TempDir(), "other")
	if err != nil {
		t.Fatal(err)
	}
	pair := func(ca *pki.CA, lifetime time.Duration) *tls.Certificate {
		key, _ := pki.NewKey()
		_, certPEM, err := ca.Issue(pki.Request{Name: "a", Role: role, Lifetime: lifetime}, key.Public())
		if err != nil {
			t.Fatal(err)
		}
		keyPEM, _ := pki.EncodeKey(key)
		p, err := pki.KeyPair(certPEM, keyPEM, nil)
		if err != nil {
			t.Fatal(err)
		}
		return &p
	}
	key, _ := pki.NewKey()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "a", Organization: []string{role}},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := pki.EncodeKey(key)
	self, err := pki.KeyPair(pki.EncodeCert(der), keyPEM, nil)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]*tls.Certificate{
		"self-signed": &self,
		"other CA":    pair(other, time.Hour),
		"expired":     pair(h.ca, time.Nanosecond),
	}
}

func TestSecurity_NATSRefusesStrangers(t *testing.T) {
	h := startSecureHub(t)
	if _, err := nats.Connect(h.NATSURL(), nats.NoReconnect()); err == nil {
		t.Error("a client without TLS connected")
	}
	anon, err := pki.ClientTLS(h.ca.PEM, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := nats.Connect(h.NATSURL(), nats.Secure(anon), nats.NoReconnect()); err == nil {
		t.Error("a client without a certificate connected")
	}
	if _, err := nats.Connect(h.NATSURL(), nats.Secure(anon), nats.Token("AT1.x.y."+strings.Repeat("0", 64)), nats.NoReconnect()); err == nil {
		t.Error("a client with a made-up token connected")
	}
	// Certificates for an enrolled name that the hub did not issue for
	// its key: self-signed, another CA's, this CA's for another key
	// (expired at once). The node's own expired certificate:
	// TestSecurity_ExpiredNodeMayOnlyRenew.
	h.enroll(t, h.token(t, api.TokenRequest{}), "a")
	for what, cert := range strangers(t, h, pki.RoleNode) {
		cfg, err := pki.ClientTLS(h.ca.PEM, "", func() (*tls.Certificate, error) { return cert, nil })
		if err != nil {
			t.Fatal(err)
		}
		if nc, err := nats.Connect(h.NATSURL(), nats.Secure(cfg), nats.NoReconnect()); err == nil {
			nc.Close()
			t.Errorf("%s client connected to NATS", what)
		}
	}
}

func TestSecurity_APIRefusesStrangers(t *testing.T) {
	h := startSecureHub(t)
	get := func(cfg *tls.Config, scheme string) (int, error) {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: cfg}, Timeout: 5 * time.Second}
		resp, err := c.Get(scheme + h.HTTPAddr() + "/v1/nodes")
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		return resp.StatusCode, nil
	}
	if code, err := get(nil, "http://"); err == nil && code == http.StatusOK {
		t.Error("plain HTTP answered 200")
	}
	anon, _ := pki.ClientTLS(h.ca.PEM, "", nil)
	if code, err := get(anon, "https://"); err != nil || code != http.StatusUnauthorized {
		t.Errorf("no client certificate = %d, %v; want 401", code, err)
	}
	for what, cert := range strangers(t, h, pki.RoleAdmin) {
		cfg, _ := pki.ClientTLS(h.ca.PEM, "", func() (*tls.Certificate, error) { return cert, nil })
		if code, err := get(cfg, "https://"); err == nil {
			t.Errorf("%s client got %d from the API; want the handshake refused", what, code)
		}
	}
	admin, _ := h.admin.TLS()
	if code, err := get(admin, "https://"); err != nil || code != http.StatusOK {
		t.Errorf("admin = %d, %v; want 200", code, err)
	}
	// A node's certificate is no API credential; a revoked node's is
	// refused as revoked.
	id := h.enroll(t, h.token(t, api.TokenRequest{}), "a")
	nodeTLS, _ := id.TLS()
	if code, err := get(nodeTLS, "https://"); err != nil || code != http.StatusForbidden {
		t.Errorf("node certificate = %d, %v; want 403", code, err)
	}
	if _, err := h.api.RevokeNode(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	if code, err := get(nodeTLS, "https://"); err != nil || code != http.StatusUnauthorized {
		t.Errorf("revoked node certificate = %d, %v; want 401", code, err)
	}
}

func TestSecurity_TokenUsesAndExpiry(t *testing.T) {
	h := startSecureHub(t)
	once := h.token(t, api.TokenRequest{Uses: 1, TTL: "1h", Labels: map[string]string{"site": "plant-9"}, NamePrefix: "kiosk-"})
	id := h.enroll(t, once, "one")
	if id.Name() != "kiosk-one" || id.Labels()["site"] != "plant-9" {
		t.Errorf("enrolled as %q %v; want kiosk-one with site=plant-9", id.Name(), id.Labels())
	}
	if _, err := identity.Enroll(hubtest.Context(t), t.TempDir(), h.NATSURL(), once, "two"); err == nil {
		t.Error("a one-use token enrolled a second node")
	}
	// The same device asking again (its answer lost): the same name, no
	// second use.
	later := h.token(t, api.TokenRequest{Uses: 1, TTL: "1h"})
	dir := t.TempDir()
	if _, err := identity.Enroll(hubtest.Context(t), dir, h.NATSURL(), later, "three"); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "node.crt")); err != nil {
		t.Fatal(err)
	}
	if _, err := identity.Enroll(hubtest.Context(t), dir, h.NATSURL(), later, "three"); err != nil {
		t.Errorf("the same device enrolling again with its key and token: %v", err)
	}
	h.clock.Advance(2 * time.Hour)
	expiring := h.token(t, api.TokenRequest{Uses: 5, TTL: "1h"})
	h.clock.Advance(61 * time.Minute)
	if _, err := identity.Enroll(hubtest.Context(t), t.TempDir(), h.NATSURL(), expiring, "four"); err == nil {
		t.Error("an expired token enrolled a node")
	}
	revoked := h.token(t, api.TokenRequest{Uses: 5})
	if _, err := h.api.RevokeToken(context.Background(), strings.Split(revoked, ".")[1]); err != nil {
		t.Fatal(err)
	}
	if _, err := identity.Enroll(hubtest.Context(t), t.TempDir(), h.NATSURL(), revoked, "five"); err == nil {
		t.Error("a revoked token enrolled a node")
	}
	// A taken name is refused until revoked.
	if _, err := identity.Enroll(hubtest.Context(t), t.TempDir(), h.NATSURL(), h.token(t, api.TokenRequest{}), "kiosk-one"); err == nil || !strings.Contains(err.Error(), "already enrolled") {
		t.Errorf("enrolling a taken name: %v", err)
	}
}

func TestSecurity_ExpiredNodeMayOnlyRenew(t *testing.T) {
	h := startSecureHub(t)
	id := h.enroll(t, h.token(t, api.TokenRequest{}), "a")
	// An outage longer than the certificate (the hub's clock moves).
	h.clock.Advance(2 * time.Hour)
	c, err := h.connect(t, id)
	if err != nil {
		t.Fatalf("an expired node within the grace could not connect to renew: %v", err)
	}
	if _, err := planOf(t, c.Conn, "a"); err == nil {
		t.Error("an expired node read its plan")
	}
	c.refused(t, "plan with an expired certificate", wire.SubjectPlan+"a")
	if err := id.Renew(hubtest.Context(t), c.Conn); err != nil {
		t.Fatalf("renew: %v", err)
	}
	c.Close()
	c2, err := h.connect(t, id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := planOf(t, c2.Conn, "a"); err != nil {
		t.Errorf("renewed node asking its plan: %v", err)
	}
	// Past the grace: refused altogether.
	h.clock.Advance(100 * time.Hour)
	if _, err := h.connect(t, id); err == nil {
		t.Error("a node expired past the renewal grace connected")
	}
}

func TestSecurity_RevokeCutsAndRefuses(t *testing.T) {
	h := startSecureHub(t)
	first := h.token(t, api.TokenRequest{Uses: 5})
	id := h.enroll(t, first, "a")
	c, err := h.connect(t, id)
	if err != nil {
		t.Fatal(err)
	}
	notices, err := c.SubscribeSync(wire.SubjectNotify + "a")
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if _, err := h.api.RevokeNode(context.Background(), "a"); err != nil {
		t.Fatal(err)
	}
	m, err := notices.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("no revocation notice: %v", err)
	}
	var n wire.Notify
	if json.Unmarshal(m.Data, &n) != nil || !n.Revoked {
		t.Errorf("notice %s; want revoked", m.Data)
	}
	atolltest.WaitFor(t, 5*time.Second, func() error {
		if !c.IsClosed() {
			return errors.New("the revoked node's connection is still open")
		}
		return nil
	})
	if _, err := h.connect(t, id); err == nil {
		t.Error("a revoked node reconnected")
	}
	// Its renewal is refused too (it cannot connect to ask): and a new
	// enrollment under its name is allowed once revoked.
	if _, err := h.api.RevokeNode(context.Background(), "nobody"); err == nil {
		t.Error("revoking an unknown node succeeded")
	}
	if _, err := identity.Enroll(hubtest.Context(t), t.TempDir(), h.NATSURL(), first, "a"); err == nil || !strings.Contains(err.Error(), "new token") {
		t.Errorf("the revoked node's own token let it back in: %v", err)
	}
	again := h.enroll(t, h.token(t, api.TokenRequest{}), "a")
	if _, err := h.connect(t, again); err != nil {
		t.Errorf("a re-enrolled node: %v", err)
	}
}

func TestSecurity_TokenLabelsOverrideTheNodes(t *testing.T) {
	h := startSecureHub(t)
	id := h.enroll(t, h.token(t, api.TokenRequest{Labels: map[string]string{"site": "plant-9"}}), "a")
	c, err := h.connect(t, id)
	if err != nil {
		t.Fatal(err)
	}
	hello, _ := json.Marshal(wire.Hello{ProtocolVersion: wire.ProtocolVersion, Node: "a", Labels: map[string]string{"site": "plant-1", "role": "kiosk"}})
	m, err := c.Request(wire.SubjectHello+"a", hello, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	var rep wire.HelloReply
	if err := json.Unmarshal(m.Data, &rep); err != nil || rep.Error != "" {
		t.Fatalf("hello: %s %v", m.Data, err)
	}
	got := h.nodes()["a"].Labels
	if got["site"] != "plant-9" || got["role"] != "kiosk" {
		t.Errorf("labels %v; want the token's site=plant-9 over the node's plant-1, and its own role=kiosk", got)
	}
}

func TestSecurity_RevokedUserRefusedOnBothListeners(t *testing.T) {
	h := startSecureHub(t)
	key, _ := pki.NewKey()
	csr, _ := pki.NewCSR(key, "ops")
	uc, err := h.api.CreateUser(context.Background(), api.UserRequest{Name: "ops", Role: pki.RoleAdmin, CSR: csr})
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, _ := pki.EncodeKey(key)
	creds := client.Credentials{Hub: h.admin.Hub, CA: string(uc.CA), Cert: string(uc.Cert), Key: string(keyPEM)}
	tlsCfg, err := creds.TLS()
	if err != nil {
		t.Fatal(err)
	}
	ops := client.NewHub(creds.Hub, tlsCfg)
	if _, err := ops.Nodes(context.Background()); err != nil {
		t.Fatalf("a new admin's API call: %v", err)
	}
	nc, err := nats.Connect(h.NATSURL(), nats.Secure(tlsCfg), nats.NoReconnect())
	if err != nil {
		t.Fatalf("a new admin's NATS: %v", err)
	}
	nc.Close()
	us, err := h.api.Users(context.Background())
	if err != nil || len(us) != 2 || us[0].Name != "admin" || us[1].Name != "ops" {
		t.Errorf("users = %+v, %v; want the hub's admin and ops", us, err)
	}

	if r, err := h.api.RevokeUser(context.Background(), "ops"); err != nil || r.Revoked != 1 {
		t.Fatalf("revoke ops = %+v, %v", r, err)
	}
	var apiErr *client.APIError
	if _, err := ops.Nodes(context.Background()); !errors.As(err, &apiErr) || apiErr.StatusCode != http.StatusUnauthorized {
		t.Errorf("a revoked admin's API call: %v; want 401", err)
	}
	if nc, err := nats.Connect(h.NATSURL(), nats.Secure(tlsCfg), nats.NoReconnect()); err == nil {
		nc.Close()
		t.Error("a revoked admin connected to NATS")
	}
	if _, err := h.api.Nodes(context.Background()); err != nil {
		t.Errorf("the other admin after the revocation: %v", err)
	}
}
