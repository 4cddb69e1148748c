// Package natsembed runs a nats-server inside an atoll process (the hub's
// transport and store, an agent's local broker), with JetStream on disk,
// and hands back its client URL.
package natsembed

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"time"

	"github.com/nats-io/nats-server/v2/server"
)

// DefaultListen is where the server listens when Config.Listen is empty.
const DefaultListen = "127.0.0.1:4222"

// DefaultReadyTimeout bounds the wait for the server to accept clients.
const DefaultReadyTimeout = 10 * time.Second

// Config says how to run the embedded server.
type Config struct {
	// DataDir is the JetStream store directory (required). The server
	// keeps its files under DataDir/jetstream.
	DataDir string
	// Listen is the client address, "host:port". Port 0 (":0",
	// "127.0.0.1:0") picks a free port; empty means DefaultListen.
	Listen string
	// Name is the server's name; empty means "atoll-hub".
	Name string
	// Logger receives the server's log lines; nil discards them.
	Logger *slog.Logger
	// ReadyTimeout bounds the wait for readiness; 0 means
	// DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// Configure, if set, adjusts the options just before the server is
	// created: the place for TLS, authorization, leaf nodes or MQTT until
	// atoll's configuration grows fields for them.
	Configure func(*server.Options)
}

// Server is a running embedded nats-server.
type Server struct {
	srv *server.Server
	url string
}

// Start starts the server and waits until it accepts clients.
func Start(cfg Config) (*Server, error) {
	opts, err := options(cfg)
	if err != nil {
		return nil, fmt.Errorf("start nats: %w", err)
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("start nats: %w", err)
	}
	if cfg.Logger != nil {
		srv.SetLoggerV2(slogAdapter{cfg.Logger}, false, false, false)
	}
	srv.Start()
	timeout := cfg.ReadyTimeout
	if timeout <= 0 {
		timeout = DefaultReadyTimeout
	}
	if !srv.ReadyForConnections(timeout) {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, fmt.Errorf("start nats on %s: not ready after %v", cfg.Listen, timeout)
	}
	if !srv.JetStreamEnabled() {
		srv.Shutdown()
		srv.WaitForShutdown()
		return nil, errors.New("start nats: jetstream did not start")
	}
	return &Server{srv: srv, url: clientURL(srv)}, nil
}

func options(cfg Config) (*server.Options, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("no data directory")
	}
	listen := cfg.Listen
	if listen == "" {
		listen = DefaultListen
	}
	host, portStr, err := net.SplitHostPort(listen)
	if err != nil {
		return nil, fmt.Errorf("listen address %q: %w", listen, err)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < -1 || port > 65535 {
		return nil, fmt.Errorf("listen address %q: port must be 0-65535", listen)
	}
	if port == 0 {
		port = server.RANDOM_PORT // 0 means "default port" to nats-server
	}
	if host == "" {
		host = "0.0.0.0"
	}
	name := cfg.Name
	if name == "" {
		name = "atoll-hub"
	}
	dir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("data directory: %w", err)
	}
	opts := &server.Options{
		ServerName: name,
		Host:       host,
		Port:       port,
		JetStream:  true,
		StoreDir:   dir,
		NoSigs:     true,
		NoLog:      cfg.Logger == nil,
		// The hub sends plans of up to a few hundred workloads.
		MaxPayload: 8 << 20,
	}
	if cfg.Configure != nil {
		cfg.Configure(opts)
	}
	return opts, nil
}

// clientURL is the server's client URL, with an unspecified listen host
// replaced by loopback so that in-process clients can dial it.
func clientURL(srv *server.Server) string {
	u, err := url.Parse(srv.ClientURL())
	if err != nil {
		return srv.ClientURL()
	}
	host, port, err := net.SplitHostPort(u.Host)
	if err != nil {
		return srv.ClientURL()
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		u.Host = net.JoinHostPort("127.0.0.1", port)
	}
	return u.String()
}

// ClientURL is the URL clients connect to ("nats://127.0.0.1:4222").
func (s *Server) ClientURL() string { return s.url }

// NATS is the underlying server, for callers that need more than the URL
// (in-process connections, monitoring).
func (s *Server) NATS() *server.Server { return s.srv }

// Shutdown stops the server and waits until it has stopped, JetStream's
// files flushed.
func (s *Server) Shutdown() {
	s.srv.Shutdown()
	s.srv.WaitForShutdown()
}

// slogAdapter routes nats-server's log lines to slog.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) Noticef(format string, v ...any) { a.l.Info(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Warnf(format string, v ...any)   { a.l.Warn(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Fatalf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Errorf(format string, v ...any)  { a.l.Error(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Debugf(format string, v ...any)  { a.l.Debug(fmt.Sprintf(format, v...)) }
func (a slogAdapter) Tracef(format string, v ...any)  { a.l.Debug(fmt.Sprintf(format, v...)) }
