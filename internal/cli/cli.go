// Package cli is atoll's command tree (cobra): it parses arguments, calls
// the rest of atoll and prints the results. It is the only package that
// prints.
package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"
)

// env is what commands take from the process, so tests can supply their own.
type env struct {
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
	now    func() time.Time
	// config is the CLI's configuration file, read once by run, from
	// configFile when set (--config).
	config     fileConfig
	configFile string
}

// Main runs atoll with args (without the program name) and returns the exit
// code: 0 on success, 1 on any error. Errors are printed to stderr, one
// "error: ..." line per line of the error.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	return run(ctx, args, &env{stdout: stdout, stderr: stderr, getenv: os.Getenv, now: time.Now})
}

func run(ctx context.Context, args []string, e *env) int {
	e.configFile = configFlag(args)
	cfg, err := loadConfig(e)
	if err != nil {
		printError(e.stderr, err)
		return 1
	}
	e.config = cfg
	root := newRoot(e)
	root.SetArgs(args)
	root.SetOut(e.stdout)
	root.SetErr(e.stderr)
	if err := root.ExecuteContext(ctx); err != nil {
		printError(e.stderr, err)
		return 1
	}
	return 0
}

func newRoot(e *env) *cobra.Command {
	root := &cobra.Command{
		Use:   "atoll",
		Short: "atoll runs workloads on edge nodes, connected or not",
		// Main prints errors itself, once; usage is for --help.
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	// Read by run before parsing (configFlag); declared for --help.
	root.PersistentFlags().String("config", "", "the CLI config file (the hub's DIR/admin.conf, or what `atoll user create` printed); $ATOLL_CONFIG if set, else ~/.config/atoll/config.yaml")
	root.AddCommand(
		newAgentCmd(e),
		newHubCmd(e),
		newValidateCmd(e),
		newNodeCmd(e),
		newVersionCmd(e),
		newDevCmd(e),
		newPublishCmd(e),
	)
	root.AddCommand(fleetCmds(e)...)
	root.AddCommand(newAuditCmd(e), newTokenCmd(e), newUserCmd(e))
	return root
}

// printError prints err to w, one "error: " line per line of its message, so
// a list of manifest problems stays one problem per line.
func printError(w io.Writer, err error) {
	for line := range strings.SplitSeq(strings.TrimRight(err.Error(), "\n"), "\n") {
		fmt.Fprintf(w, "error: %s\n", line)
	}
}

// defaultDataDir is $ATOLL_DATA, else the CLI config's data directory
// (which `atoll dev` sets), else /var/lib/atoll.
func defaultDataDir(e *env) string {
	if d := e.getenv("ATOLL_DATA"); d != "" {
		return d
	}
	if e.config.Data != "" {
		return e.config.Data
	}
	return "/var/lib/atoll"
}
