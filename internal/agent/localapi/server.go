package localapi

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

// DefaultFollowPoll is how often a followed log file is checked for new
// output.
const DefaultFollowPoll = 250 * time.Millisecond

// shutdownGrace bounds how long Serve waits for requests in flight once its
// context is done.
const shutdownGrace = 5 * time.Second

// Server is the local API bound to its socket.
type Server struct {
	// FollowPoll is how often followed logs are polled; set it before Serve.
	// Zero means DefaultFollowPoll.
	FollowPoll time.Duration

	path string
	node Node
	ln   *net.UnixListener
	// file identifies the socket file this server created, so that Serve
	// removes it and not a socket a later agent put at the same path.
	file os.FileInfo
}

// Listen binds the socket at socketPath (mode 0600, see listenUnix) for n.
// Clients may connect as soon as it returns; their requests are answered
// once Serve runs.
func Listen(socketPath string, n Node) (*Server, error) {
	ln, err := listenUnix(socketPath)
	if err != nil {
		return nil, err
	}
	fi, err := os.Lstat(socketPath)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("stat socket: %w", err)
	}
	return &Server{path: socketPath, node: n, ln: ln, file: fi}, nil
}

// Serve is Listen followed by Server.Serve.
func Serve(ctx context.Context, socketPath string, n Node) error {
	s, err := Listen(socketPath, n)
	if err != nil {
		return err
	}
	return s.Serve(ctx)
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Serve answers requests until ctx is done, then stops accepting, ends
// followed log streams, waits briefly for other requests in flight and
// removes the socket. It returns nil after ctx is done.
func (s *Server) Serve(ctx context.Context) error {
	defer s.removeSocket()
	poll := s.FollowPoll
	if poll <= 0 {
		poll = DefaultFollowPoll
	}
	hs := &http.Server{
		Handler:           newHandler(s.node, poll),
		ReadHeaderTimeout: 10 * time.Second,
		// Requests inherit ctx, so log streams end when the server stops.
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(s.ln) }()

	select {
	case err := <-errc:
		return fmt.Errorf("serve local api: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		hs.Close()
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve local api: %w", err)
	}
	return nil
}

// Close releases a server whose Serve is not running: it closes the listener
// and removes the socket. Use it when the agent fails between Listen and
// Serve; a serving server stops through its context instead.
func (s *Server) Close() error {
	err := s.ln.Close()
	s.removeSocket()
	if err != nil {
		return fmt.Errorf("close local api: %w", err)
	}
	return nil
}

// removeSocket removes the socket file if it is still the one Listen made.
func (s *Server) removeSocket() {
	fi, err := os.Lstat(s.path)
	if err == nil && os.SameFile(fi, s.file) {
		os.Remove(s.path)
	}
}
