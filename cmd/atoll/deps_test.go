package main

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "atoll.dev/atoll/"

// packages lists every package of the module with its direct imports.
func packages(t *testing.T) map[string][]string {
	t.Helper()
	out, err := exec.Command("go", "list", "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "../../...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	pkgs := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkgs[f[0]] = f[1:]
	}
	return pkgs
}

// TestDeps enforces the import directions of docs/architecture.md.
func TestDeps(t *testing.T) {
	rules := []struct {
		from, to string // package prefixes, relative to the module
		why      string
	}{
		{"internal/agent", "internal/hub", "the agent must run with no hub code"},
		{"internal/hub", "internal/agent", "the hub must not depend on agent internals"},
		{"internal/driver", "internal/agent", "drivers know nothing of the agent"},
		{"internal/manifest", "internal/agent", "user input types stand alone"},
		{"internal/manifest", "internal/driver", "user input types stand alone"},
		{"internal/agent", "internal/cli", "only cmd/atoll uses the command tree"},
		{"internal/driver", "internal/cli", "only cmd/atoll uses the command tree"},
	}
	pkgs := packages(t)
	if len(pkgs) < 10 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	for pkg, imports := range pkgs {
		for _, r := range rules {
			if !strings.HasPrefix(pkg, module+r.from) {
				continue
			}
			for _, imp := range imports {
				if strings.HasPrefix(imp, module+r.to) {
					t.Errorf("%s imports %s: %s", pkg, imp, r.why)
				}
			}
		}
	}
}

// TestPackageDocs requires exactly one package doc comment per package.
func TestPackageDocs(t *testing.T) {
	docs := map[string]int{}
	walkGo(t, func(path string, f *ast.File) {
		if strings.HasSuffix(path, "_test.go") {
			return
		}
		dir := filepath.Dir(path)
		if _, ok := docs[dir]; !ok {
			docs[dir] = 0
		}
		if f.Doc != nil && strings.HasPrefix(f.Doc.Text(), "Package "+f.Name.Name+" ") ||
			f.Doc != nil && f.Name.Name == "main" && strings.HasPrefix(f.Doc.Text(), "Command ") {
			docs[dir]++
		}
	})
	for dir, n := range docs {
		if n != 1 {
			t.Errorf("%s: %d package doc comments, want exactly 1", dir, n)
		}
	}
}

// TestPrintOnlyInCLI keeps output in one place: fmt.Print* writes to the
// process's stdout, which only the command tree and main packages own.
func TestPrintOnlyInCLI(t *testing.T) {
	walkGo(t, func(path string, f *ast.File) {
		if strings.HasSuffix(path, "_test.go") || f.Name.Name == "main" ||
			strings.Contains(path, "internal/cli/") || strings.Contains(path, "internal/atolltest/") {
			return
		}
		ast.Inspect(f, func(n ast.Node) bool {
			sel, ok := n.(*ast.SelectorExpr)
			if ok && strings.HasPrefix(sel.Sel.Name, "Print") {
				if id, ok := sel.X.(*ast.Ident); ok && id.Name == "fmt" {
					t.Errorf("%s: fmt.%s outside internal/cli", path, sel.Sel.Name)
				}
			}
			return true
		})
	})
}

func walkGo(t *testing.T, visit func(path string, f *ast.File)) {
	t.Helper()
	fset := token.NewFileSet()
	err := filepath.WalkDir("../..", func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || strings.HasPrefix(d.Name(), ".")) && path != "../.." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") {
			return nil
		}
		src, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if bytes.Contains(src, []byte("//go:build wasip1")) {
			return nil // built for the WASM example only
		}
		f, err := parser.ParseFile(fset, path, src, parser.ParseComments|parser.PackageClauseOnly)
		if err != nil {
			return err
		}
		if !strings.HasSuffix(path, "_test.go") {
			if f, err = parser.ParseFile(fset, path, src, parser.ParseComments); err != nil {
				return err
			}
		}
		visit(path, f)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
