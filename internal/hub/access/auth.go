package access

import (
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"sync"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"atoll.dev/atoll/internal/clock"
	"atoll.dev/atoll/internal/pki"
	"atoll.dev/atoll/internal/wire"
)

// HubUser is the NATS user name of the hub's own connection.
const HubUser = "atoll-hub"

// NodeUser is the NATS user name of a node's connections.
func NodeUser(node string) string { return "node:" + node }

// Auth decides who may connect to the hub's NATS and what each may do
// (the embedded server's CustomClientAuthentication):
//   - the hub itself, by a secret made at each start and never stored;
//   - a node, by a certificate from the fleet's CA naming an enrolled,
//     unrevoked node with the key it enrolled: its own subjects only, or,
//     with an expired certificate within the renewal grace, renewal only;
//   - a device holding a usable enrollment token: enrollment only;
//   - an admin, by an unexpired admin certificate: everything (the NATS
//     tools, to look into streams).
//
// Everyone else is refused. Auth knows nodes and tokens from the KV
// watchers of Service; until they have loaded it admits the hub alone.
type Auth struct {
	ca       *pki.CA
	hubToken string
	clock    clock.Clock
	grace    time.Duration

	mu     sync.RWMutex
	nodes  map[string]Node  // guarded by mu
	tokens map[string]Token // guarded by mu
	// revokedUsers are the serials of revoked user certificates; guarded
	// by mu.
	revokedUsers map[string]bool
}

// NewAuth returns an Auth for the fleet of ca; hubToken is the hub's own
// secret, grace how long after its certificate expired a node may still
// renew it.
func NewAuth(ca *pki.CA, hubToken string, clk clock.Clock, grace time.Duration) *Auth {
	return &Auth{ca: ca, hubToken: hubToken, clock: clk, grace: grace, nodes: map[string]Node{}, tokens: map[string]Token{}, revokedUsers: map[string]bool{}}
}

// Check implements server.Authentication.
func (a *Auth) Check(c server.ClientAuthentication) bool {
	if c.Kind() != server.CLIENT {
		return false
	}
	opts := c.GetOpts()
	if opts.Token != "" && subtle.ConstantTimeCompare([]byte(opts.Token), []byte(a.hubToken)) == 1 {
		c.RegisterUser(&server.User{Username: HubUser})
		return true
	}
	if cs := c.GetTLSConnectionState(); cs != nil && len(cs.PeerCertificates) > 0 {
		return a.checkNode(c, cs)
	}
	if opts.Token != "" {
		return a.checkEnrollee(c, opts.Token)
	}
	return false
}

func (a *Auth) checkNode(c server.ClientAuthentication, cs *tls.ConnectionState) bool {
	leaf := cs.PeerCertificates[0]
	now := a.clock.Now()
	expired := !now.Before(leaf.NotAfter)
	at := now
	if expired {
		if now.Sub(leaf.NotAfter) > a.grace {
			return false
		}
		at = leaf.NotAfter.Add(-time.Second)
	}
	if err := a.ca.Verify(leaf, at); err != nil {
		return false
	}
	id := pki.IdentityOf(leaf)
	if id.Role == pki.RoleAdmin && !expired && !a.RevokedCert(leaf) {
		c.RegisterUser(&server.User{Username: "admin:" + id.Name})
		return true
	}
	if id.Role != pki.RoleNode {
		return false
	}
	n, ok := a.node(id.Name)
	if !ok || n.revoked() || !n.holds(leaf) {
		return false
	}
	perms := nodePermissions(id.Name)
	if expired {
		perms = renewPermissions(id.Name)
	}
	c.RegisterUser(&server.User{Username: NodeUser(id.Name), Permissions: perms})
	return true
}

func (a *Auth) checkEnrollee(c server.ClientAuthentication, token string) bool {
	p, err := wire.ParseToken(token)
	if err != nil || p.Pin != a.ca.Fingerprint() {
		return false
	}
	a.mu.RLock()
	t, ok := a.tokens[p.ID]
	a.mu.RUnlock()
	// A used-up token still lets its holder in to ask again: a device
	// whose answer was lost gets its certificate again (same key, same
	// token); anyone else is refused by the enrollment itself.
	if !ok || !t.matches(p.Secret) || t.Revoked || !a.clock.Now().Before(t.Expires) {
		return false
	}
	c.RegisterUser(&server.User{Username: "enroll:" + p.ID, Permissions: &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: []string{wire.SubjectEnroll}},
		Subscribe: &server.SubjectPermission{Allow: []string{wire.EnrollInboxPrefix + p.ID + ".>"}},
	}})
	return true
}

// node returns the enrolled node name.
func (a *Auth) node(name string) (Node, bool) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	n, ok := a.nodes[name]
	return n, ok
}

// RevokedCert reports whether cert is a revoked user's, or a node's whose
// enrollment was revoked or replaced: the API refuses it like the NATS
// does.
func (a *Auth) RevokedCert(cert *x509.Certificate) bool {
	id := pki.IdentityOf(cert)
	if id.Role != pki.RoleNode {
		a.mu.RLock()
		defer a.mu.RUnlock()
		return a.revokedUsers[id.Serial]
	}
	n, ok := a.node(id.Name)
	return !ok || n.revoked() || !n.holds(cert)
}

func (a *Auth) setNode(n Node, deleted bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if deleted {
		delete(a.nodes, n.Name)
		return
	}
	a.nodes[n.Name] = n
}

func (a *Auth) setUser(u User) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, c := range u.Certs {
		if c.Revoked {
			a.revokedUsers[c.Serial] = true
		}
	}
}

func (a *Auth) setToken(t Token, deleted bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if deleted {
		delete(a.tokens, t.ID)
		return
	}
	a.tokens[t.ID] = t
}

// nodePermissions: a node publishes only on its own subjects, reads only
// its own, and may read the artifact store (modules and image archives are
// not secret; its plan, which says which ones it needs, is its own).
func nodePermissions(node string) *server.Permissions {
	const arts = "OBJ_" + wire.ArtifactStore
	return &server.Permissions{
		Publish: &server.SubjectPermission{Allow: []string{
			wire.SubjectHello + node, wire.SubjectHeartbeat + node, wire.SubjectPlan + node,
			wire.SubjectStatus + node, wire.SubjectEvents + node, wire.SubjectTelemetry + node,
			wire.SubjectRenew + node,
			"$JS.API.INFO",
			"$JS.API.STREAM.INFO." + arts,
			"$JS.API.STREAM.MSG.GET." + arts,
			"$JS.API.DIRECT.GET." + arts + ".>",
			"$JS.API.CONSUMER.CREATE." + arts, "$JS.API.CONSUMER.CREATE." + arts + ".>",
			"$JS.API.CONSUMER.INFO." + arts + ".>",
			"$JS.API.CONSUMER.DELETE." + arts + ".>",
			"$JS.API.CONSUMER.MSG.NEXT." + arts + ".>",
			"$JS.ACK." + arts + ".>", "$JS.FC." + arts + ".>",
		}},
		Subscribe: &server.SubjectPermission{Allow: []string{
			wire.SubjectNotify + node, wire.SubjectLogs + node, wire.NodeInboxPrefix + node + ".>",
		}},
		// Answers to the hub's requests (logs).
		Response: &server.ResponsePermission{MaxMsgs: 1, Expires: time.Minute},
	}
}

// renewPermissions: a node whose certificate expired may only renew it.
func renewPermissions(node string) *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: []string{wire.SubjectRenew + node}},
		Subscribe: &server.SubjectPermission{Allow: []string{wire.NodeInboxPrefix + node + ".>"}},
	}
}
