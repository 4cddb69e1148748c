package cli

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"

	"atoll.dev/atoll/internal/agent/localapi"
	"atoll.dev/atoll/internal/client"
)

// nodeFlags are the flags every `atoll node` verb shares.
type nodeFlags struct {
	dataDir string
}

// overridePriorityFlag adds --priority to a verb that changes desired state.
func overridePriorityFlag(cmd *cobra.Command, p *int) {
	cmd.Flags().IntVar(p, "priority", 0,
		"priority of this local change against the hub's intent (default 50; the hub's is 100); ignored on a node with no hub")
}

func (f *nodeFlags) client() *client.Local {
	return client.NewLocal(localapi.SocketPath(f.dataDir))
}

func newNodeCmd(e *env) *cobra.Command {
	f := &nodeFlags{}
	cmd := &cobra.Command{
		Use:   "node",
		Short: "Inspect and change this node through its agent's local API",
		Long: "Inspect and change this node through its agent's local API. These commands\n" +
			"talk to the agent over DATA/agent.sock and work with the hub unreachable.",
	}
	cmd.PersistentFlags().StringVar(&f.dataDir, "data", defaultDataDir(e),
		"the agent's data directory; $ATOLL_DATA if set")
	cmd.AddCommand(
		newNodeApplyCmd(e, f),
		newNodeDeleteCmd(e, f),
		newNodeSetCmd(e, f),
		newNodeRestartCmd(e, f),
		newNodeStatusCmd(e, f),
		newNodeEventsCmd(e, f),
		newNodeLogsCmd(e, f),
		newNodeInfoCmd(e, f),
		newNodeRevokeCmd(e),
	)
	return cmd
}

func newNodeApplyCmd(e *env, f *nodeFlags) *cobra.Command {
	var (
		path     string
		priority int
	)
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR",
		Short: "Create or update workloads on this node",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ws, err := loadWorkloads(path)
			if err != nil {
				return err
			}
			c := f.client()
			if err := uploadArtifacts(cmd.Context(), c, ws, os.ReadFile); err != nil {
				return err
			}
			res, err := c.Apply(cmd.Context(), ws, localapi.Change{Priority: priority})
			if err != nil {
				return err
			}
			for _, r := range res {
				if _, err := fmt.Fprintf(e.stdout, "workload/%s %s\n", r.Name, r.Action); err != nil {
					return err
				}
			}
			return nil
		},
	}
	addFileFlag(cmd, &path)
	overridePriorityFlag(cmd, &priority)
	return cmd
}

func newNodeDeleteCmd(e *env, f *nodeFlags) *cobra.Command {
	var priority int
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Stop a workload and remove it from this node",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.client().Delete(cmd.Context(), args[0], localapi.Change{Priority: priority}); err != nil {
				return err
			}
			_, err := fmt.Fprintf(e.stdout, "workload/%s deleted\n", args[0])
			return err
		},
	}
	overridePriorityFlag(cmd, &priority)
	return cmd
}

func newNodeSetCmd(e *env, f *nodeFlags) *cobra.Command {
	var (
		env      map[string]string
		unset    []string
		priority int
	)
	cmd := &cobra.Command{
		Use:   "set NAME --env K=V [--unset K]",
		Short: "Override environment variables of a workload on this node",
		Long: "Override environment variables of a workload on this node. With a hub, this is a\n" +
			"local override: it stands until the hub changes the same variable, and then the\n" +
			"higher priority wins (the hub's is 100; --priority defaults to 50), then the later change.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(env) == 0 && len(unset) == 0 {
				return errors.New("nothing to set: give --env K=V or --unset K")
			}
			req := localapi.SetRequest{Env: env, Unset: unset, Priority: priority}
			if err := f.client().Set(cmd.Context(), args[0], req); err != nil {
				return err
			}
			_, err := fmt.Fprintf(e.stdout, "workload/%s configured\n", args[0])
			return err
		},
	}
	cmd.Flags().StringToStringVar(&env, "env", nil, "variables to set, K=V,...")
	cmd.Flags().StringSliceVar(&unset, "unset", nil, "variables to remove")
	overridePriorityFlag(cmd, &priority)
	return cmd
}

func newNodeRestartCmd(e *env, f *nodeFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "restart NAME",
		Short: "Stop a workload and start it again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.client().Restart(cmd.Context(), args[0]); err != nil {
				return err
			}
			_, err := fmt.Fprintf(e.stdout, "workload/%s restarted\n", args[0])
			return err
		},
	}
}
