package cli

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"atoll.dev/atoll/internal/atomicfile"
	"atoll.dev/atoll/internal/client"

	yaml "go.yaml.in/yaml/v2"
)

// fileConfig is the CLI's configuration file, by default
// ~/.config/atoll/config.yaml (or $XDG_CONFIG_HOME/atoll/config.yaml, or
// $ATOLL_CONFIG). `atoll dev` writes it so that later commands in other
// terminals find the dev agent with no flags, as minikube does for kubectl.
//
// The hub's credentials file (DIR/admin.conf, `atoll user create`'s output)
// is such a file too: the hub URL, the fleet's CA and a user's certificate
// and key.
type fileConfig struct {
	// Data is the default agent data directory for `atoll node ...`.
	Data string `yaml:"data,omitempty"`
	// Credentials: Hub is the default hub URL for the fleet verbs (`atoll
	// get ...`), the rest how to prove who the user is.
	client.Credentials `yaml:",inline"`
}

// configFlag is the value of --config in args, "" when absent: the file
// is read before the command line is parsed, for every command's defaults.
func configFlag(args []string) string {
	for i, a := range args {
		if a == "--" {
			break
		}
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			return v
		}
		if a == "--config" && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// configPath returns where the CLI's configuration file lives, or "" when
// there is no home to put it in.
func configPath(e *env) string {
	if e.configFile != "" {
		return e.configFile
	}
	if p := e.getenv("ATOLL_CONFIG"); p != "" {
		return p
	}
	if d := e.getenv("XDG_CONFIG_HOME"); d != "" {
		return filepath.Join(d, "atoll", "config.yaml")
	}
	if h := e.getenv("HOME"); h != "" {
		return filepath.Join(h, ".config", "atoll", "config.yaml")
	}
	return ""
}

// loadConfig reads the configuration file; a missing file is an empty
// configuration, a malformed one an error that names the file.
func loadConfig(e *env) (fileConfig, error) {
	var c fileConfig
	p := configPath(e)
	if p == "" {
		return c, nil
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("read config %s: %w", p, err)
	}
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return c, fmt.Errorf("config %s: %w", p, err)
	}
	return c, nil
}

// saveConfig writes c to the configuration file and returns its path.
func saveConfig(e *env, c fileConfig) (string, error) {
	p := configPath(e)
	if p == "" {
		return "", errors.New("no place for the CLI config: set HOME or ATOLL_CONFIG")
	}
	data, err := yaml.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("write config %s: %w", p, err)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return "", fmt.Errorf("write config %s: %w", p, err)
	}
	if err := atomicfile.Replace(p, data); err != nil {
		return "", fmt.Errorf("write config %s: %w", p, err)
	}
	return p, nil
}

// loadCredentials reads a credentials file (the hub's admin.conf).
func loadCredentials(path string) (client.Credentials, error) {
	var c fileConfig
	data, err := os.ReadFile(path)
	if err != nil {
		return c.Credentials, fmt.Errorf("credentials: %w", err)
	}
	if err := yaml.UnmarshalStrict(data, &c); err != nil {
		return c.Credentials, fmt.Errorf("credentials %s: %w", path, err)
	}
	return c.Credentials, nil
}
