package supervisor

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"strings"

	"atoll.dev/atoll/internal/agent/artifact"
	"atoll.dev/atoll/internal/driver"
	"atoll.dev/atoll/internal/manifest"
)

// driverSpec turns a workload into what its driver needs.
func (s *Supervisor) driverSpec(w *workload) (driver.Spec, error) {
	sp := driver.Spec{
		Name:        w.name,
		MemoryLimit: w.spec.Resources.MemoryBytes(),
		MilliCPU:    w.spec.Resources.MilliCPU(),
		LogPath:     LogPath(s.cfg.LogDir, w.name),
	}
	switch w.spec.Runtime {
	case manifest.RuntimeExec:
		e := w.spec.Exec
		sp.Exec = &driver.ExecConfig{Command: e.Command, Env: s.env(e.Env), WorkingDir: e.WorkingDir}
	case manifest.RuntimeWASM:
		m := w.spec.WASM
		path := m.Module
		if strings.HasPrefix(path, artifact.Prefix) {
			p, err := s.cfg.Artifacts.Path(path)
			if err != nil {
				return sp, err
			}
			if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
				return sp, &missingArtifactError{ref: m.Module}
			}
			path = p
		}
		sp.WASM = &driver.WASMConfig{ModulePath: path, Args: m.Args, Env: s.env(m.Env)}
	case manifest.RuntimeContainer:
		c := w.spec.Container
		cc := &driver.ContainerConfig{
			Image: c.Image, Command: c.Command, Args: c.Args, Env: s.env(c.Env),
			HostNetwork: c.HostNetwork, Devices: c.Devices, Privileged: c.Privileged, User: c.User,
		}
		for _, m := range c.Mounts {
			cc.Mounts = append(cc.Mounts, driver.Mount{HostPath: m.HostPath, Path: m.Path, ReadOnly: m.ReadOnly})
		}
		for _, p := range c.Ports {
			cc.Ports = append(cc.Ports, driver.Port{ContainerPort: p.ContainerPort, HostPort: p.HostPort, Protocol: p.Protocol})
		}
		sp.Container = cc
	default:
		return sp, fmt.Errorf("runtime %s cannot be started by this agent", w.spec.Runtime)
	}
	return sp, nil
}

// env is a workload's environment: Config.Env under its own.
func (s *Supervisor) env(own map[string]string) map[string]string {
	if len(s.cfg.Env) == 0 {
		return own
	}
	out := maps.Clone(s.cfg.Env)
	maps.Copy(out, own)
	return out
}

// LogPath is where the log of the named workload lives under logDir.
func LogPath(logDir, name string) string { return filepath.Join(logDir, name+".log") }
