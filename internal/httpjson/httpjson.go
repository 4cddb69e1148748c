// Package httpjson holds the JSON-over-HTTP conventions atoll's two APIs
// (the hub's and the agent's local one) share: the error body, the answer
// writer, and method dispatch that answers a wrong method with a JSON 405.
package httpjson

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"atoll.dev/atoll/internal/manifest"
)

// ErrorResponse is the body of every error answer.
type ErrorResponse struct {
	// Error says what went wrong, for people. For an invalid manifest it
	// lists every problem, one per line.
	Error string `json:"error"`
	// Fields lists the problems of an invalid manifest, for programs; it is
	// empty for other errors.
	Fields []FieldError `json:"fields,omitempty"`
}

// FieldError is one problem in one workload of an apply request.
type FieldError struct {
	// Source names the workload document, e.g. "request#2" for the second
	// element of the request's array.
	Source string `json:"source"`
	// Path is the field, rooted at the document: "spec.restart.policy".
	Path    string `json:"path"`
	Message string `json:"message"`
}

// FieldErrors lists the per-field problems of a manifest error; nil for
// any other error.
func FieldErrors(err error) []FieldError {
	if fes, ok := errors.AsType[manifest.FieldErrors](err); ok {
		out := make([]FieldError, len(fes))
		for i, fe := range fes {
			out[i] = FieldError{Source: fe.Source, Path: fe.Path, Message: fe.Msg}
		}
		return out
	}
	if fe, ok := errors.AsType[manifest.FieldError](err); ok {
		return []FieldError{{Source: fe.Source, Path: fe.Path, Message: fe.Msg}}
	}
	return nil
}

// WriteError answers with code and an ErrorResponse carrying msg.
func WriteError(w http.ResponseWriter, code int, msg string) {
	WriteJSON(w, code, ErrorResponse{Error: msg})
}

// WriteJSON answers with code and v as JSON.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code = http.StatusInternalServerError
		b, _ = json.Marshal(ErrorResponse{Error: "encode response: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// Methods dispatches on the request method and answers others with a JSON
// 405 and an Allow header.
type Methods map[string]http.HandlerFunc

func (m Methods) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if f, ok := m[r.Method]; ok {
		f(w, r)
		return
	}
	allow := make([]string, 0, len(m))
	for k := range m {
		allow = append(allow, k)
	}
	slices.Sort(allow)
	w.Header().Set("Allow", strings.Join(allow, ", "))
	WriteError(w, http.StatusMethodNotAllowed,
		fmt.Sprintf("method %s not allowed on %s (allowed: %s)", r.Method, r.URL.Path, strings.Join(allow, ", ")))
}
