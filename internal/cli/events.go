package cli

import (
	"strconv"
	"time"

	"github.com/spf13/cobra"
)

func newNodeEventsCmd(e *env, f *nodeFlags) *cobra.Command {
	var (
		output string
		after  uint64
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show this node's recent events, oldest first",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, "json"); err != nil {
				return err
			}
			evs, err := f.client().Events(cmd.Context(), after)
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(e.stdout, nonNil(evs))
			}
			tw := newTable(e.stdout)
			tableRow(tw, "SEQ", "TIME", "WORKLOAD", "TYPE", "MESSAGE")
			for _, ev := range evs {
				tableRow(tw, strconv.FormatUint(ev.Seq, 10), ev.Time.Local().Format(time.DateTime),
					ev.Workload, ev.Type, ev.Message)
			}
			return tw.Flush()
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	cmd.Flags().Uint64Var(&after, "after", 0, "show only events with a sequence number above this")
	return cmd
}

func newNodeLogsCmd(e *env, f *nodeFlags) *cobra.Command {
	var (
		tail   int
		follow bool
	)
	cmd := &cobra.Command{
		Use:   "logs NAME",
		Short: "Print a workload's output",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			// Interrupting a followed stream ends it normally (exit 0).
			return f.client().Logs(cmd.Context(), args[0], tail, follow, e.stdout)
		},
	}
	cmd.Flags().IntVar(&tail, "tail", -1, "print only the last N lines (-1: all)")
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing new output until interrupted")
	return cmd
}
