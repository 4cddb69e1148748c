package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

func d(v time.Duration) *Duration { return &Duration{v} }

func TestLoadPath_Valid(t *testing.T) {
	ws, err := LoadPath("testdata/valid")
	if err != nil {
		t.Fatalf("LoadPath(testdata/valid): %v", err)
	}
	var got []string
	for _, w := range ws {
		got = append(got, w.Metadata.Name+"@"+w.Source)
	}
	want := []string{
		"minimal@testdata/valid/minimal.yaml#1",
		"sensor@testdata/valid/sensor.json#1",
		"filter@testdata/valid/stack.yaml#1",
		"broker@testdata/valid/stack.yaml#2",
		"camera-agent@testdata/valid/stack.yaml#3",
		"web@testdata/valid/web.yaml#1",
	}
	if !slices.Equal(got, want) {
		t.Fatalf("loaded %q\nwant %q", got, want)
	}
	byName := make(map[string]Workload)
	for _, w := range ws {
		byName[w.Metadata.Name] = w
	}

	defaultRestart := Restart{Policy: RestartAlways, Backoff: Backoff{
		Initial: d(100 * time.Millisecond), Max: d(5 * time.Minute), ResetAfter: d(10 * time.Second)}}
	tests := []struct {
		name      string
		check     func(Workload) any
		want      any
		wantBytes int64
		wantMilli int64
	}{
		{name: "minimal", check: func(w Workload) any { return w.Spec.Restart }, want: defaultRestart},
		{name: "minimal", check: func(w Workload) any { return w.Spec.Health == nil && w.Spec.Priority == 0 }, want: true},
		{name: "minimal", check: func(w Workload) any { return w.Spec.Exec.Command }, want: []string{"/bin/sleep", "3600"}},
		{name: "sensor", check: func(w Workload) any { return *w.Spec.Health }, want: Health{
			HTTP: &HTTPCheck{Port: 9100, Path: "/"}, Interval: d(10 * time.Second), Timeout: d(time.Second),
			FailureThreshold: 3, StartPeriod: d(0)}},
		{name: "sensor", check: func(w Workload) any { return w.Spec.Resources }, want: Resources{Memory: "8Mi", CPU: "0.05"},
			wantBytes: 8 << 20, wantMilli: 50},
		{name: "filter", check: func(w Workload) any { return w.Spec.WASM.Module },
			want: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
		{name: "filter", check: func(w Workload) any { return w.Spec.Resources }, want: Resources{Memory: "16Mi", CPU: "0.1"},
			wantBytes: 16 << 20, wantMilli: 100},
		{name: "filter", check: func(w Workload) any { return *w.Spec.Health.TCP }, want: TCPCheck{Port: 9000}},
		{name: "broker", check: func(w Workload) any { return w.Spec.Resources }, want: Resources{Memory: "1G", CPU: "1.5"},
			wantBytes: 1e9, wantMilli: 1500},
		{name: "broker", check: func(w Workload) any { return []any{w.Spec.Priority, w.Spec.Restart.Policy, w.Spec.Container.Image} },
			want: []any{-5, RestartNever, "docker.io/library/eclipse-mosquitto:2.0"}},
		{name: "broker", check: func(w Workload) any {
			c := w.Spec.Container
			return []any{c.Mounts, c.Ports, c.User, c.HostNetwork, c.Privileged}
		}, want: []any{
			[]Mount{{HostPath: "/srv/mosquitto", Path: "/mosquitto/data"}, {HostPath: "/etc/mosquitto", Path: "/mosquitto/config", ReadOnly: true}},
			[]Port{{ContainerPort: 1883, HostPort: 1883, Protocol: "tcp"}, {ContainerPort: 1883, HostPort: 11883, Protocol: "tcp"},
				{ContainerPort: 5353, HostPort: 5353, Protocol: "udp"}},
			"1883:1883", false, false}},
		{name: "camera-agent", check: func(w Workload) any { return []any{w.Spec.Health.FailureThreshold, w.Spec.Requires.Devices} },
			want: []any{1, []string{"/dev/video0"}}},
		{name: "web", check: func(w Workload) any { return w.Spec.Restart }, want: Restart{Policy: RestartOnFailure, Backoff: Backoff{
			Initial: d(time.Second), Max: d(time.Minute), ResetAfter: d(10 * time.Second)}}},
		{name: "web", check: func(w Workload) any { return *w.Spec.Health }, want: Health{
			HTTP: &HTTPCheck{Port: 8080, Path: "/healthz"}, Interval: d(5 * time.Second), Timeout: d(2 * time.Second),
			FailureThreshold: 5, StartPeriod: d(30 * time.Second)}},
		{name: "web", check: func(w Workload) any { return w.Metadata.Labels },
			want: map[string]string{"app": "web", "app.kubernetes.io/part-of": "storefront"}},
		{name: "web", check: func(w Workload) any { return w.Spec.Exec.Env }, want: map[string]string{"LOG_LEVEL": "info", "PORT": "8080"}},
		{name: "web", check: func(w Workload) any { return w.Spec.Placement }, want: Placement{
			NodeSelector: map[string]string{"zone": "north"}, Nodes: []string{"edge-1", "edge-2"}}},
		{name: "web", check: func(w Workload) any { return w.Spec.Resources }, want: Resources{Memory: "64Mi", CPU: "250m"},
			wantBytes: 67108864, wantMilli: 250},
	}
	for i, tt := range tests {
		w, ok := byName[tt.name]
		if !ok {
			t.Fatalf("no workload %q", tt.name)
		}
		if got := tt.check(w); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("check %d on %s: got %+v, want %+v", i, tt.name, got, tt.want)
		}
		if tt.wantBytes != 0 || tt.wantMilli != 0 {
			if got := w.Spec.Resources.MemoryBytes(); got != tt.wantBytes {
				t.Errorf("%s: MemoryBytes() = %d, want %d", tt.name, got, tt.wantBytes)
			}
			if got := w.Spec.Resources.MilliCPU(); got != tt.wantMilli {
				t.Errorf("%s: MilliCPU() = %d, want %d", tt.name, got, tt.wantMilli)
			}
		}
	}
}

// TestWorkload_JSONRoundTrip checks what the agent relies on: a normalized
// workload survives encoding/json unchanged, and Normalize leaves it alone.
func TestWorkload_JSONRoundTrip(t *testing.T) {
	ws, err := LoadPath("testdata/valid")
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range ws {
		t.Run(w.Metadata.Name, func(t *testing.T) {
			b, err := json.Marshal(w)
			if err != nil {
				t.Fatal(err)
			}
			var back Workload
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			want := w
			want.Source = ""
			if !reflect.DeepEqual(back, want) {
				t.Fatalf("round trip changed the workload:\n got %+v\nwant %+v", back, want)
			}
			again := []Workload{back}
			if err := Normalize(again); err != nil {
				t.Fatalf("Normalize(round-tripped): %v", err)
			}
			b2, err := json.Marshal(again[0])
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(b, b2) {
				t.Errorf("Normalize changed a normalized workload:\n got %s\nwant %s", b2, b)
			}
		})
	}
}

func TestDecode_Documents(t *testing.T) {
	const doc = "apiVersion: atoll.dev/v1\nkind: Workload\nmetadata:\n  name: %s\nspec:\n  runtime: exec\n  exec:\n    command: [/bin/true]\n"
	mk := func(name string) string { return strings.ReplaceAll(doc, "%s", name) }
	tests := []struct {
		name string
		in   string
		want []string // name@source
	}{
		{"empty input", "", nil},
		{"only comments", "# nothing here\n---\n# nor here\n", nil},
		{"single", mk("a"), []string{"a@f.yaml#1"}},
		{"leading marker", "---\n" + mk("a"), []string{"a@f.yaml#1"}},
		{"empty documents skipped", "---\n---\n" + mk("a") + "---\n\n---\n" + mk("b") + "---\n", []string{"a@f.yaml#1", "b@f.yaml#2"}},
		{"marker with comment", mk("a") + "--- # next\n" + mk("b"), []string{"a@f.yaml#1", "b@f.yaml#2"}},
		{"end marker", mk("a") + "...\n" + mk("b"), []string{"a@f.yaml#1", "b@f.yaml#2"}},
		{"crlf", strings.ReplaceAll(mk("a")+"---\n"+mk("b"), "\n", "\r\n"), []string{"a@f.yaml#1", "b@f.yaml#2"}},
		{"byte order mark", "\xef\xbb\xbf" + mk("a"), []string{"a@f.yaml#1"}},
		{"null document skipped", "null\n---\n" + mk("a"), []string{"a@f.yaml#1"}},
		{"json", `{"apiVersion":"atoll.dev/v1","kind":"Workload","metadata":{"name":"j"},"spec":{"runtime":"exec","exec":{"command":["/bin/true"]}}}`,
			[]string{"j@f.yaml#1"}},
		{"json after a marker", "---\n" + `{"apiVersion":"atoll.dev\/v1","kind":"Workload","metadata":{"name":"j"},"spec":{"runtime":"exec","exec":{"command":["/bin/true"]}}}` + "\n---\n" + mk("a"),
			[]string{"j@f.yaml#1", "a@f.yaml#2"}},
		{"json with escaped slash", `{"apiVersion":"atoll.dev\/v1","kind":"Workload","metadata":{"name":"j"},"spec":{"runtime":"exec","exec":{"command":["\/bin\/true"]}}}`,
			[]string{"j@f.yaml#1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws, err := Decode("f.yaml", []byte(tt.in))
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			var got []string
			for _, w := range ws {
				got = append(got, w.Metadata.Name+"@"+w.Source)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestDecode_Errors(t *testing.T) {
	const head = "apiVersion: atoll.dev/v1\nkind: Workload\nmetadata:\n  name: a\n"
	tests := []struct {
		name   string
		source string
		in     string
		want   string
	}{
		{"syntax error on the first line", "f.yaml", "a: b: c\n",
			"f.yaml#1: invalid YAML at line 1: mapping values are not allowed in this context"},
		{"syntax error line counts from the file", "f.yaml", head + "spec:\n  runtime: exec\n  exec:\n    command: [/bin/true]\n---\n# two\n\n" + head + "spec: [\n",
			"f.yaml#2: invalid YAML at line 16: did not find expected node content"},
		{"scanner error in a later document", "f.yaml", "# one\n---\n" + head + "spec:\n\truntime: exec\n",
			"f.yaml#1: invalid YAML at line 8: found character that cannot start any token"},
		{"tab indentation", "f.yaml", head + "spec:\n\truntime: exec\n",
			"f.yaml#1: invalid YAML at line 6: found character that cannot start any token"},
		{"scalar document", "f.yaml", "just text\n",
			`f.yaml#1: a document must be a mapping with apiVersion, kind, metadata and spec, not a string ("just text")`},
		{"no source", "", "kind: Workload\n",
			"document 1: apiVersion: required (atoll.dev/v1)\ndocument 1: metadata.name: required (a DNS label: lowercase letters, digits and '-', at most 63 characters, starting and ending with a letter or digit)\ndocument 1: spec.runtime: required (one of exec, wasm, container)"},
		{"keys are kept as written", "f.yaml", head + "  labels:\n    on: x\nspec:\n  runtime: exec\n  exec: {command: [/bin/true]}\n  y: 1\n",
			"f.yaml#1: spec.y: unknown field; known fields here: runtime, exec, wasm, container, priority, resources, restart, health, placement, requires, forward, secrets"},
		{"case slip", "f.yaml", head + "spec:\n  runtime: exec\n  exec: {command: [/bin/true]}\n  health:\n    tcp: {port: 1}\n    failurethreshold: 2\n",
			"f.yaml#1: spec.health.failurethreshold: unknown field (did you mean failureThreshold?)"},
		{"list item type", "f.yaml", head + "spec:\n  runtime: exec\n  exec: {command: [/bin/echo, {a: 1}, 3]}\n",
			"f.yaml#1: spec.exec.command[1]: expected a string, got a mapping\nf.yaml#1: spec.exec.command[2]: expected a string, got a number (3); write \"3\" (quoted) to keep it a string"},
		{"null section", "f.yaml", head + "spec:\n  runtime: exec\n  exec:\n",
			"f.yaml#1: spec.exec: required when spec.runtime is exec"},
		{"wrong type is not also reported missing", "f.yaml", head + "spec:\n  runtime: exec\n  exec: /bin/true\n",
			`f.yaml#1: spec.exec: expected a mapping, got a string ("/bin/true")`},
		{"duplicate keys in json", "f.json", `{"apiVersion":"atoll.dev\/v1","apiVersion":"atoll.dev/v1"}`,
			`f.json#1: invalid JSON at line 1: key "apiVersion" appears twice`},
		{"duplicate keys in json, later line", "f.json", "{\n\"kind\": \"Workload\",\n\"metadata\": {\"name\": \"a\\/b\",\n \"name\": \"c\"}}",
			`f.json#1: invalid JSON at line 4: key "name" appears twice`},
		{"json with trailing data", "f.json", `{"kind": "W\/"} {}`,
			`f.json#1: invalid YAML at line 1: found unknown escape character`},
		{"anchors and merge keys", "f.yaml", head + "spec:\n  runtime: exec\n  exec: &e {command: [/bin/true]}\n  health:\n    exec:\n      <<: *e\n      env: {}\n",
			"f.yaml#1: spec.health.exec.env: unknown field; known fields here: command"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws, err := Decode(tt.source, []byte(tt.in))
			if err == nil {
				t.Fatalf("Decode = %d workloads, want error %q", len(ws), tt.want)
			}
			if ws != nil {
				t.Errorf("Decode returned workloads with its error")
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("error:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

// TestDecode_AllErrorsAtOnce checks that one pass reports every problem of a
// document, each with its own path.
func TestDecode_AllErrorsAtOnce(t *testing.T) {
	data, err := os.ReadFile("testdata/invalid/many-errors.yaml")
	if err != nil {
		t.Fatal(err)
	}
	_, err = Decode("many.yaml", data)
	var fe FieldErrors
	if !errors.As(err, &fe) {
		t.Fatalf("Decode error = %v, want FieldErrors", err)
	}
	var paths []string
	for _, e := range fe {
		if e.Source != "many.yaml#1" {
			t.Errorf("error %q has source %q, want many.yaml#1", e, e.Source)
		}
		paths = append(paths, e.Path)
	}
	want := []string{
		"metadata.name",
		"spec.exec.command",
		"spec.wasm",
		"spec.wasm.module",
		"spec.resources.memory",
		"spec.resources.cpu",
		"spec.restart.policy",
		"spec.restart.backoff.initial",
		"spec.health.http.port",
		"spec.placement.nodes[0]",
		"spec.requires.devices[0]",
		"spec.extra",
	}
	if !slices.Equal(paths, want) {
		t.Errorf("error paths:\n%q\nwant:\n%q", paths, want)
	}
	var one FieldError
	if !errors.As(err, &one) || one.Path != "metadata.name" {
		t.Errorf("errors.As(err, *FieldError) = %+v, want the first error", one)
	}
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestLoadPath_Directory(t *testing.T) {
	const doc = "apiVersion: atoll.dev/v1\nkind: Workload\nmetadata:\n  name: %s\nspec:\n  runtime: exec\n  exec:\n    command: [/bin/true]\n"
	mk := func(name string) string { return strings.ReplaceAll(doc, "%s", name) }
	dir := writeFiles(t, map[string]string{
		"a.yaml":            mk("web"),
		"b.yml":             mk("db") + "---\n" + mk("web"),
		"c.json":            `{"apiVersion":"atoll.dev/v1","kind":"Workload","metadata":{"name":"db"},"spec":{"runtime":"exec","exec":{"command":["/bin/true"]}}}`,
		"d.yaml":            strings.Replace(mk("cache"), "runtime: exec", "runtime: podman", 1),
		"notes.txt":         "not a manifest: [",
		".hidden.yaml":      "not a manifest: [",
		"sub/e.yaml":        "not a manifest: [",
		"dir.yaml/f.yaml":   "not a manifest: [",
		"UPPER.YAML":        mk("upper"),
		"z-empty.yaml":      "# nothing yet\n",
		"z-only-marks.yaml": "---\n---\n",
	})
	_, err := LoadPath(dir)
	if err == nil {
		t.Fatal("LoadPath succeeded, want errors")
	}
	rel := func(name string) string { return filepath.Join(dir, name) }
	want := strings.Join([]string{
		rel("d.yaml") + `#1: spec.runtime: "podman" is not one of exec, wasm, container`,
		rel("b.yml") + `#2: metadata.name: "web" is already used by ` + rel("a.yaml") + `#1; names must be unique`,
		rel("c.json") + `#1: metadata.name: "db" is already used by ` + rel("b.yml") + `#1; names must be unique`,
	}, "\n")
	if got := err.Error(); got != want {
		t.Errorf("error:\n%s\nwant:\n%s", got, want)
	}

	// Without the conflicts, the same directory loads in file order.
	for _, name := range []string{"b.yml", "c.json", "d.yaml"} {
		if err := os.Remove(rel(name)); err != nil {
			t.Fatal(err)
		}
	}
	ws, err := LoadPath(dir)
	if err != nil {
		t.Fatalf("LoadPath: %v", err)
	}
	var got []string
	for _, w := range ws {
		got = append(got, w.Metadata.Name)
	}
	if want := []string{"upper", "web"}; !slices.Equal(got, want) {
		t.Errorf("loaded %q, want %q", got, want)
	}
}

func TestLoadPath_Empty(t *testing.T) {
	dir := writeFiles(t, map[string]string{"README.md": "# manifests go here"})
	ws, err := LoadPath(dir)
	if err != nil || len(ws) != 0 {
		t.Errorf("LoadPath(empty dir) = %d workloads, %v; want none and no error", len(ws), err)
	}
}

func TestLoadPath_Missing(t *testing.T) {
	_, err := LoadPath(filepath.Join(t.TempDir(), "nope.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadPath(missing) error = %v, want one wrapping fs.ErrNotExist", err)
	}
}

func validWorkload(name string) Workload {
	return Workload{
		APIVersion: APIVersion,
		Kind:       KindWorkload,
		Metadata:   Metadata{Name: name},
		Spec:       WorkloadSpec{Runtime: RuntimeExec, Exec: &ExecSpec{Command: []string{"/bin/true"}}},
	}
}

func TestNormalize(t *testing.T) {
	tests := []struct {
		name   string
		modify func(ws []Workload)
		want   string
	}{
		{"valid", func([]Workload) {}, ""},
		{"unnamed documents are numbered", func(ws []Workload) {
			ws[1].Spec.Restart.Policy = "sometimes"
			ws[1].Spec.Health = &Health{HTTP: &HTTPCheck{Port: 80, Path: "x"}}
		}, `document 2: spec.restart.policy: "sometimes" is not one of always, on-failure, never` + "\n" +
			`document 2: spec.health.http.path: "x" must start with "/"`},
		{"sources are kept", func(ws []Workload) {
			ws[0].Source = "api"
			ws[0].Spec.Resources.Memory = "500m"
		}, `api: spec.resources.memory: "500m": memory must be a whole number of bytes`},
		{"duplicates", func(ws []Workload) {
			ws[2].Metadata.Name = "a"
		}, `document 3: metadata.name: "a" is already used by document 1; names must be unique`},
		{"version and kind", func(ws []Workload) {
			ws[0].APIVersion = "v1"
			ws[0].Kind = ""
		}, "document 1: apiVersion: \"v1\" is not supported; use atoll.dev/v1\ndocument 1: kind: required (Workload)"},
		{"failure threshold after default", func(ws []Workload) {
			ws[0].Spec.Health = &Health{TCP: &TCPCheck{Port: 1}, FailureThreshold: -2, Interval: d(time.Second)}
		}, "document 1: spec.health.failureThreshold: must be at least 1, got -2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ws := []Workload{validWorkload("a"), validWorkload("b"), validWorkload("c")}
			tt.modify(ws)
			err := Normalize(ws)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Errorf("Normalize error:\n%s\nwant:\n%s", got, tt.want)
			}
		})
	}
}

func TestNormalize_Defaults(t *testing.T) {
	w := validWorkload("a")
	w.Metadata.Labels = map[string]string{}
	w.Spec.Health = &Health{HTTP: &HTTPCheck{Port: 8080}}
	ws := []Workload{w}
	if err := Normalize(ws); err != nil {
		t.Fatal(err)
	}
	got := ws[0]
	want := validWorkload("a")
	want.Spec.Restart = Restart{Policy: RestartAlways, Backoff: Backoff{
		Initial: d(100 * time.Millisecond), Max: d(5 * time.Minute), ResetAfter: d(10 * time.Second)}}
	want.Spec.Health = &Health{HTTP: &HTTPCheck{Port: 8080, Path: "/"}, Interval: d(10 * time.Second),
		Timeout: d(time.Second), FailureThreshold: 3, StartPeriod: d(0)}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Normalize defaults:\n got %+v\nwant %+v", got, want)
	}
	var nilErr error
	if err := Normalize(nil); err != nilErr {
		t.Errorf("Normalize(nil) = %v, want a nil error", err)
	}
}

// FuzzDecode checks that Decode never panics and that whatever it accepts
// is normalized: stable under Normalize and through a JSON round trip.
func FuzzDecode(f *testing.F) {
	for _, pattern := range []string{"testdata/valid/*", "testdata/invalid/*.yaml"} {
		files, err := filepath.Glob(pattern)
		if err != nil {
			f.Fatal(err)
		}
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add([]byte("---\n...\n--- a\n"))
	f.Add([]byte("a: &a [*a]\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		ws, err := Decode("fuzz.yaml", data)
		if err != nil {
			if ws != nil {
				t.Errorf("workloads returned with error %v", err)
			}
			if err.Error() == "" {
				t.Errorf("empty error text")
			}
			return
		}
		for _, w := range ws {
			b, err := json.Marshal(w)
			if err != nil {
				t.Fatalf("marshal accepted workload: %v", err)
			}
			back := []Workload{{}}
			if err := json.Unmarshal(b, &back[0]); err != nil {
				t.Fatalf("unmarshal %s: %v", b, err)
			}
			if err := Normalize(back); err != nil {
				t.Fatalf("Normalize(accepted workload %s): %v", b, err)
			}
			b2, _ := json.Marshal(back[0])
			if !bytes.Equal(b, b2) {
				t.Fatalf("not stable:\n%s\n%s", b, b2)
			}
		}
	})
}
