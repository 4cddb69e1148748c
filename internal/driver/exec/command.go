package exec

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	osexec "os/exec"
	"path/filepath"
	"slices"
	"strings"

	"atoll.dev/atoll/internal/driver"
)

// defaultPath is the workload's PATH when the agent has none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// workloadEnv builds a workload's whole environment: PATH (the agent's, or
// defaultPath), then the spec's variables, then ATOLL_WORKLOAD, which the
// spec cannot override. Nothing else of the agent's environment is passed.
func workloadEnv(spec driver.Spec) []string {
	vars := map[string]string{"PATH": os.Getenv("PATH")}
	if vars["PATH"] == "" {
		vars["PATH"] = defaultPath
	}
	for k, v := range spec.Exec.Env {
		vars[k] = v
	}
	vars["ATOLL_WORKLOAD"] = spec.Name
	env := make([]string, 0, len(vars))
	for k, v := range vars {
		env = append(env, k+"="+v)
	}
	slices.Sort(env)
	return env
}

// envValue returns the value of key in env ("KEY=value" entries).
func envValue(env []string, key string) string {
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, key+"="); ok {
			return v
		}
	}
	return ""
}

// resolveCommand finds the program to run. A name containing a slash is
// used as is (relative to dir when relative); otherwise it is looked up in
// the absolute directories of path, the workload's own PATH. A name that
// cannot be found yields an error wrapping os/exec.ErrNotFound.
func resolveCommand(file, path, dir string) (string, error) {
	if strings.Contains(file, "/") {
		p := file
		if !filepath.IsAbs(p) && dir != "" {
			p = filepath.Join(dir, p)
		}
		if err := executable(p); err != nil {
			return "", fmt.Errorf("find command %q: %w", file, err)
		}
		return file, nil
	}
	for _, d := range filepath.SplitList(path) {
		if !filepath.IsAbs(d) {
			continue // never run a program from a relative PATH entry
		}
		p := filepath.Join(d, file)
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", fmt.Errorf("look up command %q in PATH %q: %w", file, path, osexec.ErrNotFound)
}

// executable checks that path is a regular file someone may execute.
func executable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fs.ErrPermission
	}
	return nil
}

// errNoCommand is returned by Start for a spec without a command.
var errNoCommand = errors.New("no command")
