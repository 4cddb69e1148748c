// Package supervisor keeps a node's workloads in their desired state: it
// admits them by priority and capacity, starts them through their runtime
// driver, restarts them per policy with exponential backoff, runs their
// health checks, evicts the least important under memory pressure, and
// adopts instances that outlived an agent restart.
//
// Every workload moves through one state machine:
//
//	               admitted            driver.Start ok
//	┌─────────┐  ───────────▶ ┌──────────┐ ──────────▶ ┌─────────┐
//	│ pending │               │ starting │             │ running │◀─┐
//	└─────────┘ ◀───────────  └──────────┘             └─────────┘  │
//	  │    ▲     (re)admitted        │ start error        │ exit /   │ timer
//	  │    │                         ▼                    │ unhealthy│
//	  │    │                    ┌─────────┐ ◀─────────────┘          │
//	  │    │                    │ backoff │ ─────────────────────────┘
//	  │    │                    └─────────┘
//	  ▼    │                         │ policy says no more (never /
//	┌─────────┐                      │ on-failure after success)
//	│ blocked │  capacity, pressure, ▼
//	└─────────┘  missing runtime   ┌─────────┐   ┌────────┐
//	                               │ stopped │   │ failed │ (exit ≠ 0,
//	                               └─────────┘   └────────┘  policy never)
//
// One goroutine, the loop, owns every workload's state; driver calls that
// can block (Start, Stop, Wait, health probes) run in their own goroutines
// and post their outcome back to the loop as closures. A message from an
// instance that has since been replaced carries an old generation number
// and is ignored. The supervisor never waits for a hub: what it needs is
// in the store.
package supervisor
