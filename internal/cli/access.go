package cli

import (
	"fmt"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	yaml "go.yaml.in/yaml/v2"

	"atoll.dev/atoll/internal/client"
	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/pki"
)

// newTokenCmd is `atoll token create|list|revoke`: enrollment tokens.
func newTokenCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "token",
		Short: "Make, list and revoke enrollment tokens (admin)",
	}
	hub := addHubFlag(e, cmd)
	var req api.TokenRequest
	create := &cobra.Command{
		Use:   "create",
		Short: "Make an enrollment token and print it (the only copy of its secret)",
		Long: "Make an enrollment token and print it. A new device joins with\n" +
			"`atoll agent --hub tls://HUB:4222 --token TOKEN --data DIR`; the token pins the\n" +
			"hub's CA, so even the first connection is authenticated.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := hub.client()
			if err != nil {
				return err
			}
			t, err := c.CreateToken(cmd.Context(), req)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintln(e.stdout, t.Token)
			return err
		},
	}
	fl := create.Flags()
	fl.StringToStringVar(&req.Labels, "labels", nil, "labels given to every node enrolled with it, k=v,...")
	fl.StringVar(&req.TTL, "ttl", "24h", "how long the token can be used")
	fl.IntVar(&req.Uses, "uses", 1, "how many nodes may enroll with it")
	fl.StringVar(&req.NamePrefix, "name-prefix", "", "put in front of node names that lack it, e.g. kiosk-")
	cmd.AddCommand(create, &cobra.Command{
		Use:   "list",
		Short: "List the enrollment tokens (never their secrets)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := hub.client()
			if err != nil {
				return err
			}
			ts, err := c.Tokens(cmd.Context())
			if err != nil {
				return err
			}
			return printTokens(e, ts)
		},
	}, &cobra.Command{
		Use:   "revoke ID",
		Short: "Stop a token from enrolling more nodes (nodes it enrolled stay)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := hub.client()
			if err != nil {
				return err
			}
			if _, err := c.RevokeToken(cmd.Context(), args[0]); err != nil {
				return err
			}
			_, err = fmt.Fprintf(e.stdout, "token/%s revoked\n", args[0])
			return err
		},
	})
	return cmd
}

func printTokens(e *env, ts []api.TokenInfo) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tUSED\tEXPIRES\tSTATE\tPREFIX\tLABELS\tNODES")
	now := e.now()
	for _, t := range ts {
		state := "usable"
		switch {
		case t.Revoked:
			state = "revoked"
		case !now.Before(t.Expires):
			state = "expired"
		case t.Used >= t.Uses:
			state = "used up"
		}
		fmt.Fprintf(tw, "%s\t%d/%d\t%s\t%s\t%s\t%s\t%s\n", t.ID, t.Used, t.Uses, t.Expires.Local().Format(time.RFC3339),
			state, orDash(t.NamePrefix), orDash(joinLabels(t.Labels)), orDash(strings.Join(t.Nodes, ",")))
	}
	return tw.Flush()
}

func joinLabels(m map[string]string) string {
	kv := make([]string, 0, len(m))
	for k, v := range m {
		kv = append(kv, k+"="+v)
	}
	sort.Strings(kv)
	return strings.Join(kv, ",")
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// newUserCmd is `atoll user create`: API users' credentials.
func newUserCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "user",
		Short: "Make, list and revoke API users' credentials (admin)",
	}
	hub := addHubFlag(e, cmd)
	var role string
	create := &cobra.Command{
		Use:   "create NAME",
		Short: "Print a CLI config for a new user with a role: admin, operator or viewer",
		Long: "Print a CLI config (hub URL, CA, certificate, key) for a new user. The key is\n" +
			"made here and never sent; the hub signs its certificate. Save the output\n" +
			"(mode 0600) and use it with --config or ATOLL_CONFIG. Roles: a viewer reads,\n" +
			"an operator also changes workloads and secrets, an admin also manages tokens,\n" +
			"users and node revocation and reads the audit log.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := hub.client()
			if err != nil {
				return err
			}
			key, err := pki.NewKey()
			if err != nil {
				return err
			}
			csr, err := pki.NewCSR(key, args[0])
			if err != nil {
				return err
			}
			uc, err := c.CreateUser(cmd.Context(), api.UserRequest{Name: args[0], Role: role, CSR: csr})
			if err != nil {
				return err
			}
			keyPEM, err := pki.EncodeKey(key)
			if err != nil {
				return err
			}
			out, err := yaml.Marshal(fileConfig{Credentials: client.Credentials{
				Hub: hub.url, CA: string(uc.CA), Cert: string(uc.Cert), Key: string(keyPEM),
			}})
			if err != nil {
				return err
			}
			_, err = e.stdout.Write(out)
			return err
		},
	}
	create.Flags().StringVar(&role, "role", pki.RoleViewer, "admin, operator or viewer")
	cmd.AddCommand(create, &cobra.Command{
		Use:   "list",
		Short: "List the API users and their certificates",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := hub.client()
			if err != nil {
				return err
			}
			us, err := c.Users(cmd.Context())
			if err != nil {
				return err
			}
			return printUsers(e, us)
		},
	}, &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke every certificate of a user: the API and the NATS refuse them from now on",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := hub.client()
			if err != nil {
				return err
			}
			r, err := c.RevokeUser(cmd.Context(), args[0])
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(e.stdout, "user/%s revoked (%s)\n", args[0], plural(r.Revoked, "1 certificate", fmt.Sprintf("%d certificates", r.Revoked)))
			return err
		},
	})
	return cmd
}

func printUsers(e *env, us []api.UserInfo) error {
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tROLE\tSERIAL\tISSUED\tEXPIRES\tSTATE")
	for _, u := range us {
		for _, c := range u.Certificates {
			state := "valid"
			switch {
			case c.Revoked:
				state = "revoked"
			case !e.now().Before(c.Expires):
				state = "expired"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", u.Name, c.Role, c.Serial,
				c.Issued.Local().Format(time.RFC3339), c.Expires.Local().Format(time.RFC3339), state)
		}
	}
	return tw.Flush()
}

// newNodeRevokeCmd is `atoll node revoke NAME`, a hub call among the
// local node commands because it is about a node.
func newNodeRevokeCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "revoke NAME",
		Short: "Revoke a node at the hub (admin): its connections are cut, its certificate refused",
		Long: "Revoke a node at the hub: its live connections are closed within seconds and its\n" +
			"reconnects and renewals refused. The node keeps running its workloads and shows\n" +
			"itself revoked (`atoll node info`). To rejoin, it enrolls again with a new token.",
		Args: cobra.ExactArgs(1),
	}
	hub := addHubFlag(e, cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := hub.client()
		if err != nil {
			return err
		}
		if _, err := c.RevokeNode(cmd.Context(), args[0]); err != nil {
			return err
		}
		_, err = fmt.Fprintf(e.stdout, "node/%s revoked\n", args[0])
		return err
	}
	return cmd
}
