package supervisor

import "errors"

// ErrWorkloadNotFound is returned for a name the node does not have.
var ErrWorkloadNotFound = errors.New("workload not found")

// missingArtifactError marks a start that waits for an artifact to arrive
// in the node's cache; Retry tries again. msg, when set, replaces the
// generic message (an image says which, and how far its download is).
type missingArtifactError struct{ ref, msg string }

func (e *missingArtifactError) Error() string {
	if e.msg != "" {
		return e.msg
	}
	return "waiting for artifact " + e.ref + " to reach the node's cache"
}
