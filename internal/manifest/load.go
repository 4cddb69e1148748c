package manifest

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// LoadPath decodes the manifests at path: a file, whatever its name, or a
// directory, whose *.yaml, *.yml and *.json files (not hidden, not in
// subdirectories) are read in name order. A directory without such files
// yields no workloads and no error.
//
// Problems in the manifests are collected from every file, together with
// metadata.name values used more than once across all of them, and returned
// as FieldErrors. Failing to read a file is returned at once, wrapped.
func LoadPath(path string) ([]Workload, error) {
	docs, err := load(path, false)
	return docs.Workloads, err
}

// LoadAll is LoadPath for manifests that may also hold Secret documents.
func LoadAll(path string) (Documents, error) {
	return load(path, true)
}

func load(path string, secrets bool) (Documents, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return Documents{}, fmt.Errorf("load manifests: %w", err)
	}
	files := []string{path}
	if fi.IsDir() {
		if files, err = manifestFiles(path); err != nil {
			return Documents{}, err
		}
	}
	var all Documents
	var errs FieldErrors
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return Documents{}, fmt.Errorf("load manifests: %w", err)
		}
		docs, fileErrs := decodeFile(f, data, secrets)
		all.Workloads = append(all.Workloads, docs.Workloads...)
		all.Secrets = append(all.Secrets, docs.Secrets...)
		errs = append(errs, fileErrs...)
	}
	errs = append(errs, all.duplicates()...)
	if len(errs) > 0 {
		return Documents{}, errs
	}
	return all, nil
}

// manifestFiles lists the manifest files directly in dir, sorted.
func manifestFiles(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("load manifests: %w", err)
	}
	var files []string
	for _, e := range entries {
		name := e.Name()
		if strings.HasPrefix(name, ".") {
			continue
		}
		switch strings.ToLower(filepath.Ext(name)) {
		case ".yaml", ".yml", ".json":
		default:
			continue
		}
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err != nil || fi.IsDir() {
			// A dangling link or a directory named like a file: let a
			// dangling link fail loudly, skip directories.
			if err != nil {
				return nil, fmt.Errorf("load manifests: %w", err)
			}
			continue
		}
		files = append(files, p)
	}
	slices.Sort(files)
	return files, nil
}
