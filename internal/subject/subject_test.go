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
		">": "everything", "$JS.API.>": "reserved", "_INBOX.x": "reserved", "atoll.events.x": "reserved", "a..b": "empty token",
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
	if !subject.Matches("sensors.*", "sensors.temp") || subject.Matches("sensors.*", "sensors.temp.c") {
		t.Error("Matches")
	}
}

func TestMinimal(t *testing.T) {
	got := subject.Minimal([]string{"sensors.temp", "sensors.>", "logs.x", "sensors.*", "logs.x", "b.*.c", "b.x.*"})
	want := []string{"b.*.c", "b.x.*", "logs.x", "sensors.>"}
	if !slices.Equal(got, want) {
		t.Errorf("Minimal = %q, want %q", got, want)
	}
}
