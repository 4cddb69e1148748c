package cli

import (
	"strconv"

	"github.com/spf13/cobra"
)

func newAuditCmd(e *env) *cobra.Command {
	var (
		output, since string
		limit         int
	)
	cmd := &cobra.Command{
		Use:   "audit",
		Short: "Show the hub's audit log: who changed what through the API, newest last (admins only)",
		Long: "Show the hub's audit log: every changing call to the hub's API, allowed or refused,\n" +
			"newest last. STATUS is the answer's; \"-\" means the call was let through but its\n" +
			"outcome was not recorded (still running, or the hub stopped before it ended).",
		Args: cobra.NoArgs,
	}
	hub := addHubFlag(e, cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkOutput(output, "json", "yaml"); err != nil {
			return err
		}
		from, err := parseSince(since, e.now())
		if err != nil {
			return err
		}
		c, err := hub.client()
		if err != nil {
			return err
		}
		es, err := c.Audit(cmd.Context(), from, limit)
		if err != nil {
			return err
		}
		if output != "" {
			return printStructured(e.stdout, output, es)
		}
		tw := newTable(e.stdout)
		tableRow(tw, "WHEN", "WHO", "ROLE", "METHOD", "PATH", "STATUS", "FROM")
		for _, en := range es {
			path, status := en.Path, ""
			if en.Query != "" {
				path += "?" + en.Query
			}
			if en.Status != 0 {
				status = strconv.Itoa(en.Status)
			}
			tableRow(tw, formatTime(en.Time), en.User, en.Role, en.Method, path, status, en.Remote)
		}
		return tw.Flush()
	}
	fl := cmd.Flags()
	fl.StringVar(&since, "since", "", "show only calls since this long ago (1h) or this time (RFC3339)")
	fl.IntVar(&limit, "limit", 0, "show at most this many calls, the newest (0: the hub's default, 100)")
	fl.StringVarP(&output, "output", "o", "", "output format: json or yaml")
	return cmd
}
