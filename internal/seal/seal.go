// Package seal encrypts small secrets: to a node's P-256 key (ECIES:
// ECDH, HKDF-SHA256, AES-256-GCM), deterministically for a given seed, and
// at rest under a symmetric 32-byte key.
//
// # Sealed format (version 1)
//
//	0x01 | ephemeral public key (65 bytes, uncompressed P-256) | AES-256-GCM ciphertext and tag
//
// The ephemeral key is derived from the seed, the additional data and the
// plaintext (HKDF-SHA256), so Seal is deterministic: the same inputs give
// the same bytes (a plan that did not change keeps its bytes), while any
// other message gets another ephemeral key, and so another AES key and
// nonce. The seed must be secret (the hub derives it with its own key);
// whoever knows it can test guesses of the plaintext.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"

	"atoll.dev/atoll/internal/atomicfile"
)

const (
	version1 = 0x01
	// pubLen is the length of an uncompressed P-256 public key.
	pubLen = 65
	// KeySize is the size of an at-rest key.
	KeySize = 32
)

// ErrOpen is wrapped by every failure to open sealed or encrypted bytes:
// the wrong key, tampered bytes, other additional data, or bytes that are
// not sealed at all.
var ErrOpen = errors.New("cannot open sealed data")

// Seal encrypts plaintext to pub, binding aad (which Open must be given
// again). It is deterministic in (pub, plaintext, aad, seed).
func Seal(pub *ecdh.PublicKey, plaintext, aad, seed []byte) ([]byte, error) {
	if pub.Curve() != ecdh.P256() {
		return nil, errors.New("seal: the recipient key is not a P-256 key")
	}
	if len(seed) == 0 {
		return nil, errors.New("seal: empty seed")
	}
	eph, err := ephemeral(seed, aad, plaintext)
	if err != nil {
		return nil, err
	}
	shared, err := eph.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	ephPub := eph.PublicKey().Bytes()
	aead, nonce, err := messageKey(shared, ephPub, pub.Bytes())
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, 1+pubLen+len(plaintext)+aead.Overhead())
	out = append(out, version1)
	out = append(out, ephPub...)
	return aead.Seal(out, nonce, plaintext, aad), nil
}

// Open decrypts what Seal sealed to priv's public key with the same aad.
func Open(priv *ecdh.PrivateKey, sealed, aad []byte) ([]byte, error) {
	if len(sealed) < 1+pubLen || sealed[0] != version1 {
		return nil, fmt.Errorf("open: not sealed data of version %d: %w", version1, ErrOpen)
	}
	ephPub, err := ecdh.P256().NewPublicKey(sealed[1 : 1+pubLen])
	if err != nil {
		return nil, fmt.Errorf("open: ephemeral key: %w", ErrOpen)
	}
	shared, err := priv.ECDH(ephPub)
	if err != nil {
		return nil, fmt.Errorf("open: %w: %w", ErrOpen, err)
	}
	aead, nonce, err := messageKey(shared, ephPub.Bytes(), priv.PublicKey().Bytes())
	if err != nil {
		return nil, err
	}
	pt, err := aead.Open(nil, nonce, sealed[1+pubLen:], aad)
	if err != nil {
		return nil, fmt.Errorf("open: wrong key, other additional data or tampered bytes: %w", ErrOpen)
	}
	return pt, nil
}

// ephemeral derives the ephemeral private key from the seed and the
// message. A derived scalar that is not a valid key (probability about
// 2^-32) moves on to the next counter.
func ephemeral(seed, aad, plaintext []byte) (*ecdh.PrivateKey, error) {
	m := hmac.New(sha256.New, seed)
	writeField(m, aad)
	writeField(m, plaintext)
	prk := m.Sum(nil)
	for counter := byte(0); counter < 8; counter++ {
		b, err := hkdf.Expand(sha256.New, prk, "atoll seal v1 ephemeral "+string([]byte{counter}), 32)
		if err != nil {
			return nil, fmt.Errorf("seal: derive ephemeral key: %w", err)
		}
		if k, err := ecdh.P256().NewPrivateKey(b); err == nil {
			return k, nil
		}
	}
	return nil, errors.New("seal: derive ephemeral key: no valid scalar")
}

// writeField writes b with its length, so that fields cannot run into
// each other.
func writeField(m io.Writer, b []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(b)))
	m.Write(n[:])
	m.Write(b)
}

// messageKey derives the AES-256-GCM key and nonce of one message from the
// ECDH shared secret and both public keys.
func messageKey(shared, ephPub, recipientPub []byte) (cipher.AEAD, []byte, error) {
	salt := append(append([]byte{}, ephPub...), recipientPub...)
	km, err := hkdf.Key(sha256.New, shared, salt, "atoll seal v1 message", 32+12)
	if err != nil {
		return nil, nil, fmt.Errorf("seal: derive message key: %w", err)
	}
	aead, err := newGCM(km[:32])
	if err != nil {
		return nil, nil, err
	}
	return aead, km[32:], nil
}

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	return aead, nil
}

// Encrypt encrypts plaintext at rest under a KeySize-byte key with a random
// nonce, binding aad: nonce | ciphertext and tag.
func Encrypt(key, plaintext, aad []byte) ([]byte, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("encrypt: key of %d bytes, want %d", len(key), KeySize)
	}
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	nonce := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("encrypt: %w", err)
	}
	return aead.Seal(nonce, nonce, plaintext, aad), nil
}

// Decrypt reverses Encrypt.
func Decrypt(key, ciphertext, aad []byte) ([]byte, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("decrypt: key of %d bytes, want %d", len(key), KeySize)
	}
	aead, err := newGCM(key)
	if err != nil {
		return nil, err
	}
	if len(ciphertext) < aead.NonceSize() {
		return nil, fmt.Errorf("decrypt: %d bytes is too short: %w", len(ciphertext), ErrOpen)
	}
	n := aead.NonceSize()
	pt, err := aead.Open(nil, ciphertext[:n], ciphertext[n:], aad)
	if err != nil {
		return nil, fmt.Errorf("decrypt: wrong key, other additional data or tampered bytes: %w", ErrOpen)
	}
	return pt, nil
}

// LoadOrCreateKey reads the KeySize-byte key at path, creating it (mode
// 0600, random) when the file does not exist. A file of another size is an
// error, never overwritten.
func LoadOrCreateKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		if len(b) != KeySize {
			return nil, fmt.Errorf("key %s: %d bytes, want %d", path, len(b), KeySize)
		}
		return b, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	if err := atomicfile.Create(path, key); err != nil {
		if errors.Is(err, fs.ErrExist) { // created meanwhile: use that one
			return LoadOrCreateKey(path)
		}
		return nil, fmt.Errorf("key %s: %w", path, err)
	}
	return key, nil
}
