package localapi_test

import (
	"bufio"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"atoll.dev/atoll/internal/agent/localapi/localapitest"
	"atoll.dev/atoll/internal/agent/supervisor"
)

func TestLogs_Tail(t *testing.T) {
	log := filepath.Join(t.TempDir(), "web.log")
	if err := os.WriteFile(log, []byte("a\nb\nc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := &localapitest.Node{LogFiles: map[string]string{"web": log}, Statuses: []supervisor.Status{{Name: "quiet"}}}
	sock := serve(t, n)

	tests := []struct{ path, want string }{
		{"/v1/workloads/web/logs", "a\nb\nc\n"},
		{"/v1/workloads/web/logs?tail=2", "b\nc\n"},
		{"/v1/workloads/web/logs?tail=0", ""},
		{"/v1/workloads/web/logs?tail=10&follow=false", "a\nb\nc\n"},
		{"/v1/workloads/quiet/logs?tail=5", ""}, // no log file yet
	}
	for _, tt := range tests {
		code, body, h := call(t, sock, "GET", tt.path, "")
		if code != 200 || string(body) != tt.want {
			t.Errorf("GET %s = %d %q, want 200 %q", tt.path, code, body, tt.want)
		}
		if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Errorf("GET %s: Content-Type %q", tt.path, ct)
		}
	}
}

func TestLogs_Errors(t *testing.T) {
	n := &localapitest.Node{LogFiles: map[string]string{"web": filepath.Join(t.TempDir(), "web.log")}}
	sock := serve(t, n)
	tests := []struct {
		path   string
		code   int
		substr string
	}{
		{"/v1/workloads/nope/logs", 404, "workload not found"},
		{"/v1/workloads/web/logs?tail=-3", 400, "tail"},
		{"/v1/workloads/web/logs?tail=many", 400, "tail"},
		{"/v1/workloads/web/logs?follow=perhaps", 400, "follow"},
	}
	for _, tt := range tests {
		code, body, h := call(t, sock, "GET", tt.path, "")
		wantError(t, code, body, h, tt.code, tt.substr)
	}
}

func TestLogs_FollowFlushesEachWrite(t *testing.T) {
	log := filepath.Join(t.TempDir(), "web.log")
	if err := os.WriteFile(log, []byte("first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := serve(t, &localapitest.Node{LogFiles: map[string]string{"web": log}})
	// The timeout is a guard against a hang, not a synchronisation.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "GET", "http://agent/v1/workloads/web/logs?follow=true", nil)
	resp, err := unixClient(t, sock).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	// Each line arrives while the response is still open: the reads below
	// would block forever if the server buffered.
	r := bufio.NewReader(resp.Body)
	if line, err := r.ReadString('\n'); err != nil || line != "first\n" {
		t.Fatalf("first line = %q, %v", line, err)
	}
	f, err := os.OpenFile(log, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, want := range []string{"second\n", "third\n"} {
		if _, err := f.WriteString(want); err != nil {
			t.Fatal(err)
		}
		if line, err := r.ReadString('\n'); err != nil || line != want {
			t.Fatalf("followed line = %q, %v; want %q", line, err, want)
		}
	}
}
