package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	yaml "go.yaml.in/yaml/v2"
)

// printStructured prints v as JSON, or as YAML with output "yaml".
func printStructured(w io.Writer, output string, v any) error {
	if output == "yaml" {
		return printYAML(w, v)
	}
	return printJSON(w, v)
}

// printYAML prints v as YAML with the keys of its JSON form (the API's
// names, not Go's), so -o yaml and -o json show the same document.
func printYAML(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("encode yaml: %w", err)
	}
	var doc any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("encode yaml: %w", err)
	}
	out, err := yaml.Marshal(doc)
	if err != nil {
		return fmt.Errorf("encode yaml: %w", err)
	}
	_, err = w.Write(out)
	return err
}

// formatLabels prints labels as k=v pairs sorted by key, comma-separated.
func formatLabels(labels map[string]string) string {
	pairs := make([]string, 0, len(labels))
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		pairs = append(pairs, k+"="+labels[k])
	}
	return strings.Join(pairs, ",")
}

// formatCapacity prints the capacity a node declared, "" if none.
func formatCapacity(memory, milliCPU int64) string {
	var parts []string
	if memory != 0 {
		parts = append(parts, "memory "+formatBytes(memory))
	}
	if milliCPU != 0 {
		parts = append(parts, "cpu "+formatMilliCPU(milliCPU))
	}
	return strings.Join(parts, ", ")
}

// formatRevision prints a plan revision; 0 (none yet) is "".
func formatRevision(r uint64) string {
	if r == 0 {
		return ""
	}
	return strconv.FormatUint(r, 10)
}

// formatTime prints t in the local time zone, to the second.
func formatTime(t time.Time) string {
	return t.Local().Format(time.DateTime)
}

// formatAgo prints how long before now t was ("45s"), "" if t is zero.
func formatAgo(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return shortDuration(now.Sub(t))
}
