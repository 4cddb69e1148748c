package localapi

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"syscall"
)

// listenUnix binds a unix socket at path that is never reachable by other
// users, not even for an instant.
//
// bind(2) creates the socket file with mode 0777 &^ umask, and fchmod on a
// socket descriptor does not change that file, so binding at path and
// chmodding afterwards leaves a window in which anyone may connect. Changing
// the umask is no fix either: it is process-wide, and the agent has other
// goroutines creating files. So the socket is bound inside a fresh directory
// of mode 0700 (os.MkdirTemp) next to path, chmodded to 0600 there, and only
// then renamed into place. rename(2) within one directory tree on one file
// system is atomic and keeps the bound socket working.
//
// A file already at path is replaced if it is a socket nobody listens on (a
// stale socket from an agent that died); a live socket or a file of another
// kind is an error.
func listenUnix(path string) (*net.UnixListener, error) {
	if err := removeStale(path); err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp(filepath.Dir(path), ".sock")
	if err != nil {
		return nil, fmt.Errorf("create socket directory: %w", err)
	}
	defer os.RemoveAll(dir)

	tmp := filepath.Join(dir, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w", path, err)
	}
	// The file is renamed away from tmp; removing it is ours to do.
	ln.SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod socket: %w", err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		return nil, fmt.Errorf("move socket into place at %s: %w", path, err)
	}
	return ln, nil
}

// removeStale removes a socket at path that nobody listens on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("check socket %s: %w", path, err)
	}
	if fi.Mode().Type() != fs.ModeSocket {
		return fmt.Errorf("%s exists and is not a socket; refusing to replace it", path)
	}
	conn, err := net.Dial("unix", path)
	if err == nil {
		conn.Close()
		return fmt.Errorf("another agent is already listening on %s", path)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("check socket %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove stale socket %s: %w", path, err)
	}
	return nil
}
