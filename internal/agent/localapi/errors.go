package localapi

import (
	"context"
	"errors"
	"net/http"

	"atoll.dev/atoll/internal/agent/artifact"
	"atoll.dev/atoll/internal/agent/supervisor"
	"atoll.dev/atoll/internal/httpjson"
)

// ErrorResponse is the body of every error answer.
type ErrorResponse = httpjson.ErrorResponse

// FieldError is one problem in one workload of an apply request.
type FieldError = httpjson.FieldError

// statusOf maps a Node error to an HTTP status.
func statusOf(err error) int {
	switch {
	case errors.Is(err, supervisor.ErrWorkloadNotFound):
		return http.StatusNotFound
	case errors.Is(err, artifact.ErrDigestMismatch), errors.Is(err, artifact.ErrBadRef):
		return http.StatusBadRequest
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}
