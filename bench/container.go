package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"atoll.dev/atoll/internal/agent/supervisor"
	"atoll.dev/atoll/internal/atolltest/testimage"
	"atoll.dev/atoll/internal/manifest"
)

type containerResult struct {
	start []time.Duration // apply → the API shows the container running
	image string          // the test image, for the method text
}

// measureContainerStart starts an agent with this machine's Docker engine,
// loads a FROM-scratch test image (a static binary that sleeps), and reps
// times applies a container workload of it and times apply → running, then
// deletes it (the container removed) before the next.
func (h *harness) measureContainerStart(ctx context.Context, reps int) (r containerResult, err error) {
	engine, err := testimage.Connect(ctx)
	if err != nil {
		return r, err
	}
	defer engine.Close()
	img, err := testimage.Load(ctx, engine)
	if err != nil {
		return r, err
	}
	defer func() {
		if rerr := img.Remove(context.Background(), engine); rerr != nil && err == nil {
			err = fmt.Errorf("remove test image: %w", rerr)
		}
	}()
	r.image = img.Ref
	a, err := h.startAgent(h.dataDir("container"))
	if err != nil {
		return r, err
	}
	if _, err := a.waitStatus(ctx, apiPoll, startTimeout, "agent API", anyStatus); err != nil {
		return r, err
	}
	for i := range reps {
		name := h.name(fmt.Sprintf("ctr-%d", i))
		ws, err := manifest.Decode("bench-container.yaml", fmt.Appendf(nil, `apiVersion: atoll.dev/v1
kind: Workload
metadata:
  name: %s
spec:
  runtime: container
  container:
    image: %s
`, name, img.Ref))
		if err != nil {
			return r, err
		}
		t0 := time.Now()
		if err := a.apply(ctx, ws); err != nil {
			return r, err
		}
		if _, err := a.waitStatus(ctx, apiPoll, startTimeout, "container running", func(st []supervisor.Status) bool {
			_, ok := running(st, []string{name}, nil)
			return ok
		}); err != nil {
			return r, err
		}
		r.start = append(r.start, time.Since(t0))
		cctx, cancel := context.WithTimeout(ctx, startTimeout)
		err = a.client.Delete(cctx, name)
		cancel()
		if err != nil {
			return r, fmt.Errorf("delete %s: %w", name, err)
		}
	}
	return r, nil
}

func (r results) containerRows() []row {
	return []row{{
		figure: fmt.Sprintf("Container: apply → running (API), image present, median of %d", len(r.container.start)),
		value:  spread(r.container.start, sec),
		nomad:  "—",
	}}
}

func (r results) containerMethod(n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `%d. **Container start.** An agent with this machine's Docker engine; a FROM-scratch
   image (a static Go binary that sleeps) built and `+"`docker load`"+`ed by the bench.
   %d times: a `+"`container`"+` workload of it is applied, and the status is polled every
   %v until it is running (the engine created and started it, the handle
   persisted); then it is deleted, its container removed, before the next.
`, n, len(r.container.start), apiPoll)
	return b.String()
}
