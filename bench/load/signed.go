package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/url"
	"time"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/secretring"
)

// The signed row sends GitHub-style deliveries: no Authorization, the
// credential named by ?credential=<id>, and X-Hub-Signature-256, "sha256="
// and the hex HMAC-SHA256 of the body with the credential's signing secret.
// The body never changes, so one signature, computed once, serves every
// request. Without X-GitHub-Delivery a delivery has no idempotency key, so
// its webhooks are stored key-less, as the hookgate row's are.
//
// The benchmark writes the key ring itself (secret-keys in its temp dir),
// before the gateway starts, and gives it to every mode the same way:
// `hookgate serve --secret-keys` (proc and embedded) or
// gateway.Config.SecretKeys (inproc); it seals the signing secret with that
// ring when it issues the credential.

const signatureHeader = "X-Hub-Signature-256"

// createKeyRing writes a new key ring to path for the gateway to unseal
// signing secrets with.
func createKeyRing(path string) error {
	if _, err := secretring.Create(path); err != nil {
		return fmt.Errorf("key ring: %w", err)
	}
	return nil
}

// hubSignature is GitHub's X-Hub-Signature-256 of body with secret.
func hubSignature(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// signedTarget issues an organization-wide hits credential with a signing
// secret, sealed with the key ring at secretKeys (the gateway's), and checks
// that the gateway at addr accepts a delivery of body signed with it: the
// target of the signed row.
func signedTarget(natsURL, addr, secretKeys string, body []byte) (target, error) {
	ring, err := secretring.Open(secretKeys)
	if err != nil {
		return target{}, fmt.Errorf("key ring: %w", err)
	}
	is, err := issueHits(natsURL, auth.IssueRequest{Org: "bench", Kind: auth.KindHits, Name: "bench load, signed", Signing: true}, ring)
	if err != nil {
		return target{}, fmt.Errorf("issue signing credential: %w", err)
	}
	t := signedHits(addr, is.ID, is.SigningSecret, body)
	if err := probe(t, body, 15*time.Second); err != nil {
		return target{}, err
	}
	return t, nil
}

// signedHits is the target of a delivery of body to the hits path, signed
// with the credential id's secret.
func signedHits(addr, id, secret string, body []byte) target {
	return target{addr: addr, path: hitsPath + "?credential=" + url.QueryEscape(id), sig: hubSignature(secret, body)}
}
