package cli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"

	"atoll.dev/atoll/internal/agent"
	"atoll.dev/atoll/internal/agent/store"
	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/wire"
)

// agentFlags are the flags of `atoll agent`, as typed.
type agentFlags struct {
	dataDir   string
	name      string
	labels    map[string]string
	memory    string
	cpu       string
	pressure  string
	hub       string
	heartbeat time.Duration
	docker    string
	events    int
	broker    string
	mqtt      string
	outbox    string
	rate      string
	cache     string
	window    string
	token     string
	insecure  bool
}

func newAgentCmd(e *env) *cobra.Command {
	f := &agentFlags{}
	cmd := &cobra.Command{
		Use:   "agent",
		Short: "Run the node agent",
		Long: "Run the node agent: keep this node's workloads running from its local store,\n" +
			"connected to a hub or not, and serve `atoll node` commands on DATA/agent.sock.",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := f.config()
			if err != nil {
				return err
			}
			// The agent logs through the CLI's stderr, like everything else.
			cfg.Logger = slog.New(slog.NewTextHandler(e.stderr, nil))
			if f.token == "" {
				f.token = e.getenv("ATOLL_TOKEN")
			}
			if err := identify(cmd.Context(), &cfg, f.token, f.insecure, cfg.Logger); err != nil {
				return err
			}
			a, err := agent.New(cfg)
			if err != nil {
				return err
			}
			ctx := cmd.Context()
			if err := a.Run(ctx); err != nil && !(errors.Is(err, context.Canceled) && ctx.Err() != nil) {
				return err
			}
			// Stopped by a signal: a clean exit.
			return nil
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.dataDir, "data", defaultDataDir(e), "data directory: store, logs, artifacts, agent.sock; $ATOLL_DATA if set")
	fl.StringVar(&f.name, "name", "", "node name (default: the host name)")
	fl.StringVar(&f.hub, "hub", "", "the hub's NATS URL, e.g. tls://hub:4222 (default: none; the node runs on its own)")
	fl.StringVar(&f.token, "token", "", "enrollment token from `atoll token create`: the first start enrolls the node (later starts ignore it); $ATOLL_TOKEN if set")
	fl.BoolVar(&f.insecure, "insecure", false, "connect without TLS or a certificate, to a hub run with --insecure")
	fl.StringVar(&f.docker, "docker-host", "",
		"the Docker engine for container workloads (default: $DOCKER_HOST, else unix:///var/run/docker.sock)")
	fl.DurationVar(&f.heartbeat, "heartbeat", wire.HeartbeatInterval, "how often a connected agent heartbeats to the hub")
	fl.StringToStringVar(&f.labels, "labels", nil, "node labels, k=v,...")
	fl.StringVar(&f.broker, "broker", "",
		"run the node's message broker for its workloads on this loopback address, e.g. 127.0.0.1:4223 (default: none)")
	fl.StringVar(&f.mqtt, "mqtt", "", "also serve MQTT on this address, e.g. 127.0.0.1:1883 (needs --broker)")
	fl.StringVar(&f.outbox, "outbox-bytes", "256Mi", "disk budget of the messages waiting for the hub; beyond, the oldest are dropped, counted and reported")
	fl.StringVar(&f.rate, "forward-rate", "256Ki", "message data forwarded to the hub per second, at most")
	fl.StringVar(&f.cache, "image-cache-bytes", "2Gi",
		"disk budget of the artifact cache (image archives, modules); beyond, the oldest no workload uses are removed")
	fl.StringVar(&f.window, "fetch-window", "",
		"fetch image archives (artifacts over 1Mi) only in this daily window, local time, e.g. 01:00-05:00 (default: any time)")
	fl.IntVar(&f.events, "event-retention", store.DefaultEventRetention,
		"events the node keeps for the hub; beyond, the oldest are dropped, counted and reported")
	fl.StringVar(&f.memory, "capacity-memory", "", "memory workloads may reserve, e.g. 512Mi (default: all of MemTotal)")
	fl.StringVar(&f.cpu, "capacity-cpu", "", "CPU workloads may reserve, e.g. 2 or 1500m (default: all cores)")
	fl.StringVar(&f.pressure, "pressure-threshold", "",
		"evict low-priority workloads when MemAvailable drops below this, e.g. 64Mi; \"off\" disables (default: 5% of MemTotal)")
	return cmd
}

// config turns the flags into an agent.Config; quantities use the manifest
// syntax, so the same "512Mi" means the same thing everywhere.
func (f *agentFlags) config() (agent.Config, error) {
	cfg := agent.Config{DataDir: f.dataDir, Name: f.name, Labels: f.labels, Hub: f.hub, Heartbeat: f.heartbeat,
		DockerHost: f.docker, EventRetention: f.events}
	if cfg.DataDir == "" {
		return cfg, errors.New("--data: must not be empty")
	}
	if f.mqtt != "" && f.broker == "" {
		return cfg, errors.New("--mqtt: needs --broker")
	}
	cfg.Broker, cfg.MQTT = f.broker, f.mqtt
	var err error
	if f.outbox != "" {
		if cfg.OutboxBytes, err = parseMemory(f.outbox); err != nil || cfg.OutboxBytes < 1<<20 {
			return cfg, fmt.Errorf("--outbox-bytes: %q: want a size of at least 1Mi, e.g. 256Mi", f.outbox)
		}
	}
	if f.rate != "" {
		rate, err := parseMemory(f.rate)
		if err != nil || rate < 1 {
			return cfg, fmt.Errorf("--forward-rate: %q: want bytes a second, e.g. 256Ki", f.rate)
		}
		cfg.ForwardRate = int(rate)
	}
	if f.cache != "" {
		if cfg.ImageCacheBytes, err = parseMemory(f.cache); err != nil || cfg.ImageCacheBytes < 1 {
			return cfg, fmt.Errorf("--image-cache-bytes: %q: want a size, e.g. 2Gi", f.cache)
		}
	}
	if f.window != "" {
		if _, err := agent.ParseFetchWindow(f.window); err != nil {
			return cfg, fmt.Errorf("--fetch-window: %w", err)
		}
		cfg.FetchWindow = f.window
	}
	if f.events < 0 {
		return cfg, fmt.Errorf("--event-retention: %d: must be at least 1 (0: the default, %d)", f.events, store.DefaultEventRetention)
	}
	for k := range f.labels {
		if k == "" {
			return cfg, errors.New("--labels: a label has an empty key")
		}
	}
	if f.memory != "" {
		if cfg.CapacityMemory, err = parseMemory(f.memory); err != nil {
			return cfg, fmt.Errorf("--capacity-memory: %w", err)
		}
	}
	if f.cpu != "" {
		if cfg.CapacityMilliCPU, err = parseCPU(f.cpu); err != nil {
			return cfg, fmt.Errorf("--capacity-cpu: %w", err)
		}
	}
	switch f.pressure {
	case "":
	case "off":
		cfg.PressureThreshold = -1
	default:
		if cfg.PressureThreshold, err = parseMemory(f.pressure); err != nil {
			return cfg, fmt.Errorf("--pressure-threshold: %w", err)
		}
	}
	return cfg, nil
}

// parseMemory reads a memory quantity such as 512Mi as bytes.
func parseMemory(s string) (int64, error) {
	return manifest.Quantity(s).Bytes()
}

// parseCPU reads a CPU quantity such as 2 or 1500m as thousandths of a core.
func parseCPU(s string) (int64, error) {
	return manifest.Quantity(s).Millis()
}
