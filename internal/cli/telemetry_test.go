package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"atoll.dev/atoll/internal/atolltest"
	"atoll.dev/atoll/internal/hub/api"
)

func record(seq uint64, node, subject string, data []byte) api.TelemetryRecord {
	r := api.TelemetryRecord{Node: node, Subject: subject, Epoch: "e1", Seq: seq, Time: testNow.Add(time.Duration(seq) * time.Second),
		Data: data, StreamSeq: seq}
	if s := string(data); strings.ToValidUTF8(s, "") == s {
		r.Text = s
	}
	return r
}

func TestTelemetryTail(t *testing.T) {
	h := &fakeHub{Telemetry: []api.TelemetryRecord{
		record(1, "pi-1", "sensors.temp", []byte(`{"c":21.5}`)),
		record(2, "kiosk-long-name", "sensors.raw", []byte{0xff, 0, 1}),
		record(3, "pi-1", "alarms.door", []byte("bell\x07")),
		record(4, "pi-1", "sensors.empty", nil),
	}}
	env := hubEnv(serveHub(t, h))
	code, out, errOut := atoll(t, env, "telemetry", "tail", "--node", "pi-1", "--subject", "sensors.>", "-n", "4")
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if code != 0 || len(lines) != 5 {
		t.Fatalf("telemetry tail = %d, %q, %q", code, out, errOut)
	}
	cols := []string{"TIME", "NODE", "SUBJECT", "SEQ", "DATA"}
	checkAligned(t, lines, cols)
	for i, want := range [][]string{
		{formatTime(testNow.Add(time.Second)), "pi-1", "sensors.temp", "1", `{"c":21.5}`},
		{formatTime(testNow.Add(2 * time.Second)), "kiosk-long-name", "sensors.raw", "2", "<3 bytes>"},
		{formatTime(testNow.Add(3 * time.Second)), "pi-1", "alarms.door", "3", "<5 bytes>"},
		{formatTime(testNow.Add(4 * time.Second)), "pi-1", "sensors.empty", "4", "-"},
	} {
		if got := cells(lines[0], lines[i+1], cols); !slices.Equal(got, want) {
			t.Errorf("row %d = %q, want %q", i+1, got, want)
		}
	}

	_, out, _ = atoll(t, env, "telemetry", "tail", "-o", "json")
	var recs []api.TelemetryRecord
	if err := json.Unmarshal([]byte(out), &recs); err != nil || len(recs) != 4 || string(recs[1].Data) != "\xff\x00\x01" {
		t.Errorf("tail -o json = %q, %v", out, err)
	}
	if _, out, _ = atoll(t, env, "telemetry", "tail", "-o", "yaml", "-n", "1"); !strings.Contains(out, "subject: sensors.empty") {
		t.Errorf("tail -o yaml = %q", out)
	}
	for _, args := range [][]string{{"telemetry", "tail", "-n", "0"}, {"telemetry", "tail", "-n", "1001"}, {"telemetry", "tail", "-o", "wide"}} {
		if code, _, errOut := atoll(t, env, args...); code != 1 || !strings.HasPrefix(errOut, "error: ") {
			t.Errorf("%q = %d, %q; want an error", args, code, errOut)
		}
	}
	want := []string{
		"GET /v1/telemetry?limit=4&node=pi-1&subject=sensors.%3E",
		"GET /v1/telemetry?limit=20",
		"GET /v1/telemetry?limit=1",
	}
	if got := h.Requests(); !slices.Equal(got, want) {
		t.Errorf("requests = %q, want %q", got, want)
	}
}

func TestTelemetryTail_HubError(t *testing.T) {
	h := &fakeHub{Fail: &api.ErrorResponse{Error: `invalid telemetry query: subject "a..b" has an empty token`}, FailCode: 400}
	code, _, errOut := atoll(t, hubEnv(serveHub(t, h)), "telemetry", "tail", "--subject", "a..b")
	if code != 1 || !strings.Contains(errOut, "empty token") {
		t.Fatalf("tail with a bad subject = %d, %q", code, errOut)
	}
}

// lockedBuffer is a bytes.Buffer a command writes while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestTelemetryTail_Follow prints the latest records, then those stored
// since, each once, until interrupted (a normal end).
func TestTelemetryTail_Follow(t *testing.T) {
	h := &fakeHub{Telemetry: []api.TelemetryRecord{record(1, "pi-1", "a", []byte("one")), record(2, "pi-1", "a", []byte("two"))}}
	url := serveHub(t, h)
	var out, errOut lockedBuffer
	e := &env{stdout: &out, stderr: &errOut, getenv: func(k string) string { return hubEnv(url)[k] },
		now: func() time.Time { return testNow }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"telemetry", "tail", "-f", "-n", "1"}, e) }()
	waitOutput := func(want ...string) {
		t.Helper()
		atolltest.WaitFor(t, 10*time.Second, func() error {
			s := out.String()
			for _, w := range want {
				if !strings.Contains(s, w) {
					return fmt.Errorf("output %q lacks %q", s, w)
				}
			}
			return nil
		})
	}
	waitOutput("two")
	h.AddTelemetry(record(3, "pi-1", "a", []byte("three")), record(4, "pi-2", "b", []byte("four")))
	waitOutput("three", "four")
	// A poll with nothing new prints nothing.
	atolltest.WaitFor(t, 10*time.Second, func() error {
		if n := strings.Count(strings.Join(h.Requests(), "\n"), "after=4"); n < 1 {
			return fmt.Errorf("%d polls after 4", n)
		}
		return nil
	})
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("tail -f ended with %d, %q", code, errOut.String())
	}
	s := out.String()
	if strings.Count(s, "TIME") != 1 || strings.Contains(s, "one") || strings.Count(s, "three") != 1 || strings.Count(s, "four") != 1 {
		t.Fatalf("tail -f printed %q", s)
	}
	reqs := h.Requests()
	if reqs[0] != "GET /v1/telemetry?limit=1" || reqs[1] != "GET /v1/telemetry?after=2&limit=1000" {
		t.Fatalf("requests = %q", reqs)
	}
}

// TestTelemetryTail_FollowFromNothing: with no record to show at first,
// every record stored since is new, from the stream's start.
func TestTelemetryTail_FollowFromNothing(t *testing.T) {
	h := &fakeHub{}
	url := serveHub(t, h)
	var out, errOut lockedBuffer
	e := &env{stdout: &out, stderr: &errOut, getenv: func(k string) string { return hubEnv(url)[k] },
		now: func() time.Time { return testNow }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() { done <- run(ctx, []string{"telemetry", "tail", "-f", "-o", "json"}, e) }()
	atolltest.WaitFor(t, 10*time.Second, func() error {
		if len(h.Requests()) == 0 {
			return errors.New("no request yet")
		}
		return nil
	})
	h.AddTelemetry(record(1, "pi-1", "a", []byte("one")), record(2, "pi-1", "a", []byte("two")))
	atolltest.WaitFor(t, 10*time.Second, func() error {
		if n := strings.Count(out.String(), "\n"); n != 2 {
			return fmt.Errorf("%d lines: %q", n, out.String())
		}
		return nil
	})
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("tail -f ended with %d, %q", code, errOut.String())
	}
	var r api.TelemetryRecord
	if err := json.Unmarshal([]byte(strings.SplitN(out.String(), "\n", 2)[0]), &r); err != nil || r.Text != "one" {
		t.Fatalf("first line = %+v, %v", r, err)
	}
	if reqs := h.Requests(); reqs[0] != "GET /v1/telemetry?limit=20" || reqs[1] != "GET /v1/telemetry?after=0&limit=1000" {
		t.Fatalf("requests = %q", reqs)
	}
}
