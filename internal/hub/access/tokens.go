package access

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"atoll.dev/atoll/internal/wire"
)

// A token as printed: "AT1.<id>.<secret>.<CA fingerprint hex>". The id
// names the stored token, the secret proves the holder got it from an
// admin (the hub keeps only its SHA-256), the fingerprint pins the hub's
// CA for the device's very first connection.

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

// Token is an enrollment token as the hub stores it: never its secret.
type Token struct {
	ID string `json:"id"`
	// Hash is the SHA-256 of the secret, hex.
	Hash string `json:"hash"`
	// Labels are given to every node enrolled with the token.
	Labels map[string]string `json:"labels,omitempty"`
	// NamePrefix is put in front of a node name that lacks it.
	NamePrefix string `json:"namePrefix,omitempty"`
	// Uses is how many nodes may enroll with it; Used how many did.
	Uses    int       `json:"uses"`
	Used    int       `json:"used"`
	Nodes   []string  `json:"nodes,omitempty"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
	Revoked bool      `json:"revoked,omitempty"`
}

// usable says why t cannot enroll a node now, or nil.
func (t Token) usable(now time.Time) error {
	switch {
	case t.Revoked:
		return fmt.Errorf("token %s was revoked", t.ID)
	case !now.Before(t.Expires):
		return fmt.Errorf("token %s expired at %s", t.ID, t.Expires.UTC().Format(time.RFC3339))
	case t.Used >= t.Uses:
		return fmt.Errorf("token %s has been used %d of %d times", t.ID, t.Used, t.Uses)
	}
	return nil
}

// newToken makes a token and the string to hand out.
func newToken(caFingerprint string) (Token, string) {
	id := strings.ToLower(b32.EncodeToString(random(5)))
	secret := strings.ToLower(b32.EncodeToString(random(20)))
	pin := strings.TrimPrefix(caFingerprint, "sha256:")
	return Token{ID: id, Hash: hashSecret(secret)}, strings.Join([]string{wire.TokenPrefix, id, secret, pin}, ".")
}

// matches reports whether secret is t's, in constant time.
func (t Token) matches(secret string) bool {
	return subtle.ConstantTimeCompare([]byte(hashSecret(secret)), []byte(t.Hash)) == 1
}

func hashSecret(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

func random(n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("access: no randomness: " + err.Error())
	}
	return b
}
