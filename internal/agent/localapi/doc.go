// Package localapi serves the agent's local HTTP/JSON API on a unix socket
// (mode 0600, DATA/agent.sock). It is what `atoll node ...` talks to, and it
// works with the hub gone. The package maps HTTP to the Node interface and
// back; it holds no state of its own beyond the listening socket.
//
// Endpoints (version 1):
//
//	POST   /v1/workloads:apply          body: JSON array of workloads → 200 []ApplyResult
//	                                    400 with fields when a workload is invalid (nothing applied)
//	GET    /v1/workloads                → 200 []supervisor.Status, sorted by name
//	DELETE /v1/workloads/{name}         → 204; 404 when unknown
//	POST   /v1/workloads/{name}:restart → 204; 404 when unknown
//	GET    /v1/workloads/{name}/logs    ?tail=N&follow=true → 200 text/plain stream; 404 when unknown
//	GET    /v1/events                   ?after=SEQ → 200 []store.Event, oldest first
//	GET    /v1/node                     → 200 NodeInfo
//
// Every error is JSON, ErrorResponse: {"error": "...", "fields": [...]},
// with 400 for bad input, 404 for an unknown workload or path, 405 (with
// Allow) for a wrong method, 413 for an oversized body, 503 when the node
// gave up because the request or the agent is ending, and 500 for other
// failures of the node. An error met after a log stream began travels in the
// TrailerError trailer.
package localapi
