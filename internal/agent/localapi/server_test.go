package localapi_test

import (
	"context"
	"errors"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"atoll.dev/atoll/internal/agent/localapi"
	"atoll.dev/atoll/internal/agent/localapi/localapitest"
)

func TestServer_SocketIsOwnerOnly(t *testing.T) {
	dir := t.TempDir()
	path := localapitest.Serve(t, dir, &localapitest.Node{})

	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		t.Errorf("%s is %v, want a socket", path, fi.Mode().Type())
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("socket mode = %#o, want 0600", perm)
	}
	// The private directory the socket was bound in is gone.
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Name() != localapi.SocketFile {
		t.Errorf("data dir holds %v, want only %s", names(entries), localapi.SocketFile)
	}
}

func TestListen_ReplacesStaleSocket(t *testing.T) {
	path := localapi.SocketPath(t.TempDir())
	// A socket file nobody listens on, as a SIGKILLed agent leaves behind.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("stale socket not left behind: %v", err)
	}

	node := &localapitest.Node{}
	s, err := localapi.Listen(path, node)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	defer s.Close()
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatalf("dial new socket: %v", err)
	}
	conn.Close()
}

func TestListen_RefusesLiveSocket(t *testing.T) {
	dir := t.TempDir()
	path := localapitest.Serve(t, dir, &localapitest.Node{})

	_, err := localapi.Listen(path, &localapitest.Node{})
	if err == nil || !strings.Contains(err.Error(), "already listening") {
		t.Fatalf("second Listen: err = %v, want already listening", err)
	}
	// The first server still answers.
	if code, _, _ := call(t, path, "GET", "/v1/node", ""); code != 200 {
		t.Errorf("first server answers %d after a refused Listen", code)
	}
}

func TestListen_RefusesOtherFile(t *testing.T) {
	path := localapi.SocketPath(t.TempDir())
	if err := os.WriteFile(path, []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := localapi.Listen(path, &localapitest.Node{}); err == nil {
		t.Fatal("Listen replaced a regular file")
	}
	if b, err := os.ReadFile(path); err != nil || string(b) != "mine" {
		t.Errorf("regular file changed: %q, %v", b, err)
	}
}

func TestServe_RemovesSocketOnExit(t *testing.T) {
	path := localapi.SocketPath(t.TempDir())
	s, err := localapi.Listen(path, &localapitest.Node{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	if code, _, _ := call(t, path, "GET", "/v1/workloads", ""); code != 200 {
		t.Fatalf("status answered %d", code)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve: %v", err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket still there after Serve returned: %v", err)
	}
}

func TestClose_RemovesSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.sock")
	s, err := localapi.Listen(path, &localapitest.Node{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("socket still there after Close: %v", err)
	}
}

func names(es []os.DirEntry) []string {
	var ns []string
	for _, e := range es {
		ns = append(ns, e.Name())
	}
	return ns
}
