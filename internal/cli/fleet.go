package cli

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"atoll.dev/atoll/internal/client"
)

// defaultHubAddr is where `atoll hub` listens unless told otherwise.
const defaultHubAddr = "127.0.0.1:7070"

// fleetCmds are the verbs that talk to the hub rather than to one agent.
func fleetCmds(e *env) []*cobra.Command {
	return []*cobra.Command{
		newApplyCmd(e),
		newGetCmd(e),
		newDescribeCmd(e),
		newDeleteCmd(e),
		newLogsCmd(e),
		newEventsCmd(e),
		newTelemetryCmd(e),
		newRestartCmd(e),
		newImageCmd(e),
	}
}

// hubFlag is the --hub flag every fleet verb has.
type hubFlag struct {
	url string
}

// addHubFlag gives cmd and its subcommands --hub, whose default is
// defaultHubURL.
func addHubFlag(e *env, cmd *cobra.Command) *hubFlag {
	f := &hubFlag{}
	cmd.PersistentFlags().StringVar(&f.url, "hub", defaultHubURL(e),
		"the hub's URL; $ATOLL_HUB if set, else the CLI config's hub")
	return f
}

// defaultHubURL is $ATOLL_HUB, else the CLI config's hub, else the address
// `atoll hub` listens on by default.
func defaultHubURL(e *env) string {
	if u := e.getenv("ATOLL_HUB"); u != "" {
		return u
	}
	if e.config.Hub != "" {
		return e.config.Hub
	}
	return "http://" + defaultHubAddr
}

// client returns a client of the hub; a URL without a scheme is http.
func (f *hubFlag) client() (*client.Hub, error) {
	raw := f.url
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("hub URL %q: want http://HOST:PORT or https://HOST:PORT", f.url)
	}
	return client.NewHub(raw), nil
}

func newApplyCmd(e *env) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR",
		Short: "Create or update workloads on every node they target, through the hub",
		Long: "Create or update workloads through the hub, which plans them onto every node they\n" +
			"target. The manifests are validated here first: any problem is printed, one per\n" +
			"line, and nothing is sent.",
		Args: cobra.NoArgs,
	}
	hub := addHubFlag(e, cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ws, err := loadWorkloads(path)
		if err != nil {
			return err
		}
		c, err := hub.client()
		if err != nil {
			return err
		}
		res, err := c.Apply(cmd.Context(), ws)
		if err != nil {
			return err
		}
		for _, r := range res {
			if _, err := fmt.Fprintf(e.stdout, "workload/%s %s (%d %s)\n",
				r.Name, r.Action, r.Targets, plural(r.Targets, "node", "nodes")); err != nil {
				return err
			}
		}
		return nil
	}
	addFileFlag(cmd, &path)
	return cmd
}

func newDeleteCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delete",
		Short: "Remove workloads from the hub's intent",
	}
	hub := addHubFlag(e, cmd)
	cmd.AddCommand(&cobra.Command{
		Use:     "workload NAME",
		Aliases: []string{"workloads"},
		Short:   "Remove a workload; the nodes stop it as their new plans reach them",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := hub.client()
			if err != nil {
				return err
			}
			if err := c.DeleteWorkload(cmd.Context(), args[0]); err != nil {
				return err
			}
			_, err = fmt.Fprintf(e.stdout, "workload/%s deleted\n", args[0])
			return err
		},
	})
	return cmd
}
