package supervisor

import "errors"

// ErrWorkloadNotFound is returned for a name the node does not have.
var ErrWorkloadNotFound = errors.New("workload not found")

// missingArtifactError marks a start that waits for an artifact to arrive
// in the node's cache; Retry tries again.
type missingArtifactError struct{ ref string }

func (e *missingArtifactError) Error() string {
	return "waiting for artifact " + e.ref + " to reach the node's cache"
}
