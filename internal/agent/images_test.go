package agent

import (
	"testing"
	"time"
)

func TestFetchWindow_Open(t *testing.T) {
	at := func(hm string) time.Time {
		tm, err := time.ParseInLocation("15:04", hm, time.Local)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	for _, tt := range []struct {
		window string
		open   []string
		closed []string
	}{
		{"01:00-05:00", []string{"01:00", "03:30", "04:59"}, []string{"00:59", "05:00", "12:00"}},
		{"22:00-05:00", []string{"22:00", "23:59", "00:00", "04:59"}, []string{"05:00", "21:59", "12:00"}},
		{"03:00-03:00", []string{"00:00", "03:00", "23:59"}, nil},
	} {
		w, err := ParseFetchWindow(tt.window)
		if err != nil {
			t.Fatal(err)
		}
		if w.String() != tt.window {
			t.Errorf("String() = %q, want %q", w.String(), tt.window)
		}
		for _, hm := range tt.open {
			if !w.Open(at(hm)) {
				t.Errorf("%s: closed at %s", tt.window, hm)
			}
		}
		for _, hm := range tt.closed {
			if w.Open(at(hm)) {
				t.Errorf("%s: open at %s", tt.window, hm)
			}
		}
	}
	for _, bad := range []string{"", "01:00", "1-5", "01:00-24:00", "01:00/05:00"} {
		if _, err := ParseFetchWindow(bad); err == nil {
			t.Errorf("ParseFetchWindow(%q) succeeded", bad)
		}
	}
}
