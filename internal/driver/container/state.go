package container

import (
	"encoding/json"
	"errors"
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
	data, err := json.Marshal(s)
	if err != nil {
		return driver.Handle{}, fmt.Errorf("encode handle: %w", err)
	}
	return driver.Handle{Driver: driverName, Version: stateVersion, State: data}, nil
}

// errBadHandle is wrapped by every handle decoding error.
var errBadHandle = errors.New("not a container handle")

func decodeHandle(h driver.Handle) (handleState, error) {
	var s handleState
	if h.Driver != driverName {
		return s, fmt.Errorf("decode handle: driver %q: %w", h.Driver, errBadHandle)
	}
	if h.Version != stateVersion {
		return s, fmt.Errorf("decode handle: version %d, want %d: %w", h.Version, stateVersion, errBadHandle)
	}
	if err := json.Unmarshal(h.State, &s); err != nil {
		return s, fmt.Errorf("decode handle: %w", err)
	}
	if s.ID == "" || s.Name == "" {
		return s, fmt.Errorf("decode handle: name %q, id %q: %w", s.Name, s.ID, errBadHandle)
	}
	return s, nil
}
