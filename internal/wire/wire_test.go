package wire_test

import (
	"encoding/json"
	"fmt"
	"reflect"
	"testing"
	"time"

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

func TestTelemetryBatch_RoundTrip(t *testing.T) {
	in := wire.TelemetryBatch{Node: "n1", Epoch: "e1", Records: []wire.TelemetryRecord{
		{Seq: 1, Subject: "sensors.temp", Time: time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC), Data: []byte(`{"c":21.5}`)},
		{Seq: 2, Subject: "sensors.temp", Time: time.Date(2026, 12, 6, 0, 0, 1, 0, time.UTC), Data: []byte{0, 1, 2}},
	}}
	body, err := wire.EncodeTelemetryBatch(in)
	if err != nil {
		t.Fatal(err)
	}
	out, err := wire.DecodeTelemetryBatch(body)
	if err != nil {
		t.Fatal(err)
	}
	if out.Node != in.Node || out.Epoch != in.Epoch || len(out.Records) != 2 ||
		string(out.Records[1].Data) != string(in.Records[1].Data) || !out.Records[0].Time.Equal(in.Records[0].Time) {
		t.Fatalf("round trip: %+v", out)
	}
}

func TestTelemetryBatch_DecodeRejectsGarbageAndBombs(t *testing.T) {
	if _, err := wire.DecodeTelemetryBatch([]byte(`{"node":"n1"}`)); err == nil {
		t.Error("an uncompressed body was accepted")
	}
	big := wire.TelemetryBatch{Node: "n1", Epoch: "e", Records: []wire.TelemetryRecord{{Seq: 1, Subject: "s", Data: make([]byte, wire.MaxTelemetryBatch)}}}
	body, err := wire.EncodeTelemetryBatch(big)
	if err != nil {
		t.Fatal(err)
	}
	if len(body) > wire.MaxTelemetryBatch/100 {
		t.Fatalf("zeros compressed to %d bytes only", len(body))
	}
	if _, err := wire.DecodeTelemetryBatch(body); err == nil {
		t.Error("a batch inflating past MaxTelemetryBatch was accepted")
	}
}
