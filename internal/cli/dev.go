package cli

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"atoll.dev/atoll/examples"
	"atoll.dev/atoll/internal/agent"
	"atoll.dev/atoll/internal/agent/identity"
	"atoll.dev/atoll/internal/client"
	"atoll.dev/atoll/internal/hub"
	"atoll.dev/atoll/internal/hub/api"
	"atoll.dev/atoll/internal/manifest"
)

// devNodes are the nodes `atoll dev` runs; the examples' placements name
// them.
var devNodes = []struct {
	name   string
	labels map[string]string
}{
	{"edge-1", map[string]string{"site": "plant-1", "role": "gateway"}},
	{"edge-2", map[string]string{"site": "plant-1", "role": "kiosk"}},
	{"edge-3", map[string]string{"site": "plant-2", "role": "gateway"}},
}

// devFlags are the flags of `atoll dev`.
type devFlags struct {
	dataDir    string
	memory     string
	listen     string
	natsListen string
	noExamples bool
}

func newDevCmd(e *env) *cobra.Command {
	f := &devFlags{}
	cmd := &cobra.Command{
		Use:   "dev",
		Short: "Run a hub and three node agents with the examples, for trying atoll out",
		Long: "Run a hub and three node agents (edge-1..3, different labels) in one process, with\n" +
			"the bundled examples applied to the hub, and point the CLI's config at them so\n" +
			"`atoll get nodes` and `atoll node status` in another terminal need no flags.\n" +
			"Ctrl-C stops everything, workloads included; running it again on the same data\n" +
			"resumes where it stopped.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			mem, err := parseMemory(f.memory)
			if err != nil {
				return fmt.Errorf("--capacity-memory: %w", err)
			}
			return runDev(cmd.Context(), e, f, mem)
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dataDir, "data", defaultDevDir(e), "data directory: hub/ and nodes/<name>/ under it")
	fl.StringVar(&f.memory, "capacity-memory", "256Mi", "memory each dev node's workloads may reserve (small, so the priority example shows)")
	fl.StringVar(&f.listen, "listen", hub.DefaultListen, "the hub's HTTP API address")
	fl.StringVar(&f.natsListen, "nats-listen", hub.DefaultNATSListen, "the hub's NATS address")
	fl.BoolVar(&f.noExamples, "no-examples", false, "do not apply the bundled examples")
	return cmd
}

// defaultDevDir is $XDG_STATE_HOME/atoll/dev, ~/.local/state/atoll/dev, or
// a directory under the system's temporary directory.
func defaultDevDir(e *env) string {
	if d := e.getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "atoll", "dev")
	}
	if h := e.getenv("HOME"); h != "" {
		return filepath.Join(h, ".local", "state", "atoll", "dev")
	}
	return filepath.Join(os.TempDir(), "atoll-dev")
}

func runDev(ctx context.Context, e *env, f *devFlags, memory int64) error {
	if err := os.MkdirAll(f.dataDir, 0o700); err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	logPath := filepath.Join(f.dataDir, "atoll.log")
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("dev: %w", err)
	}
	defer logFile.Close()
	log := slog.New(slog.NewTextHandler(logFile, nil))

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	h, err := hub.New(hub.Config{DataDir: filepath.Join(f.dataDir, "hub"), Listen: f.listen, NATSListen: f.natsListen, Logger: log})
	if err != nil {
		return err
	}
	// Everything started runs until ctx ends; stopped collects each result.
	stopped := make(chan error, 1+len(devNodes))
	running := 1
	go func() { stopped <- h.Run(ctx) }()
	wait := func() error {
		cancel()
		var errs []error
		for ; running > 0; running-- {
			if err := <-stopped; err != nil && !errors.Is(err, context.Canceled) {
				errs = append(errs, err)
			}
		}
		return errors.Join(errs...)
	}
	select {
	case <-h.Ready():
	case err := <-stopped:
		running--
		return fmt.Errorf("dev: hub: %w", err)
	case <-ctx.Done():
		return wait()
	}

	// The examples' scripts call `atoll publish`: this binary comes first
	// on their PATH.
	env := map[string]string{}
	if exe, err := os.Executable(); err == nil {
		env["PATH"] = filepath.Dir(exe) + string(os.PathListSeparator) + os.Getenv("PATH")
	}
	creds, err := loadCredentials(filepath.Join(f.dataDir, "hub", hub.AdminConfigFile))
	if err != nil {
		return errors.Join(err, wait())
	}
	tlsCfg, err := creds.TLS()
	if err != nil {
		return errors.Join(err, wait())
	}
	hubURL := creds.Hub
	hc := client.NewHub(hubURL, tlsCfg)
	token, err := devToken(ctx, f.dataDir, hc)
	if err != nil {
		return errors.Join(err, wait())
	}
	for _, n := range devNodes {
		cfg := agent.Config{
			DataDir: devNodeDir(f.dataDir, n.name), Name: n.name, Labels: n.labels, Hub: h.NATSURL(),
			CapacityMemory: memory, StopWorkloadsOnExit: true, Logger: log,
			Broker: "127.0.0.1:0", WorkloadEnv: env,
		}
		if err := identify(ctx, &cfg, token, false, log); err != nil {
			return errors.Join(err, wait())
		}
		a, err := agent.New(cfg)
		if err != nil {
			return errors.Join(err, wait())
		}
		running++
		go func() { stopped <- a.Run(ctx) }()
	}
	if err := waitForFleet(ctx, hc, stopped); err != nil {
		return errors.Join(err, wait())
	}
	if !f.noExamples {
		if err := applyExamples(ctx, e, hc); err != nil {
			return errors.Join(err, wait())
		}
	}
	cfg := e.config
	cfg.Credentials, cfg.Data = creds, devNodeDir(f.dataDir, devNodes[0].name)
	cfgPath, err := saveConfig(e, cfg)
	if err != nil {
		fmt.Fprintf(e.stderr, "warning: %v; pass --config %s to fleet commands\n", err, filepath.Join(f.dataDir, "hub", hub.AdminConfigFile))
	}
	printDevGuide(e, f.dataDir, logPath, cfgPath, hubURL, h.NATSURL())
	<-ctx.Done()
	err = wait()
	fmt.Fprintln(e.stdout, "atoll dev stopped; its workloads are stopped too. Run `atoll dev` again to resume.")
	return err
}

// devToken makes a token for the dev nodes not enrolled yet ("" when all
// are: a second `atoll dev` starts them as they are).
func devToken(ctx context.Context, dataDir string, hc *client.Hub) (string, error) {
	missing := 0
	for _, n := range devNodes {
		id, err := identity.Load(identity.Dir(devNodeDir(dataDir, n.name)))
		if err != nil {
			return "", fmt.Errorf("dev: %w", err)
		}
		if id == nil || id.Revoked() {
			missing++
		}
	}
	if missing == 0 {
		return "", nil
	}
	t, err := hc.CreateToken(ctx, api.TokenRequest{TTL: "10m", Uses: missing})
	if err != nil {
		return "", fmt.Errorf("dev: enrollment token: %w", err)
	}
	return t.Token, nil
}

func devNodeDir(dataDir, node string) string { return filepath.Join(dataDir, "nodes", node) }

// waitForFleet waits until the hub shows every dev node connected.
func waitForFleet(ctx context.Context, hc *client.Hub, stopped chan error) error {
	deadline := time.Now().Add(60 * time.Second)
	for {
		nodes, err := hc.Nodes(ctx)
		connected := 0
		for _, n := range nodes {
			if n.State == api.NodeConnected {
				connected++
			}
		}
		if err == nil && connected == len(devNodes) {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dev: %d of %d nodes connected after a minute (last error: %v)", connected, len(devNodes), err)
		}
		select {
		case err := <-stopped:
			stopped <- err // let the caller count it
			return fmt.Errorf("dev: a component stopped: %w", err)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// applyExamples applies the embedded examples to the hub, uploading the
// WASM module.
func applyExamples(ctx context.Context, e *env, hc *client.Hub) error {
	var ws []manifest.Workload
	var ss []manifest.Secret
	err := fs.WalkDir(examples.FS, ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".yaml") {
			return err
		}
		data, err := fs.ReadFile(examples.FS, path)
		if err != nil {
			return err
		}
		got, err := manifest.DecodeAll(path, data)
		ws, ss = append(ws, got.Workloads...), append(ss, got.Secrets...)
		return err
	})
	if err != nil {
		return fmt.Errorf("dev: examples: %w", err)
	}
	sort.Slice(ws, func(i, j int) bool { return ws[i].Metadata.Name < ws[j].Metadata.Name })
	readFile := func(p string) ([]byte, error) { return fs.ReadFile(examples.FS, p) }
	if err := uploadArtifacts(ctx, hc, ws, readFile); err != nil {
		return fmt.Errorf("dev: examples: %w", err)
	}
	sres, err := hc.ApplySecrets(ctx, ss)
	if err != nil {
		return fmt.Errorf("dev: examples: %w", err)
	}
	for _, r := range sres {
		fmt.Fprintf(e.stdout, "secret/%s %s (%s)\n", r.Name, r.Action, plural(r.Targets, "1 node", fmt.Sprintf("%d nodes", r.Targets)))
	}
	res, err := hc.Apply(ctx, ws)
	if err != nil {
		return fmt.Errorf("dev: examples: %w", err)
	}
	for _, r := range res {
		fmt.Fprintf(e.stdout, "workload/%s %s (%s)\n", r.Name, r.Action, plural(r.Targets, "1 node", fmt.Sprintf("%d nodes", r.Targets)))
	}
	return nil
}

func printDevGuide(e *env, dataDir, logPath, cfgPath, hubURL, natsURL string) {
	fmt.Fprintf(e.stdout, "\natoll dev is running: a hub (%s, NATS %s) and three nodes,\n", hubURL, natsURL)
	for _, n := range devNodes {
		fmt.Fprintf(e.stdout, "  %s  %s\n", n.name, formatLabels(n.labels))
	}
	fmt.Fprintf(e.stdout, "with data in %s and logs in %s.\n", dataDir, logPath)
	if cfgPath != "" {
		fmt.Fprintf(e.stdout, "The CLI config %s now points at them; in another terminal try:\n", cfgPath)
	} else {
		fmt.Fprintf(e.stdout, "In another terminal (with ATOLL_CONFIG=%s) try:\n", filepath.Join(dataDir, "hub", hub.AdminConfigFile))
	}
	fmt.Fprintf(e.stdout, `
  atoll get nodes                        connected, plan and applied revisions
  atoll get workloads -o wide            which nodes run what
  atoll describe workload sensor         its instances on plant-1's nodes
  atoll get secrets                      api-token: its keys and nodes, never its value
  atoll logs edge-1 sensor --tail 5      fetched from the node through the hub
  atoll events --since 10m               what happened, fleet-wide
  atoll telemetry tail --subject 'plant.>' -f
                                         readings published on plant 1's nodes, forwarded
  atoll delete workload safety-monitor   frees 128Mi on edge-3: data-uploader starts
  atoll node status                      edge-1's agent, over its local socket
  atoll node status --data %s
                                         the same for edge-3

Ctrl-C stops the hub, the agents and their workloads.
`, devNodeDir(dataDir, "edge-3"))
}
