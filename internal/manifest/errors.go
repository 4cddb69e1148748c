package manifest

import (
	"fmt"
	"strconv"
	"strings"
)

// FieldError is one problem in one document.
type FieldError struct {
	// Source names the document: "file.yaml#2", or "document 2" for
	// workloads that came without a source.
	Source string
	// Path is the field, rooted at the document ("spec.exec.command[0]");
	// empty when the problem is the document itself (a YAML syntax error).
	Path string
	// Msg says what is wrong and what would be right.
	Msg string
}

// Error formats the error as "source: path: msg".
func (e FieldError) Error() string {
	var b strings.Builder
	if e.Source != "" {
		b.WriteString(e.Source)
		b.WriteString(": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// FieldErrors is every problem found in a set of documents, in the order of
// the documents. It is never returned empty.
type FieldErrors []FieldError

// Error puts one FieldError on each line.
func (es FieldErrors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap lets errors.As find an individual FieldError.
func (es FieldErrors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// asError returns es as an error, or nil when there is nothing in it; it
// avoids the typed-nil trap.
func (es FieldErrors) asError() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// collector gathers the errors of one document. Paths marked bad already
// carry a structural error (a wrong type, for example); findings at, above or
// below them are not reported again.
type collector struct {
	source string
	errs   FieldErrors
	bad    map[string]bool // paths with a structural error
	above  map[string]bool // strict ancestors of those paths
}

func (c *collector) add(path, format string, args ...any) {
	if c.isBad(path) {
		return
	}
	c.errs = append(c.errs, FieldError{Source: c.source, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// markBad records a structural error at path.
func (c *collector) markBad(path, format string, args ...any) {
	c.errs = append(c.errs, FieldError{Source: c.source, Path: path, Msg: fmt.Sprintf(format, args...)})
	if c.bad == nil {
		c.bad, c.above = make(map[string]bool), make(map[string]bool)
	}
	c.bad[path] = true
	for p := parent(path); p != "" && !c.above[p]; p = parent(p) {
		c.above[p] = true
	}
}

// isBad reports whether path is, is below or is above a path marked bad.
func (c *collector) isBad(path string) bool {
	if len(c.bad) == 0 {
		return false
	}
	if c.above[path] {
		return true
	}
	for {
		if c.bad[path] {
			return true
		}
		p := parent(path)
		if p == path {
			return false
		}
		path = p
	}
}

// parent returns the path one step up ("spec.exec" for "spec.exec.command"
// and "spec.exec.command" for "spec.exec.command[0]"); the parent of a
// top-level field is "" and the parent of "" is "".
func parent(path string) string {
	if path == "" {
		return ""
	}
	// A quoted key may contain '.' or '['; step over it whole.
	if strings.HasSuffix(path, `"]`) {
		if i := strings.LastIndex(path, `["`); i >= 0 {
			if _, err := strconv.Unquote(path[i+1 : len(path)-1]); err == nil {
				return path[:i]
			}
		}
	}
	i := strings.LastIndexAny(path, ".[")
	if i < 0 {
		return ""
	}
	return path[:i]
}

// field joins a struct field name to a path.
func field(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// key joins a map key to a path: ".key" when it reads as a name, `["key"]`
// otherwise.
func key(path, k string) string {
	if isPlainKey(k) {
		return field(path, k)
	}
	return path + "[" + strconv.Quote(k) + "]"
}

// index joins a list index to a path.
func index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

func isPlainKey(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c == '_':
		case (c >= '0' && c <= '9') || c == '-':
			if i == 0 {
				return false
			}
		default:
			return false
		}
	}
	return true
}
