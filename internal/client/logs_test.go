package client_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"atoll.dev/atoll/internal/agent/localapi"
	"atoll.dev/atoll/internal/agent/localapi/localapitest"
	"atoll.dev/atoll/internal/agent/supervisor"
	"atoll.dev/atoll/internal/client"
)

// chunks is a writer that hands every write to the test.
type chunks chan string

func (c chunks) Write(p []byte) (int, error) {
	c <- string(p)
	return len(p), nil
}

// waitFor reads chunks until their concatenation ends with want.
func (c chunks) waitFor(t *testing.T, got *strings.Builder, want string) {
	t.Helper()
	deadline := time.After(10 * time.Second) // a guard, not a synchronisation
	for !strings.HasSuffix(got.String(), want) {
		select {
		case s := <-c:
			got.WriteString(s)
		case <-deadline:
			t.Fatalf("log stream so far %q, still waiting for %q", got.String(), want)
		}
	}
}

func writeLog(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "web.log")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func appendLog(t *testing.T, path, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(s); err != nil {
		t.Fatal(err)
	}
}

func TestLocal_Logs_Tail(t *testing.T) {
	path := writeLog(t, "one\ntwo\nthree\n")
	c := serve(t, &localapitest.Node{LogFiles: map[string]string{"web": path}})
	ctx := context.Background()

	for _, tt := range []struct {
		tail int
		want string
	}{{-1, "one\ntwo\nthree\n"}, {2, "two\nthree\n"}, {0, ""}} {
		var out bytes.Buffer
		if err := c.Logs(ctx, "web", tt.tail, false, &out); err != nil {
			t.Fatalf("Logs(tail %d): %v", tt.tail, err)
		}
		if out.String() != tt.want {
			t.Errorf("Logs(tail %d) = %q, want %q", tt.tail, out.String(), tt.want)
		}
	}
	err := c.Logs(ctx, "nope", -1, false, &bytes.Buffer{})
	if !errors.Is(err, supervisor.ErrWorkloadNotFound) {
		t.Errorf("Logs(nope) = %v, want workload not found", err)
	}
}

func TestLocal_Logs_NoFileYet(t *testing.T) {
	c := serve(t, &localapitest.Node{Statuses: []supervisor.Status{{Name: "quiet"}}})
	var out bytes.Buffer
	if err := c.Logs(context.Background(), "quiet", 10, false, &out); err != nil || out.Len() != 0 {
		t.Errorf("Logs(quiet) = %q, %v; want nothing and no error", out.String(), err)
	}
}

func TestLocal_Logs_Follow(t *testing.T) {
	path := writeLog(t, "old-1\nold-2\n")
	c := serve(t, &localapitest.Node{LogFiles: map[string]string{"web": path}})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	out := make(chunks)
	done := make(chan error, 1)
	go func() { done <- c.Logs(ctx, "web", 1, true, out) }()

	var got strings.Builder
	out.waitFor(t, &got, "old-2\n")
	appendLog(t, path, "new-1\n")
	out.waitFor(t, &got, "new-1\n")
	if got.String() != "old-2\nnew-1\n" {
		t.Errorf("followed %q, want the last line then the new one", got.String())
	}

	cancel()
	for {
		select {
		case <-out: // drain anything still in flight
			continue
		case err := <-done:
			if err != nil {
				t.Errorf("Logs ended by its context: %v, want nil", err)
			}
		}
		break
	}
}

func TestLocal_Logs_FollowEndsWhenAgentStops(t *testing.T) {
	path := writeLog(t, "line\n")
	sock := localapi.SocketPath(t.TempDir())
	s, err := localapi.Listen(sock, &localapitest.Node{LogFiles: map[string]string{"web": path}})
	if err != nil {
		t.Fatal(err)
	}
	s.FollowPoll = 5 * time.Millisecond
	sctx, stop := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(sctx) }()

	out := make(chunks, 16)
	done := make(chan error, 1)
	go func() { done <- client.NewLocal(sock).Logs(context.Background(), "web", -1, true, out) }()
	var got strings.Builder
	out.waitFor(t, &got, "line\n")

	stop()
	if err := <-served; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if err := <-done; err == nil || !strings.Contains(err.Error(), "agent is stopping") {
		t.Errorf("Logs = %v, want an error saying the agent is stopping", err)
	}
}
