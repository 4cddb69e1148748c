package manifest

import "testing"

func TestParent(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", ""},
		{"metadata", ""},
		{"metadata.name", "metadata"},
		{"spec.exec.command[0]", "spec.exec.command"},
		{`metadata.labels["app.kubernetes.io/name"]`, "metadata.labels"},
		{`metadata.labels["a[\"b.c"]`, "metadata.labels"},
		{`spec.exec.env[""]`, "spec.exec.env"},
	}
	for _, tt := range tests {
		if got := parent(tt.in); got != tt.want {
			t.Errorf("parent(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestCollector_SuppressesAroundBadPaths(t *testing.T) {
	c := &collector{source: "s"}
	c.markBad("spec.health.http.port", "bad type")
	c.markBad(`metadata.labels["a.b"]`, "bad type")
	tests := []struct {
		path string
		want bool
	}{
		{"spec.health.http.port", true},
		{"spec.health.http", true},
		{"spec.health", true},
		{"spec", true},
		{"spec.health.http.path", false},
		{"spec.health.interval", false},
		{"spec.healthz", false},
		{`metadata.labels["a.b"]`, true},
		{"metadata.labels", true},
		{"metadata.labels.a", false},
		{"metadata.name", false},
		{"", false},
	}
	for _, tt := range tests {
		if got := c.isBad(tt.path); got != tt.want {
			t.Errorf("isBad(%q) = %v, want %v", tt.path, got, tt.want)
		}
	}
	c.add("spec.health", "suppressed")
	c.add("metadata.name", "kept")
	if len(c.errs) != 3 || c.errs[2].Error() != "s: metadata.name: kept" {
		t.Errorf("errors = %q, want the two bad-type errors and metadata.name", c.errs)
	}
}

func TestFieldError_Error(t *testing.T) {
	tests := []struct {
		e    FieldError
		want string
	}{
		{FieldError{"file.yaml#2", "spec.restart.policy", `"sometimes" is not one of always, on-failure, never`},
			`file.yaml#2: spec.restart.policy: "sometimes" is not one of always, on-failure, never`},
		{FieldError{"file.yaml#1", "", "invalid YAML at line 3: x"}, "file.yaml#1: invalid YAML at line 3: x"},
		{FieldError{"", "metadata.name", "required"}, "metadata.name: required"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
	es := FieldErrors{tests[0].e, tests[1].e}
	if got, want := es.Error(), tests[0].want+"\n"+tests[1].want; got != want {
		t.Errorf("FieldErrors.Error() = %q, want %q", got, want)
	}
}
