package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// testNow is the CLI's clock in tests.
var testNow = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

// atoll runs the CLI with args and an empty environment (plus envVars).
func atoll(t *testing.T, envVars map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{
		stdout: &out,
		stderr: &errb,
		getenv: func(k string) string { return envVars[k] },
		now:    func() time.Time { return testNow },
	}
	code = run(context.Background(), args, e)
	return code, out.String(), errb.String()
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

const goodYAML = `apiVersion: atoll.dev/v1
kind: Workload
metadata:
  name: web
spec:
  runtime: exec
  exec:
    command: ["/bin/sleep", "1000"]
`

// badYAML has two problems.
const badYAML = `apiVersion: atoll.dev/v1
kind: Workload
metadata:
  name: Not_A_Name
spec:
  runtime: bogus
`
