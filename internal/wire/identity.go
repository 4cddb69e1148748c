package wire

import (
	"encoding/hex"
	"errors"
	"strings"
)

// Enrollment and renewal of a node's certificate, over the hub's NATS.
//
// A new device connects with its enrollment token as the NATS token and no
// client certificate; the hub lets such a connection do one thing: send an
// EnrollRequest on SubjectEnroll and read the reply on an inbox under
// EnrollInboxPrefix + the token's id. From then on the node connects with
// its certificate, may publish only on its own subjects and read only its
// own (NodeInboxPrefix). A node whose certificate expired (an outage longer
// than its lifetime) may still connect, but only to send a RenewRequest.
const (
	// SubjectEnroll: new node → hub request, EnrollRequest → EnrollReply.
	SubjectEnroll = "atoll.enroll"
	// SubjectRenew: node → hub request on SubjectRenew + <node>,
	// RenewRequest → RenewReply.
	SubjectRenew = "atoll.renew."
	// EnrollInboxPrefix + <token id> is where an enrolling device reads
	// its reply.
	EnrollInboxPrefix = "_atoll.enroll."
	// NodeInboxPrefix + <node> is a node's inbox prefix: replies to its
	// requests and JetStream deliveries come there and nowhere else. It is
	// short because it rides on every heartbeat, both ways.
	NodeInboxPrefix = "_in."
)

// EnrollRequest asks for a node certificate.
type EnrollRequest struct {
	// Token is the enrollment token, as `atoll token create` printed it.
	Token string `json:"token"`
	// Name is the name the node asks for; a token with a name prefix puts
	// it in front when missing.
	Name string `json:"name"`
	// CSR is a PEM certificate request for the key the node made; only
	// the key is used.
	CSR []byte `json:"csr"`
}

// EnrollReply carries the certificate, or why there is none.
type EnrollReply struct {
	// Name is the node's name as enrolled.
	Name string `json:"name,omitempty"`
	// Labels are the token's labels: the hub places by them whatever the
	// node says.
	Labels map[string]string `json:"labels,omitempty"`
	// Cert is the node's certificate and CA the hub's CA, both PEM.
	Cert  []byte `json:"cert,omitempty"`
	CA    []byte `json:"ca,omitempty"`
	Error string `json:"error,omitempty"`
}

// RenewRequest asks for a fresh certificate for the node's key.
type RenewRequest struct {
	CSR []byte `json:"csr"`
}

// RenewReply carries the fresh certificate, or why there is none.
type RenewReply struct {
	Cert  []byte `json:"cert,omitempty"`
	Error string `json:"error,omitempty"`
}

// TokenPrefix starts every enrollment token:
// "AT1.<id>.<secret>.<CA fingerprint hex>". The id names the token the hub
// stores, the secret proves the holder got it from an admin (the hub keeps
// only its SHA-256), the fingerprint pins the hub's CA for the device's
// very first connection.
const TokenPrefix = "AT1"

// Token is an enrollment token's parts.
type Token struct {
	ID, Secret string
	// Pin is the CA fingerprint, "sha256:<hex>".
	Pin string
}

// ParseToken splits a token string; it says what is wrong with a
// malformed one, never echoing the secret.
func ParseToken(s string) (Token, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 4 || parts[0] != TokenPrefix {
		return Token{}, errors.New("malformed enrollment token: want AT1.<id>.<secret>.<ca fingerprint>, as `atoll token create` prints it")
	}
	if _, err := hex.DecodeString(parts[3]); err != nil || len(parts[3]) != 64 {
		return Token{}, errors.New("malformed enrollment token: its CA fingerprint is not 64 hex digits")
	}
	if parts[1] == "" || parts[2] == "" {
		return Token{}, errors.New("malformed enrollment token: empty id or secret")
	}
	return Token{ID: parts[1], Secret: parts[2], Pin: "sha256:" + parts[3]}, nil
}
