package cli

import (
	"fmt"

	"github.com/spf13/cobra"

	"atoll.dev/atoll/internal/manifest"
)

func newValidateCmd(e *env) *cobra.Command {
	var path string
	cmd := &cobra.Command{
		Use:   "validate -f FILE|DIR",
		Short: "Check workload and secret manifests without applying them",
		Long: "Check workload and secret manifests without applying them. Every problem is\n" +
			"printed, one per line, as FILE#DOC: FIELD.PATH: MESSAGE (never a secret's value).",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			docs, err := manifest.LoadAll(path)
			if err != nil {
				return err
			}
			nw, ns := len(docs.Workloads), len(docs.Secrets)
			switch {
			case nw == 0 && ns == 0:
				return fmt.Errorf("no workloads or secrets in %s", path)
			case ns == 0:
				_, err = fmt.Fprintf(e.stdout, "%d %s valid\n", nw, plural(nw, "workload", "workloads"))
			default:
				_, err = fmt.Fprintf(e.stdout, "%d %s and %d %s valid\n", nw, plural(nw, "workload", "workloads"), ns, plural(ns, "secret", "secrets"))
			}
			return err
		},
	}
	addFileFlag(cmd, &path)
	return cmd
}

func addFileFlag(cmd *cobra.Command, path *string) {
	cmd.Flags().StringVarP(path, "filename", "f", "", "manifest file, or directory of manifests")
	_ = cmd.MarkFlagRequired("filename")
}

// loadWorkloads reads, defaults and validates the manifests at path.
func loadWorkloads(path string) ([]manifest.Workload, error) {
	ws, err := manifest.LoadPath(path)
	if err != nil {
		return nil, err
	}
	if len(ws) == 0 {
		return nil, fmt.Errorf("no workloads in %s", path)
	}
	return ws, nil
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
