package authz

import (
	"net/http"
	"path"
	"strings"
)

// Role is what a user's certificate lets them do (its Organization[0]).
type Role string

// The roles, least privileged first; each may do what the one before it
// may. They match package pki's user roles.
const (
	Viewer   Role = "viewer"
	Operator Role = "operator"
	Admin    Role = "admin"
)

// rank orders the roles; a role not here (a node's certificate, say) may
// do nothing through the API.
var rank = map[Role]int{Viewer: 1, Operator: 2, Admin: 3}

// covers reports whether r may do what need may.
func (r Role) covers(need Role) bool {
	have, ok := rank[r]
	return ok && have >= rank[need]
}

// A rule gives the role needed by the requests it matches: those whose
// method is method (any when empty) and whose path starts with prefix and
// ends with suffix. Prefixes are plain strings, so a rule may match more
// than the endpoints it is for ("/v1/tokensx" too), never fewer: a path no
// endpoint serves gets 404 anyway.
type rule struct {
	method, prefix, suffix string
	need                   Role
}

// adminOnly are the requests only admins may make; the first match wins.
// Any other GET or HEAD needs a viewer, and any other method an operator.
var adminOnly = []rule{
	{prefix: "/v1/tokens", need: Admin},
	{prefix: "/v1/users", need: Admin},
	{prefix: "/v1/audit", need: Admin},
	{method: http.MethodPost, prefix: "/v1/nodes/", suffix: "/revoke", need: Admin},
}

// changes reports whether a method may change something, so that the
// call needs an operator and goes into the audit log: any but GET and
// HEAD.
func changes(method string) bool {
	return method != http.MethodGet && method != http.MethodHead
}

// needed is the role a request needs. The path is cleaned first ("/v1/./
// tokens" is "/v1/tokens"), as the router would before serving it.
func needed(method, p string) Role {
	p = path.Clean("/" + p)
	for _, r := range adminOnly {
		if (r.method == "" || r.method == method) && strings.HasPrefix(p, r.prefix) && strings.HasSuffix(p, r.suffix) {
			return r.need
		}
	}
	if changes(method) {
		return Operator
	}
	return Viewer
}
