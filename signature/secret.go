package signature

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
)

// NewSecret returns a new signing secret for a credential issued with
// --signing: whsec_ and the standard base64 of 32 random bytes.
func NewSecret() string {
	var b [32]byte
	rand.Read(b[:]) // never fails: crypto/rand crashes the program instead
	return whsecPrefix + base64.StdEncoding.EncodeToString(b[:])
}

// ImportSecret returns the signing secret in the content of a
// --signing-secret-file: the content trimmed of surrounding whitespace. It
// fails when that is empty, or when it has the whsec_ prefix and what
// follows is not valid standard base64. The secret is a slice of content.
func ImportSecret(content []byte) ([]byte, error) {
	secret := bytes.TrimSpace(content)
	if _, err := standardKey(secret); err != nil {
		return nil, err
	}
	return secret, nil
}
