package container

import (
	"fmt"

	"atoll.dev/atoll/internal/driver"
)

// stateVersion is the encoding version of handleState in driver.Handle.
const stateVersion = 1

// handleState is what the container driver keeps in driver.Handle.State:
// the engine's container ID, which names exactly one run of the workload
// (the driver never restarts a container, it creates a new one).
type handleState struct {
	// Name is the workload's name.
	Name string `json:"name"`
	// ID is the engine's container ID.
	ID string `json:"id"`
	// LogPath receives the container's output, also after a recovery.
	LogPath string `json:"log_path,omitempty"`
	// Limits is the Info.Limits text decided at start.
	Limits string `json:"limits"`
}

func (s handleState) handle() (driver.Handle, error) {
	return driver.NewHandle(driverName, stateVersion, s)
}

func decodeHandle(h driver.Handle) (handleState, error) {
	var s handleState
	if err := h.Decode(driverName, stateVersion, &s); err != nil {
		return s, err
	}
	if s.ID == "" || s.Name == "" {
		return s, fmt.Errorf("decode handle: name %q, id %q: %w", s.Name, s.ID, driver.ErrBadHandle)
	}
	return s, nil
}
