package manifest

import (
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden .err files in testdata/invalid")

// TestLoadAll_Invalid loads each testdata/invalid/*.yaml and compares the
// error text with the golden file beside it. Run with -update to rewrite the
// goldens after a deliberate change, then review the diff.
func TestLoadAll_Invalid(t *testing.T) {
	files, err := filepath.Glob("testdata/invalid/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no test inputs in testdata/invalid")
	}
	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".yaml")
		t.Run(name, func(t *testing.T) {
			docs, err := LoadAll(file)
			if err == nil {
				t.Fatalf("LoadAll(%s) = %d workloads, %d secrets, want an error", file, len(docs.Workloads), len(docs.Secrets))
			}
			if docs.Workloads != nil || docs.Secrets != nil {
				t.Errorf("LoadAll(%s) returned documents along with the error", file)
			}
			var fe FieldErrors
			if !errors.As(err, &fe) {
				t.Fatalf("error is %T, want FieldErrors", err)
			}
			for _, e := range fe {
				if !strings.HasPrefix(e.Source, file+"#") {
					t.Errorf("error source %q does not name %s#N", e.Source, file)
				}
			}
			got := err.Error() + "\n"
			golden := strings.TrimSuffix(file, ".yaml") + ".err"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("errors differ from %s\ngot:\n%s\nwant:\n%s", golden, got, want)
			}
		})
	}
}
