package localapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"atoll.dev/atoll/internal/httpjson"

	"atoll.dev/atoll/internal/agent/store"
	"atoll.dev/atoll/internal/manifest"
)

// maxApplyBody bounds an apply request's body.
const maxApplyBody = 8 << 20

// handler maps the endpoints to a Node.
type handler struct {
	node Node
	poll time.Duration
}

func newHandler(n Node, poll time.Duration) http.Handler {
	h := &handler{node: n, poll: poll}
	mux := http.NewServeMux()
	// Paths are routed by the mux and methods by httpjson.Methods, so that a wrong
	// method gets a JSON 405 rather than the mux's plain-text one.
	mux.Handle("/v1/workloads:apply", httpjson.Methods{http.MethodPost: h.apply})
	mux.Handle("/v1/workloads", httpjson.Methods{http.MethodGet: h.status})
	// ServeMux wildcards must span a whole segment, so "{name}:restart" is
	// split by h.action.
	mux.Handle("/v1/workloads/{name}", httpjson.Methods{http.MethodDelete: h.delete, http.MethodPost: h.action})
	mux.Handle("/v1/workloads/{name}/logs", httpjson.Methods{http.MethodGet: h.logs})
	mux.Handle("/v1/events", httpjson.Methods{http.MethodGet: h.events})
	mux.Handle("/v1/node", httpjson.Methods{http.MethodGet: h.info})
	mux.Handle("/v1/artifacts/{ref}", httpjson.Methods{http.MethodPut: h.putArtifact})
	mux.HandleFunc("/", notFound)
	return mux
}

func notFound(w http.ResponseWriter, r *http.Request) {
	httpjson.WriteError(w, http.StatusNotFound, fmt.Sprintf("no endpoint %s %s", r.Method, r.URL.Path))
}

func (h *handler) apply(w http.ResponseWriter, r *http.Request) {
	var ws []manifest.Workload
	if err := decodeBody(w, r, &ws); err != nil {
		code := http.StatusBadRequest
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			code = http.StatusRequestEntityTooLarge
		}
		httpjson.WriteError(w, code, err.Error())
		return
	}
	if len(ws) == 0 {
		httpjson.WriteError(w, http.StatusBadRequest, "no workloads to apply")
		return
	}
	for i := range ws {
		ws[i].Source = fmt.Sprintf("request#%d", i+1)
	}
	if err := manifest.Normalize(ws); err != nil {
		httpjson.WriteJSON(w, http.StatusBadRequest, ErrorResponse{Error: err.Error(), Fields: httpjson.FieldErrors(err)})
		return
	}
	ch, err := changeOf(r)
	if err != nil {
		httpjson.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	res, err := h.node.Apply(r.Context(), ws, ch)
	if err != nil {
		httpjson.WriteError(w, statusOf(err), err.Error())
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, nonNil(res))
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// changeOf reads the optional ?priority=N of a local change.
func changeOf(r *http.Request) (Change, error) {
	s := r.URL.Query().Get("priority")
	if s == "" {
		return Change{}, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return Change{}, fmt.Errorf("priority: %q is not an integer", s)
	}
	return Change{Priority: n}, nil
}

// decodeBody reads exactly one JSON value, rejecting unknown fields, so that
// a misspelt field is an error rather than silently ignored.
func decodeBody(w http.ResponseWriter, r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxApplyBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("decode request body: %w", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("decode request body: more than one JSON value")
	}
	return nil
}

func (h *handler) status(w http.ResponseWriter, r *http.Request) {
	httpjson.WriteJSON(w, http.StatusOK, nonNil(h.node.Status()))
}

func (h *handler) delete(w http.ResponseWriter, r *http.Request) {
	ch, err := changeOf(r)
	if err != nil {
		httpjson.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	if err := h.node.Delete(r.Context(), r.PathValue("name"), ch); err != nil {
		httpjson.WriteError(w, statusOf(err), err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// action serves POST /v1/workloads/{name}:{verb}.
func (h *handler) action(w http.ResponseWriter, r *http.Request) {
	name, verb, ok := cutLast(r.PathValue("name"), ":")
	if !ok || name == "" || verb != "restart" && verb != "set" {
		notFound(w, r)
		return
	}
	var err error
	if verb == "set" {
		var req SetRequest
		if err := decodeBody(w, r, &req); err != nil {
			httpjson.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		if len(req.Env) == 0 && len(req.Unset) == 0 {
			httpjson.WriteError(w, http.StatusBadRequest, "nothing to set: give env or unset")
			return
		}
		for _, k := range append(slices.Collect(maps.Keys(req.Env)), req.Unset...) {
			if !envName.MatchString(k) {
				httpjson.WriteError(w, http.StatusBadRequest, fmt.Sprintf("env: %q is not a variable name (letters, digits and _, not starting with a digit)", k))
				return
			}
		}
		err = h.node.Set(r.Context(), name, req.Env, req.Unset, Change{Priority: req.Priority})
	} else {
		err = h.node.Restart(r.Context(), name)
	}
	if err != nil {
		httpjson.WriteError(w, statusOf(err), err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) events(w http.ResponseWriter, r *http.Request) {
	var after uint64
	if s := r.URL.Query().Get("after"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			httpjson.WriteError(w, http.StatusBadRequest, fmt.Sprintf("after: %q is not a sequence number", s))
			return
		}
		after = n
	}
	evs, err := h.node.Events(after)
	if err != nil {
		httpjson.WriteError(w, statusOf(err), err.Error())
		return
	}
	httpjson.WriteJSON(w, http.StatusOK, nonNil[store.Event](evs))
}

// maxArtifactBody bounds an uploaded artifact.
const maxArtifactBody = 256 << 20

func (h *handler) putArtifact(w http.ResponseWriter, r *http.Request) {
	ref := r.PathValue("ref")
	if err := h.node.PutArtifact(ref, http.MaxBytesReader(w, r.Body, maxArtifactBody)); err != nil {
		code := statusOf(err)
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			code = http.StatusRequestEntityTooLarge
		}
		httpjson.WriteError(w, code, err.Error())
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (h *handler) info(w http.ResponseWriter, r *http.Request) {
	httpjson.WriteJSON(w, http.StatusOK, h.node.Info())
}

// nonNil makes an empty answer encode as [] rather than null.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func cutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}
