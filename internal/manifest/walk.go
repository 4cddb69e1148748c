package manifest

import (
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// walk checks the tree n against the Go type t, field by field, and returns
// a JSON-ready copy of it that holds only what fits t: unknown fields and
// values of the wrong type are reported (with their full path) and left out.
func walk(c *collector, path string, n *ynode, t reflect.Type) any {
	if n == nil {
		return nil
	}
	switch t {
	case reflect.TypeFor[Duration]():
		return walkDuration(c, path, n)
	case reflect.TypeFor[Quantity]():
		return walkQuantity(c, path, n)
	}
	switch t.Kind() {
	case reflect.Pointer:
		return walk(c, path, n, t.Elem())
	case reflect.Struct:
		return walkStruct(c, path, n, t)
	case reflect.Map:
		return walkMap(c, path, n, t)
	case reflect.Slice:
		return walkSlice(c, path, n, t)
	case reflect.String:
		return walkString(c, path, n)
	case reflect.Int:
		return walkInt(c, path, n)
	case reflect.Bool:
		return walkBool(c, path, n)
	}
	c.markBad(path, "internal error: no decoder for %s", t)
	return nil
}

// want describes what a value of type t looks like in a manifest.
func want(t reflect.Type) string {
	switch t {
	case reflect.TypeFor[Duration]():
		return "a duration (" + durationExamples + ")"
	case reflect.TypeFor[Quantity]():
		return "a quantity such as 128Mi or 250m"
	}
	switch t.Kind() {
	case reflect.Pointer:
		return want(t.Elem())
	case reflect.Struct:
		return "a mapping"
	case reflect.Map:
		return "a mapping of names to strings"
	case reflect.Slice:
		if t.Elem().Kind() == reflect.Struct {
			return "a list of mappings"
		}
		return "a list of strings"
	case reflect.String:
		return "a string"
	case reflect.Int:
		return "an integer"
	case reflect.Bool:
		return "true or false"
	}
	return t.String()
}

func typeError(c *collector, path string, n *ynode, t reflect.Type) {
	c.markBad(path, "expected %s, got %s", want(t), describe(n))
}

// structField is a field of a Go struct as it appears in a manifest.
type structField struct {
	name string
	typ  reflect.Type
}

// manifestFields lists the JSON-visible fields of t in declaration order.
func manifestFields(t reflect.Type) []structField {
	var fs []structField
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if !f.IsExported() || name == "-" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fs = append(fs, structField{name: name, typ: f.Type})
	}
	return fs
}

func walkStruct(c *collector, path string, n *ynode, t reflect.Type) any {
	if n.kind != mappingNode {
		typeError(c, path, n, t)
		return nil
	}
	fields := manifestFields(t)
	out := make(map[string]any, len(n.m))
	known := make(map[string]bool, len(fields))
	for _, f := range fields {
		known[f.name] = true
		if v, ok := n.m[f.name]; ok {
			out[f.name] = walk(c, field(path, f.name), v, f.typ)
		}
	}
	for _, k := range sortedKeys(n.m) {
		if !known[k] {
			c.markBad(key(path, k), "%s", unknownField(k, fields))
		}
	}
	return out
}

// unknownField explains an unknown key: the closest known field when one is
// near, otherwise the list of known fields.
func unknownField(k string, fields []structField) string {
	best, bestDist := "", 3
	for _, f := range fields {
		d := editDistance(strings.ToLower(k), strings.ToLower(f.name))
		if d < bestDist && d <= max(1, len(f.name)/3) {
			best, bestDist = f.name, d
		}
	}
	if best != "" {
		return "unknown field (did you mean " + best + "?)"
	}
	names := make([]string, len(fields))
	for i, f := range fields {
		names[i] = f.name
	}
	return "unknown field; known fields here: " + strings.Join(names, ", ")
}

// editDistance is the Damerau-Levenshtein distance (with adjacent
// transpositions) between a and b.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func walkMap(c *collector, path string, n *ynode, t reflect.Type) any {
	if n.kind != mappingNode {
		typeError(c, path, n, t)
		return nil
	}
	out := make(map[string]any, len(n.m))
	for _, k := range sortedKeys(n.m) {
		out[k] = walk(c, key(path, k), n.m[k], t.Elem())
	}
	return out
}

func walkSlice(c *collector, path string, n *ynode, t reflect.Type) any {
	if n.kind != sequenceNode {
		msg := "expected " + want(t) + ", got " + describe(n)
		if _, ok := n.scalarString(); ok && t.Elem().Kind() == reflect.String && strings.Contains(n.raw, " ") {
			msg += `; write one item per word, as in ["/bin/sh", "-c", "echo hi"]`
		}
		c.markBad(path, "%s", msg)
		return nil
	}
	out := make([]any, len(n.seq))
	for i, e := range n.seq {
		out[i] = walk(c, index(path, i), e, t.Elem())
	}
	return out
}

func walkString(c *collector, path string, n *ynode) any {
	if s, ok := n.scalarString(); ok {
		return s
	}
	msg := "expected a string, got " + describe(n)
	if n.kind == scalarNode {
		// YAML 1.1 reads yes, on, 1.10 and the like as booleans and
		// numbers; quoting keeps the text.
		msg += "; write " + strconv.Quote(n.raw) + " (quoted) to keep it a string"
	}
	c.markBad(path, "%s", msg)
	return nil
}

var integerRE = regexp.MustCompile(`^[-+]?[0-9_]+$`)

func walkInt(c *collector, path string, n *ynode) any {
	if n.kind == scalarNode {
		switch v := n.val.(type) {
		case int:
			return int64(v)
		case int64:
			if int64(int(v)) == v {
				return v
			}
		case uint64, float64:
			if !integerRE.MatchString(n.raw) {
				typeError(c, path, n, reflect.TypeFor[int]())
				return nil
			}
		default:
			typeError(c, path, n, reflect.TypeFor[int]())
			return nil
		}
		c.markBad(path, "%s is out of range for an integer", n.raw)
		return nil
	}
	typeError(c, path, n, reflect.TypeFor[int]())
	return nil
}

func walkBool(c *collector, path string, n *ynode) any {
	if n.kind == scalarNode {
		if b, ok := n.val.(bool); ok {
			return b
		}
	}
	typeError(c, path, n, reflect.TypeFor[bool]())
	return nil
}

func walkDuration(c *collector, path string, n *ynode) any {
	if n.kind != scalarNode {
		typeError(c, path, n, reflect.TypeFor[Duration]())
		return nil
	}
	s, ok := n.scalarString()
	if !ok {
		c.markBad(path, "%s is not a duration (%s)", shorten(n.raw), durationExamples)
		return nil
	}
	if _, err := time.ParseDuration(s); err != nil {
		c.markBad(path, "%q is not a duration (%s)", shorten(s), durationExamples)
		return nil
	}
	return s
}

func walkQuantity(c *collector, path string, n *ynode) any {
	if n.kind == scalarNode {
		switch n.val.(type) {
		case string, int, int64, uint64, float64:
			// A bare number is a quantity as written: keep the text, so
			// that 0.10 is not rewritten as 0.1.
			return n.raw
		}
	}
	typeError(c, path, n, reflect.TypeFor[Quantity]())
	return nil
}

// schemaRank places path in the order of the fields of t, the document's
// type (list items by index, unknown fields after the known ones), so that
// a document's errors can be sorted to read from top to bottom.
func schemaRank(t reflect.Type, path string) []int {
	var rank []int
	rest := path
	for rest != "" {
		var name string
		idx := 0
		switch {
		case rest[0] == '.':
			rest = rest[1:]
			continue
		case strings.HasPrefix(rest, `["`):
			q, err := strconv.QuotedPrefix(rest[1:])
			if err != nil {
				return rank
			}
			name, _ = strconv.Unquote(q)
			rest = strings.TrimPrefix(rest[1+len(q):], "]")
		case rest[0] == '[':
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return rank
			}
			idx, _ = strconv.Atoi(rest[1:end])
			rest = rest[end+1:]
		default:
			end := strings.IndexAny(rest, ".[")
			if end < 0 {
				end = len(rest)
			}
			name, rest = rest[:end], rest[end:]
		}
		for t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		switch t.Kind() {
		case reflect.Struct:
			fields := manifestFields(t)
			i := slices.IndexFunc(fields, func(f structField) bool { return f.name == name })
			if i < 0 {
				return append(rank, len(fields))
			}
			rank = append(rank, i)
			t = fields[i].typ
		case reflect.Map:
			rank = append(rank, 0)
			t = t.Elem()
		case reflect.Slice:
			rank = append(rank, idx)
			t = t.Elem()
		default:
			return rank
		}
	}
	return rank
}

// sortBySchema orders errs (all from one document of type t) by
// schemaRank, keeping the order of errors at the same place.
func sortBySchema(t reflect.Type, errs FieldErrors) {
	ranks := make(map[string][]int, len(errs))
	for _, e := range errs {
		if _, ok := ranks[e.Path]; !ok {
			ranks[e.Path] = schemaRank(t, e.Path)
		}
	}
	slices.SortStableFunc(errs, func(a, b FieldError) int {
		return slices.Compare(ranks[a.Path], ranks[b.Path])
	})
}
