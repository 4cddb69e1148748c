package hub_test

import (
	"fmt"
	"testing"

	"atoll.dev/atoll/internal/hub"
	"atoll.dev/atoll/internal/hub/hubtest"
)

// BenchmarkHeartbeat measures one agent's heartbeat round trip through
// the hub (NATS request, three KV reads, the reply).
func BenchmarkHeartbeat(b *testing.B) {
	h := benchHub(b)
	a := hubtest.NewAgent(b, h.NATSURL(), "n1", map[string]string{"site": "a"})
	a.Hello()
	a.Sync()
	b.ResetTimer()
	for b.Loop() {
		if r := a.Heartbeat(); r.Error != "" {
			b.Fatal(r.Error)
		}
	}
}

// BenchmarkApply measures applying one changed workload that targets 50
// known nodes (validation, the write, and 50 plan revisions).
func BenchmarkApply(b *testing.B) {
	h := benchHub(b)
	for i := range 50 {
		hubtest.NewAgent(b, h.NATSURL(), fmt.Sprintf("n%02d", i), map[string]string{"site": "a"}).Hello()
	}
	w := exec("web", map[string]string{"site": "a"})
	b.ResetTimer()
	for b.Loop() {
		w.Spec.Priority++
		code, body := h.do("POST", "/v1/workloads:apply", []any{w})
		if code != 200 {
			b.Fatalf("apply = %d %s", code, body)
		}
	}
}

func benchHub(b *testing.B) *testHub {
	b.Helper()
	return startHub(b, hub.Config{DataDir: b.TempDir()})
}
