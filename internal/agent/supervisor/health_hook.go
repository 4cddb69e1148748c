package supervisor

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"time"

	"atoll.dev/atoll/internal/clock"
	"atoll.dev/atoll/internal/manifest"
)

// healthCheck runs one workload instance's health check until ctx is done.
// It reports every result; after threshold consecutive failures it reports
// unhealthy once and stops, because the instance is about to be replaced.
type healthCheck struct {
	spec  manifest.Health
	clock clock.Clock
	// report is called after each probe; done is true on the last call.
	report func(ok bool, err error, done bool)
}

func (h healthCheck) run(ctx context.Context) {
	interval := durOr(h.spec.Interval, 10*time.Second)
	timeout := durOr(h.spec.Timeout, time.Second)
	threshold := max(h.spec.FailureThreshold, 1)
	wait := durOr(h.spec.StartPeriod, 0)
	failures := 0
	for {
		t := h.clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C():
		}
		wait = interval
		pctx, cancel := context.WithTimeout(ctx, timeout)
		err := probe(pctx, h.spec)
		cancel()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			failures = 0
			h.report(true, nil, false)
			continue
		}
		failures++
		if failures >= threshold {
			h.report(false, fmt.Errorf("health check failed %d times: %w", failures, err), true)
			return
		}
		h.report(false, err, false)
	}
}

// probe runs one check against the local node.
func probe(ctx context.Context, h manifest.Health) error {
	switch {
	case h.Exec != nil:
		cmd := exec.CommandContext(ctx, h.Exec.Command[0], h.Exec.Command[1:]...)
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("exec %q: %w: %.200s", h.Exec.Command[0], err, out)
		}
		return nil
	case h.HTTP != nil:
		url := "http://" + net.JoinHostPort("127.0.0.1", strconv.Itoa(h.HTTP.Port)) + h.HTTP.Path
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return fmt.Errorf("http %s: %w", url, err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return fmt.Errorf("http %s: %w", url, err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 400 {
			return fmt.Errorf("http %s: status %d", url, resp.StatusCode)
		}
		return nil
	case h.TCP != nil:
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(h.TCP.Port))
		var d net.Dialer
		c, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			return fmt.Errorf("tcp %s: %w", addr, err)
		}
		return c.Close()
	}
	return errors.New("no health check defined")
}

func durOr(d *manifest.Duration, def time.Duration) time.Duration {
	if d == nil {
		return def
	}
	return d.Duration
}
