package cli

import (
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"atoll.dev/atoll/internal/hub/api"
)

func newLogsCmd(e *env) *cobra.Command {
	var tail int
	cmd := &cobra.Command{
		Use:   "logs NODE WORKLOAD",
		Short: "Print a workload's output on one node, fetched by the hub",
		Args:  cobra.ExactArgs(2),
	}
	hub := addHubFlag(e, cmd)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		c, err := hub.client()
		if err != nil {
			return err
		}
		return c.Logs(cmd.Context(), args[0], args[1], tail, e.stdout)
	}
	cmd.Flags().IntVar(&tail, "tail", 0, "print the last N lines (0: the node's default, 100)")
	return cmd
}

func newEventsCmd(e *env) *cobra.Command {
	var (
		output, since string
		q             api.EventQuery
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show the fleet's events, oldest first",
		Args:  cobra.NoArgs,
	}
	hub := addHubFlag(e, cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		if err := checkOutput(output, "json", "yaml"); err != nil {
			return err
		}
		var err error
		if q.Since, err = parseSince(since, e.now()); err != nil {
			return err
		}
		c, err := hub.client()
		if err != nil {
			return err
		}
		evs, err := c.Events(cmd.Context(), q)
		if err != nil {
			return err
		}
		if output != "" {
			return printStructured(e.stdout, output, evs)
		}
		tw := newTable(e.stdout)
		tableRow(tw, "TIME", "NODE", "WORKLOAD", "TYPE", "MESSAGE")
		for _, ev := range evs {
			tableRow(tw, formatTime(ev.Time), ev.Node, ev.Workload, ev.Type, ev.Message)
		}
		return tw.Flush()
	}
	fl := cmd.Flags()
	fl.StringVar(&q.Node, "node", "", "show only this node's events")
	fl.StringVar(&since, "since", "", "show only events since this long ago (10m) or this time (RFC3339)")
	fl.IntVar(&q.Limit, "limit", 0, "show at most this many events (0: the hub's default)")
	fl.StringVarP(&output, "output", "o", "", "output format: json or yaml")
	return cmd
}

// parseSince reads --since: a duration before now, or an RFC3339 time; ""
// is the zero time (no bound).
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if d, err := time.ParseDuration(s); err == nil && d > 0 {
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	return time.Time{}, fmt.Errorf("--since %q: want a positive duration (10m, 2h) or an RFC3339 time (2026-03-01T12:00:00Z)", s)
}
