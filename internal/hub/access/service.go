// Package access is who may reach the hub and as whom: enrollment tokens,
// the registry of enrolled nodes and their keys, node certificates issued
// at enrollment and renewed before they expire, revocation, API users'
// certificates and their revocation (users.go), and the embedded NATS's
// authentication (auth.go).
// Tokens and nodes live in JetStream KV, so several hubs on one store share
// them; each hub keeps a copy fed by KV watchers for its NATS to check
// connections against.
package access

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"atoll.dev/atoll/internal/clock"
	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/pki"
	"atoll.dev/atoll/internal/wire"
)

// Buckets.
const (
	NodesBucket  = "atoll-identities"
	TokensBucket = "atoll-tokens"
)

// Defaults.
const (
	DefaultNodeCertLifetime = 24 * time.Hour
	DefaultUserCertLifetime = 365 * 24 * time.Hour
	DefaultRenewGrace       = 90 * 24 * time.Hour
	// queueGroup shares enrollments and renewals among hubs.
	queueGroup = "atoll-hub"
)

// Node is an enrolled node.
type Node struct {
	Name string `json:"name"`
	// Labels are its token's: the hub places by them.
	Labels map[string]string `json:"labels,omitempty"`
	// PublicKey is the key it enrolled with (PKIX DER): every certificate
	// of the node is for it.
	PublicKey []byte    `json:"publicKey"`
	Serial    string    `json:"serial"`
	NotAfter  time.Time `json:"notAfter"`
	Enrolled  time.Time `json:"enrolled"`
	Token     string    `json:"token"`
	// Revoked is when it was revoked; zero when it is not.
	Revoked time.Time `json:"revoked,omitzero"`
}

func (n Node) revoked() bool { return !n.Revoked.IsZero() }

// holds reports whether cert is for the node's enrolled key.
func (n Node) holds(cert *x509.Certificate) bool {
	der, err := x509.MarshalPKIXPublicKey(cert.PublicKey)
	return err == nil && bytes.Equal(der, n.PublicKey)
}

// Config wires a Service.
type Config struct {
	CA   *pki.CA
	Auth *Auth
	// Conn is the hub's own connection.
	Conn     *nats.Conn
	JS       jetstream.JetStream
	Replicas int
	// NodeCertLifetime and UserCertLifetime: 0 means the defaults.
	NodeCertLifetime time.Duration
	UserCertLifetime time.Duration
	// Kick closes the connections of a NATS user; it returns how many.
	Kick   func(user string) int
	Clock  clock.Clock
	Logger *slog.Logger
}

// Service runs enrollment, renewal and revocation.
type Service struct {
	cfg    Config
	nodes  jetstream.KeyValue
	tokens jetstream.KeyValue
	users  jetstream.KeyValue
	subs   []*nats.Subscription
	stop   context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	enrolled func(node string) // guarded by mu
}

// OnEnrolled sets what is called after a node enrolled: its key is known
// from then on, secrets can be sealed to it.
func (s *Service) OnEnrolled(f func(node string)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.enrolled = f
}

// Start opens the buckets, loads them into cfg.Auth and serves enrollment
// and renewal until Stop.
func Start(ctx context.Context, cfg Config) (*Service, error) {
	if cfg.NodeCertLifetime <= 0 {
		cfg.NodeCertLifetime = DefaultNodeCertLifetime
	}
	if cfg.UserCertLifetime <= 0 {
		cfg.UserCertLifetime = DefaultUserCertLifetime
	}
	s := &Service{cfg: cfg}
	var err error
	if s.nodes, err = bucket(ctx, cfg, NodesBucket, "atoll: enrolled nodes"); err != nil {
		return nil, err
	}
	if s.tokens, err = bucket(ctx, cfg, TokensBucket, "atoll: enrollment tokens (hashed)"); err != nil {
		return nil, err
	}
	if s.users, err = bucket(ctx, cfg, UsersBucket, "atoll: API users' certificates"); err != nil {
		return nil, err
	}
	wctx, stop := context.WithCancel(context.Background())
	s.stop = stop
	if err := s.watch(ctx, wctx, s.nodes, s.nodeChanged); err != nil {
		stop()
		return nil, err
	}
	if err := s.watch(ctx, wctx, s.tokens, s.tokenChanged); err != nil {
		s.Stop()
		return nil, err
	}
	if err := s.watch(ctx, wctx, s.users, s.userChanged); err != nil {
		s.Stop()
		return nil, err
	}
	for subject, h := range map[string]nats.MsgHandler{wire.SubjectEnroll: s.enroll, wire.SubjectRenew + "*": s.renew} {
		sub, err := cfg.Conn.QueueSubscribe(subject, queueGroup, h)
		if err != nil {
			s.Stop()
			return nil, fmt.Errorf("access: subscribe %s: %w", subject, err)
		}
		s.subs = append(s.subs, sub)
	}
	return s, nil
}

// Stop ends the service.
func (s *Service) Stop() {
	for _, sub := range s.subs {
		_ = sub.Unsubscribe()
	}
	s.stop()
	s.wg.Wait()
}

func bucket(ctx context.Context, cfg Config, name, desc string) (jetstream.KeyValue, error) {
	kv, err := cfg.JS.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket: name, Description: desc, History: 1, Storage: jetstream.FileStorage, Replicas: max(cfg.Replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("access: bucket %s: %w", name, err)
	}
	return kv, nil
}

// watch feeds every entry of kv to f, returning once the present ones are
// in, and goes on with changes until wctx ends.
func (s *Service) watch(ctx, wctx context.Context, kv jetstream.KeyValue, f func(jetstream.KeyValueEntry, bool)) error {
	w, err := kv.WatchAll(wctx)
	if err != nil {
		return fmt.Errorf("access: watch %s: %w", kv.Bucket(), err)
	}
	loaded := make(chan struct{})
	s.wg.Go(func() {
		defer func() { _ = w.Stop() }()
		initial := true
		for {
			select {
			case <-wctx.Done():
				return
			case e, ok := <-w.Updates():
				if !ok {
					return
				}
				if e == nil {
					if initial {
						initial = false
						close(loaded)
					}
					continue
				}
				f(e, initial)
			}
		}
	})
	select {
	case <-loaded:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("access: load %s: %w", kv.Bucket(), ctx.Err())
	}
}

func (s *Service) nodeChanged(e jetstream.KeyValueEntry, initial bool) {
	if e.Operation() != jetstream.KeyValuePut {
		s.cfg.Auth.setNode(Node{Name: e.Key()}, true)
		return
	}
	var n Node
	if err := json.Unmarshal(e.Value(), &n); err != nil {
		s.cfg.Logger.Warn("bad node identity in store", "node", e.Key(), "err", err)
		return
	}
	old, had := s.cfg.Auth.node(n.Name)
	s.cfg.Auth.setNode(n, false)
	if n.revoked() && (initial || !had || !old.revoked()) {
		s.cut(n.Name)
	}
}

// cut tells a revoked node so and, noticeGrace later (for the notice to
// reach it), closes its connections.
func (s *Service) cut(node string) {
	if b, err := json.Marshal(wire.Notify{Revoked: true}); err == nil {
		_ = s.cfg.Conn.Publish(wire.SubjectNotify+node, b)
		_ = s.cfg.Conn.Flush()
	}
	if s.cfg.Kick == nil {
		return
	}
	time.AfterFunc(noticeGrace, func() {
		if n := s.cfg.Kick(NodeUser(node)); n > 0 {
			s.cfg.Logger.Info("revoked node's connections closed", "node", node, "connections", n)
		}
	})
}

// noticeGrace is how long a revoked node's connections stay open after
// the notice was sent, for it to arrive.
const noticeGrace = 500 * time.Millisecond

func (s *Service) tokenChanged(e jetstream.KeyValueEntry, _ bool) {
	if e.Operation() != jetstream.KeyValuePut {
		s.cfg.Auth.setToken(Token{ID: e.Key()}, true)
		return
	}
	var t Token
	if err := json.Unmarshal(e.Value(), &t); err != nil {
		s.cfg.Logger.Warn("bad token in store", "token", e.Key(), "err", err)
		return
	}
	s.cfg.Auth.setToken(t, false)
}

// NodeKey is the enrolled node's key for sealing secrets to it; nil for a
// node not enrolled, or revoked.
func (s *Service) NodeKey(_ context.Context, node string) (*ecdh.PublicKey, error) {
	n, ok := s.cfg.Auth.node(node)
	if !ok || n.revoked() {
		return nil, nil
	}
	pub, err := x509.ParsePKIXPublicKey(n.PublicKey)
	if err != nil {
		return nil, fmt.Errorf("node %s: stored key: %w", node, err)
	}
	ek, ok := pub.(*ecdsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("node %s: stored key is not ECDSA", node)
	}
	return ek.ECDH()
}

// Labels are the labels node enrolled with; nil for a node not enrolled.
func (s *Service) Labels(node string) map[string]string {
	n, _ := s.cfg.Auth.node(node)
	return n.Labels
}

// enroll answers an EnrollRequest.
func (s *Service) enroll(m *nats.Msg) {
	var req wire.EnrollRequest
	var rep wire.EnrollReply
	if err := json.Unmarshal(m.Data, &req); err != nil {
		rep.Error = "bad enrollment request: " + err.Error()
	} else if n, cert, err := s.enrollNode(context.Background(), req); err != nil {
		rep.Error = err.Error()
		s.cfg.Logger.Warn("enrollment refused", "name", req.Name, "err", err)
	} else {
		rep = wire.EnrollReply{Name: n.Name, Labels: n.Labels, Cert: cert, CA: s.cfg.CA.PEM}
		s.cfg.Logger.Info("node enrolled", "node", n.Name, "token", n.Token)
		s.mu.Lock()
		f := s.enrolled
		s.mu.Unlock()
		if f != nil {
			go f(n.Name)
		}
	}
	respond(m, rep)
}

// errTokenRace is a token changed by another enrollment meanwhile.
var errTokenRace = errors.New("the token was used at the same moment by another enrollment; try again")

func (s *Service) enrollNode(ctx context.Context, req wire.EnrollRequest) (Node, []byte, error) {
	p, err := wire.ParseToken(req.Token)
	if err != nil {
		return Node{}, nil, err
	}
	csr, err := pki.ParseCSR(req.CSR)
	if err != nil {
		return Node{}, nil, err
	}
	key, err := x509.MarshalPKIXPublicKey(csr.PublicKey)
	if err != nil {
		return Node{}, nil, fmt.Errorf("csr: %w", err)
	}
	e, err := s.tokens.Get(ctx, p.ID)
	if err != nil {
		return Node{}, nil, fmt.Errorf("unknown enrollment token %s", p.ID)
	}
	var t Token
	if err := json.Unmarshal(e.Value(), &t); err != nil {
		return Node{}, nil, fmt.Errorf("token %s: %w", p.ID, err)
	}
	if !t.matches(p.Secret) {
		return Node{}, nil, fmt.Errorf("wrong secret for enrollment token %s", p.ID)
	}
	name := req.Name
	if t.NamePrefix != "" && !strings.HasPrefix(name, t.NamePrefix) {
		name = t.NamePrefix + name
	}
	if !manifest.IsDNSLabel(name) {
		return Node{}, nil, fmt.Errorf("node name %q is not a DNS label (lowercase letters, digits and '-', at most 63)", name)
	}
	prev, had := s.cfg.Auth.node(name)
	again := had && !prev.revoked() && bytes.Equal(prev.PublicKey, key) && prev.Token == t.ID
	if had && !prev.revoked() && !again {
		return Node{}, nil, fmt.Errorf("node %s is already enrolled: revoke it first (atoll node revoke %s)", name, name)
	}
	if had && prev.revoked() && prev.Token == t.ID {
		// A revoked device that kept its token must not let itself back in.
		return Node{}, nil, fmt.Errorf("node %s was revoked: it enrolls again only with a new token", name)
	}
	if !again {
		// An enrollment answered but lost on the way is asked again with
		// the same key and token: it does not use the token once more.
		if err := t.usable(s.cfg.Clock.Now()); err != nil {
			return Node{}, nil, err
		}
		t.Used++
		t.Nodes = append(t.Nodes, name)
		b, _ := json.Marshal(t)
		if _, err := s.tokens.Update(ctx, t.ID, b, e.Revision()); err != nil {
			return Node{}, nil, errTokenRace
		}
	}
	n := Node{Name: name, Labels: t.Labels, PublicKey: key, Enrolled: s.cfg.Clock.Now(), Token: t.ID}
	cert, err := s.issue(ctx, &n, csr.PublicKey)
	return n, cert, err
}

// issue signs a node certificate for key and stores the node with it.
func (s *Service) issue(ctx context.Context, n *Node, key any) ([]byte, error) {
	cert, pemCert, err := s.cfg.CA.Issue(pki.Request{Name: n.Name, Role: pki.RoleNode, Lifetime: s.cfg.NodeCertLifetime, Now: s.cfg.Clock.Now()}, key)
	if err != nil {
		return nil, err
	}
	n.Serial, n.NotAfter = cert.SerialNumber.Text(16), cert.NotAfter
	b, _ := json.Marshal(n)
	if _, err := s.nodes.Put(ctx, n.Name, b); err != nil {
		return nil, fmt.Errorf("store node %s: %w", n.Name, err)
	}
	s.cfg.Auth.setNode(*n, false) // before the reply: its next connection must pass
	return pemCert, nil
}

// renew answers a RenewRequest; only the node itself can publish on its
// subject.
func (s *Service) renew(m *nats.Msg) {
	node := m.Subject[len(wire.SubjectRenew):]
	var req wire.RenewRequest
	var rep wire.RenewReply
	if err := json.Unmarshal(m.Data, &req); err != nil {
		rep.Error = "bad renewal request: " + err.Error()
	} else if cert, err := s.renewNode(context.Background(), node, req); err != nil {
		rep.Error = err.Error()
		s.cfg.Logger.Warn("renewal refused", "node", node, "err", err)
	} else {
		rep.Cert = cert
		s.cfg.Logger.Info("node certificate renewed", "node", node)
	}
	respond(m, rep)
}

func (s *Service) renewNode(ctx context.Context, node string, req wire.RenewRequest) ([]byte, error) {
	n, ok := s.cfg.Auth.node(node)
	if !ok || n.revoked() {
		return nil, fmt.Errorf("node %s is not enrolled or was revoked", node)
	}
	csr, err := pki.ParseCSR(req.CSR)
	if err != nil {
		return nil, err
	}
	key, err := x509.MarshalPKIXPublicKey(csr.PublicKey)
	if err != nil || !bytes.Equal(key, n.PublicKey) {
		return nil, errors.New("the request is not for the key the node enrolled with")
	}
	return s.issue(ctx, &n, csr.PublicKey)
}

// Revoke revokes node: its connections are closed within the watchers'
// delay, its certificates refused from then on. The node keeps running
// what it runs. It returns false for a node not enrolled.
func (s *Service) Revoke(ctx context.Context, node string) (bool, error) {
	e, err := s.nodes.Get(ctx, node)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("revoke %s: %w", node, err)
	}
	var n Node
	if err := json.Unmarshal(e.Value(), &n); err != nil {
		return false, fmt.Errorf("revoke %s: %w", node, err)
	}
	if n.revoked() {
		return true, nil
	}
	n.Revoked = s.cfg.Clock.Now()
	b, _ := json.Marshal(n)
	if _, err := s.nodes.Update(ctx, node, b, e.Revision()); err != nil {
		return false, fmt.Errorf("revoke %s: %w", node, err)
	}
	s.cfg.Auth.setNode(n, false)
	s.cut(node)
	return true, nil
}

func respond(m *nats.Msg, v any) {
	b, _ := json.Marshal(v)
	_ = m.Respond(b)
}
