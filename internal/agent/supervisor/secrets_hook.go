package supervisor

import "fmt"

// Secrets: a workload whose spec.secrets the node cannot satisfy is
// blocked with the reason; the files of its secrets exist only while an
// instance runs (written at start, removed when it exits or is deleted).

// reasonNoOpener blocks workloads with secrets on a supervisor without
// Config.Secrets.
const reasonNoOpener = "this agent cannot open secrets"

// secretsError is why a workload cannot have its secrets now.
type secretsError struct{ err error }

func (e *secretsError) Error() string { return "secrets: " + e.err.Error() }

// secretsReason says why w cannot start for want of its secrets; "" when
// it can (or needs none).
func (s *Supervisor) secretsReason(w *workload) string {
	switch {
	case len(w.spec.Secrets) == 0:
		return ""
	case w.secretsBlocked != "":
		return "secrets: " + w.secretsBlocked
	case s.cfg.Secrets == nil:
		return "secrets: " + reasonNoOpener
	}
	return w.secretsErr
}

// openSecrets opens w's secrets for a start: the variables to add and the
// host directory of its files.
func (s *Supervisor) openSecrets(w *workload) (map[string]string, string, error) {
	if len(w.spec.Secrets) == 0 {
		return nil, "", nil
	}
	env, dir, err := s.cfg.Secrets.Open(w.name, w.spec.Secrets, w.sealed)
	if err != nil {
		return nil, "", &secretsError{err: err}
	}
	return env, dir, nil
}

// removeSecrets deletes w's secret files; failing to is logged.
func (s *Supervisor) removeSecrets(w *workload) {
	if s.cfg.Secrets == nil || len(w.spec.Secrets) == 0 {
		return
	}
	if err := s.cfg.Secrets.Remove(w.name); err != nil {
		s.cfg.Logger.Error("remove secret files", "workload", w.name, "err", fmt.Sprint(err))
	}
}
