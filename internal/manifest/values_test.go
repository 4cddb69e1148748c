package manifest

import (
	"encoding/json"
	"errors"
	"testing"
	"time"
)

func TestQuantity_Bytes(t *testing.T) {
	tests := []struct {
		in      Quantity
		want    int64
		wantErr error
	}{
		{"0", 0, nil},
		{"1", 1, nil},
		{"+5", 5, nil},
		{"-0", 0, nil},
		{"64Mi", 64 << 20, nil},
		{"1Ki", 1024, nil},
		{"1.5Gi", 3 << 29, nil},
		{"1Ti", 1 << 40, nil},
		{"1Pi", 1 << 50, nil},
		{"7Ei", 7 << 60, nil},
		{"1k", 1000, nil},
		{"1M", 1e6, nil},
		{"1G", 1e9, nil},
		{"2T", 2e12, nil},
		{"1P", 1e15, nil},
		{"1E", 1e18, nil},
		{"1e3", 1000, nil},
		{"1E3", 1000, nil},
		{"12e-1", 0, errQuantityFraction},
		{"120e-1", 12, nil},
		{".5k", 500, nil},
		{"1.", 1, nil},
		{"1000m", 1, nil},
		{"500m", 0, errQuantityFraction},
		{"0.5", 0, errQuantityFraction},
		{"-1Gi", 0, errQuantityNegative},
		{"-1", 0, errQuantityNegative},
		{"16Ei", 0, errQuantityRange},
		{"9223372036854775807", 1<<63 - 1, nil},
		{"9223372036854775808", 0, errQuantityRange},
		{"1e999", 0, errQuantityRange},
		{"", 0, errQuantitySyntax},
		{"Mi", 0, errQuantitySyntax},
		{".", 0, errQuantitySyntax},
		{"64MB", 0, errQuantitySyntax},
		{"64mi", 0, errQuantitySyntax},
		{"1 Gi", 0, errQuantitySyntax},
		{"1.2.3", 0, errQuantitySyntax},
		{"0x10", 0, errQuantitySyntax},
		{"1e", 0, errQuantitySyntax},
		{"1e1000", 0, errQuantitySyntax},
		{"1e+", 0, errQuantitySyntax},
		{"--1", 0, errQuantitySyntax},
		{"1_000", 0, errQuantitySyntax},
		{"11111111111111111111111111111111111111111111111111111111111111111", 0, errQuantitySyntax},
	}
	for _, tt := range tests {
		t.Run(string(tt.in), func(t *testing.T) {
			got, err := tt.in.Bytes()
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("Quantity(%q).Bytes() error = %v, want %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("Quantity(%q).Bytes() = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestQuantity_Millis(t *testing.T) {
	tests := []struct {
		in      Quantity
		want    int64
		wantErr error
	}{
		{"250m", 250, nil},
		{"1", 1000, nil},
		{"1.5", 1500, nil},
		{"0.1", 100, nil},
		{"0.001", 1, nil},
		{".25", 250, nil},
		{"2k", 2_000_000, nil},
		{"1e-3", 1, nil},
		{"0", 0, nil},
		{"1Ki", 1_024_000, nil},
		{"0.0001", 0, errQuantityFraction},
		{"0.5m", 0, errQuantityFraction},
		{"-250m", 0, errQuantityNegative},
		{"10E", 0, errQuantityRange},
		{"2 cores", 0, errQuantitySyntax},
		{"250M ", 0, errQuantitySyntax},
	}
	for _, tt := range tests {
		t.Run(string(tt.in), func(t *testing.T) {
			got, err := tt.in.Millis()
			if !errors.Is(err, tt.wantErr) || (err == nil) != (tt.wantErr == nil) {
				t.Fatalf("Quantity(%q).Millis() error = %v, want %v", tt.in, err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("Quantity(%q).Millis() = %d, want %d", tt.in, got, tt.want)
			}
		})
	}
}

func TestResources_MemoryBytesMilliCPU(t *testing.T) {
	tests := []struct {
		name      string
		r         Resources
		wantBytes int64
		wantMilli int64
	}{
		{"undeclared", Resources{}, 0, 0},
		{"declared", Resources{Memory: "64Mi", CPU: "250m"}, 67108864, 250},
		{"decimal", Resources{Memory: "1G", CPU: "1.5"}, 1_000_000_000, 1500},
		{"invalid reads as zero", Resources{Memory: "lots", CPU: "many"}, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.MemoryBytes(); got != tt.wantBytes {
				t.Errorf("MemoryBytes() = %d, want %d", got, tt.wantBytes)
			}
			if got := tt.r.MilliCPU(); got != tt.wantMilli {
				t.Errorf("MilliCPU() = %d, want %d", got, tt.wantMilli)
			}
		})
	}
}

func TestQuantity_UnmarshalJSON(t *testing.T) {
	tests := []struct {
		in      string
		want    Quantity
		wantErr bool
	}{
		{`"64Mi"`, "64Mi", false},
		{`0.5`, "0.5", false},
		{`2`, "2", false},
		{`-1`, "-1", false},
		{`null`, "", false},
		{`true`, "", true},
		{`{}`, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var r Resources
			err := json.Unmarshal([]byte(`{"cpu":`+tt.in+`}`), &r)
			if (err != nil) != tt.wantErr {
				t.Fatalf("unmarshal %s: error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if r.CPU != tt.want {
				t.Errorf("unmarshal %s = %q, want %q", tt.in, r.CPU, tt.want)
			}
		})
	}
}

func TestDuration_JSON(t *testing.T) {
	tests := []struct {
		in      string
		want    time.Duration
		out     string
		wantErr bool
	}{
		{`"100ms"`, 100 * time.Millisecond, `"100ms"`, false},
		{`"5m"`, 5 * time.Minute, `"5m0s"`, false},
		{`"1h30m"`, 90 * time.Minute, `"1h30m0s"`, false},
		{`"0s"`, 0, `"0s"`, false},
		{`"-1s"`, -time.Second, `"-1s"`, false},
		{`5`, 0, "", true},
		{`"5 minutes"`, 0, "", true},
		{`"5"`, 0, "", true},
		{`true`, 0, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			var d Duration
			err := json.Unmarshal([]byte(tt.in), &d)
			if (err != nil) != tt.wantErr {
				t.Fatalf("unmarshal %s: error = %v, want error %v", tt.in, err, tt.wantErr)
			}
			if tt.wantErr {
				return
			}
			if d.Duration != tt.want {
				t.Errorf("unmarshal %s = %v, want %v", tt.in, d.Duration, tt.want)
			}
			b, err := json.Marshal(d)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.out {
				t.Errorf("marshal %v = %s, want %s", tt.want, b, tt.out)
			}
		})
	}
}

func TestDuration_JSONNullKeepsPointerNil(t *testing.T) {
	var b Backoff
	if err := json.Unmarshal([]byte(`{"initial":null,"max":"1s"}`), &b); err != nil {
		t.Fatal(err)
	}
	if b.Initial != nil {
		t.Errorf("initial = %v, want nil", b.Initial)
	}
	if b.Max == nil || b.Max.Duration != time.Second {
		t.Errorf("max = %v, want 1s", b.Max)
	}
}
