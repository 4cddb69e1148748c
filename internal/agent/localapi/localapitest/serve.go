package localapitest

import (
	"context"
	"testing"
	"time"

	"atoll.dev/atoll/internal/agent/localapi"
)

// testFollowPoll keeps followed logs quick in tests. It is the server's poll
// interval, not a synchronisation: tests wait for the data itself.
const testFollowPoll = 5 * time.Millisecond

// Serve serves n on a socket in dataDir (localapi.SocketPath) until the test
// ends, and returns the socket's path. The server is accepting connections
// when Serve returns. Cleanup stops it and waits for it to finish.
func Serve(t testing.TB, dataDir string, n localapi.Node) string {
	t.Helper()
	path := localapi.SocketPath(dataDir)
	s, err := localapi.Listen(path, n)
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	s.FollowPoll = testFollowPoll
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	return path
}
