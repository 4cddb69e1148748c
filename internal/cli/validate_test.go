package cli

import (
	"strings"
	"testing"

	"atoll.dev/atoll/internal/version"
)

func TestValidate_Good(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "web.yaml", goodYAML)
	writeFile(t, dir, "two.yaml", strings.ReplaceAll(goodYAML, "name: web", "name: api")+"---\n"+
		strings.ReplaceAll(goodYAML, "name: web", "name: db"))

	code, out, errOut := atoll(t, nil, "validate", "-f", dir)
	if code != 0 || out != "3 workloads valid\n" || errOut != "" {
		t.Errorf("validate dir = %d, %q, %q; want 0, \"3 workloads valid\"", code, out, errOut)
	}
	code, out, _ = atoll(t, nil, "validate", "-f", dir+"/web.yaml")
	if code != 0 || out != "1 workload valid\n" {
		t.Errorf("validate file = %d, %q; want 0, \"1 workload valid\"", code, out)
	}
	writeFile(t, dir, "secret.yaml", "apiVersion: atoll.dev/v1\nkind: Secret\nmetadata: {name: db}\nspec:\n  data: {password: hunter2}\n")
	code, out, _ = atoll(t, nil, "validate", "-f", dir)
	if code != 0 || out != "3 workloads and 1 secret valid\n" {
		t.Errorf("validate with a secret = %d, %q; want 0, \"3 workloads and 1 secret valid\"", code, out)
	}
	bad := writeFile(t, t.TempDir(), "bad-secret.yaml", "apiVersion: atoll.dev/v1\nkind: Secret\nmetadata: {name: db}\nspec:\n  data: {\"../x\": hunter2}\n")
	code, _, errOut = atoll(t, nil, "validate", "-f", bad)
	if code != 1 || !strings.Contains(errOut, "spec.data") || strings.Contains(errOut, "hunter2") {
		t.Errorf("validate a bad secret = %d, %q; want the field named and the value never shown", code, errOut)
	}
}

func TestValidate_BadPrintsEveryProblem(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "a-good.yaml", goodYAML)
	bad := writeFile(t, dir, "b-bad.yaml", badYAML)

	code, out, errOut := atoll(t, nil, "validate", "-f", dir)
	if code != 1 {
		t.Errorf("exit code = %d, want 1", code)
	}
	if out != "" {
		t.Errorf("stdout = %q, want nothing", out)
	}
	lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("stderr has %d lines, want one per problem (2):\n%s", len(lines), errOut)
	}
	for i, path := range []string{"metadata.name", "spec.runtime"} {
		prefix := "error: " + bad + "#1: " + path + ": "
		if !strings.HasPrefix(lines[i], prefix) {
			t.Errorf("line %d = %q, want prefix %q", i, lines[i], prefix)
		}
	}
}

func TestValidate_Errors(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "README.md", "not a manifest")
	tests := []struct {
		name   string
		args   []string
		substr string
	}{
		{"no flag", []string{"validate"}, `required flag(s) "filename" not set`},
		{"empty dir", []string{"validate", "-f", dir}, "no workloads or secrets in " + dir},
		{"missing", []string{"validate", "-f", dir + "/nope.yaml"}, "no such file"},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.name, " ", "_"), func(t *testing.T) {
			code, _, errOut := atoll(t, nil, tt.args...)
			if code != 1 || !strings.HasPrefix(errOut, "error: ") || !strings.Contains(errOut, tt.substr) {
				t.Errorf("exit %d, stderr %q; want 1 and error: ...%s", code, errOut, tt.substr)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	code, out, _ := atoll(t, nil, "version")
	if code != 0 || !strings.HasPrefix(out, "atoll "+version.Version+" (go") {
		t.Errorf("version = %d, %q", code, out)
	}
}

func TestUnknownCommand(t *testing.T) {
	code, _, errOut := atoll(t, nil, "frobnicate")
	if code != 1 || !strings.HasPrefix(errOut, `error: unknown command "frobnicate"`) {
		t.Errorf("exit %d, stderr %q", code, errOut)
	}
}
