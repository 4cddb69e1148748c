package exec

import (
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"atoll.dev/atoll/internal/cgroup"
	"atoll.dev/atoll/internal/driver"
)

// pollInterval is how often a recovered process is checked in /proc when
// pidfds are unavailable (Linux before 5.3, or a seccomp filter).
const pollInterval = 250 * time.Millisecond

// cgroupRemoveWait bounds how long cleanup waits for the kernel to release a
// cgroup whose processes were just killed.
const cgroupRemoveWait = 2 * time.Second

// errGone means the workload's main process no longer exists.
var errGone = errors.New("process gone")

// procKey identifies a process across PID reuse.
type procKey struct {
	pid   int
	ticks uint64
}

// proc tracks one workload this Driver started or recovered. A goroutine
// (reap for a child, watch for a recovered process) learns of the exit,
// cleans up, and closes done.
type proc struct {
	st    handleState
	child bool // started by this Driver: our child, reaped by us
	done  chan struct{}
	// exit and cleanupErr are written before done is closed.
	exit       driver.Exit
	cleanupErr error

	mu   sync.Mutex
	gone bool // the main process has exited and may be reaped: its PID may be reused
}

func newProc(st handleState, child bool) *proc {
	return &proc{st: st, child: child, done: make(chan struct{})}
}

// signalGroup sends sig to the workload's process group, but only while
// the group's PID is provably still the workload's: for a child, until it
// is reaped (its zombie keeps the PID); for a recovered process, while
// /proc/<pid> shows the start time in the handle.
func (p *proc) signalGroup(sig unix.Signal) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gone {
		return errGone
	}
	if !p.child {
		s, err := readStat(p.st.PID)
		if err != nil || s.StartTicks != p.st.StartTicks {
			return errGone
		}
	}
	if err := unix.Kill(-p.st.PID, sig); err != nil {
		if errors.Is(err, unix.ESRCH) {
			return errGone
		}
		return fmt.Errorf("signal process group %d: %w", p.st.PID, err)
	}
	return nil
}

// finish runs once the main process is gone: whatever is left of the
// workload (other members of its process group, anything in its cgroup) is
// killed, the cgroup is removed, and only then is the exit published, so a
// restart of the same workload never races this cleanup.
func (p *proc) finish(exit driver.Exit) {
	_ = p.signalGroup(unix.SIGKILL) // a no-op once a child is marked gone
	p.mu.Lock()
	p.gone = true
	p.mu.Unlock()
	p.cleanupErr = cleanupCgroup(p.st, true)
	p.exit = exit
	close(p.done)
}

// cleanupCgroup removes the workload's cgroup. With kill, processes still in
// it are killed first; without, a cgroup still in use (by a straggler or a
// newer instance of the workload) is left alone.
func cleanupCgroup(st handleState, kill bool) error {
	g := st.Cgroup
	if len(g.Paths) == 0 {
		return nil
	}
	if !kill {
		if err := g.Remove(0); err != nil && !errors.Is(err, cgroup.ErrPopulated) {
			return err
		}
		return nil
	}
	if err := g.Kill(); err != nil {
		return err
	}
	return g.Remove(cgroupRemoveWait)
}

// reap waits for a child to exit and reaps it with cmd.Wait. Between the
// exit and the reaping, the zombie still holds the PID, so the rest of the
// process group can be killed without any risk of hitting a stranger.
func (p *proc) reap(cmd *osexec.Cmd) {
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, p.st.PID, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	p.mu.Lock()
	_ = unix.Kill(-p.st.PID, unix.SIGKILL)
	p.gone = true
	p.mu.Unlock()
	p.finish(exitOf(cmd.Wait(), cmd.ProcessState))
}

// exitOf turns what cmd.Wait returned into a driver.Exit.
func exitOf(err error, ps *os.ProcessState) driver.Exit {
	if ps == nil {
		return driver.Exit{Code: -1, Err: fmt.Errorf("reap: %w", err)}
	}
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return driver.Exit{Code: -1, Signal: unix.SignalName(ws.Signal())}
	}
	return driver.Exit{Code: ps.ExitCode()}
}

// watch waits for a recovered process, which is not our child, to exit.
// Its exit status cannot be read, so the exit is reported with Code -1.
func (p *proc) watch(pidfd *os.File, tick func() <-chan time.Time) {
	if pidfd == nil || waitPidfd(pidfd) != nil {
		for alive(p.st) {
			<-tick()
		}
	}
	if pidfd != nil {
		pidfd.Close()
	}
	p.finish(driver.Exit{Code: -1})
}

// alive reports whether the handle's process still runs (not a zombie).
func alive(st handleState) bool {
	s, err := readStat(st.PID)
	return err == nil && s.StartTicks == st.StartTicks && !s.dead()
}

// openPidfd opens a non-blocking pidfd for pid, which the runtime poller
// can wait on without tying up a thread.
func openPidfd(pid int) (*os.File, error) {
	fd, err := unix.PidfdOpen(pid, unix.PIDFD_NONBLOCK)
	if err != nil {
		return nil, fmt.Errorf("open pidfd for %d: %w", pid, err)
	}
	return os.NewFile(uintptr(fd), fmt.Sprintf("pidfd:%d", pid)), nil
}

// waitPidfd blocks until the pidfd's process has exited (the pidfd turns
// readable). It fails if the runtime poller cannot wait on the pidfd.
func waitPidfd(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("wait pidfd: %w", err)
	}
	var pollErr error
	err = rc.Read(func(fd uintptr) bool {
		fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		n, err := unix.Poll(fds, 0)
		switch {
		case errors.Is(err, unix.EINTR):
			return false
		case err != nil:
			pollErr = err
			return true
		}
		return n > 0
	})
	if err == nil {
		err = pollErr
	}
	if err != nil {
		return fmt.Errorf("wait pidfd: %w", err)
	}
	return nil
}
