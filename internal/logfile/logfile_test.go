package logfile

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMain lets the test binary double as a workload: with
// LOGFILE_TEST_WRITER=1 it copies each line of stdin to stdout, which the
// test points at the log file opened with O_APPEND, as a driver does.
func TestMain(m *testing.M) {
	if os.Getenv("LOGFILE_TEST_WRITER") == "1" {
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			if _, err := os.Stdout.Write(append(sc.Bytes(), '\n')); err != nil {
				os.Exit(1)
			}
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// openAppend opens path the way drivers open a workload's log.
func openAppend(t *testing.T, path string) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = f.Close() })
	return f
}

func write(t *testing.T, w io.Writer, s string) {
	t.Helper()
	if _, err := io.WriteString(w, s); err != nil {
		t.Fatal(err)
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func assertMissing(t *testing.T, path string) {
	t.Helper()
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s exists (%v), want it missing", filepath.Base(path), err)
	}
}

// waitFor polls cond until it holds or five seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

func TestRotate_NotNeeded(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")

	rotated, err := Rotate(path, 10, 3)
	if err != nil || rotated {
		t.Errorf("Rotate(missing) = %v, %v; want false, nil", rotated, err)
	}

	write(t, openAppend(t, path), "0123456789") // exactly maxBytes
	rotated, err = Rotate(path, 10, 3)
	if err != nil || rotated {
		t.Errorf("Rotate(at limit) = %v, %v; want false, nil", rotated, err)
	}
	if got := readFile(t, path); got != "0123456789" {
		t.Errorf("log = %q, want it untouched", got)
	}
	assertMissing(t, path+".1")
}

func TestRotate_KeepsFilesAndWriterContinues(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	w := openAppend(t, path)

	for gen := 1; gen <= 4; gen++ {
		write(t, w, fmt.Sprintf("generation %d\n", gen))
		rotated, err := Rotate(path, 5, 2)
		if err != nil || !rotated {
			t.Fatalf("Rotate #%d = %v, %v; want true, nil", gen, rotated, err)
		}
		if fi, err := os.Stat(path); err != nil || fi.Size() != 0 {
			t.Fatalf("after rotation #%d: %v, size %d; want an empty log", gen, err, fi.Size())
		}
	}
	// keep=2: the two newest generations survive, older ones are dropped.
	if got := readFile(t, path+".1"); got != "generation 4\n" {
		t.Errorf("app.log.1 = %q", got)
	}
	if got := readFile(t, path+".2"); got != "generation 3\n" {
		t.Errorf("app.log.2 = %q", got)
	}
	assertMissing(t, path+".3")

	// The writer's descriptor still points at app.log and, being O_APPEND,
	// writes at its new end: no hole of NUL bytes where the old content was.
	write(t, w, "after\n")
	if got := readFile(t, path); got != "after\n" {
		t.Errorf("app.log after rotation = %q, want %q", got, "after\n")
	}
	if fi, err := os.Stat(path + ".1"); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("app.log.1 mode = %v (%v), want the log's 0640", fi.Mode().Perm(), err)
	}
	if tmps, _ := filepath.Glob(filepath.Join(dir, ".*tmp*")); len(tmps) != 0 {
		t.Errorf("temp files left behind: %q", tmps)
	}
}

func TestRotate_RemovesStaleTempFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	stale := filepath.Join(dir, ".app.log.1.tmp-12345")
	if err := os.WriteFile(stale, []byte("half a copy"), 0o600); err != nil {
		t.Fatal(err)
	}
	write(t, openAppend(t, path), "0123456789\n")
	if _, err := Rotate(path, 1, 1); err != nil {
		t.Fatal(err)
	}
	assertMissing(t, stale)
	if got := readFile(t, path+".1"); got != "0123456789\n" {
		t.Errorf("app.log.1 = %q", got)
	}
}

func TestRotate_KeepZeroOnlyTruncates(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	write(t, openAppend(t, path), "a lot of output\n")
	rotated, err := Rotate(path, 1, 0)
	if err != nil || !rotated {
		t.Fatalf("Rotate = %v, %v; want true, nil", rotated, err)
	}
	if got := readFile(t, path); got != "" {
		t.Errorf("log = %q, want empty", got)
	}
	assertMissing(t, path+".1")
}

// TestRotate_WriterProcess rotates the log of a real process that writes to
// it through an inherited O_APPEND descriptor, as a workload does.
func TestRotate_WriterProcess(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "app.log")
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "LOGFILE_TEST_WRITER=1")
	cmd.Stdout = openAppend(t, path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = stdin.Close()
		_ = cmd.Wait()
	})
	logHas := func(want string) func() bool {
		return func() bool { b, _ := os.ReadFile(path); return string(b) == want }
	}

	var before strings.Builder
	for i := range 100 {
		fmt.Fprintf(&before, "before %03d\n", i)
	}
	write(t, stdin, before.String())
	waitFor(t, "the writer's first 100 lines", logHas(before.String()))

	rotated, err := Rotate(path, 1000, 3)
	if err != nil || !rotated {
		t.Fatalf("Rotate = %v, %v; want true, nil", rotated, err)
	}
	if got := readFile(t, path+".1"); got != before.String() {
		t.Errorf("app.log.1 holds %d bytes, want the %d written before rotation", len(got), before.Len())
	}

	write(t, stdin, "after 000\nafter 001\n")
	waitFor(t, "the writer to continue in the fresh log", logHas("after 000\nafter 001\n"))

	got, err := Tail(path, 3)
	if err != nil {
		t.Fatal(err)
	}
	if want := "before 099\nafter 000\nafter 001\n"; string(got) != want {
		t.Errorf("Tail(3) across the rotation = %q, want %q", got, want)
	}
}

func TestTail(t *testing.T) {
	many := func(n int) string {
		var b strings.Builder
		for i := range n {
			fmt.Fprintf(&b, "line %05d %s\n", i, strings.Repeat("x", i%50))
		}
		return b.String()
	}
	lastLines := func(s string, n int) string {
		lines := strings.SplitAfter(s, "\n")
		lines = lines[:len(lines)-1] // after the final newline
		return strings.Join(lines[len(lines)-n:], "")
	}
	big := many(20000) // several chunks

	for _, tc := range []struct {
		name      string
		log, old  string // old is app.log.1; "-" means missing
		n         int
		want      string
		wantError bool
	}{
		{name: "LastLines", log: "a\nb\nc\n", old: "-", n: 2, want: "b\nc\n"},
		{name: "NoFinalNewline", log: "a\nb\nc", old: "-", n: 2, want: "b\nc"},
		{name: "FewerLinesThanAsked", log: "a\nb\n", old: "-", n: 5, want: "a\nb\n"},
		{name: "ExactlyAllLines", log: "a\nb\n", old: "-", n: 2, want: "a\nb\n"},
		{name: "ZeroLines", log: "a\nb\n", old: "-", n: 0, want: ""},
		{name: "EmptyLogs", log: "", old: "", n: 3, want: ""},
		{name: "ReadsRotatedFile", log: "c\nd\n", old: "a\nb\n", n: 3, want: "b\nc\nd\n"},
		{name: "EmptyLogAfterRotation", log: "", old: "a\nb\n", n: 1, want: "b\n"},
		{name: "SkipsRotatedWhenEnough", log: "c\nd\n", old: "a\nb\n", n: 2, want: "c\nd\n"},
		{name: "LineSplitByRotation", log: "tial\nz\n", old: "a\npar", n: 2, want: "partial\nz\n"},
		{name: "BlankLines", log: "\n\n\n", old: "-", n: 2, want: "\n\n"},
		{name: "ManyChunks", log: big, old: "-", n: 3, want: lastLines(big, 3)},
		{name: "AcrossChunks", log: big, old: "-", n: 15000, want: lastLines(big, 15000)},
		{name: "AcrossFilesAndChunks", log: many(10), old: big, n: 5000, want: lastLines(big+many(10), 5000)},
		{name: "MissingLog", log: "-", old: "a\n", n: 1, wantError: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "app.log")
			for name, content := range map[string]string{path: tc.log, path + ".1": tc.old} {
				if content == "-" {
					continue
				}
				if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			got, err := Tail(path, tc.n)
			if tc.wantError {
				if !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("Tail = %q, %v; want a not-exist error", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("Tail(%d) = %d bytes %.60q…, want %d bytes %.60q…", tc.n, len(got), got, len(tc.want), tc.want)
			}
			if got == nil {
				t.Error("Tail returned nil, want an empty slice")
			}
		})
	}
}

func TestTail_AcrossRotation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "app.log")
	w := openAppend(t, path)
	write(t, w, "one\ntwo\nthree\n")
	if _, err := Rotate(path, 0, 1); err != nil {
		t.Fatal(err)
	}
	write(t, w, "four\n")
	got, err := Tail(path, 3)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, []byte("two\nthree\nfour\n")) {
		t.Errorf("Tail(3) = %q", got)
	}
}
