package linkproxy_test

import (
	"bytes"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"atoll.dev/atoll/internal/atolltest"
	"atoll.dev/atoll/internal/atolltest/linkproxy"
)

// echoServer answers every connection with what it receives, until the
// test ends.
func echoServer(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, _ = io.Copy(c, c)
				c.Close()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

func start(t *testing.T, target string) *linkproxy.Proxy {
	t.Helper()
	p, err := linkproxy.Start(target)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip writes msg and reads the echo back.
func roundTrip(c net.Conn, msg []byte) error {
	if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		_, err := c.Write(msg)
		errc <- err
	}()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return fmt.Errorf("read echo: %w", err)
	}
	if err := <-errc; err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if !bytes.Equal(got, msg) {
		return errors.New("echo differs from what was sent")
	}
	return nil
}

// readEOF checks that the peer closed c: a read ends with io.EOF, promptly.
func readEOF(t *testing.T, c net.Conn, what string) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := c.Read(make([]byte, 1))
	if n != 0 || !errors.Is(err, io.EOF) {
		t.Fatalf("%s: read = %d, %v; want 0, EOF (the proxy closed the connection)", what, n, err)
	}
}

func waitBytes(t *testing.T, p *linkproxy.Proxy, up, down int64) {
	t.Helper()
	atolltest.WaitFor(t, 5*time.Second, func() error {
		if u, d := p.Bytes(); u != up || d != down {
			return fmt.Errorf("Bytes() = %d up, %d down; want %d, %d", u, d, up, down)
		}
		return nil
	})
}

func TestProxy_ForwardsAndCountsExactly(t *testing.T) {
	p := start(t, echoServer(t))
	if up, down := p.Bytes(); up != 0 || down != 0 {
		t.Fatalf("fresh proxy: Bytes() = %d, %d; want 0, 0", up, down)
	}
	c := dial(t, p.Addr())
	if err := roundTrip(c, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	waitBytes(t, p, 5, 5)

	// A large transfer on a second connection: counts add up across
	// connections and partial writes.
	big := make([]byte, 1<<20+7)
	_, _ = rand.Read(big)
	c2 := dial(t, p.Addr())
	if err := roundTrip(c2, big); err != nil {
		t.Fatal(err)
	}
	waitBytes(t, p, 5+int64(len(big)), 5+int64(len(big)))
	// Closing a connection forwards nothing more.
	c.Close()
	c2.Close()
	if up, down := p.Bytes(); up != 5+int64(len(big)) || down != up {
		t.Fatalf("after idle: Bytes() = %d, %d", up, down)
	}
}

func TestProxy_CutAndRestore(t *testing.T) {
	p := start(t, echoServer(t))
	addr := p.Addr()
	c := dial(t, addr)
	if err := roundTrip(c, []byte("before")); err != nil {
		t.Fatal(err)
	}

	p.Cut()
	readEOF(t, c, "connection open at the cut")
	// New connections are accepted and closed at once, on the same address.
	c2 := dial(t, addr)
	readEOF(t, c2, "connection made while cut")
	if p.Addr() != addr {
		t.Fatalf("Addr changed from %s to %s across a cut", addr, p.Addr())
	}
	up, down := p.Bytes()
	if up != 6 || down != 6 {
		t.Fatalf("Bytes() = %d, %d after the cut; want 6, 6 (nothing forwarded while cut)", up, down)
	}

	p.Restore()
	c3 := dial(t, addr)
	if err := roundTrip(c3, []byte("after")); err != nil {
		t.Fatalf("after Restore: %v", err)
	}
	waitBytes(t, p, 11, 11)
	// Cutting twice, and restoring twice, is harmless.
	p.Cut()
	p.Cut()
	readEOF(t, c3, "connection open at the second cut")
	p.Restore()
	p.Restore()
	if err := roundTrip(dial(t, addr), []byte("x")); err != nil {
		t.Fatalf("after the second Restore: %v", err)
	}
}

func TestProxy_TargetDown(t *testing.T) {
	// A port nothing listens on: the proxy closes the client at once.
	p := start(t, fmt.Sprintf("127.0.0.1:%d", atolltest.FreePort(t)))
	readEOF(t, dial(t, p.Addr()), "connection to a proxy whose target is down")
}

func TestProxy_Close(t *testing.T) {
	p := start(t, echoServer(t))
	c := dial(t, p.Addr())
	if err := roundTrip(c, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	readEOF(t, c, "connection open at Close")
	if c, err := net.DialTimeout("tcp", p.Addr(), time.Second); err == nil {
		c.Close()
		t.Fatalf("dial after Close succeeded")
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestProxy_ConcurrentCuts runs traffic while the link flaps; with -race it
// checks the proxy's own synchronisation, and every connection ends either
// with its echo or closed, never hung.
func TestProxy_ConcurrentCuts(t *testing.T) {
	p := start(t, echoServer(t))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				c, err := net.DialTimeout("tcp", p.Addr(), 5*time.Second)
				if err != nil {
					t.Errorf("client %d: dial: %v", i, err)
					return
				}
				_ = roundTrip(c, []byte("ping")) // may be cut; must not hang past its deadline
				c.Close()
			}
		}()
	}
	for range 50 {
		p.Cut()
		p.Restore()
	}
	close(stop)
	wg.Wait()
	// The link works after the flapping.
	if err := roundTrip(dial(t, p.Addr()), []byte("done")); err != nil {
		t.Fatal(err)
	}
}
