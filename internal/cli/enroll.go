package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"strings"
	"time"

	"atoll.dev/atoll/internal/agent"
	"atoll.dev/atoll/internal/agent/identity"
)

// enrollRetry bounds the wait between tries of an enrollment whose hub
// cannot be reached (a device plugged in before its network is up).
const enrollRetry = 30 * time.Second

// identify gives cfg the node's identity: the stored one, else one got by
// enrolling with token (retried until the hub answers or ctx ends). A node
// the hub revoked enrolls again when given a (new) token. With insecure,
// or without a hub, the node has none.
func identify(ctx context.Context, cfg *agent.Config, token string, insecure bool, log *slog.Logger) error {
	if cfg.Hub == "" {
		if token != "" {
			return errors.New("--token: needs --hub")
		}
		return nil
	}
	if insecure {
		if token != "" {
			return errors.New("--token: not with --insecure (an insecure hub enrolls nobody)")
		}
		return nil
	}
	dir := identity.Dir(cfg.DataDir)
	id, err := identity.Load(dir)
	if err != nil {
		return err
	}
	switch {
	case id == nil && token == "":
		return fmt.Errorf("this node is not enrolled: pass --token with a token from `atoll token create` (or --insecure for a hub run with --insecure)")
	case id == nil:
		if id, err = enroll(ctx, dir, cfg.Hub, token, nodeName(cfg.Name), log); err != nil {
			return err
		}
	case id.Revoked() && token != "":
		// One try: a revoked node runs its workloads on its own whatever
		// the hub says (its old token is refused).
		tctx, cancel := context.WithTimeout(ctx, enrollRetry)
		again, err := identity.Enroll(tctx, dir, cfg.Hub, token, id.Name())
		cancel()
		if err != nil {
			log.Warn("revoked node: enrolling again failed; running on its own", "err", err)
		} else {
			log.Info("enrolled again after a revocation", "node", again.Name())
			id = again
		}
	}
	if cfg.Name != "" && cfg.Name != id.Name() {
		log.Info("node name given by the hub", "asked", cfg.Name, "name", id.Name())
	}
	cfg.Name, cfg.Identity = id.Name(), id
	// The token's labels are the hub's; the node's own add to them.
	labels := maps.Clone(cfg.Labels)
	if labels == nil {
		labels = map[string]string{}
	}
	maps.Copy(labels, id.Labels())
	cfg.Labels = labels
	return nil
}

func enroll(ctx context.Context, dir, hub, token, name string, log *slog.Logger) (*identity.Identity, error) {
	wait := time.Second
	for {
		id, err := identity.Enroll(ctx, dir, hub, token, name)
		if err == nil {
			log.Info("enrolled", "node", id.Name(), "hub", hub, "certificate expires", id.NotAfter())
			return id, nil
		}
		// A refusal (bad, used or expired token) will not get better.
		if errors.Is(err, identity.ErrRefused) {
			return nil, err
		}
		log.Warn("enrollment: hub unreachable, retrying", "err", err, "in", wait)
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("enroll: %w (last: %v)", ctx.Err(), err)
		case <-time.After(wait):
		}
		wait = min(2*wait, enrollRetry)
	}
}

// nodeName is name, else the host name.
func nodeName(name string) string {
	if name != "" {
		return name
	}
	h, _ := os.Hostname()
	return strings.ToLower(h)
}
