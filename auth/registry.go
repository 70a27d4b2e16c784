package auth

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrNotFound is returned for a credential id the bucket does not hold.
var ErrNotFound = errors.New("auth: no such credential")

// Registry manages credentials in the bucket the way the contract asks a
// platform to: tok.<sha256> makes a token valid, cred.<id> is the record.
type Registry struct {
	KV  jetstream.KeyValue
	Now func() time.Time // if nil, time.Now
}

// IssueRequest describes a new credential.
type IssueRequest struct {
	Org     string
	Kind    Kind
	App     string
	Name    string
	Expires time.Duration // 0: never
}

// Issued is a credential together with its token, which exists only here:
// the bucket holds its hash.
type Issued struct {
	Credential
	Token string
}

func (r *Registry) now() time.Time {
	if r.Now != nil {
		return r.Now().UTC().Truncate(time.Second)
	}
	return time.Now().UTC().Truncate(time.Second)
}

// ValidCredentialName reports whether name may name a credential: 1 to 200
// characters, none of them control characters.
func ValidCredentialName(name string) bool {
	if name == "" || len(name) > 200 || strings.TrimSpace(name) == "" {
		return false
	}
	return !strings.ContainsFunc(name, unicode.IsControl)
}

// Issue creates a credential and returns its token.
func (r *Registry) Issue(ctx context.Context, req IssueRequest) (Issued, error) {
	if !ValidCredentialName(req.Name) {
		return Issued{}, fmt.Errorf("auth: issue: name %q: want 1 to 200 characters, no control characters", req.Name)
	}
	if req.Expires < 0 {
		return Issued{}, fmt.Errorf("auth: issue: expiry %s is in the past", req.Expires)
	}
	id, err := newID()
	if err != nil {
		return Issued{}, err
	}
	now := r.now()
	cred := Credential{ID: id, Org: req.Org, App: req.App, Kind: req.Kind, Name: req.Name, Version: 1, CreatedAt: now}
	if req.Expires > 0 {
		exp := now.Add(req.Expires)
		cred.ExpiresAt = &exp
	}
	if err := cred.Validate(); err != nil {
		return Issued{}, fmt.Errorf("auth: issue: %w", err)
	}
	token, h, err := newTokenFor(cred.Kind)
	if err != nil {
		return Issued{}, err
	}
	if err := r.putToken(ctx, h, cred); err != nil {
		return Issued{}, err
	}
	rec, _ := json.Marshal(Record{Credential: cred, TokenSHA256: h.String()})
	if _, err := r.KV.Create(ctx, CredentialKey(id), rec); err != nil {
		_ = r.KV.Delete(ctx, TokenKey(h))
		return Issued{}, fmt.Errorf("auth: issue: write %s: %w", CredentialKey(id), err)
	}
	return Issued{Credential: cred, Token: token}, nil
}

// Rotate issues a new token for credential id; the old one stops working.
func (r *Registry) Rotate(ctx context.Context, id string) (Issued, error) {
	return r.reissue(ctx, id, func(*Credential) {})
}

// Rename renames credential id and, as rotate does, issues a new token.
func (r *Registry) Rename(ctx context.Context, id, name string) (Issued, error) {
	if !ValidCredentialName(name) {
		return Issued{}, fmt.Errorf("auth: rename: name %q: want 1 to 200 characters, no control characters", name)
	}
	return r.reissue(ctx, id, func(c *Credential) { c.Name = name })
}

// reissue follows the contract's rotation order: put the new tok. key, update
// cred.<id>, delete the old tok. key.
func (r *Registry) reissue(ctx context.Context, id string, change func(*Credential)) (Issued, error) {
	rec, rev, err := r.record(ctx, id)
	if err != nil {
		return Issued{}, err
	}
	oldHash, err := ParseHash(rec.TokenSHA256)
	if err != nil {
		return Issued{}, fmt.Errorf("auth: credential %s: %w", id, err)
	}
	cred := rec.Credential
	change(&cred)
	cred.Version++
	token, h, err := newTokenFor(cred.Kind)
	if err != nil {
		return Issued{}, err
	}
	if err := r.putToken(ctx, h, cred); err != nil {
		return Issued{}, err
	}
	data, _ := json.Marshal(Record{Credential: cred, TokenSHA256: h.String()})
	newRev, err := r.KV.Update(ctx, CredentialKey(id), data, rev)
	if err != nil {
		// Someone else changed the credential meanwhile: withdraw our token.
		_ = r.KV.Delete(ctx, TokenKey(h))
		return Issued{}, fmt.Errorf("auth: update %s: %w", CredentialKey(id), err)
	}
	if err := retry(ctx, func() error { return r.KV.Delete(ctx, TokenKey(oldHash)) }); err != nil {
		// The old token must not outlive the record that names it: put the
		// record back as it was and withdraw the new token, so the state
		// stays consistent and the rotation can simply be run again.
		old, _ := json.Marshal(rec)
		if _, rerr := r.KV.Update(ctx, CredentialKey(id), old, newRev); rerr == nil {
			_ = r.KV.Delete(ctx, TokenKey(h))
			return Issued{}, fmt.Errorf("auth: delete old token key of %s: %w (nothing changed; run it again)", id, err)
		}
		return Issued{}, fmt.Errorf("auth: delete old token key %s of %s: %w; the old token may still work: delete that key", TokenKey(oldHash), id, err)
	}
	return Issued{Credential: cred, Token: token}, nil
}

// retry runs f up to three times, a little apart, while it fails.
func retry(ctx context.Context, f func() error) error {
	var err error
	for attempt := range 3 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return err
			case <-time.After(200 * time.Millisecond):
			}
		}
		if err = f(); err == nil {
			return nil
		}
	}
	return err
}

// Revoke removes credential id; its token stops working at once.
func (r *Registry) Revoke(ctx context.Context, id string) error {
	// The record is deleted only at the revision whose token was deleted: a
	// rotation racing us either fails its own compare-and-set (and withdraws
	// its token) or makes us go round again for its new token.
	for attempt := 0; ; attempt++ {
		rec, rev, err := r.record(ctx, id)
		if err != nil {
			return err
		}
		if h, err := ParseHash(rec.TokenSHA256); err == nil {
			if err := r.KV.Delete(ctx, TokenKey(h)); err != nil {
				return fmt.Errorf("auth: revoke %s: delete token key: %w", id, err)
			}
		}
		err = r.KV.Delete(ctx, CredentialKey(id), jetstream.LastRevision(rev))
		if err == nil {
			return nil
		}
		if !errors.Is(err, jetstream.ErrKeyExists) || attempt == 4 {
			return fmt.Errorf("auth: revoke %s: delete %s: %w", id, CredentialKey(id), err)
		}
	}
}

// List returns the credentials of org (all when org is empty), by org and name.
func (r *Registry) List(ctx context.Context, org string) ([]Credential, error) {
	lister, err := r.KV.ListKeysFiltered(ctx, CredentialKeyPrefix+"*")
	if err != nil {
		return nil, fmt.Errorf("auth: list credentials: %w", err)
	}
	var out []Credential
	for key := range lister.Keys() {
		rec, _, err := r.record(ctx, strings.TrimPrefix(key, CredentialKeyPrefix))
		if errors.Is(err, ErrNotFound) {
			continue // revoked while we listed
		}
		if err != nil {
			return nil, err
		}
		if org == "" || rec.Org == org {
			out = append(out, rec.Credential)
		}
	}
	slices.SortFunc(out, func(a, b Credential) int {
		return cmpJoin(strings.Compare(a.Org, b.Org), strings.Compare(a.Name, b.Name), strings.Compare(a.ID, b.ID))
	})
	return out, nil
}

func cmpJoin(cs ...int) int {
	for _, c := range cs {
		if c != 0 {
			return c
		}
	}
	return 0
}

func (r *Registry) record(ctx context.Context, id string) (Record, uint64, error) {
	if !ValidRecordID(id) {
		return Record{}, 0, fmt.Errorf("%w: %q is not a credential id", ErrNotFound, id)
	}
	e, err := r.KV.Get(ctx, CredentialKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return Record{}, 0, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	if err != nil {
		return Record{}, 0, fmt.Errorf("auth: read %s: %w", CredentialKey(id), err)
	}
	var rec Record
	if err := json.Unmarshal(e.Value(), &rec); err != nil {
		return Record{}, 0, fmt.Errorf("auth: read %s: %w", CredentialKey(id), err)
	}
	return rec, e.Revision(), nil
}

func (r *Registry) putToken(ctx context.Context, h Hash, cred Credential) error {
	data, _ := json.Marshal(cred)
	if _, err := r.KV.Create(ctx, TokenKey(h), data); err != nil {
		return fmt.Errorf("auth: write token key: %w", err)
	}
	return nil
}

func newTokenFor(kind Kind) (string, Hash, error) {
	token, err := NewToken(kind)
	if err != nil {
		return "", Hash{}, err
	}
	return token, HashToken([]byte(token)), nil
}

func newID() (string, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("auth: new id: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}
