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
		Short: "Check workload manifests without applying them",
		Long: "Check workload manifests without applying them. Every problem is printed,\n" +
			"one per line, as FILE#DOC: FIELD.PATH: MESSAGE.",
		Args: cobra.NoArgs,
		RunE: func(*cobra.Command, []string) error {
			ws, err := loadWorkloads(path)
			if err != nil {
				return err
			}
			_, err = fmt.Fprintf(e.stdout, "%d %s valid\n", len(ws), plural(len(ws), "workload", "workloads"))
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
