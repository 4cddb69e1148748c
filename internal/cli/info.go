package cli

import (
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"atoll.dev/atoll/internal/agent/localapi"
)

func newNodeInfoCmd(e *env, f *nodeFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "info",
		Short: "Describe this node: name, labels, capacity, limits, runtimes, store, version",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(output, "json"); err != nil {
				return err
			}
			info, err := f.client().Node(cmd.Context())
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(e.stdout, info)
			}
			return printInfo(e.stdout, info)
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

func printInfo(w io.Writer, info localapi.NodeInfo) error {
	labels := make([]string, 0, len(info.Labels))
	for _, k := range slices.Sorted(maps.Keys(info.Labels)) {
		labels = append(labels, k+"="+info.Labels[k])
	}
	store := "ok"
	if info.StoreRecovery != "" {
		store = "recovered: " + info.StoreRecovery
	}
	tw := newTable(w)
	tableRow(tw, "Name:", info.Name)
	tableRow(tw, "Labels:", strings.Join(labels, ","))
	tableRow(tw, "Capacity:", fmt.Sprintf("memory %s, cpu %s",
		formatBytes(info.CapacityMemory), formatMilliCPU(info.CapacityMilliCPU)))
	tableRow(tw, "Limits:", info.Limits)
	if len(info.Runtimes) > 0 || len(info.UnavailableRuntimes) > 0 {
		rts := strings.Join(info.Runtimes, ", ")
		for _, rt := range slices.Sorted(maps.Keys(info.UnavailableRuntimes)) {
			rts += fmt.Sprintf("; not %s: %s", rt, info.UnavailableRuntimes[rt])
		}
		tableRow(tw, "Runtimes:", strings.TrimPrefix(rts, "; "))
	}
	if info.Hub != "" {
		link := "disconnected"
		switch {
		case info.Revoked:
			link = "revoked (the hub refuses this node; it runs on its own)"
		case info.HubConnected:
			link = "connected"
		}
		tableRow(tw, "Hub:", fmt.Sprintf("%s, %s; plan revision %d stored, %d applied",
			info.Hub, link, info.StoredRevision, info.AppliedRevision))
	}
	if !info.CertExpires.IsZero() {
		tableRow(tw, "Certificate:", "expires "+info.CertExpires.Local().Format(time.RFC3339))
	}
	if info.Broker != "" {
		b := info.Broker
		if info.MQTT != "" {
			b += ", MQTT " + info.MQTT
		}
		tableRow(tw, "Broker:", fmt.Sprintf("%s; %d messages waiting for the hub", b, info.Outbox))
	}
	tableRow(tw, "Store:", store)
	tableRow(tw, "Version:", info.Version)
	return tw.Flush()
}

// formatBytes prints n in the largest binary unit that divides it: 512Mi.
func formatBytes(n int64) string {
	for _, u := range []struct {
		suffix string
		size   int64
	}{{"Ti", 1 << 40}, {"Gi", 1 << 30}, {"Mi", 1 << 20}, {"Ki", 1 << 10}} {
		if n != 0 && n%u.size == 0 {
			return fmt.Sprintf("%d%s", n/u.size, u.suffix)
		}
	}
	return fmt.Sprint(n)
}

// formatMilliCPU prints thousandths of a core as cores (2) or millicores
// (250m).
func formatMilliCPU(m int64) string {
	if m%1000 == 0 {
		return fmt.Sprint(m / 1000)
	}
	return fmt.Sprintf("%dm", m)
}
