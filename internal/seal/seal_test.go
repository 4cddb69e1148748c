package seal_test

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"atoll.dev/atoll/internal/seal"
)

func newKey(t *testing.T) *ecdh.PrivateKey {
	t.Helper()
	k, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSeal_RoundTrip(t *testing.T) {
	k := newKey(t)
	pt := []byte("s3cret password")
	sealed, err := seal.Seal(k.PublicKey(), pt, []byte("aad"), []byte("seed"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(sealed, pt) {
		t.Fatal("sealed bytes contain the plaintext")
	}
	got, err := seal.Open(k, sealed, []byte("aad"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, pt) {
		t.Fatalf("Open = %q, want %q", got, pt)
	}
}

func TestSeal_Open_Fails(t *testing.T) {
	k := newKey(t)
	sealed, err := seal.Seal(k.PublicKey(), []byte("value"), []byte("aad"), []byte("seed"))
	if err != nil {
		t.Fatal(err)
	}
	tampered := bytes.Clone(sealed)
	tampered[len(tampered)-1] ^= 1
	tamperedKey := bytes.Clone(sealed)
	tamperedKey[10] ^= 1
	tests := []struct {
		name   string
		key    *ecdh.PrivateKey
		sealed []byte
		aad    string
	}{
		{"wrong key", newKey(t), sealed, "aad"},
		{"tampered ciphertext", k, tampered, "aad"},
		{"tampered ephemeral key", k, tamperedKey, "aad"},
		{"other aad", k, sealed, "other"},
		{"truncated", k, sealed[:20], "aad"},
		{"empty", k, nil, "aad"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := seal.Open(tt.key, tt.sealed, []byte(tt.aad)); !errors.Is(err, seal.ErrOpen) {
				t.Fatalf("Open = %v, want ErrOpen", err)
			}
		})
	}
}

func TestSeal_Deterministic(t *testing.T) {
	k := newKey(t)
	a, _ := seal.Seal(k.PublicKey(), []byte("value"), []byte("aad"), []byte("seed"))
	b, _ := seal.Seal(k.PublicKey(), []byte("value"), []byte("aad"), []byte("seed"))
	if !bytes.Equal(a, b) {
		t.Fatal("same inputs sealed to different bytes")
	}
	for name, in := range map[string][3]string{
		"other seed":      {"value", "aad", "seed2"},
		"other plaintext": {"value2", "aad", "seed"},
		"other aad":       {"value", "aad2", "seed"},
	} {
		c, err := seal.Seal(k.PublicKey(), []byte(in[0]), []byte(in[1]), []byte(in[2]))
		if err != nil {
			t.Fatal(err)
		}
		if bytes.Equal(a, c) || bytes.Equal(a[1:66], c[1:66]) {
			t.Errorf("%s: same bytes or same ephemeral key", name)
		}
	}
}

func TestEncrypt_RoundTrip(t *testing.T) {
	key := bytes.Repeat([]byte{7}, seal.KeySize)
	ct, err := seal.Encrypt(key, []byte("value"), []byte("db"))
	if err != nil {
		t.Fatal(err)
	}
	ct2, _ := seal.Encrypt(key, []byte("value"), []byte("db"))
	if bytes.Equal(ct, ct2) {
		t.Fatal("two encryptions gave the same bytes: the nonce is not random")
	}
	got, err := seal.Decrypt(key, ct, []byte("db"))
	if err != nil || string(got) != "value" {
		t.Fatalf("Decrypt = %q, %v", got, err)
	}
	if _, err := seal.Decrypt(key, ct, []byte("other")); !errors.Is(err, seal.ErrOpen) {
		t.Fatalf("Decrypt with other aad = %v, want ErrOpen", err)
	}
	if _, err := seal.Decrypt(bytes.Repeat([]byte{8}, seal.KeySize), ct, []byte("db")); !errors.Is(err, seal.ErrOpen) {
		t.Fatalf("Decrypt with wrong key = %v, want ErrOpen", err)
	}
}

func TestLoadOrCreateKey(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secrets.key")
	k1, err := seal.LoadOrCreateKey(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 || fi.Size() != seal.KeySize {
		t.Fatalf("key file mode %v size %d, want 0600 and %d", fi.Mode().Perm(), fi.Size(), seal.KeySize)
	}
	k2, err := seal.LoadOrCreateKey(path)
	if err != nil || !bytes.Equal(k1, k2) {
		t.Fatalf("second load = %x, %v; want the same key", k2, err)
	}
	if err := os.WriteFile(path, []byte("short"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := seal.LoadOrCreateKey(path); err == nil {
		t.Fatal("a key file of the wrong size was accepted")
	}
}
