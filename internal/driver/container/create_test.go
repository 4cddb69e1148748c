package container

import (
	"slices"
	"testing"

	"github.com/moby/moby/api/types/network"

	"atoll.dev/atoll/internal/driver"
)

func TestContainerName(t *testing.T) {
	for _, tt := range []struct{ node, workload, want string }{
		{"gw-1", "web", "atoll-gw-1-web"},
		{"gw1.plant-3.example", "web", "atoll-gw1.plant-3.example-web"},
		{"Kiosk 7/b", "ui", "atoll-Kiosk-7-b-ui"},
	} {
		if got := containerName(tt.node, tt.workload); got != tt.want {
			t.Errorf("containerName(%q, %q) = %q, want %q", tt.node, tt.workload, got, tt.want)
		}
	}
}

func TestDriver_CreateOptions(t *testing.T) {
	d := &Driver{cfg: Config{Node: "gw-1", Owner: "/var/lib/atoll"}}
	spec := driver.Spec{
		Name: "cam",
		Container: &driver.ContainerConfig{
			Image: "cam:1", Command: []string{"/cam"}, Args: []string{"--fps", "5"},
			Env:         map[string]string{"Z": "1"},
			HostNetwork: true, Devices: []string{"/dev/video0"}, Privileged: true, User: "app",
		},
		MemoryLimit: 32 << 20, MilliCPU: 1500,
	}
	opts, err := d.createOptions(spec)
	if err != nil {
		t.Fatal(err)
	}
	cfg, hc := opts.Config, opts.HostConfig
	if opts.Name != "atoll-gw-1-cam" || cfg.Image != "cam:1" || !slices.Equal(cfg.Entrypoint, []string{"/cam"}) ||
		!slices.Equal(cfg.Cmd, []string{"--fps", "5"}) || cfg.User != "app" {
		t.Errorf("config = %+v, name %q", cfg, opts.Name)
	}
	if !slices.Equal(cfg.Env, []string{"ATOLL_WORKLOAD=cam", "Z=1"}) {
		t.Errorf("env = %q", cfg.Env)
	}
	if cfg.Labels[LabelWorkload] != "cam" || cfg.Labels[LabelNode] != "gw-1" || cfg.Labels[LabelOwner] != "/var/lib/atoll" {
		t.Errorf("labels = %v", cfg.Labels)
	}
	if hc.NetworkMode != "host" || !hc.Privileged || hc.RestartPolicy.Name != "no" {
		t.Errorf("network %q, privileged %v, restart %q", hc.NetworkMode, hc.Privileged, hc.RestartPolicy.Name)
	}
	if len(hc.Devices) != 1 || hc.Devices[0].PathOnHost != "/dev/video0" || hc.Devices[0].PathInContainer != "/dev/video0" {
		t.Errorf("devices = %+v", hc.Devices)
	}
	if hc.Memory != 32<<20 || hc.MemorySwap != 32<<20 || hc.NanoCPUs != 1_500_000_000 {
		t.Errorf("memory %d, swap %d, nanocpus %d", hc.Memory, hc.MemorySwap, hc.NanoCPUs)
	}
	if len(cfg.ExposedPorts) != 0 || len(hc.PortBindings) != 0 {
		t.Errorf("ports with host network: %v %v", cfg.ExposedPorts, hc.PortBindings)
	}
}

func TestDriver_CreateOptions_Ports(t *testing.T) {
	d := &Driver{cfg: Config{Node: "n"}}
	spec := driver.Spec{Name: "dns", Container: &driver.ContainerConfig{Image: "dns:1", Ports: []driver.Port{
		{ContainerPort: 53, HostPort: 53, Protocol: "udp"},
		{ContainerPort: 53, HostPort: 5353, Protocol: "udp"},
		{ContainerPort: 8080, HostPort: 80, Protocol: "tcp"},
	}}}
	opts, err := d.createOptions(spec)
	if err != nil {
		t.Fatal(err)
	}
	udp, tcp := network.MustParsePort("53/udp"), network.MustParsePort("8080/tcp")
	if _, ok := opts.Config.ExposedPorts[udp]; !ok || len(opts.Config.ExposedPorts) != 2 {
		t.Errorf("exposed = %v", opts.Config.ExposedPorts)
	}
	b := opts.HostConfig.PortBindings
	if len(b[udp]) != 2 || b[udp][0].HostPort != "53" || b[udp][1].HostPort != "5353" || len(b[tcp]) != 1 || b[tcp][0].HostPort != "80" {
		t.Errorf("bindings = %v", b)
	}
	if opts.HostConfig.NetworkMode != "" {
		t.Errorf("network mode %q, want the engine's default", opts.HostConfig.NetworkMode)
	}
}

func TestLimitsText(t *testing.T) {
	for _, tt := range []struct {
		mem, cpu int64
		want     string
	}{
		{0, 0, "no limits declared"},
		{64 << 20, 250, "memory 64Mi, cpu 250m enforced by the Docker engine"},
		{1000, 0, "memory 1000 enforced by the Docker engine"},
		{0, 2000, "cpu 2000m enforced by the Docker engine"},
	} {
		if got := limitsText(tt.mem, tt.cpu); got != tt.want {
			t.Errorf("limitsText(%d, %d) = %q, want %q", tt.mem, tt.cpu, got, tt.want)
		}
	}
}
