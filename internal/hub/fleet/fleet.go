// Package fleet is the hub's in-memory view of node sessions: when each
// node was last heard from, the plan revisions it acknowledged, and, from
// that and the clock, whether it is connected. A silent node is
// disconnected, never failed, and nothing about its workloads changes
// because of it (DESIGN invariant 4).
//
// The state is derived on read:
//
//	never-seen    no contact recorded
//	connected     last contact less than the timeout ago (default wire.DisconnectedAfter)
//	disconnected  otherwise
//
// Contacts arrive at whichever hub NATS hands a message to; hubs tell each
// other about the contacts they handle (Observe), so every hub's view is
// fresh. The store keeps lastSeen for restarts, written on connect and
// disconnect and at most every PersistEvery in between.
package fleet

import (
	"sort"
	"sync"
	"time"

	"atoll.dev/atoll/internal/clock"
	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/wire"
)

// PersistEvery is how stale the stored lastSeen of a connected node may
// get before a contact writes it again.
const PersistEvery = 30 * time.Second

// StateAt is a node's state at now given its last contact (zero: never).
func (f *Fleet) StateAt(lastSeen, now time.Time) string {
	switch {
	case lastSeen.IsZero():
		return api.NodeNeverSeen
	case now.Sub(lastSeen) < f.timeout:
		return api.NodeConnected
	default:
		return api.NodeDisconnected
	}
}

// Session is what the hub knows of a node's link.
type Session struct {
	LastSeen time.Time
	// StoredRevision and AppliedRevision are the largest the node has
	// acknowledged (revisions only grow, so a replayed message cannot
	// lower them).
	StoredRevision  uint64
	AppliedRevision uint64
}

func (s *Session) merge(o Session) {
	if o.LastSeen.After(s.LastSeen) {
		s.LastSeen = o.LastSeen
	}
	s.StoredRevision = max(s.StoredRevision, o.StoredRevision)
	s.AppliedRevision = max(s.AppliedRevision, o.AppliedRevision)
}

type session struct {
	Session
	persisted time.Time // the LastSeen the store has
	connected bool      // the state last reported by Seen or Sweep
	swept     bool      // Sweep reported the silence; cleared by Seen
}

// Fleet is the set of sessions. It is safe for concurrent use.
type Fleet struct {
	clock   clock.Clock
	timeout time.Duration

	mu    sync.Mutex
	nodes map[string]*session // guarded by mu
}

// New returns an empty fleet reading time from c, in which a node silent
// for timeout is disconnected (0 means wire.DisconnectedAfter).
func New(c clock.Clock, timeout time.Duration) *Fleet {
	if timeout <= 0 {
		timeout = wire.DisconnectedAfter
	}
	return &Fleet{clock: c, timeout: timeout, nodes: map[string]*session{}}
}

// Timeout is how long a node may be silent before it shows disconnected.
func (f *Fleet) Timeout() time.Duration { return f.timeout }

func (f *Fleet) get(node string) *session {
	s, ok := f.nodes[node]
	if !ok {
		s = &session{}
		f.nodes[node] = s
	}
	return s
}

// Restore loads a session from the store (at start).
func (f *Fleet) Restore(node string, s Session) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cur := f.get(node)
	cur.merge(s)
	if !s.LastSeen.Before(cur.persisted) {
		cur.persisted = s.LastSeen
	}
	cur.connected = f.StateAt(cur.LastSeen, f.clock.Now()) == api.NodeConnected
}

// Contact says what a contact handled by this hub calls for.
type Contact struct {
	// Connected: the node was not connected before this contact (never
	// seen, or silent for wire.DisconnectedAfter); Since is its previous
	// last contact (zero if never).
	Connected bool
	Since     time.Time
	// Swept: this hub's Sweep already reported the silence that this
	// contact ends (its node-disconnected event is recorded).
	Swept bool
	// Persist: the store's lastSeen is older than PersistEvery (or the
	// node just connected); write it and call Persisted.
	Persist bool
}

// Seen records a contact this hub handled.
func (f *Fleet) Seen(node string, s Session) Contact {
	f.mu.Lock()
	defer f.mu.Unlock()
	cur := f.get(node)
	c := Contact{Since: cur.LastSeen, Swept: cur.swept}
	cur.swept = false
	c.Connected = !cur.connected || f.StateAt(cur.LastSeen, s.LastSeen) != api.NodeConnected
	cur.merge(s)
	cur.connected = f.StateAt(cur.LastSeen, f.clock.Now()) == api.NodeConnected
	c.Persist = c.Connected || cur.LastSeen.Sub(cur.persisted) >= PersistEvery
	return c
}

// Observe records a contact another hub handled. It reports nothing and
// asks for no write: the hub that handled the contact does both.
func (f *Fleet) Observe(node string, s Session) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cur := f.get(node)
	cur.merge(s)
	if f.StateAt(cur.LastSeen, f.clock.Now()) == api.NodeConnected {
		cur.connected = true
	}
}

// Persisted notes that the store now has lastSeen for node.
func (f *Fleet) Persisted(node string, lastSeen time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	cur := f.get(node)
	if lastSeen.After(cur.persisted) {
		cur.persisted = lastSeen
	}
}

// Unpersisted lists, sorted, the nodes whose last contact is newer than
// what the store has.
func (f *Fleet) Unpersisted() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for name, s := range f.nodes {
		if s.LastSeen.After(s.persisted) {
			out = append(out, name)
		}
	}
	sort.Strings(out)
	return out
}

// Get returns node's session; ok is false when the fleet has none.
func (f *Fleet) Get(node string) (Session, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.nodes[node]
	if !ok {
		return Session{}, false
	}
	return s.Session, true
}

// State is node's state now.
func (f *Fleet) State(node string) string {
	s, _ := f.Get(node)
	return f.StateAt(s.LastSeen, f.clock.Now())
}

// Lost is a node that went silent.
type Lost struct {
	Node     string
	LastSeen time.Time
}

// Sweep returns the nodes that were connected and are now silent, sorted
// by name, and remembers them as disconnected so that each silence is
// reported once (until the node's next contact).
func (f *Fleet) Sweep() []Lost {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.clock.Now()
	var out []Lost
	for name, s := range f.nodes {
		if s.connected && f.StateAt(s.LastSeen, now) != api.NodeConnected {
			s.connected, s.swept = false, true
			out = append(out, Lost{Node: name, LastSeen: s.LastSeen})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Node < out[j].Node })
	return out
}
