package cli

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"atoll.dev/atoll/internal/client"
	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/wire"
)

func newGetCmd(e *env) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "get",
		Short: "List the fleet's nodes or workloads, as the hub knows them",
	}
	hub := addHubFlag(e, cmd)
	cmd.PersistentFlags().StringVarP(&output, "output", "o", "", "output format: wide, json or yaml")
	cmd.AddCommand(
		newGetListCmd(e, hub, &output, "nodes", "node", "List the nodes: connection state, plan revisions, workload counts",
			(*client.Hub).Nodes, func(ns []api.Node) error { return printNodesTable(e.stdout, ns, output == "wide", e.now()) }),
		newGetListCmd(e, hub, &output, "workloads", "workload", "List the workloads: how many nodes each targets and runs on",
			(*client.Hub).Workloads, func(ws []api.Workload) error { return printWorkloadsTable(e.stdout, ws, output == "wide") }),
		newGetListCmd(e, hub, &output, "images", "image", "List the hub's image store: each image's archive and the nodes that have it",
			(*client.Hub).Images, func(ims []api.Image) error { return printImagesTable(e.stdout, ims, output == "wide") }),
		newGetListCmd(e, hub, &output, "secrets", "secret", "List the secrets: their keys, versions and target nodes (never their values)",
			(*client.Hub).Secrets, func(ss []api.Secret) error { return printSecretsTable(e.stdout, ss, output == "wide", e.now()) }),
	)
	return cmd
}

// newGetListCmd is `atoll get <use>`: fetch a list from the hub, then print
// it as JSON, YAML or a table.
func newGetListCmd[T any](e *env, hub *hubFlag, output *string, use, alias, short string,
	fetch func(*client.Hub, context.Context) ([]T, error), table func([]T) error) *cobra.Command {
	return &cobra.Command{
		Use:     use,
		Aliases: []string{alias},
		Short:   short,
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(*output, "wide", "json", "yaml"); err != nil {
				return err
			}
			c, err := hub.client()
			if err != nil {
				return err
			}
			list, err := fetch(c, cmd.Context())
			if err != nil {
				return err
			}
			if *output == "json" || *output == "yaml" {
				return printStructured(e.stdout, *output, list)
			}
			return table(list)
		},
	}
}

// printNodesTable prints one row per node. The wide table adds STORED,
// VERSION and CAPACITY before LABELS, so free text stays last.
func printNodesTable(w io.Writer, ns []api.Node, wide bool, now time.Time) error {
	tw := newTable(w)
	head := []string{"NAME", "STATE", "LAST-SEEN", "PLAN", "APPLIED", "WORKLOADS"}
	if wide {
		head = append(head, "STORED", "VERSION", "CAPACITY")
	}
	tableRow(tw, append(head, "LABELS")...)
	for _, n := range ns {
		row := []string{n.Name, n.State, formatAgo(now, n.LastSeen), formatRevision(n.PlanRevision),
			formatRevision(n.AppliedRevision), strconv.Itoa(n.Workloads)}
		if wide {
			row = append(row, formatRevision(n.StoredRevision), n.Version,
				formatCapacity(n.CapacityMemory, n.CapacityMilliCPU))
		}
		tableRow(tw, append(row, formatLabels(n.Labels))...)
	}
	return tw.Flush()
}

// printWorkloadsTable prints one row per workload. An instance counts as
// running when its node last reported it running, connected or not. The
// wide table adds how many instances are on disconnected nodes and where
// the others are and why.
func printWorkloadsTable(w io.Writer, ws []api.Workload, wide bool) error {
	tw := newTable(w)
	head := []string{"NAME", "TARGETS", "RUNNING", "NOT-RUNNING"}
	if wide {
		head = append(head, "DISCONNECTED", "NOT-RUNNING-ON")
	}
	tableRow(tw, head...)
	for _, wl := range ws {
		var running, disconnected int
		var elsewhere []string
		for _, in := range wl.Instances {
			if in.NodeState == api.NodeDisconnected {
				disconnected++
			}
			if in.State == string(wire.StateRunning) {
				running++
				continue
			}
			elsewhere = append(elsewhere, fmt.Sprintf("%s(%s)", in.Node, in.State))
		}
		row := []string{wl.Name, strconv.Itoa(wl.Targets), strconv.Itoa(running), strconv.Itoa(len(wl.Instances) - running)}
		if wide {
			row = append(row, strconv.Itoa(disconnected), strings.Join(elsewhere, ","))
		}
		tableRow(tw, row...)
	}
	return tw.Flush()
}

// printImagesTable prints one row per image name; the archive reference is
// shortened to 12 hex digits unless wide.
func printImagesTable(w io.Writer, ims []api.Image, wide bool) error {
	tw := newTable(w)
	tableRow(tw, "NAME", "REF", "SIZE", "NODES")
	for _, im := range ims {
		ref := im.Ref
		if !wide && len(ref) > len("sha256:")+12 {
			ref = ref[:len("sha256:")+12]
		}
		nodes := strings.Join(im.Nodes, ",")
		if nodes == "" {
			nodes = "-"
		}
		tableRow(tw, im.Name, ref, formatMiB(im.Size), nodes)
	}
	return tw.Flush()
}

// printSecretsTable prints one row per secret: its keys, never its
// values. The wide table adds the nodes it targets.
func printSecretsTable(w io.Writer, ss []api.Secret, wide bool, now time.Time) error {
	tw := newTable(w)
	head := []string{"NAME", "KEYS", "VERSION", "TARGETS", "UPDATED"}
	if wide {
		head = append(head, "NODES")
	}
	tableRow(tw, head...)
	for _, s := range ss {
		row := []string{s.Name, strings.Join(s.Keys, ","), strconv.FormatUint(s.Version, 10),
			strconv.Itoa(len(s.Targets)), formatAgo(now, s.Updated)}
		if wide {
			nodes := strings.Join(s.Targets, ",")
			if nodes == "" {
				nodes = "-"
			}
			row = append(row, nodes)
		}
		tableRow(tw, row...)
	}
	return tw.Flush()
}
