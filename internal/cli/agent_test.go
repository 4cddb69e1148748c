package cli

import (
	"strings"
	"testing"
)

func TestAgentFlags_Config(t *testing.T) {
	f := agentFlags{dataDir: "/d", name: "n1", labels: map[string]string{"site": "p3"},
		memory: "512Mi", cpu: "1500m", pressure: "64Mi"}
	cfg, err := f.config()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DataDir != "/d" || cfg.Name != "n1" || cfg.Labels["site"] != "p3" ||
		cfg.CapacityMemory != 512<<20 || cfg.CapacityMilliCPU != 1500 || cfg.PressureThreshold != 64<<20 {
		t.Errorf("config = %+v", cfg)
	}

	f = agentFlags{dataDir: "/d", cpu: "2", pressure: "off"}
	if cfg, err = f.config(); err != nil || cfg.CapacityMilliCPU != 2000 || cfg.PressureThreshold != -1 {
		t.Errorf("config = %+v, %v; want 2000 millicores, pressure -1", cfg, err)
	}
	if cfg, _ = (&agentFlags{dataDir: "/d"}).config(); cfg.CapacityMemory != 0 || cfg.PressureThreshold != 0 {
		t.Errorf("defaults = %+v; want zeros (the agent's defaults)", cfg)
	}
}

func TestAgent_BadFlags(t *testing.T) {
	tests := []struct {
		args   []string
		substr string
	}{
		{[]string{"--capacity-memory", "lots"}, "--capacity-memory"},
		{[]string{"--capacity-cpu", "-1"}, "--capacity-cpu"},
		{[]string{"--pressure-threshold", "1.5"}, "--pressure-threshold"},
		{[]string{"--labels", "novalue"}, "--labels"},
		{[]string{"--event-retention", "-5"}, "--event-retention: -5: must be at least 1"},
		{[]string{"--mqtt", "127.0.0.1:1883"}, "--mqtt: needs --broker"},
		{[]string{"--broker", "nonsense"}, `broker: start nats: listen address "nonsense"`},
		{[]string{"--broker", "127.0.0.1:0", "--mqtt", "127.0.0.1:0"}, `MQTT address: "127.0.0.1:0": port must be 1-65535`},
		{[]string{"--broker", "127.0.0.1:0", "--outbox-bytes", "10k"}, "--outbox-bytes: \"10k\": want a size of at least 1Mi"},
		{[]string{"--broker", "127.0.0.1:0", "--forward-rate", "fast"}, "--forward-rate: \"fast\""},
		{[]string{"--image-cache-bytes", "big"}, "--image-cache-bytes: \"big\": want a size, e.g. 2Gi"},
		{[]string{"--fetch-window", "night"}, "--fetch-window: fetch window \"night\": want HH:MM-HH:MM in local time, such as 01:00-05:00"},
		{[]string{"--fetch-window", "25:00-05:00"}, "--fetch-window: fetch window \"25:00-05:00\""},
		{[]string{"--token", "AT1.a.b." + strings.Repeat("0", 64)}, "--token: needs --hub"},
		{[]string{"--hub", "tls://127.0.0.1:1"}, "this node is not enrolled: pass --token"},
		{[]string{"--hub", "tls://127.0.0.1:1", "--insecure", "--token", "x"}, "--token: not with --insecure"},
		{[]string{"--hub", "tls://127.0.0.1:1", "--token", "letmein"}, "enrollment refused: malformed enrollment token: want AT1.<id>.<secret>.<ca fingerprint>"},
		{[]string{"--hub", "tls://127.0.0.1:1", "--token", "AT1.a.b.cafe"}, "its CA fingerprint is not 64 hex digits"},
	}
	for _, tt := range tests {
		args := append([]string{"agent", "--data", t.TempDir()}, tt.args...)
		code, _, errOut := atoll(t, nil, args...)
		if code != 1 || !strings.Contains(errOut, tt.substr) {
			t.Errorf("%q = %d, %q; want 1 mentioning %s", tt.args, code, errOut, tt.substr)
		}
	}
}
