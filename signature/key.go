package signature

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"encoding/base64"
	"errors"
	"hash"
	"sync"
)

// Errors of a signing secret; they never hold the secret.
var (
	ErrSecretEmpty  = errors.New("signature: the signing secret is empty")
	ErrSecretBase64 = errors.New("signature: the part of a whsec_ signing secret after the prefix is not valid standard base64, or decodes to nothing")
)

const whsecPrefix = "whsec_"

// Key is a signing secret S made ready to verify requests of every row of
// the table: HMAC-SHA256 keyed with the bytes of S, and for Standard
// Webhooks with its decoded whsec_ part. It keeps only the SHA-256 states of
// the HMAC's padded keys, never S itself, and is immutable after NewKey, so a
// credential cache entry can hold one and share it between goroutines.
// Verifying with it allocates nothing.
//
// The states are as good as the secret for signing: a Key prints as
// "signature.Key" and nothing more.
type Key struct {
	raw macKey // keyed with the bytes of S
	std macKey // keyed for Standard Webhooks; the same as raw when S has no whsec_ prefix
}

// NewKey prepares the secret S of a credential; it fails when S is empty, or
// when it has the whsec_ prefix and what follows is not valid base64.
func NewKey(secret []byte) (*Key, error) {
	std, err := standardKey(secret)
	if err != nil {
		return nil, err
	}
	k := &Key{raw: newMACKey(secret)}
	if bytes.HasPrefix(secret, []byte(whsecPrefix)) {
		k.std = newMACKey(std)
	} else {
		k.std = k.raw
	}
	return k, nil
}

// String hides the key's material from logs.
func (Key) String() string { return "signature.Key" }

// GoString hides the key's material from %#v.
func (Key) GoString() string { return "signature.Key" }

// standardKey returns the HMAC key of Standard Webhooks for S: the
// base64-decoded part after whsec_, or S when it has no such prefix.
func standardKey(secret []byte) ([]byte, error) {
	if len(secret) == 0 {
		return nil, ErrSecretEmpty
	}
	rest, ok := bytes.CutPrefix(secret, []byte(whsecPrefix))
	if !ok {
		return secret, nil
	}
	// The decoder skips CR and LF; a secret holds none.
	if bytes.ContainsAny(rest, "\r\n") {
		return nil, ErrSecretBase64
	}
	key := make([]byte, base64.StdEncoding.DecodedLen(len(rest)))
	n, err := base64.StdEncoding.Decode(key, rest)
	if err != nil || n == 0 {
		return nil, ErrSecretBase64
	}
	return key[:n], nil
}

// macKey is an HMAC-SHA256 key as crypto/hmac keeps it once used: the
// marshalled SHA-256 states after the key XOR ipad block and after the key
// XOR opad block. Verifying restores them into a pooled digest, so no
// per-request hmac.New, and no pool per key.
type macKey struct {
	inner, outer []byte
}

func newMACKey(key []byte) macKey {
	if len(key) > sha256.BlockSize {
		sum := sha256.Sum256(key)
		key = sum[:]
	}
	var ipad, opad [sha256.BlockSize]byte
	copy(ipad[:], key)
	copy(opad[:], key)
	for i := range ipad {
		ipad[i] ^= 0x36
		opad[i] ^= 0x5c
	}
	return macKey{inner: state(ipad[:]), outer: state(opad[:])}
}

// state returns the marshalled SHA-256 state after writing block.
func state(block []byte) []byte {
	h := sha256.New()
	h.Write(block)
	b, err := h.(encoding.BinaryAppender).AppendBinary(nil)
	if err != nil {
		panic("signature: cannot marshal a SHA-256 state: " + err.Error())
	}
	return b
}

// digest is a pooled SHA-256 that a macKey's states are restored into.
type digest struct {
	h     hash.Hash
	state encoding.BinaryUnmarshaler // h
	sum   [sha256.Size]byte
}

var digests = sync.Pool{New: func() any {
	h := sha256.New()
	return &digest{h: h, state: h.(encoding.BinaryUnmarshaler)}
}}

var dot = []byte{'.'}

// sum writes into out the HMAC of body, or of <id>.<timestamp>.<body> when id
// is not nil.
func (k *macKey) sum(out *[sha256.Size]byte, id, timestamp, body []byte) {
	d := digests.Get().(*digest)
	defer digests.Put(d)
	if err := d.state.UnmarshalBinary(k.inner); err != nil {
		panic("signature: cannot restore a SHA-256 state: " + err.Error())
	}
	if id != nil {
		d.h.Write(id)
		d.h.Write(dot)
		d.h.Write(timestamp)
		d.h.Write(dot)
	}
	d.h.Write(body)
	inner := d.h.Sum(d.sum[:0])
	if err := d.state.UnmarshalBinary(k.outer); err != nil {
		panic("signature: cannot restore a SHA-256 state: " + err.Error())
	}
	d.h.Write(inner)
	copy(out[:], d.h.Sum(d.sum[:0]))
}
