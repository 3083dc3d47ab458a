package overlay

import (
	"crypto/ecdh"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Key is a Curve25519 key, private or public, as WireGuard uses them.
type Key [32]byte

// GenerateKey returns a new private key from crypto/rand, clamped as
// Curve25519 requires (wg genkey does the same).
func GenerateKey() (Key, error) {
	var k Key
	if _, err := rand.Read(k[:]); err != nil {
		return Key{}, fmt.Errorf("generate key: %w", err)
	}
	k[0] &= 248
	k[31] = k[31]&127 | 64
	return k, nil
}

// PublicKey returns the public key of the private key k.
func (k Key) PublicKey() Key {
	priv, err := ecdh.X25519().NewPrivateKey(k[:])
	if err != nil {
		// NewPrivateKey fails only for a key of the wrong length.
		panic("overlay: " + err.Error())
	}
	return Key(priv.PublicKey().Bytes())
}

// IsZero reports whether k is all zeros (no key).
func (k Key) IsZero() bool { return k == Key{} }

// String returns k in base64, as wg(8) prints keys.
func (k Key) String() string { return base64.StdEncoding.EncodeToString(k[:]) }

// hex returns k in the hexadecimal form of wireguard-go's configuration
// protocol.
func (k Key) hex() string { return hex.EncodeToString(k[:]) }

// parseHexKey parses a key in the hexadecimal form of wireguard-go's
// configuration protocol.
func parseHexKey(s string) (Key, error) {
	b, err := hex.DecodeString(s)
	if err != nil {
		return Key{}, fmt.Errorf("parse key: %w", err)
	}
	if len(b) != len(Key{}) {
		return Key{}, fmt.Errorf("parse key: %d bytes, want %d", len(b), len(Key{}))
	}
	return Key(b), nil
}

// ParseKey parses a key in base64, as String returns it.
func ParseKey(s string) (Key, error) {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(s))
	if err != nil {
		return Key{}, fmt.Errorf("parse key: %w", err)
	}
	if len(b) != len(Key{}) {
		return Key{}, fmt.Errorf("parse key: %d bytes, want %d", len(b), len(Key{}))
	}
	return Key(b), nil
}

// LoadOrCreateKey returns the private key stored at path, creating the file
// (mode 0600, the key in base64 and a newline) with a new key if it does not
// exist. It refuses a file that group or others may read or write, as a
// private key must not be exposed, and a file that does not hold a key.
func LoadOrCreateKey(path string) (Key, error) {
	k, err := loadKey(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return k, err
	}
	k, err = GenerateKey()
	if err != nil {
		return Key{}, err
	}
	if err := createKeyFile(path, k); err != nil {
		if errors.Is(err, fs.ErrExist) {
			// Someone else created it first; use theirs.
			return loadKey(path)
		}
		return Key{}, err
	}
	return k, nil
}

func loadKey(path string) (Key, error) {
	f, err := os.Open(path)
	if err != nil {
		return Key{}, fmt.Errorf("load key: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Key{}, fmt.Errorf("load key: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return Key{}, fmt.Errorf("load key %s: not a regular file", path)
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return Key{}, fmt.Errorf("load key %s: mode %#o lets group or others access a private key; want 0600", path, perm)
	}
	b := make([]byte, 128)
	n, err := f.Read(b)
	if err != nil {
		return Key{}, fmt.Errorf("load key %s: %w", path, err)
	}
	k, err := ParseKey(string(b[:n]))
	if err != nil {
		return Key{}, fmt.Errorf("load key %s: %w", path, err)
	}
	return k, nil
}

// createKeyFile writes k to a temporary file beside path and links it to path,
// so path either does not exist or holds a whole key, and an existing file is
// never replaced (the error then wraps fs.ErrExist).
func createKeyFile(path string, k Key) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("create key file: %w", err)
	}
	defer os.Remove(tmp.Name())
	// CreateTemp makes the file 0600; Chmod guards against a future change.
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.WriteString(k.String() + "\n")
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Link(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("create key file %s: %w", path, err)
	}
	return nil
}
