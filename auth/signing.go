package auth

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
)

// SigningSecretPrefix starts the signing secrets hookgate generates: Standard
// Webhooks' "whsec_", then the standard base64 of the key bytes.
const SigningSecretPrefix = "whsec_"

// signingSecretBytes is the random part of a generated signing secret.
const signingSecretBytes = 32

// MaxSigningSecretLen bounds an imported signing secret.
const MaxSigningSecretLen = 4096

// NewSigningSecret returns a fresh signing secret: "whsec_" and the standard
// base64 of 32 random bytes.
func NewSigningSecret() (string, error) {
	var b [signingSecretBytes]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("auth: new signing secret: %w", err)
	}
	s := SigningSecretPrefix + base64.StdEncoding.EncodeToString(b[:])
	clear(b[:])
	return s, nil
}

// ParseSigningSecret returns the signing secret that a sender generated, as
// read from a file: its content trimmed of surrounding whitespace, at most
// MaxSigningSecretLen bytes; a value starting "whsec_" must be valid
// standard base64 after the prefix. Errors never quote the secret.
func ParseSigningSecret(data []byte) ([]byte, error) {
	s := bytes.TrimSpace(data)
	switch {
	case len(s) == 0:
		return nil, errors.New("auth: signing secret is empty")
	case len(s) > MaxSigningSecretLen:
		return nil, fmt.Errorf("auth: signing secret is %d bytes, more than %d", len(s), MaxSigningSecretLen)
	}
	if rest, ok := bytes.CutPrefix(s, []byte(SigningSecretPrefix)); ok {
		n, err := base64.StdEncoding.Strict().Decode(make([]byte, base64.StdEncoding.DecodedLen(len(rest))), rest)
		if err != nil || n == 0 {
			return nil, errors.New("auth: signing secret starts with whsec_ but what follows is not standard base64")
		}
	}
	return bytes.Clone(s), nil
}

// Unsealer opens the sealed signing secret of credential credID.
// secretring.Ring and secretring.File implement it. It must be safe to call
// concurrently.
type Unsealer interface {
	Unseal(credID string, s SealedSecret) ([]byte, error)
}

// Sealer seals signing secrets for the records of credential credID, under
// the key whose id SealingKey returns, and opens them again.
// secretring.Ring and secretring.File implement it.
type Sealer interface {
	Unsealer
	Seal(credID string, secret []byte) (SealedSecret, error)
	SealingKey() string
}

// ErrNoKeyRing is returned when a signing secret must be sealed or unsealed
// and there is no key ring to do it with.
var ErrNoKeyRing = errors.New("auth: no key ring for signing secrets")
