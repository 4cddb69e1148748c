package artifact

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
)

// Evict removes artifacts the caller does not keep, least recently stored
// first, until the cache holds at most budget bytes; it returns the
// references it removed. An artifact in use (keep returns true) is never
// removed, even when the cache is over budget without it.
func (c Cache) Evict(budget int64, keep func(ref string) bool) ([]string, error) {
	dir := filepath.Join(c.Dir, "sha256")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("evict artifacts: %w", err)
	}
	type file struct {
		ref  string
		info fs.FileInfo
	}
	var total int64
	var candidates []file
	for _, e := range entries {
		info, err := e.Info()
		if err != nil || !info.Mode().IsRegular() {
			continue
		}
		ref := Prefix + e.Name()
		if _, err := c.Path(ref); err != nil {
			continue // a temporary file of Put
		}
		total += info.Size()
		if !keep(ref) {
			candidates = append(candidates, file{ref, info})
		}
	}
	slices.SortFunc(candidates, func(a, b file) int { return a.info.ModTime().Compare(b.info.ModTime()) })
	var removed []string
	for _, f := range candidates {
		if total <= budget {
			break
		}
		path, _ := c.Path(f.ref)
		if err := os.Remove(path); err != nil {
			return removed, fmt.Errorf("evict artifact %s: %w", f.ref, err)
		}
		total -= f.info.Size()
		removed = append(removed, f.ref)
	}
	return removed, nil
}
