package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/hookgate/hookgate/signature"
	"regexp"
	"time"

	"github.com/hookgate/hookgate/secretring"
)

// Kind is the kind of webhook a credential may post.
type Kind string

const (
	KindHits   Kind = "hits"
	KindDeploy Kind = "deploy"
)

// Bucket key prefixes, as the contract defines them.
const (
	TokenKeyPrefix      = "tok."
	CredentialKeyPrefix = "cred."
)

var tokenKeyPattern = regexp.MustCompile(`tok\.[0-9a-f]{64}`)

// RedactKeys masks token keys in text bound for a log: errors from NATS may
// quote the subject of a bucket read, which names the key and so the hash.
func RedactKeys(s string) string {
	return tokenKeyPattern.ReplaceAllString(s, TokenKeyPrefix+"<sha256>")
}

// TokenKey returns the bucket key that makes the token with hash h valid.
func TokenKey(h Hash) string { return TokenKeyPrefix + h.String() }

// CredentialKey returns the management key of credential id.
func CredentialKey(id string) string { return CredentialKeyPrefix + id }

// Credential is the record a token key holds. Its JSON form is the contract's
// key-value schema.
type Credential struct {
	ID        string     `json:"id"`
	Org       string     `json:"org"`
	App       string     `json:"app"`
	Kind      Kind       `json:"kind"`
	Name      string     `json:"name"`
	Version   int64      `json:"version"`
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at"`
	// Signing is the credential's signing secret, sealed with the key ring;
	// nil when it has none.
	Signing *SealedSecret `json:"signing,omitempty"`

	// Secrets are the unsealed signing secrets of a credential that
	// Store.LookupByID returned: the current one first, then those still in
	// a grace period, latest first. Only in memory, never serialized; nil
	// on every other credential.
	Secrets [][]byte `json:"-"`
	// Keys are Secrets prepared for verifying signatures (signature.NewKey,
	// made once when the record is unsealed, not per request), in the same
	// order; a secret that cannot key a MAC has none.
	Keys []*signature.Key `json:"-"`
}

// SealedSecret is a signing secret sealed with the key ring: the record's
// "signing" field, {"key": "<key id>", "sealed": "<base64url>"}, with the
// credential's id as additional authenticated data.
type SealedSecret = secretring.Sealed

// Record is the management form of a credential kept under cred.<id>. It is
// also where a gateway finds a signed request's credential, by id.
type Record struct {
	Credential
	TokenSHA256 string `json:"token_sha256"`
	// Previous are the credential's earlier versions whose token and
	// signing secret still work for a grace period (token rotate --grace):
	// their tok. records stay, with expires_at at the end of the grace.
	// A gateway finds a signed request's older secret here, since the
	// request names only the credential's id. Entries past their expires_at
	// count for nothing, and token commands remove them.
	Previous []Previous `json:"previous,omitempty"`
}

// Previous is an earlier version of a credential in its grace period.
type Previous struct {
	Version     int64         `json:"version"`
	Name        string        `json:"name"`
	TokenSHA256 string        `json:"token_sha256"`
	Signing     *SealedSecret `json:"signing,omitempty"`
	ExpiresAt   time.Time     `json:"expires_at"` // the end of the grace period
}

// ParseRecord decodes and validates the value of a cred.<id> key, as a
// gateway needs it: a valid credential and its token's hash.
func ParseRecord(data []byte) (*Record, error) {
	var r Record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("auth: credential record: %w", err)
	}
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("auth: credential record %q: %w", r.ID, err)
	}
	if _, err := ParseHash(r.TokenSHA256); err != nil {
		return nil, fmt.Errorf("auth: credential record %q: token_sha256: %w", r.ID, err)
	}
	return &r, nil
}

// ValidName reports whether s may name an organization or application: it
// reaches a NATS subject, so nothing else is allowed (^[a-z0-9][a-z0-9_-]{0,62}$).
func ValidName(s []byte) bool { return validIdent(s, 63) }

// ValidRecordID reports whether s may be a credential record's id. hookgate
// issues 16 hex digits (newID), but a platform writing its own records may
// use its own ids (upper case, UUIDs, ...): the contract refuses a record
// only for its organization, application or kind. The id reaches the
// Hook-Credential header, logs and the management key cred.<id>, so it keeps
// to the characters of a NATS key-value key, without its separators, and to
// 256 bytes.
func ValidRecordID[T ~string | ~[]byte](s T) bool {
	if len(s) == 0 || len(s) > 256 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '=':
		default:
			return false
		}
	}
	return true
}

func validIdent(s []byte, maxLen int) bool {
	if len(s) == 0 || len(s) > maxLen {
		return false
	}
	for i, c := range s {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
		case (c == '_' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// Validate checks a credential as read from the bucket or about to be written.
func (c *Credential) Validate() error {
	var errs []error
	if !ValidRecordID(c.ID) {
		errs = append(errs, fmt.Errorf("id %q: want 1 to 256 of A-Z a-z 0-9 - _ =", c.ID))
	}
	if !ValidName([]byte(c.Org)) {
		errs = append(errs, fmt.Errorf("org %q is not a valid name", c.Org))
	}
	switch c.Kind {
	case KindHits:
		if c.App != "" && !ValidName([]byte(c.App)) {
			errs = append(errs, fmt.Errorf("app %q is not a valid name", c.App))
		}
	case KindDeploy:
		if !ValidName([]byte(c.App)) {
			errs = append(errs, fmt.Errorf("deploy credential needs a valid app, got %q", c.App))
		}
	default:
		errs = append(errs, fmt.Errorf("kind %q is neither hits nor deploy", c.Kind))
	}
	return errors.Join(errs...)
}

// ParseCredential decodes and validates the value of a tok. key.
func ParseCredential(data []byte) (*Credential, error) {
	var c Credential
	if err := json.Unmarshal(data, &c); err != nil {
		return nil, fmt.Errorf("auth: credential record: %w", err)
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("auth: credential record %q: %w", c.ID, err)
	}
	return &c, nil
}

// Expired reports whether the credential has expired at now.
func (c *Credential) Expired(now time.Time) bool {
	return c.ExpiresAt != nil && !now.Before(*c.ExpiresAt)
}

// Scope is the outcome of checking a credential against a request.
type Scope int

const (
	ScopeOK Scope = iota
	ScopeWrongKind
	ScopeWrongApp
)

// Allows reports whether the credential may post a webhook of kind to app.
func (c *Credential) Allows(kind Kind, app []byte) Scope {
	if c.Kind != kind {
		return ScopeWrongKind
	}
	if c.App != "" && c.App != string(app) {
		return ScopeWrongApp
	}
	return ScopeOK
}
