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

// SecretsDirEnv names the directory of a workload's secret files:
// <dir>/<secret>/<key>. Exec workloads get the host directory (on tmpfs);
// WASM modules and containers get SecretsMountPath, where it is mounted
// read-only.
const (
	SecretsDirEnv    = "ATOLL_SECRETS_DIR"
	SecretsMountPath = "/run/secrets"
)

// driverSpec turns a workload into what its driver needs, opening its
// secrets.
func (s *Supervisor) driverSpec(w *workload) (driver.Spec, error) {
	sp := driver.Spec{
		Name:        w.name,
		MemoryLimit: w.spec.Resources.MemoryBytes(),
		MilliCPU:    w.spec.Resources.MilliCPU(),
		LogPath:     LogPath(s.cfg.LogDir, w.name),
	}
	secretEnv, secretDir, err := s.openSecrets(w)
	if err != nil {
		return sp, err
	}
	// env is the workload's environment with its secrets; files appear at
	// mountAt inside a WASM module or a container.
	env := func(own map[string]string, mountAt string) map[string]string {
		if secretEnv == nil && secretDir == "" {
			return s.env(own)
		}
		out := maps.Clone(s.env(own))
		if out == nil {
			out = map[string]string{}
		}
		maps.Copy(out, secretEnv)
		if secretDir != "" {
			out[SecretsDirEnv] = secretDir
			if mountAt != "" {
				out[SecretsDirEnv] = mountAt
			}
		}
		return out
	}
	switch w.spec.Runtime {
	case manifest.RuntimeExec:
		e := w.spec.Exec
		sp.Exec = &driver.ExecConfig{Command: e.Command, Env: env(e.Env, ""), WorkingDir: e.WorkingDir}
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
		sp.WASM = &driver.WASMConfig{ModulePath: path, Args: m.Args, Env: env(m.Env, SecretsMountPath)}
		if secretDir != "" {
			sp.WASM.Mounts = []driver.Mount{{HostPath: secretDir, Path: SecretsMountPath, ReadOnly: true}}
		}
	case manifest.RuntimeContainer:
		c := w.spec.Container
		cc := &driver.ContainerConfig{
			Image: c.Image, Command: c.Command, Args: c.Args, Env: env(c.Env, SecretsMountPath),
			HostNetwork: c.HostNetwork, Devices: c.Devices, Privileged: c.Privileged, User: c.User,
		}
		for _, m := range c.Mounts {
			cc.Mounts = append(cc.Mounts, driver.Mount{HostPath: m.HostPath, Path: m.Path, ReadOnly: m.ReadOnly})
		}
		if secretDir != "" {
			cc.Mounts = append(cc.Mounts, driver.Mount{HostPath: secretDir, Path: SecretsMountPath, ReadOnly: true})
		}
		for _, p := range c.Ports {
			cc.Ports = append(cc.Ports, driver.Port{ContainerPort: p.ContainerPort, HostPort: p.HostPort, Protocol: p.Protocol})
		}
		if im := w.image; im != nil {
			p, err := s.cfg.Artifacts.Path(im.Ref)
			if err != nil {
				return sp, err
			}
			if _, err := os.Stat(p); errors.Is(err, fs.ErrNotExist) {
				return sp, &missingArtifactError{ref: im.Ref, msg: s.imageWait(c.Image, im)}
			}
			cc.Archive = p
		}
		sp.Container = cc
	default:
		return sp, fmt.Errorf("runtime %s cannot be started by this agent", w.spec.Runtime)
	}
	return sp, nil
}

// imageWait is the pending reason of a workload whose image archive is on
// its way: "waiting for image plant/app:1 (sha256:…): 12.3 of 20.0 MiB".
func (s *Supervisor) imageWait(name string, im *Image) string {
	const mib = 1 << 20
	msg := fmt.Sprintf("waiting for image %s (%s): %.1f of %.1f MiB", name, im.Ref,
		float64(s.cfg.Artifacts.Partial(im.Ref))/mib, float64(im.Size)/mib)
	if s.cfg.FetchHold != nil {
		if hold := s.cfg.FetchHold(); hold != "" {
			msg += "; " + hold
		}
	}
	return msg
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
