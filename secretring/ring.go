// Package secretring seals signing secrets with a ring of AES-256 keys kept in
// a file: the first key seals, every key unseals.
package secretring

import (
	"bufio"
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"
)

// FileName is the ring's file name in serve's data directory.
const FileName = "secret-keys"

// KeySize is the size of every key of a ring: AES-256.
const KeySize = 32

// maxKeyID bounds a key id: it is written into every sealed record.
const maxKeyID = 64

// Errors of Unseal. Neither says anything about the key material.
var (
	ErrUnknownKey = errors.New("secretring: sealed under a key the ring does not hold")
	ErrUnseal     = errors.New("secretring: cannot unseal: wrong key, wrong credential or tampered")
)

// Sealed is a secret sealed under one key of a ring. Its JSON form is the
// "signing" field of a credential record:
// {"key": "<key id>", "sealed": "<base64url without padding of nonce (12 bytes) || AES-256-GCM ciphertext>"}.
type Sealed struct {
	Key    string `json:"key"`
	Sealed string `json:"sealed"`
}

// Ring is a parsed key ring. It is immutable and safe to use concurrently.
type Ring struct {
	ids  []string               // in file order: ids[0] seals
	aead map[string]cipher.AEAD // by key id
}

// Parse reads a ring: lines of "<key id> <standard base64 of 32 bytes>", '#'
// starting a comment, blank lines ignored. source names the ring in errors
// (a path); no error quotes key material.
func Parse(data []byte, source string) (*Ring, error) {
	r := &Ring{aead: map[string]cipher.AEAD{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if i := strings.IndexByte(line, '#'); i >= 0 {
			line = line[:i]
		}
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 2 {
			return nil, fmt.Errorf("secretring: %s line %d: want \"<key id> <standard base64 of %d bytes>\", got %d fields", source, n, KeySize, len(fields))
		}
		id := fields[0]
		if !ValidKeyID(id) {
			return nil, fmt.Errorf("secretring: %s line %d: key id %q: want 1 to %d of A-Z a-z 0-9 . _ -", source, n, id, maxKeyID)
		}
		if _, dup := r.aead[id]; dup {
			return nil, fmt.Errorf("secretring: %s line %d: key id %q appears twice", source, n, id)
		}
		key, err := base64.StdEncoding.Strict().DecodeString(fields[1])
		if err != nil || len(key) != KeySize {
			return nil, fmt.Errorf("secretring: %s line %d: key %q: want the standard base64 of %d bytes", source, n, id, KeySize)
		}
		aead, err := newAEAD(key)
		clear(key)
		if err != nil {
			return nil, fmt.Errorf("secretring: %s line %d: key %q: %w", source, n, id, err)
		}
		r.ids = append(r.ids, id)
		r.aead[id] = aead
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("secretring: read %s: %w", source, err)
	}
	if len(r.ids) == 0 {
		return nil, fmt.Errorf("secretring: %s holds no key", source)
	}
	return r, nil
}

// newAEAD is AES-256-GCM whose Seal draws a random 12-byte nonce and writes
// it before the ciphertext, and whose Open reads it from there: the sealed
// format of the contract.
func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithRandomNonce(block)
}

// ValidKeyID reports whether id may name a key: 1 to 64 of A-Z a-z 0-9 . _ -.
func ValidKeyID(id string) bool {
	if id == "" || len(id) > maxKeyID {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch c := id[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// Load reads the ring in the file at path.
func Load(path string) (*Ring, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("secretring: %w", err)
	}
	defer clear(data)
	return Parse(data, path)
}

// Create writes a new ring file at path, mode 0600, with one random key, and
// returns it. It fails when the file exists. The parent directory is made
// (0700) when missing.
func Create(path string) (*Ring, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("secretring: %w", err)
	}
	id, err := NewKeyID(time.Now())
	if err != nil {
		return nil, err
	}
	line, err := NewKeyLine(id)
	if err != nil {
		return nil, err
	}
	data := []byte("# hookgate key ring: one key per line, \"<key id> <standard base64 of 32 bytes>\".\n" +
		"# The first key seals signing secrets; every key unseals them. Keep this file secret.\n" +
		line + "\n")
	defer clear(data)
	if err := writeNew(path, data); err != nil {
		return nil, err
	}
	return Parse(data, path)
}

// writeNew makes the file at path with data, mode 0600, whole or not at all:
// the data goes to a temporary file first, which is then linked to path, so
// that a process loading path never sees half a ring and an existing file
// is never replaced (fs.ErrExist).
func writeNew(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("secretring: %w", err)
	}
	defer os.Remove(tmp.Name())
	err = tmp.Chmod(0o600)
	if err == nil {
		_, err = tmp.Write(data)
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
		return fmt.Errorf("secretring: write %s: %w", path, err)
	}
	return nil
}

// LoadOrCreate loads the ring at path, or creates it (Create) when the file
// does not exist; created says which. serve uses it on its embedded default.
func LoadOrCreate(path string) (r *Ring, created bool, err error) {
	r, err = Load(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return r, false, err
	}
	r, err = Create(path)
	if errors.Is(err, fs.ErrExist) { // another process made it meanwhile
		r, err = Load(path)
		return r, false, err
	}
	return r, err == nil, err
}

// NewKeyID returns a fresh key id: "k" and the date, then random hex, so
// that rings made apart never share an id.
func NewKeyID(now time.Time) (string, error) {
	var b [3]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("secretring: new key id: %w", err)
	}
	return "k" + now.UTC().Format("20060102") + "-" + hex.EncodeToString(b[:]), nil
}

// NewKeyLine returns a ring file line holding a fresh random key named id.
func NewKeyLine(id string) (string, error) {
	if !ValidKeyID(id) {
		return "", fmt.Errorf("secretring: key id %q: want 1 to %d of A-Z a-z 0-9 . _ -", id, maxKeyID)
	}
	key := make([]byte, KeySize)
	defer clear(key)
	if _, err := rand.Read(key); err != nil {
		return "", fmt.Errorf("secretring: new key: %w", err)
	}
	return id + " " + base64.StdEncoding.EncodeToString(key), nil
}

// SealingKey returns the id of the key that seals: the first of the file.
func (r *Ring) SealingKey() string { return r.ids[0] }

// KeyIDs returns the ids of the ring's keys, the sealing one first.
func (r *Ring) KeyIDs() []string { return append([]string(nil), r.ids...) }

// Seal seals secret under the ring's first key, with aad (the credential's
// id) as additional authenticated data: a sealed secret moved to another
// credential does not unseal.
func (r *Ring) Seal(aad string, secret []byte) (Sealed, error) {
	id := r.ids[0]
	ct := r.aead[id].Seal(nil, nil, secret, []byte(aad))
	return Sealed{Key: id, Sealed: base64.RawURLEncoding.EncodeToString(ct)}, nil
}

// Unseal opens s, sealed under any key of the ring with the same aad.
func (r *Ring) Unseal(aad string, s Sealed) ([]byte, error) {
	aead, ok := r.aead[s.Key]
	if !ok {
		return nil, fmt.Errorf("%w (key %q)", ErrUnknownKey, s.Key)
	}
	ct, err := base64.RawURLEncoding.Strict().DecodeString(s.Sealed)
	if err != nil {
		return nil, fmt.Errorf("%w: not base64url without padding", ErrUnseal)
	}
	pt, err := aead.Open(nil, nil, ct, []byte(aad))
	if err != nil {
		return nil, ErrUnseal
	}
	return pt, nil
}

// File is a ring read from a file that can be read again (serve on SIGHUP).
// Its methods are safe to call concurrently; Seal and Unseal use the ring
// of the last successful read.
type File struct {
	path string
	ring atomic.Pointer[Ring]
}

// Open loads the ring at path.
func Open(path string) (*File, error) {
	r, err := Load(path)
	if err != nil {
		return nil, err
	}
	return NewFile(path, r), nil
}

// NewFile is a File that already holds r, read from path (as LoadOrCreate
// returns it).
func NewFile(path string, r *Ring) *File {
	f := &File{path: path}
	f.ring.Store(r)
	return f
}

// Path is the file's path.
func (f *File) Path() string { return f.path }

// Reload reads the file again. On error the ring read before stays in use.
func (f *File) Reload() error {
	r, err := Load(f.path)
	if err != nil {
		return err
	}
	f.ring.Store(r)
	return nil
}

// Ring returns the ring in use.
func (f *File) Ring() *Ring { return f.ring.Load() }

// SealingKey returns the id of the key that seals.
func (f *File) SealingKey() string { return f.Ring().SealingKey() }

// ErrNoRing is returned by a nil *File: no ring was loaded.
var ErrNoRing = errors.New("secretring: no key ring")

// Seal seals with the ring in use (Ring.Seal).
func (f *File) Seal(aad string, secret []byte) (Sealed, error) {
	if f == nil {
		return Sealed{}, ErrNoRing
	}
	return f.Ring().Seal(aad, secret)
}

// Unseal opens with the ring in use (Ring.Unseal). A nil *File unseals
// nothing (ErrNoRing), so a gateway without a ring can pass one.
func (f *File) Unseal(aad string, s Sealed) ([]byte, error) {
	if f == nil {
		return nil, ErrNoRing
	}
	return f.Ring().Unseal(aad, s)
}
