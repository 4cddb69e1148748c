// Command atoll is atoll's single binary: the node agent, the hub and the
// command-line client. It only wires signals to the command tree in
// internal/cli.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"atoll.dev/atoll/internal/cli"
)

func main() {
	// os.Exit skips deferred calls, so the work runs in run, whose defers
	// have finished by the time main exits.
	os.Exit(run())
}

func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	// After the first signal, restore the default handling, so that a
	// second one ends a shutdown that hangs.
	context.AfterFunc(ctx, stop)
	return cli.Main(ctx, os.Args[1:], os.Stdout, os.Stderr)
}
