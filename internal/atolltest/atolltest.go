// Package atolltest holds helpers shared by atoll's tests: waiting on
// conditions with a deadline instead of sleeping, free ports, and a buffer
// safe for concurrent use.
package atolltest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"
)

// WaitFor polls cond every 10ms until it returns nil, failing the test with
// cond's last error once timeout has passed.
func WaitFor(t testing.TB, timeout time.Duration, cond func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %v: %v", timeout, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// WaitForFile polls until the file at path contains want, and returns
// its content.
func WaitForFile(t testing.TB, timeout time.Duration, path, want string) string {
	t.Helper()
	var data []byte
	WaitFor(t, timeout, func() error {
		var err error
		if data, err = os.ReadFile(path); err != nil {
			return err
		}
		if !strings.Contains(string(data), want) {
			return fmt.Errorf("%s lacks %q:\n%s", path, want, data)
		}
		return nil
	})
	return string(data)
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that no earlier call in this process returned (UnusedPort).
func FreePort(t testing.TB) int {
	t.Helper()
	port, err := UnusedPort()
	if err != nil {
		t.Fatal(err)
	}
	return port
}

// UnusedPort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that no earlier call in this process returned: the kernel may hand the
// same free port to two calls in a row, and a caller that asks for two
// ports (a hub's HTTP and NATS) would then start one on the other's.
func UnusedPort() (int, error) {
	for range 100 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, err
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		givenMu.Lock()
		seen := given[port]
		given[port] = true
		givenMu.Unlock()
		if !seen {
			return port, nil
		}
	}
	return 0, errors.New("no port that was not handed out before, in 100 tries")
}

var (
	givenMu sync.Mutex
	given   = map[int]bool{} // ports FreePort returned; guarded by givenMu
)

// Buffer is a bytes.Buffer that the code under test and the test may use
// from different goroutines.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
