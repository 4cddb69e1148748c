package agent

import "atoll.dev/atoll/internal/wire"

// planSecrets indexes the plan's workloads that reference secrets, by
// name: a local override of such a workload gets the same sealed secrets.
func planSecrets(p *wire.Plan) map[string]wire.PlanWorkload {
	out := map[string]wire.PlanWorkload{}
	if p == nil {
		return out
	}
	for _, w := range p.Workloads {
		if len(w.Secrets) > 0 || w.SecretsBlocked != "" {
			out[w.Workload.Metadata.Name] = w
		}
	}
	return out
}
