package control

import (
	"bytes"
	"context"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/hub/intent"
	"atoll.dev/atoll/internal/hub/planner"
	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/seal"
	"atoll.dev/atoll/internal/wire"
)

// secretKeys are the keys derived from Config.SecretKey, one per use.
type secretKeys struct {
	atRest []byte // seal.Encrypt of stored secrets
	seed   []byte // HMAC key of the seeds that make sealing deterministic
}

func deriveSecretKeys(key []byte) *secretKeys {
	if len(key) != seal.KeySize {
		return nil
	}
	atRest, err1 := hkdf.Key(sha256.New, key, nil, "atoll hub secrets at rest", seal.KeySize)
	seed, err2 := hkdf.Key(sha256.New, key, nil, "atoll hub secrets seal seed", seal.KeySize)
	if err1 != nil || err2 != nil {
		return nil
	}
	return &secretKeys{atRest: atRest, seed: seed}
}

// errNoSecretKey refuses secrets on a hub without Config.SecretKey.
var errNoSecretKey = api.Errorf(api.ErrUnavailable, "this hub keeps no secrets: it has no secrets key")

// ApplySecrets validates ss (manifest.NormalizeSecrets; its FieldErrors
// come back as they are, with nothing stored), stores each secret that is
// new or changed, encrypted, and replans: the nodes whose workloads use a
// changed secret get a new plan revision. A secret's version grows only
// when its data changes.
func (c *Controller) ApplySecrets(ctx context.Context, ss []manifest.Secret) ([]api.ApplyResult, error) {
	if c.secretKeys == nil {
		return nil, errNoSecretKey
	}
	if len(ss) == 0 {
		return nil, api.Errorf(api.ErrInvalid, "no secrets to apply")
	}
	if err := manifest.NormalizeSecrets(ss); err != nil {
		return nil, err
	}
	now := c.clock.Now()
	out := make([]api.ApplyResult, len(ss))
	for i, s := range ss {
		name := s.Metadata.Name
		data, err := json.Marshal(s.Spec.Data) // keys sorted: the same data, the same bytes
		if err != nil {
			return nil, fmt.Errorf("apply secret %s: %w", name, err)
		}
		action := ""
		_, _, err = c.store.Secrets.Update(ctx, name, func(cur intent.Secret, exists bool) (intent.Secret, bool, error) {
			next := intent.Secret{Labels: s.Metadata.Labels, Keys: slices.Sorted(maps.Keys(s.Spec.Data)),
				Placement: s.Spec.Placement, Version: 1, Created: now, Updated: now}
			action = api.ActionCreated
			if exists {
				old, err := c.openStored(name, cur)
				if err != nil {
					return cur, false, err
				}
				sameData := bytes.Equal(old, data)
				if sameData && samePlacement(cur, next) {
					action = api.ActionUnchanged
					return cur, false, nil
				}
				action = api.ActionConfigured
				next.Created, next.Version = cur.Created, cur.Version
				if !sameData {
					next.Version++
				}
			}
			enc, err := seal.Encrypt(c.secretKeys.atRest, data, intent.SecretAAD(name, next.Version))
			if err != nil {
				return cur, false, err
			}
			next.Data = enc
			return next, true, nil
		})
		if err != nil {
			return nil, fmt.Errorf("apply secret %s: %w", name, err)
		}
		out[i] = api.ApplyResult{Name: name, Action: action}
	}
	snap, err := c.reconcile(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("apply secrets: %w", err)
	}
	known := snap.known()
	for i, s := range ss {
		out[i].Targets = len(planner.PlacedNodes(s.Spec.Placement, known))
	}
	return out, nil
}

func samePlacement(a, b intent.Secret) bool {
	ja, errA := json.Marshal([]any{a.Labels, a.Placement})
	jb, errB := json.Marshal([]any{b.Labels, b.Placement})
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}

// openStored decrypts a stored secret's data.
func (c *Controller) openStored(name string, s intent.Secret) ([]byte, error) {
	data, err := seal.Decrypt(c.secretKeys.atRest, s.Data, intent.SecretAAD(name, s.Version))
	if err != nil {
		return nil, fmt.Errorf("secret %s: %w (was it stored with another hub key?)", name, err)
	}
	return data, nil
}

// Secrets lists the stored secrets: names, keys and targets, never values.
func (c *Controller) Secrets(ctx context.Context) ([]api.Secret, error) {
	es, err := c.store.Secrets.All(ctx)
	if err != nil {
		return nil, err
	}
	nodes, err := c.store.Nodes.All(ctx)
	if err != nil {
		return nil, err
	}
	known := make([]planner.Node, 0, len(nodes))
	for _, n := range nodes {
		known = append(known, planner.Node{Name: n.Key, Labels: n.Value.Labels})
	}
	out := make([]api.Secret, 0, len(es))
	for _, e := range es {
		s := e.Value
		out = append(out, api.Secret{Name: e.Key, Labels: s.Labels, Keys: s.Keys,
			NodeSelector: s.Placement.NodeSelector, Nodes: s.Placement.Nodes,
			Targets: planner.PlacedNodes(s.Placement, known), Version: s.Version, Created: s.Created, Updated: s.Updated})
	}
	return out, nil
}

// DeleteSecret removes a secret; the workloads that use it cannot start
// on nodes that get their next plan.
func (c *Controller) DeleteSecret(ctx context.Context, name string) error {
	for range maxReplans {
		e, err := c.store.Secrets.Get(ctx, name)
		if errors.Is(err, intent.ErrNotFound) {
			return api.Errorf(api.ErrNotFound, "secret %s not found", name)
		}
		if err != nil {
			return fmt.Errorf("delete secret %s: %w", name, err)
		}
		err = c.store.Secrets.Delete(ctx, name, e.Rev)
		if errors.Is(err, intent.ErrConflict) {
			continue
		}
		if err != nil {
			return fmt.Errorf("delete secret %s: %w", name, err)
		}
		if err := c.Reconcile(ctx, nil); err != nil {
			return fmt.Errorf("delete secret %s: %w", name, err)
		}
		return nil
	}
	return fmt.Errorf("delete secret %s: %w", name, intent.ErrConflict)
}

// storedSecrets reads every stored secret, by name.
func (c *Controller) storedSecrets(ctx context.Context) (map[string]intent.Secret, error) {
	es, err := c.store.Secrets.All(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]intent.Secret, len(es))
	for _, e := range es {
		out[e.Key] = e.Value
	}
	return out, nil
}

// sealSecrets fills in, for each workload of node's plan content that
// references secrets, the secrets sealed to the node's key, or why the
// node cannot have them. The node's key is looked up only when needed.
func (c *Controller) sealSecrets(ctx context.Context, node planner.Node, content []wire.PlanWorkload, secrets map[string]intent.Secret) error {
	var pub *ecdh.PublicKey
	looked := false
	sealed := map[string]wire.SealedSecret{}
	for i := range content {
		pw := &content[i]
		refs := pw.Workload.Spec.Secrets
		if len(refs) == 0 {
			continue
		}
		missing := missingSecrets(node, refs, secrets)
		if len(missing) == 0 && !looked {
			looked = true
			if c.nodeKeys != nil {
				k, err := c.nodeKeys.NodeKey(ctx, node.Name)
				if err != nil {
					return fmt.Errorf("key of node %s: %w", node.Name, err)
				}
				pub = k
			}
		}
		switch {
		case len(missing) > 0:
		case c.secretKeys == nil:
			missing = []string{"the hub has no secrets key"}
		case pub == nil:
			missing = []string{fmt.Sprintf("node %s is not enrolled: no key to seal secrets to", node.Name)}
		}
		if len(missing) > 0 {
			pw.SecretsBlocked = strings.Join(missing, "; ")
			continue
		}
		for _, r := range refs {
			ss, ok := sealed[r.Name]
			if !ok {
				var err error
				if ss, err = c.seal(node.Name, r.Name, secrets[r.Name], pub); err != nil {
					return err
				}
				sealed[r.Name] = ss
			}
			pw.Secrets = append(pw.Secrets, ss)
		}
		sort.Slice(pw.Secrets, func(a, b int) bool { return pw.Secrets[a].Name < pw.Secrets[b].Name })
	}
	return nil
}

// missingSecrets says what node lacks of what refs need: a secret that
// does not exist or does not target the node, a key the secret lacks.
func missingSecrets(node planner.Node, refs []manifest.SecretRef, secrets map[string]intent.Secret) []string {
	var missing []string
	for _, r := range refs {
		s, ok := secrets[r.Name]
		if !ok {
			missing = append(missing, fmt.Sprintf("secret %s not found", r.Name))
			continue
		}
		if !planner.Placed(s.Placement, node) {
			missing = append(missing, fmt.Sprintf("secret %s does not target node %s (its spec.placement)", r.Name, node.Name))
			continue
		}
		keys := slices.Sorted(maps.Values(r.Env))
		keys = append(keys, r.Files...)
		var absent []string
		for _, k := range keys {
			if !slices.Contains(s.Keys, k) && !slices.Contains(absent, k) {
				absent = append(absent, k)
			}
		}
		if len(absent) > 0 {
			missing = append(missing, fmt.Sprintf("secret %s has no key %s (it has %s)", r.Name,
				strings.Join(absent, ", "), strings.Join(s.Keys, ", ")))
		}
	}
	return missing
}

// seal seals one secret to node's key. The seed is an HMAC of the secret's
// name and version and the node's key, so the sealed bytes (and the plan)
// stay the same until one of them changes.
func (c *Controller) seal(node, name string, s intent.Secret, pub *ecdh.PublicKey) (wire.SealedSecret, error) {
	data, err := c.openStored(name, s)
	if err != nil {
		return wire.SealedSecret{}, err
	}
	m := hmac.New(sha256.New, c.secretKeys.seed)
	m.Write([]byte(name))
	m.Write([]byte{0})
	m.Write(binary.BigEndian.AppendUint64(nil, s.Version))
	m.Write(pub.Bytes())
	sealed, err := seal.Seal(pub, data, wire.SecretAAD(node, name, s.Version), m.Sum(nil))
	if err != nil {
		return wire.SealedSecret{}, fmt.Errorf("seal secret %s for node %s: %w", name, node, err)
	}
	return wire.SealedSecret{Name: name, Version: s.Version, Sealed: sealed}, nil
}
