package container

import (
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"atoll.dev/atoll/internal/driver"
)

// Labels on every container the driver creates, so that an agent can tell
// its containers from anyone else's.
const (
	LabelWorkload = "dev.atoll.workload"
	LabelNode     = "dev.atoll.node"
	// LabelOwner holds Config.Owner (the agent's data directory).
	LabelOwner = "dev.atoll.owner"
)

// containerName is the engine name of a workload's container:
// atoll-<node>-<workload>, with characters the engine refuses replaced.
func containerName(node, workload string) string {
	clean := strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '_', r == '.', r == '-':
			return r
		}
		return '-'
	}, node)
	return "atoll-" + clean + "-" + workload
}

// createOptions is the engine's create request for spec. The engine never
// restarts the container (restart policy "no"): the supervisor does.
func (d *Driver) createOptions(spec driver.Spec) (client.ContainerCreateOptions, error) {
	c := spec.Container
	env := make([]string, 0, len(c.Env)+1)
	env = append(env, "ATOLL_WORKLOAD="+spec.Name)
	for _, k := range slices.Sorted(maps.Keys(c.Env)) {
		env = append(env, k+"="+c.Env[k])
	}
	cfg := &container.Config{
		Image:      c.Image,
		Entrypoint: c.Command,
		Cmd:        c.Args,
		Env:        env,
		User:       c.User,
		Labels: map[string]string{
			LabelWorkload: spec.Name,
			LabelNode:     d.cfg.Node,
			LabelOwner:    d.cfg.Owner,
		},
	}
	hc := &container.HostConfig{
		RestartPolicy: container.RestartPolicy{Name: container.RestartPolicyDisabled},
		Privileged:    c.Privileged,
		Resources: container.Resources{
			Memory: spec.MemoryLimit,
			// No swap beyond the limit, so the limit means what it says.
			MemorySwap: spec.MemoryLimit,
			NanoCPUs:   spec.MilliCPU * 1e6,
		},
	}
	for _, m := range c.Mounts {
		hc.Mounts = append(hc.Mounts, mount.Mount{Type: mount.TypeBind, Source: m.HostPath, Target: m.Path, ReadOnly: m.ReadOnly})
	}
	for _, dev := range c.Devices {
		hc.Devices = append(hc.Devices, container.DeviceMapping{PathOnHost: dev, PathInContainer: dev, CgroupPermissions: "rwm"})
	}
	if c.HostNetwork {
		hc.NetworkMode = container.NetworkMode(network.NetworkHost)
	}
	for _, p := range c.Ports {
		port, err := network.ParsePort(strconv.Itoa(p.ContainerPort) + "/" + p.Protocol)
		if err != nil {
			return client.ContainerCreateOptions{}, fmt.Errorf("port %d/%s: %w", p.ContainerPort, p.Protocol, err)
		}
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts, hc.PortBindings = network.PortSet{}, network.PortMap{}
		}
		cfg.ExposedPorts[port] = struct{}{}
		hc.PortBindings[port] = append(hc.PortBindings[port], network.PortBinding{HostPort: strconv.Itoa(p.HostPort)})
	}
	return client.ContainerCreateOptions{Config: cfg, HostConfig: hc, Name: containerName(d.cfg.Node, spec.Name)}, nil
}

// limitsText is Info.Limits for a container with these limits.
func limitsText(memory, milliCPU int64) string {
	var items []string
	if memory > 0 {
		items = append(items, "memory "+formatBytes(memory))
	}
	if milliCPU > 0 {
		items = append(items, "cpu "+strconv.FormatInt(milliCPU, 10)+"m")
	}
	if len(items) == 0 {
		return "no limits declared"
	}
	return strings.Join(items, ", ") + " enforced by the Docker engine"
}

// formatBytes prints n in the largest binary unit that divides it: 64Mi.
func formatBytes(n int64) string {
	units := []string{"Ei", "Pi", "Ti", "Gi", "Mi", "Ki"}
	for i, u := range units {
		size := int64(1) << (10 * (len(units) - i))
		if n%size == 0 {
			return strconv.FormatInt(n/size, 10) + u
		}
	}
	return strconv.FormatInt(n, 10)
}
