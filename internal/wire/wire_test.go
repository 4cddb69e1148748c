package wire_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"

	"atoll.dev/atoll/internal/manifest"
	"atoll.dev/atoll/internal/wire"
)

func TestPlanGzip_RoundTripAndSize(t *testing.T) {
	p := &wire.Plan{Node: "n1", Revision: 7}
	for i := range 100 {
		env := map[string]string{}
		for k := range 10 {
			env[fmt.Sprintf("SETTING_%d", k)] = "a fairly long value that repeats across workloads"
		}
		p.Workloads = append(p.Workloads, wire.PlanWorkload{Workload: manifest.Workload{
			APIVersion: manifest.APIVersion, Kind: manifest.KindWorkload, Metadata: manifest.Metadata{Name: fmt.Sprintf("w%d", i)},
			Spec: manifest.WorkloadSpec{Runtime: manifest.RuntimeExec, Exec: &manifest.ExecSpec{Command: []string{"/opt/app/bin/app"}, Env: env}}}})
	}
	z, err := wire.EncodePlanGzip(p)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := json.Marshal(p)
	if len(z)*10 > len(plain) {
		t.Errorf("gzip plan %d bytes, plain %d: want at least 10x smaller for a repetitive plan", len(z), len(plain))
	}
	got, err := wire.DecodePlanGzip(z)
	if err != nil || !reflect.DeepEqual(got, p) {
		t.Fatalf("round trip: %v", err)
	}
	if _, err := wire.DecodePlanGzip([]byte("not gzip")); err == nil {
		t.Error("garbage decoded")
	}
}
