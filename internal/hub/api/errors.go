package api

import (
	"errors"
	"fmt"
	"net/http"
)

// Kinds of errors a Backend returns; the server answers each with its HTTP
// status and the error's message. Any other error is a 500.
var (
	// ErrInvalid: the request is wrong (400).
	ErrInvalid = errors.New("invalid request")
	// ErrNotFound: no such workload or node (404).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the request contradicts the current state, such as a
	// disconnected node or a reused idempotency key (409).
	ErrConflict = errors.New("conflict")
	// ErrBadGateway: the node answered with an error (502).
	ErrBadGateway = errors.New("node error")
	// ErrUnavailable: the node cannot be reached now (503).
	ErrUnavailable = errors.New("unavailable")
	// ErrTimeout: the node did not answer in time (504).
	ErrTimeout = errors.New("timed out")
)

// kindError is a message for people with a kind for the server.
type kindError struct {
	kind error
	msg  string
}

func (e *kindError) Error() string { return e.msg }
func (e *kindError) Unwrap() error { return e.kind }

// Errorf returns an error of kind (one of the Err* above) whose message is
// the formatted text alone.
func Errorf(kind error, format string, args ...any) error {
	return &kindError{kind: kind, msg: fmt.Sprintf(format, args...)}
}

// statusOf maps an error to its HTTP status.
func statusOf(err error) int {
	for _, k := range []struct {
		kind   error
		status int
	}{
		{ErrInvalid, http.StatusBadRequest},
		{ErrNotFound, http.StatusNotFound},
		{ErrConflict, http.StatusConflict},
		{ErrBadGateway, http.StatusBadGateway},
		{ErrUnavailable, http.StatusServiceUnavailable},
		{ErrTimeout, http.StatusGatewayTimeout},
	} {
		if errors.Is(err, k.kind) {
			return k.status
		}
	}
	return http.StatusInternalServerError
}
