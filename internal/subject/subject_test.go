package subject_test

import (
	"slices"
	"strings"
	"testing"

	"atoll.dev/atoll/internal/subject"
)

func TestCheck(t *testing.T) {
	for _, s := range []string{"a", "sensors.temp", "a.b-c.d_e", "plant3.line-2.temp"} {
		if err := subject.Check(s, false); err != nil {
			t.Errorf("Check(%q) = %v", s, err)
		}
	}
	for _, s := range []string{"a.*", "a.>", "*.b", "*"} {
		if err := subject.Check(s, true); err != nil {
			t.Errorf("Check(%q, wildcards) = %v", s, err)
		}
		if err := subject.Check(s, false); err == nil {
			t.Errorf("Check(%q) accepted a wildcard in a literal subject", s)
		}
	}
	bad := map[string]string{
		"": "empty", "a..b": "empty token", ".a": "empty token", "a.": "empty token",
		"a b": "white space", "a.>.b": "before its last token", "a.b*": "mixes", "a.>x": "mixes",
	}
	for s, want := range bad {
		if err := subject.Check(s, true); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Check(%q) = %v, want it to say %q", s, err, want)
		}
	}
}

func TestCheckForward(t *testing.T) {
	if err := subject.CheckForward("sensors.>"); err != nil {
		t.Error(err)
	}
	for s, want := range map[string]string{
		">": "starts with a wildcard", "*.temp": "starts with a wildcard", "$JS.API.>": "reserved", "_INBOX.x": "reserved", "atoll.events.x": "reserved", "a..b": "empty token",
	} {
		if err := subject.CheckForward(s); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("CheckForward(%q) = %v, want it to say %q", s, err, want)
		}
	}
}

func TestCovers(t *testing.T) {
	yes := [][2]string{
		{"a.>", "a.b"}, {"a.>", "a.b.c"}, {"a.>", "a.*"}, {"a.>", "a.>"}, {"a.*", "a.b"}, {"a.*", "a.*"},
		{"*.b", "a.b"}, {"a.b", "a.b"}, {">", "a"}, {"*.>", "a.b.>"},
	}
	no := [][2]string{
		{"a.>", "a"}, {"a.*", "a.b.c"}, {"a.*", "a.>"}, {"a.b", "a.*"}, {"a.b", "a.c"}, {"a.*.c", "a.b.*"}, {"a", "a.b"},
	}
	for _, c := range yes {
		if !subject.Covers(c[0], c[1]) {
			t.Errorf("Covers(%q, %q) = false", c[0], c[1])
		}
	}
	for _, c := range no {
		if subject.Covers(c[0], c[1]) {
			t.Errorf("Covers(%q, %q) = true", c[0], c[1])
		}
	}
}

func TestCapture(t *testing.T) {
	tests := []struct{ in, want []string }{
		{[]string{"sensors.temp", "sensors.>", "logs.x", "sensors.*", "logs.x"}, []string{"logs.x", "sensors.>"}},
		{[]string{"b.*.c", "b.x.*"}, []string{"b.*.*"}},
		{[]string{"b.*.c", "b.x.*", "b.y"}, []string{"b.*.*", "b.y"}},
		{[]string{"a.*.c.>", "a.b.*"}, []string{"a.*.c.>", "a.b.*"}},
		{[]string{"a.*.c.>", "a.b.*.d"}, []string{"a.*.*.>"}},
		{[]string{"a.b", "c.d"}, []string{"a.b", "c.d"}},
		{nil, nil},
	}
	for _, tt := range tests {
		if got := subject.Capture(tt.in); !slices.Equal(got, tt.want) {
			t.Errorf("Capture(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
