package api

import "time"

// Enrollment tokens, API users and node revocation (package access).
//
//	POST   /v1/tokens               TokenRequest → TokenCreated (the token is shown once)
//	GET    /v1/tokens               → []TokenInfo
//	DELETE /v1/tokens/{id}          revokes the token
//	POST   /v1/users                UserRequest → UserCert
//	POST   /v1/nodes/{node}/revoke  → NodeRevoked
//
// All of them need the admin role.

// TokenRequest creates an enrollment token.
type TokenRequest struct {
	Labels map[string]string `json:"labels,omitempty"`
	// TTL is a Go duration ("24h"); Uses how many nodes may enroll with it.
	TTL        string `json:"ttl"`
	Uses       int    `json:"uses"`
	NamePrefix string `json:"namePrefix,omitempty"`
}

// TokenInfo is a token without its secret.
type TokenInfo struct {
	ID         string            `json:"id"`
	Labels     map[string]string `json:"labels,omitempty"`
	NamePrefix string            `json:"namePrefix,omitempty"`
	Uses       int               `json:"uses"`
	Used       int               `json:"used"`
	Nodes      []string          `json:"nodes,omitempty"`
	Created    time.Time         `json:"created"`
	Expires    time.Time         `json:"expires"`
	Revoked    bool              `json:"revoked,omitempty"`
}

// TokenCreated is a new token: Token is the only copy of its secret.
type TokenCreated struct {
	TokenInfo
	Token string `json:"token"`
}

// UserRequest asks for a user's certificate: the user made the key, CSR
// is its PEM request.
type UserRequest struct {
	Name string `json:"name"`
	Role string `json:"role"`
	CSR  []byte `json:"csr"`
}

// UserCert is a user's certificate and the hub's CA, PEM.
type UserCert struct {
	Cert    []byte    `json:"cert"`
	CA      []byte    `json:"ca"`
	Expires time.Time `json:"expires"`
}

// NodeRevoked answers a revocation.
type NodeRevoked struct {
	Node    string `json:"node"`
	Revoked bool   `json:"revoked"`
}

// UserInfo is a user and the certificates issued to the name.
//
//	GET  /v1/users              → []UserInfo
//	POST /v1/users/{name}/revoke → UserRevoked: every certificate of the name
type UserInfo struct {
	Name         string         `json:"name"`
	Certificates []UserCertInfo `json:"certificates"`
}

// UserCertInfo is one certificate of a user.
type UserCertInfo struct {
	Serial  string    `json:"serial"`
	Role    string    `json:"role"`
	Issued  time.Time `json:"issued"`
	Expires time.Time `json:"expires"`
	Revoked bool      `json:"revoked,omitempty"`
}

// UserRevoked answers a user's revocation: how many certificates it
// revoked (0 when all already were).
type UserRevoked struct {
	Name    string `json:"name"`
	Revoked int    `json:"revoked"`
}
