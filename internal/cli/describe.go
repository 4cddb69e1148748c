package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/spf13/cobra"

	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/wire"
)

func newDescribeCmd(e *env) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "describe",
		Short: "Show one node or workload in detail, as the hub knows it",
	}
	hub := addHubFlag(e, cmd)
	cmd.AddCommand(
		&cobra.Command{
			Use:   "node NAME",
			Short: "Show a node: state, revisions, capacity, its workloads and local overrides",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := hub.client()
				if err != nil {
					return err
				}
				n, err := c.Node(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				return describeNode(e.stdout, n, e.now())
			},
		},
		&cobra.Command{
			Use:   "workload NAME",
			Short: "Show a workload: the nodes it targets and its state on each",
			Args:  cobra.ExactArgs(1),
			RunE: func(cmd *cobra.Command, args []string) error {
				c, err := hub.client()
				if err != nil {
					return err
				}
				wl, err := c.Workload(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				return describeWorkload(e.stdout, wl)
			},
		},
	)
	return cmd
}

func describeNode(w io.Writer, n api.Node, now time.Time) error {
	lastSeen := "never"
	if !n.LastSeen.IsZero() {
		lastSeen = fmt.Sprintf("%s (%s ago)", formatTime(n.LastSeen), formatAgo(now, n.LastSeen))
	}
	tw := newTable(w)
	tableRow(tw, "Name:", n.Name)
	tableRow(tw, "Labels:", formatLabels(n.Labels))
	tableRow(tw, "State:", n.State)
	tableRow(tw, "Last Seen:", lastSeen)
	tableRow(tw, "Plan Revision:", formatRevision(n.PlanRevision))
	tableRow(tw, "Stored Revision:", formatRevision(n.StoredRevision))
	tableRow(tw, "Applied Revision:", formatRevision(n.AppliedRevision))
	tableRow(tw, "Capacity:", formatCapacity(n.CapacityMemory, n.CapacityMilliCPU))
	tableRow(tw, "Version:", n.Version)
	if err := tw.Flush(); err != nil {
		return err
	}
	rows := make([][]string, len(n.Instances))
	for i, s := range n.Instances {
		pid := ""
		if s.PID != 0 {
			pid = strconv.Itoa(s.PID)
		}
		rows[i] = []string{s.Name, string(s.State), pid, strconv.Itoa(s.Restarts), s.Reason}
	}
	if err := describeSection(w, "Workloads:", []string{"WORKLOAD", "STATE", "PID", "RESTARTS", "REASON"}, rows); err != nil {
		return err
	}
	rows = make([][]string, len(n.Overrides))
	for i, o := range n.Overrides {
		stamped := ""
		if !o.Stamp.IsZero() {
			stamped = formatTime(time.Unix(0, o.Stamp.Wall))
		}
		rows[i] = []string{o.Workload, overrideField(o), strconv.Itoa(o.Priority), stamped, overrideValue(o)}
	}
	return describeSection(w, "Local Overrides:", []string{"WORKLOAD", "FIELD", "PRIORITY", "STAMPED", "VALUE"}, rows)
}

func describeWorkload(w io.Writer, wl api.Workload) error {
	targets := strconv.Itoa(wl.Targets)
	if wl.Targets == 0 && wl.TargetReason != "" {
		targets += " (" + wl.TargetReason + ")"
	}
	tw := newTable(w)
	tableRow(tw, "Name:", wl.Name)
	tableRow(tw, "Targets:", targets)
	if err := tw.Flush(); err != nil {
		return err
	}
	rows := make([][]string, len(wl.Instances))
	for i, in := range wl.Instances {
		rows[i] = []string{in.Node, in.NodeState, in.State, formatRevision(in.Revision), strconv.Itoa(in.Restarts), in.Reason}
	}
	return describeSection(w, "Instances:",
		[]string{"NODE", "CONNECTION", "STATE", "APPLIED", "RESTARTS", "REASON"}, rows)
}

// describeSection prints a titled table indented under the title, or the
// title and <none>.
func describeSection(w io.Writer, title string, head []string, rows [][]string) error {
	if len(rows) == 0 {
		_, err := fmt.Fprintln(w, title+"  <none>")
		return err
	}
	if _, err := fmt.Fprintln(w, title); err != nil {
		return err
	}
	tw := newTable(w)
	for _, row := range append([][]string{head}, rows...) {
		if row[0] == "" {
			row[0] = "-"
		}
		row[0] = "  " + row[0]
		tableRow(tw, row...)
	}
	return tw.Flush()
}

// overrideField names what an override changes.
func overrideField(o wire.Override) string {
	if o.Path == "" {
		return "(whole workload)"
	}
	return o.Path
}

// overrideValue shows an override's local value: an environment variable's
// value as text, a whole local workload only as such.
func overrideValue(o wire.Override) string {
	switch {
	case o.Deleted:
		return "(deleted)"
	case o.Path == "":
		return "(local workload)"
	}
	var s string
	if err := json.Unmarshal(o.Value, &s); err == nil {
		return s
	}
	return string(o.Value)
}
