package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
)

// checkOutput accepts an empty -o (the table) or one of allowed.
func checkOutput(o string, allowed ...string) error {
	if o == "" || slices.Contains(allowed, o) {
		return nil
	}
	return fmt.Errorf("unknown output format %q: use %s", o, strings.Join(allowed, " or "))
}

// printJSON prints v as indented JSON.
func printJSON(w io.Writer, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encode json: %w", err)
	}
	_, err = w.Write(append(b, '\n'))
	return err
}

// nonNil makes an empty list print as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
