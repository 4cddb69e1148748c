package container

import (
	"context"
	"testing"
)

// BenchmarkStart measures Start of a container whose image is present,
// until the engine reports it running, and its Stop (not timed).
func BenchmarkStart(b *testing.B) {
	d := newDriver(b)
	spec := newSpec(b, "bench", "sleep")
	ctx := context.Background()
	for b.Loop() {
		h, err := d.Start(ctx, spec)
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		if err := d.Stop(ctx, h, 0); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}
