package metrics_test

import (
	"os"
	"os/exec"
	"testing"
)

// TestAlertRules_Promtool evaluates docs/alerts.yaml with Prometheus's own
// rule engine: `promtool test rules` on testdata/alerts_test.yaml, the
// scenarios of docs/metrics.md (an offline node raises no crash-loop or
// zombie alert; a crash loop does; ...). promtool is $ATOLL_PROMTOOL, else
// the one on PATH; .ci/run takes it from Debian's prometheus package.
// Without it the test fails under CI and skips elsewhere.
func TestAlertRules_Promtool(t *testing.T) {
	promtool := os.Getenv("ATOLL_PROMTOOL")
	if promtool == "" {
		var err error
		if promtool, err = exec.LookPath("promtool"); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("promtool not found, and CI is set: %v", err)
			}
			t.Skipf("promtool not found: %v", err)
		}
	}
	cmd := exec.Command(promtool, "test", "rules", "alerts_test.yaml")
	cmd.Dir = "testdata"
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("promtool test rules: %v\n%s", err, out)
	}
}
