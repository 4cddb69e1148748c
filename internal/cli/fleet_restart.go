package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"atoll.dev/atoll/internal/hub/api"
)

func newRestartCmd(e *env) *cobra.Command {
	var (
		node, key string
		ttl       time.Duration
	)
	cmd := &cobra.Command{
		Use:   "restart",
		Short: "Queue one-off restarts for nodes to carry out when they next hear from the hub",
	}
	hub := addHubFlag(e, cmd)
	restart := &cobra.Command{
		Use:   "workload NAME --node NODE",
		Short: "Queue a restart of a workload on one node; it expires if the node stays away too long",
		Long: "Queue a restart of a workload on one node. The node carries it out when it next\n" +
			"hears from the hub, unless --ttl has passed by then. Repeating the command with\n" +
			"the same --idempotency-key returns the command queued the first time.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if ttl <= 0 {
				return fmt.Errorf("--ttl %s: must be positive", ttl)
			}
			c, err := hub.client()
			if err != nil {
				return err
			}
			req := api.CommandRequest{IdempotencyKey: key, TTL: ttl.String()}
			queued, existing, err := c.RestartWorkload(cmd.Context(), node, args[0], req)
			if err != nil {
				return err
			}
			verb := "queued"
			if existing {
				verb = "already queued"
			}
			_, err = fmt.Fprintf(e.stdout, "command/%s %s for node %s (expires %s)\n",
				queued.ID, verb, node, formatTime(queued.Expires))
			return err
		},
	}
	fl := restart.Flags()
	fl.StringVar(&node, "node", "", "the node to restart the workload on (required)")
	fl.StringVar(&key, "idempotency-key", "", "a key that makes retrying this command safe: the hub queues it once")
	fl.DurationVar(&ttl, "ttl", time.Hour, "drop the command if the node has not carried it out within this time")
	_ = restart.MarkFlagRequired("node")
	cmd.AddCommand(restart)
	return cmd
}
