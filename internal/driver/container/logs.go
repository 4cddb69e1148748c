package container

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/client"
)

// cursorEvery is how far (in the engine's log timestamps) the written
// output may run ahead of the stored cursor. After an agent crash, the new
// agent copies again what came after the cursor, so at most this much of
// the output appears twice in the log file; nothing is lost.
const cursorEvery = time.Second

// follower copies one container's output from the engine into its log
// file, line by line, and remembers in a cursor file the engine timestamp
// of the last line it wrote, so that a later agent can resume after it.
type follower struct {
	cancel context.CancelFunc
	done   chan struct{} // closed once the stream has ended and the cursor is stored
}

// cursorPath is where the cursor of the named container lives.
func (d *Driver) cursorPath(id string) string {
	return filepath.Join(d.cfg.StateDir, id+".cursor")
}

// readCursor returns the engine's "since" for resuming the container's
// output: just after the last line an earlier follower wrote, or "" (from
// the start) when there is no cursor.
func (d *Driver) readCursor(id string) string {
	data, err := os.ReadFile(d.cursorPath(id))
	if err != nil {
		return ""
	}
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(data)))
	if err != nil {
		return ""
	}
	t = t.Add(time.Nanosecond)
	return fmt.Sprintf("%d.%09d", t.Unix(), t.Nanosecond())
}

// openLog opens the workload's log file for appending, created with its
// directory if needed, or /dev/null when logPath is empty.
func openLog(logPath string) (*os.File, error) {
	if logPath == "" {
		return os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	}
	if err := os.MkdirAll(filepath.Dir(logPath), 0o750); err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	f, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	return f, nil
}

// follow starts copying the container's output after since into out,
// which it closes, until the container stops or the follower is cancelled.
// A stream the engine breaks off ends the copy; the next agent resumes it
// from the cursor.
func (d *Driver) follow(id string, out *os.File, since string) *follower {
	ctx, cancel := context.WithCancel(context.Background())
	f := &follower{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		defer out.Close()
		_ = d.copyLogs(ctx, id, out, since, true)
	}()
	return f
}

// copyLogs copies the container's output after since into out, and with
// follow keeps copying until the container stops.
func (d *Driver) copyLogs(ctx context.Context, id string, out io.Writer, since string, follow bool) error {
	stream, err := d.api.ContainerLogs(ctx, id, client.ContainerLogsOptions{
		ShowStdout: true, ShowStderr: true, Timestamps: true, Follow: follow, Since: since,
	})
	if err != nil {
		return fmt.Errorf("logs of %s: %w", shortID(id), err)
	}
	defer stream.Close()
	lw := &lineWriter{out: out, cursor: d.cursorPath(id)}
	_, err = stdcopy.StdCopy(lw.stream(), lw.stream(), stream)
	lw.flush()
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("logs of %s: %w", shortID(id), err)
	}
	return nil
}

// lineWriter takes the engine's timestamped lines ("<RFC 3339 time> text")
// from both streams, writes the text to out and keeps the cursor.
type lineWriter struct {
	out    io.Writer
	cursor string

	mu      sync.Mutex
	last    time.Time // of the last line written
	written time.Time // the last time stored in the cursor file
}

// stream returns a writer for one of the container's streams; each keeps
// its own partial line.
func (w *lineWriter) stream() io.Writer { return &streamWriter{w: w} }

type streamWriter struct {
	w       *lineWriter
	partial []byte
}

func (s *streamWriter) Write(p []byte) (int, error) {
	s.partial = append(s.partial, p...)
	for {
		i := bytes.IndexByte(s.partial, '\n')
		if i < 0 {
			return len(p), nil
		}
		if err := s.w.line(s.partial[:i+1]); err != nil {
			return 0, err
		}
		s.partial = s.partial[i+1:]
	}
}

func (w *lineWriter) line(l []byte) error {
	ts, text, ok := bytes.Cut(l, []byte(" "))
	t, perr := time.Parse(time.RFC3339Nano, string(ts))
	stamped := ok && perr == nil
	if !stamped {
		text = l // not timestamped: write it as it is
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if _, err := w.out.Write(text); err != nil {
		return err
	}
	if stamped && t.After(w.last) {
		w.last = t
		if w.last.Sub(w.written) >= cursorEvery {
			w.storeCursor()
		}
	}
	return nil
}

// flush stores the cursor of the last line written.
func (w *lineWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.last.After(w.written) {
		w.storeCursor()
	}
}

func (w *lineWriter) storeCursor() {
	if err := os.WriteFile(w.cursor, []byte(w.last.Format(time.RFC3339Nano)+"\n"), 0o600); err == nil {
		w.written = w.last
	}
}

// shortID is the 12-character form of a container ID used in messages.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
