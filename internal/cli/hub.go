package cli

import (
	"context"
	"errors"
	"log/slog"

	"github.com/spf13/cobra"

	"atoll.dev/atoll/internal/hub"
	"atoll.dev/atoll/internal/hub/access"
	"atoll.dev/atoll/internal/hub/telemetry"
	"atoll.dev/atoll/internal/wire"
)

func newHubCmd(e *env) *cobra.Command {
	cfg := hub.Config{}
	cmd := &cobra.Command{
		Use:   "hub",
		Short: "Run the hub: the fleet's API, intent store and NATS",
		Long: "Run the hub in the foreground: the HTTP API the fleet verbs (`atoll apply`, `get`,\n" +
			"`describe`, ...) talk to, the intent store, and the NATS that agents connect to,\n" +
			"embedded with its JetStream store under --data unless --nats names an external one.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The hub logs through the CLI's stderr, like the agent.
			cfg.Logger = slog.New(slog.NewTextHandler(e.stderr, nil))
			h, err := hub.New(cfg)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if err := h.Run(ctx); err != nil && !(errors.Is(err, context.Canceled) && ctx.Err() != nil) {
				return err
			}
			// Stopped by a signal: a clean exit.
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&cfg.DataDir, "data", defaultHubDataDir(e), "data directory: the embedded NATS's JetStream store; $ATOLL_HUB_DATA if set")
	fl.StringVar(&cfg.Listen, "listen", hub.DefaultListen, "address of the HTTP API")
	fl.StringVar(&cfg.NATSListen, "nats-listen", hub.DefaultNATSListen, "address of the embedded NATS, for agents")
	fl.StringVar(&cfg.NATSURL, "nats", "", "URL of an external NATS with JetStream to use instead of the embedded one")
	fl.DurationVar(&cfg.TelemetryMaxAge, "telemetry-max-age", telemetry.DefaultMaxAge, "how long forwarded telemetry is kept")
	fl.Int64Var(&cfg.TelemetryMaxBytes, "telemetry-max-bytes", telemetry.DefaultMaxBytes, "bytes of forwarded telemetry kept; the oldest records go first")
	fl.BoolVar(&cfg.Insecure, "insecure", false, "turn TLS and authentication off: plain HTTP and NATS, anyone who reaches the hub may do anything (labs only)")
	fl.DurationVar(&cfg.NodeCertLifetime, "node-cert-ttl", access.DefaultNodeCertLifetime, "lifetime of node certificates; agents renew at two thirds")
	fl.DurationVar(&cfg.RenewGrace, "renew-grace", access.DefaultRenewGrace, "how long after its certificate expired (an outage) a node may still renew it")
	fl.DurationVar(&cfg.NodeTimeout, "node-timeout", wire.DisconnectedAfter, "silence after which a node shows disconnected (never failed; nothing is evicted)")
	return cmd
}

// defaultHubDataDir is $ATOLL_HUB_DATA, else /var/lib/atoll-hub.
func defaultHubDataDir(e *env) string {
	if d := e.getenv("ATOLL_HUB_DATA"); d != "" {
		return d
	}
	return "/var/lib/atoll-hub"
}
