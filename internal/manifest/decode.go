package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v2"
)

// Decode reads every workload in data, a stream of YAML (or JSON) documents
// separated by "---" lines, and normalizes them. Empty documents are skipped.
// source names data in errors and in each Workload.Source, which becomes
// "source#N" for the N-th non-empty document.
//
// Decoding is strict: unknown fields, values of the wrong type and duplicate
// keys are errors. Every problem in data is reported, as FieldErrors; on
// error no workloads are returned. A Secret document is an error: secrets
// go to the hub (DecodeAll).
func Decode(source string, data []byte) ([]Workload, error) {
	docs, errs := decodeFile(source, data, false)
	errs = append(errs, docs.duplicates()...)
	if len(errs) > 0 {
		return nil, errs
	}
	return docs.Workloads, nil
}

// Documents are the workloads and secrets of a set of manifests.
type Documents struct {
	Workloads []Workload
	Secrets   []Secret
}

// DecodeAll is Decode for a stream that may also hold Secret documents.
func DecodeAll(source string, data []byte) (Documents, error) {
	docs, errs := decodeFile(source, data, true)
	errs = append(errs, docs.duplicates()...)
	if len(errs) > 0 {
		return Documents{}, errs
	}
	return docs, nil
}

// workloadType and secretType are the documents' Go types.
var (
	workloadType = reflect.TypeFor[Workload]()
	secretType   = reflect.TypeFor[Secret]()
)

// decodeFile decodes and normalizes each document of one file; secrets
// says whether Secret documents are accepted. It returns the documents it
// could decode, even when errs is not empty, so that the caller can still
// look for duplicate names across files.
func decodeFile(source string, data []byte, secrets bool) (docs Documents, errs FieldErrors) {
	n := 0
	for _, ch := range splitDocuments(data) {
		root, empty, msgs := ch.parse()
		if empty {
			continue
		}
		n++
		c := &collector{source: docSource(source, n)}
		for _, m := range msgs {
			c.add("", "%s", m)
		}
		t := workloadType
		if len(msgs) == 0 {
			t = decodeRoot(root, c, secrets, &docs)
		}
		sortBySchema(t, c.errs)
		errs = append(errs, c.errs...)
	}
	return docs, errs
}

// docSource names the n-th document (1-based) of source.
func docSource(source string, n int) string {
	if source == "" {
		return "document " + strconv.Itoa(n)
	}
	return source + "#" + strconv.Itoa(n)
}

// chunk is the text of one document. The line numbers the YAML parser
// reports inside it are file line numbers minus offset.
type chunk struct {
	text   []byte
	offset int
}

// splitDocuments cuts data at the lines that start with a document marker
// ("---" or "..."). Each chunk keeps its "---" line, which the parser
// understands and which may carry content; a "..." line becomes blank. The
// first chunk gets a blank first line so that the parser reports line numbers
// for every content line (it omits "line 0").
func splitDocuments(data []byte) []chunk {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var chunks []chunk
	cur := chunk{text: []byte("\n"), offset: -1}
	lines := bytes.SplitAfter(data, []byte("\n"))
	for i, line := range lines {
		bare := bytes.TrimRight(line, "\r\n")
		switch {
		case isMarker(bare, "---"):
			chunks = append(chunks, cur)
			cur = chunk{text: append([]byte(nil), line...), offset: i}
		case isMarker(bare, "..."):
			chunks = append(chunks, cur)
			cur = chunk{text: []byte("\n"), offset: i}
		default:
			cur.text = append(cur.text, line...)
		}
	}
	return append(chunks, cur)
}

func isMarker(line []byte, marker string) bool {
	if !bytes.HasPrefix(line, []byte(marker)) {
		return false
	}
	rest := line[len(marker):]
	return len(rest) == 0 || rest[0] == ' ' || rest[0] == '\t'
}

// parse reads the chunk into a tree. empty is true for a document with no
// content (only comments, or null); msgs describe syntax errors.
func (ch chunk) parse() (root *ynode, empty bool, msgs []string) {
	var generic any
	// A first strict pass gives the parser's own messages for syntax errors
	// and duplicate keys.
	if err := yaml.UnmarshalStrict(ch.text, &generic); err != nil {
		// Only a syntax error sends JSON to the JSON parser: duplicate
		// keys (a *yaml.TypeError) must stay errors.
		var te *yaml.TypeError
		if !errors.As(err, &te) {
			root, jerr := parseJSON(ch.text)
			if jerr == nil {
				return root, false, nil
			}
			var dup *duplicateKeyError
			if errors.As(jerr, &dup) {
				line := ch.offset + 1 + bytes.Count(ch.text[:dup.offset], []byte("\n"))
				return nil, false, []string{fmt.Sprintf("invalid JSON at line %d: key %q appears twice", line, dup.key)}
			}
		}
		return nil, false, ch.syntaxMessages(err)
	}
	if generic == nil {
		return nil, true, nil
	}
	var n ynode
	if err := yaml.UnmarshalStrict(ch.text, &n); err != nil {
		return nil, false, ch.syntaxMessages(err)
	}
	return &n, false, nil
}

var lineRE = regexp.MustCompile(`^line (\d+): `)

// syntaxMessages turns a parser error into messages with file line numbers.
func (ch chunk) syntaxMessages(err error) []string {
	var parts []string
	var te *yaml.TypeError
	if errors.As(err, &te) {
		parts = te.Errors
	} else {
		parts = []string{strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	msgs := make([]string, len(parts))
	for i, p := range parts {
		m := lineRE.FindStringSubmatch(p)
		if m == nil {
			msgs[i] = "invalid YAML: " + p
			continue
		}
		line, _ := strconv.Atoi(m[1])
		line = max(line+ch.offset, 1)
		msgs[i] = fmt.Sprintf("invalid YAML at line %d: %s", line, p[len(m[0]):])
	}
	return msgs
}

// parseJSON reads a JSON object the YAML parser refused (it does not know
// every JSON escape, "\/" for one). Like the YAML path, it rejects
// duplicate keys.
func parseJSON(text []byte) (*ynode, error) {
	if first, _, ok := bytes.Cut(text, []byte("\n")); ok && string(bytes.TrimSpace(first)) == "---" {
		// Blank out a bare marker line, keeping offsets (and lines) as they are.
		text = append(bytes.Repeat([]byte(" "), len(first)), text[len(first):]...)
	}
	start := len(text) - len(bytes.TrimLeft(text, " \t\r\n"))
	if start == len(text) || text[start] != '{' {
		return nil, errNotJSON
	}
	dec := json.NewDecoder(bytes.NewReader(text))
	dec.UseNumber()
	root, err := readJSON(dec, 0)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errNotJSON
	}
	return root, nil
}

var errNotJSON = errors.New("not a JSON object")

// maxJSONDepth bounds the recursion of readJSON.
const maxJSONDepth = 1000

// duplicateKeyError is a key repeated in a JSON object; offset is where
// the decoder was when it found it.
type duplicateKeyError struct {
	key    string
	offset int64
}

func (e *duplicateKeyError) Error() string { return fmt.Sprintf("key %q appears twice", e.key) }

// readJSON reads one value from dec.
func readJSON(dec *json.Decoder, depth int) (*ynode, error) {
	if depth > maxJSONDepth {
		return nil, errNotJSON
	}
	tok, err := dec.Token()
	if err != nil {
		return nil, fmt.Errorf("read json: %w", err)
	}
	switch v := tok.(type) {
	case json.Delim:
		switch v {
		case '{':
			n := &ynode{kind: mappingNode, m: make(map[string]*ynode)}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, fmt.Errorf("read json: %w", err)
				}
				k, _ := kt.(string)
				if _, dup := n.m[k]; dup {
					return nil, &duplicateKeyError{key: k, offset: dec.InputOffset()}
				}
				if n.m[k], err = readJSON(dec, depth+1); err != nil {
					return nil, err
				}
			}
			_, err := dec.Token()
			return n, err
		case '[':
			n := &ynode{kind: sequenceNode}
			for dec.More() {
				e, err := readJSON(dec, depth+1)
				if err != nil {
					return nil, err
				}
				n.seq = append(n.seq, e)
			}
			_, err := dec.Token()
			return n, err
		}
	case string:
		return &ynode{kind: scalarNode, raw: v, val: v}, nil
	case bool:
		return &ynode{kind: scalarNode, raw: strconv.FormatBool(v), val: v}, nil
	case json.Number:
		n := &ynode{kind: scalarNode, raw: v.String()}
		if i, err := v.Int64(); err == nil {
			n.val = i
		} else {
			n.val, _ = v.Float64()
		}
		return n, nil
	case nil:
		return nil, nil
	}
	return nil, errNotJSON
}

type nodeKind int

const (
	scalarNode nodeKind = iota
	mappingNode
	sequenceNode
)

// ynode is a parsed YAML value. A nil *ynode is null. For a scalar, raw is
// the text as written (quotes and escapes removed) and val is what YAML 1.1
// makes of it: a string, bool, int, int64, uint64 or float64. Keeping raw
// means map keys stay as written ("on" is not turned into "true") and
// messages can quote the user's text.
type ynode struct {
	kind nodeKind
	m    map[string]*ynode
	seq  []*ynode
	raw  string
	val  any
}

// UnmarshalYAML tries each kind of node in turn; a mismatched attempt fails
// at once, without looking at children.
func (n *ynode) UnmarshalYAML(unmarshal func(any) error) error {
	var raw string
	if err := unmarshal(&raw); err == nil {
		var val any
		if err := unmarshal(&val); err != nil {
			return err
		}
		*n = ynode{kind: scalarNode, raw: raw, val: val}
		return nil
	}
	var seq []*ynode
	if err := unmarshal(&seq); err == nil {
		*n = ynode{kind: sequenceNode, seq: seq}
		return nil
	}
	var m map[string]*ynode
	if err := unmarshal(&m); err != nil {
		return err
	}
	*n = ynode{kind: mappingNode, m: m}
	return nil
}

// scalarString returns the value of a scalar that YAML reads as a string.
func (n *ynode) scalarString() (string, bool) {
	if n == nil || n.kind != scalarNode {
		return "", false
	}
	s, ok := n.val.(string)
	return s, ok
}

// describe says what n is, for "expected X, got Y" messages.
func describe(n *ynode) string {
	switch {
	case n == nil:
		return "null"
	case n.kind == mappingNode:
		return "a mapping"
	case n.kind == sequenceNode:
		return "a list"
	}
	switch n.val.(type) {
	case string:
		return "a string (" + strconv.Quote(shorten(n.raw)) + ")"
	case bool:
		return "a boolean (" + shorten(n.raw) + ")"
	case int, int64, uint64, float64:
		return "a number (" + shorten(n.raw) + ")"
	}
	return "a value (" + shorten(n.raw) + ")"
}

// shorten keeps quoted user text in messages to a readable length.
func shorten(s string) string {
	const limit = 40
	if len(s) <= limit {
		return s
	}
	return s[:limit] + "..."
}

// decodeRoot turns a document tree into a Workload or, when secrets is
// true, a Secret, reporting unknown fields and values of the wrong type, and
// adds it, normalized, to docs. It returns the type it decoded the document
// as (for sorting its errors).
func decodeRoot(root *ynode, c *collector, secrets bool, docs *Documents) reflect.Type {
	if root.kind != mappingNode {
		c.markBad("", "a document must be a mapping with apiVersion, kind, metadata and spec, not %s", describe(root))
		return workloadType
	}
	kinds := KindWorkload
	if secrets {
		kinds = KindWorkload + " or " + KindSecret
	}
	// Another version or kind has another schema: checking its fields
	// against this one would only produce noise.
	foreign := false
	if v, ok := root.m["apiVersion"].scalarString(); ok && v != APIVersion && v != "" {
		c.markBad("apiVersion", "%q is not supported; use %s", v, APIVersion)
		foreign = true
	}
	kind, _ := root.m["kind"].scalarString()
	switch {
	case kind == KindSecret && !secrets:
		c.markBad("kind", "%s documents are applied to the hub (atoll apply), not here; use %s", KindSecret, KindWorkload)
		foreign = true
	case kind != KindWorkload && kind != KindSecret && kind != "":
		c.markBad("kind", "%q is not supported; use %s", kind, kinds)
		foreign = true
	}
	if foreign {
		return workloadType
	}
	if kind == KindSecret {
		var s Secret
		ok := decodeChecked(root, c, secretType, &s)
		redactData(c.errs)
		if ok {
			s.Source = c.source
			normalizeSecret(&s, c)
			docs.Secrets = append(docs.Secrets, s)
		}
		return secretType
	}
	var w Workload
	if decodeChecked(root, c, workloadType, &w) {
		w.Source = c.source
		normalize(&w, c)
		docs.Workloads = append(docs.Workloads, w)
	}
	return workloadType
}

// decodeChecked walks root against t and decodes what fits into v.
func decodeChecked(root *ynode, c *collector, t reflect.Type, v any) bool {
	clean := walk(c, "", root, t)
	b, err := json.Marshal(clean)
	if err == nil {
		err = json.Unmarshal(b, v)
	}
	if err != nil {
		// The walk only keeps values that fit; this is a bug, not bad input.
		c.markBad("", "internal error decoding the checked document: %v", err)
		return false
	}
	return true
}
