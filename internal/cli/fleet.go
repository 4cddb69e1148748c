package cli

import (
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/spf13/cobra"

	"atoll.dev/atoll/internal/client"
	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/manifest"
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
	url   string
	creds client.Credentials
}

// addHubFlag gives cmd and its subcommands --hub, whose default is
// defaultHubURL.
func addHubFlag(e *env, cmd *cobra.Command) *hubFlag {
	f := &hubFlag{creds: e.config.Credentials}
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
	return "https://" + defaultHubAddr
}

// client returns a client of the hub, with the CLI config's credentials;
// a URL without a scheme is https.
func (f *hubFlag) client() (*client.Hub, error) {
	raw := f.url
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("hub URL %q: want https://HOST:PORT (or http:// for a hub run with --insecure)", f.url)
	}
	tlsCfg, err := f.creds.TLS()
	if err != nil {
		return nil, err
	}
	if u.Scheme == "https" && tlsCfg == nil {
		return nil, fmt.Errorf("no credentials for %s: pass --config with the hub's DIR/admin.conf (or a file from `atoll user create`), or set ATOLL_CONFIG", raw)
	}
	return client.NewHub(raw, tlsCfg), nil
}

func newApplyCmd(e *env) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "apply -f FILE|DIR",
		Short: "Create or update workloads and secrets on every node they target, through the hub",
		Long: "Create or update workloads and secrets through the hub, which plans them onto every\n" +
			"node they target. The manifests are validated here first: any problem is printed,\n" +
			"one per line, and nothing is sent. Secrets are sent before workloads, so that a\n" +
			"workload that uses a secret applied with it can start at once.",
		Args: cobra.NoArgs,
	}
	hub := addHubFlag(e, cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		docs, err := manifest.LoadAll(path)
		if err != nil {
			return err
		}
		if len(docs.Workloads) == 0 && len(docs.Secrets) == 0 {
			return fmt.Errorf("no workloads or secrets in %s", path)
		}
		c, err := hub.client()
		if err != nil {
			return err
		}
		if len(docs.Secrets) > 0 {
			res, err := c.ApplySecrets(cmd.Context(), docs.Secrets)
			if err != nil {
				return err
			}
			if err := printApplied(e.stdout, "secret", res); err != nil {
				return err
			}
		}
		if len(docs.Workloads) == 0 {
			return nil
		}
		res, err := c.Apply(cmd.Context(), docs.Workloads)
		if err != nil {
			return err
		}
		return printApplied(e.stdout, "workload", res)
	}
	addFileFlag(cmd, &path)
	return cmd
}

// printApplied prints one line per applied document: "kind/name action (N nodes)".
func printApplied(w io.Writer, kind string, res []api.ApplyResult) error {
	for _, r := range res {
		if _, err := fmt.Fprintf(w, "%s/%s %s (%d %s)\n",
			kind, r.Name, r.Action, r.Targets, plural(r.Targets, "node", "nodes")); err != nil {
			return err
		}
	}
	return nil
}

func newDeleteCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "delete",
		Short: "Remove workloads or secrets from the hub's intent",
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
	}, &cobra.Command{
		Use:     "secret NAME",
		Aliases: []string{"secrets"},
		Short:   "Remove a secret; workloads that use it cannot start on nodes that get their next plan",
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := hub.client()
			if err != nil {
				return err
			}
			if err := c.DeleteSecret(cmd.Context(), args[0]); err != nil {
				return err
			}
			_, err = fmt.Fprintf(e.stdout, "secret/%s deleted\n", args[0])
			return err
		},
	})
	return cmd
}
