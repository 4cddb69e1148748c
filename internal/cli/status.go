package cli

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"atoll.dev/atoll/internal/agent/supervisor"
)

func newNodeStatusCmd(e *env, f *nodeFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show the workloads on this node",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, "json", "wide"); err != nil {
				return err
			}
			st, err := f.client().Status(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(e.stdout, nonNil(st))
			}
			return printStatusTable(e.stdout, st, output == "wide", e.now())
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json or wide")
	return cmd
}

// printStatusTable prints one aligned row per workload. The wide table adds
// HEALTH and LIMITS before REASON, so free text stays in the last column.
func printStatusTable(w io.Writer, st []supervisor.Status, wide bool, now time.Time) error {
	tw := newTable(w)
	head := []string{"NAME", "RUNTIME", "STATE", "PID", "RESTARTS", "PRIORITY", "AGE"}
	if wide {
		head = append(head, "HEALTH", "LIMITS")
	}
	tableRow(tw, append(head, "REASON")...)
	for _, s := range st {
		pid := "-"
		if s.PID != 0 {
			pid = strconv.Itoa(s.PID)
		}
		age := "-"
		if !s.StartedAt.IsZero() {
			age = shortDuration(now.Sub(s.StartedAt))
		}
		row := []string{s.Name, s.Runtime, string(s.State), pid, strconv.Itoa(s.Restarts), strconv.Itoa(s.Priority), age}
		if wide {
			row = append(row, s.Health, s.Limits)
		}
		tableRow(tw, append(row, s.Reason)...)
	}
	return tw.Flush()
}

func newTable(w io.Writer) *tabwriter.Writer {
	return tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
}

// tableRow writes one row; empty cells show as "-", and tabs or newlines
// inside a cell become spaces so they cannot break the alignment.
func tableRow(tw io.Writer, cells ...string) {
	for i, c := range cells {
		c = strings.Map(func(r rune) rune {
			if r == '\t' || r == '\n' || r == '\r' {
				return ' '
			}
			return r
		}, c)
		if c == "" {
			c = "-"
		}
		cells[i] = c
	}
	fmt.Fprintln(tw, strings.Join(cells, "\t"))
}

// shortDuration prints d in its largest whole unit, as kubectl's AGE does:
// 45s, 12m, 5h, 3d, 2y.
func shortDuration(d time.Duration) string {
	const day = 24 * time.Hour
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < day:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	case d < 365*day:
		return fmt.Sprintf("%dd", int(d/day))
	default:
		return fmt.Sprintf("%dy", int(d/(365*day)))
	}
}
