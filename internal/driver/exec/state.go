package exec

import (
	"fmt"

	"atoll.dev/atoll/internal/cgroup"
	"atoll.dev/atoll/internal/driver"
)

// stateVersion is the encoding version of handleState in driver.Handle.
const stateVersion = 1

// handleState is what the exec driver keeps in driver.Handle.State: enough
// to find the process again after an agent restart and to be sure it is the
// same process.
type handleState struct {
	// Name is the workload's name.
	Name string `json:"name"`
	// PID of the workload's main process, which also leads its process
	// group and session.
	PID int `json:"pid"`
	// StartTicks is field 22 of /proc/<pid>/stat: the start time in clock
	// ticks since boot. With BootID it tells the process from a later one
	// that reuses the PID.
	StartTicks uint64 `json:"start_ticks"`
	// BootID is /proc/sys/kernel/random/boot_id when the workload started.
	BootID string `json:"boot_id"`
	// Cgroup is the workload's cgroup; no paths when it has none.
	Cgroup cgroup.Group `json:"cgroup"`
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
	if s.PID <= 0 || s.BootID == "" || s.StartTicks == 0 {
		return s, fmt.Errorf("decode handle: pid %d, boot id %q, start %d: %w", s.PID, s.BootID, s.StartTicks, driver.ErrBadHandle)
	}
	return s, nil
}
