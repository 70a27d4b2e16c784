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

// MaxPrevious bounds the earlier versions a credential keeps in their grace
// periods: a rotation with a grace beyond it ends the one that would end
// first at once.
const MaxPrevious = 4

// Registry manages credentials in the bucket the way the contract asks a
// platform to: tok.<sha256> makes a token valid, cred.<id> is the record.
//
// Rotation with a grace period (Reissue) keeps the old tok. record, its
// expires_at set to the end of the grace, and lists the old version in the
// record's Previous with its sealed signing secret and the same end: a
// signed request names only the credential's id, so that is where a gateway
// finds the old secret. After the end both are refused by every gateway's
// clock; the records are removed by the next token command (Sweep) and, on
// a bucket that allows per-key TTLs (LimitMarkerTTL set) when JS is set, by
// NATS itself.
type Registry struct {
	KV jetstream.KeyValue
	// JS, when set, lets NATS remove a grace period's tok. record at its end
	// (a per-message TTL), on a bucket that allows it; else the token
	// commands do (Sweep).
	JS jetstream.JetStream
	// Sealer seals signing secrets; nil: issuing, rotating, renaming or
	// resealing a credential with one fails with ErrNoKeyRing.
	Sealer Sealer
	Now    func() time.Time // if nil, time.Now
}

// IssueRequest describes a new credential.
type IssueRequest struct {
	Org     string
	Kind    Kind
	App     string
	Name    string
	Expires time.Duration // 0: never
	// Signing generates a signing secret (NewSigningSecret), returned once
	// in Issued.SigningSecret.
	Signing bool
	// SigningSecret imports a signing secret that a sender generated (see
	// ParseSigningSecret); it is never returned. Not with Signing.
	SigningSecret []byte
}

// Issued is a credential together with its token, which exists only here:
// the bucket holds its hash.
type Issued struct {
	Credential
	Token string
	// SigningSecret is a generated signing secret, shown once; "" when the
	// credential has none or it was imported. The bucket holds it sealed.
	SigningSecret string
	// GraceEnds is when the old token and secret stop working, after a
	// rotation or rename with a grace period; nil otherwise.
	GraceEnds *time.Time
}

// clock is the registry's time, precise.
func (r *Registry) clock() time.Time {
	if r.Now != nil {
		return r.Now().UTC()
	}
	return time.Now().UTC()
}

// now is the registry's time to the second, as records show it.
func (r *Registry) now() time.Time { return r.clock().Truncate(time.Second) }

// ValidCredentialName reports whether name may name a credential: 1 to 200
// characters, none of them control characters.
func ValidCredentialName(name string) bool {
	if name == "" || len(name) > 200 || strings.TrimSpace(name) == "" {
		return false
	}
	return !strings.ContainsFunc(name, unicode.IsControl)
}

// Issue creates a credential and returns its token (and generated signing
// secret).
func (r *Registry) Issue(ctx context.Context, req IssueRequest) (Issued, error) {
	if !ValidCredentialName(req.Name) {
		return Issued{}, fmt.Errorf("auth: issue: name %q: want 1 to 200 characters, no control characters", req.Name)
	}
	if req.Expires < 0 {
		return Issued{}, fmt.Errorf("auth: issue: expiry %s is in the past", req.Expires)
	}
	if req.Signing && req.SigningSecret != nil {
		return Issued{}, errors.New("auth: issue: generate a signing secret or import one, not both")
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
	var generated string
	switch {
	case req.Signing:
		if generated, cred.Signing, err = r.newSigningSecret(id); err != nil {
			return Issued{}, fmt.Errorf("auth: issue: %w", err)
		}
	case req.SigningSecret != nil:
		secret, err := ParseSigningSecret(req.SigningSecret)
		if err != nil {
			return Issued{}, fmt.Errorf("auth: issue: %w", err)
		}
		cred.Signing, err = r.seal(id, secret)
		clear(secret)
		if err != nil {
			return Issued{}, fmt.Errorf("auth: issue: %w", err)
		}
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
	return Issued{Credential: cred, Token: token, SigningSecret: generated}, nil
}

// newSigningSecret generates a signing secret for credential id and seals it.
func (r *Registry) newSigningSecret(id string) (string, *SealedSecret, error) {
	secret, err := NewSigningSecret()
	if err != nil {
		return "", nil, err
	}
	sealed, err := r.seal(id, []byte(secret))
	if err != nil {
		return "", nil, err
	}
	return secret, sealed, nil
}

func (r *Registry) seal(id string, secret []byte) (*SealedSecret, error) {
	if r.Sealer == nil {
		return nil, fmt.Errorf("seal the signing secret: %w", ErrNoKeyRing)
	}
	s, err := r.Sealer.Seal(id, secret)
	if err != nil {
		return nil, fmt.Errorf("seal the signing secret: %w", err)
	}
	return &s, nil
}

// deleteToken deletes the tok. key of a hash in a record, unless the key is
// gone already (a grace record that NATS removed: no new delete marker).
func (r *Registry) deleteToken(ctx context.Context, hash string) error {
	h, err := ParseHash(hash)
	if err != nil {
		return nil // no key can have it
	}
	return retry(ctx, func() error {
		_, err := r.KV.Get(ctx, TokenKey(h))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		return r.KV.Delete(ctx, TokenKey(h))
	})
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

// Revoke removes credential id; its token and signing secret stop working at
// once, and so do those in a grace period.
func (r *Registry) Revoke(ctx context.Context, id string) error {
	// The record is deleted only at the revision whose tokens were deleted:
	// a rotation racing us either fails its own compare-and-set (and
	// withdraws its token) or makes us go round again for its new token.
	for attempt := 0; ; attempt++ {
		rec, rev, err := r.record(ctx, id)
		if err != nil {
			return err
		}
		hashes := []string{rec.TokenSHA256}
		for _, p := range rec.Previous {
			hashes = append(hashes, p.TokenSHA256)
		}
		for _, s := range hashes {
			if h, err := ParseHash(s); err == nil {
				if err := r.KV.Delete(ctx, TokenKey(h)); err != nil {
					return fmt.Errorf("auth: revoke %s: delete token key: %w", id, err)
				}
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

// List returns the credentials of org (all when org is empty), by org, name,
// id and version, latest first. An earlier version in its grace period is an
// entry of its own, with its version, name and the end of the grace as
// expires_at.
func (r *Registry) List(ctx context.Context, org string) ([]Credential, error) {
	clock := r.clock()
	var out []Credential
	err := r.scan(ctx, func(rec Record, _ uint64) error {
		if org != "" && rec.Org != org {
			return nil
		}
		c := rec.Credential
		out = append(out, c)
		for _, p := range rec.Previous {
			if !clock.Before(p.ExpiresAt) {
				continue
			}
			old := c
			old.Version, old.Name = p.Version, p.Name
			end := p.ExpiresAt
			old.ExpiresAt = &end
			out = append(out, old)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b Credential) int {
		return cmpJoin(strings.Compare(a.Org, b.Org), strings.Compare(a.Name, b.Name), strings.Compare(a.ID, b.ID), int(b.Version-a.Version))
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

// scan calls f with every credential record of the bucket and its revision,
// read in one pass (a watch of cred.*, not a read per key). A record that
// does not parse is an error.
func (r *Registry) scan(ctx context.Context, f func(rec Record, rev uint64) error) error {
	w, err := r.KV.Watch(ctx, CredentialKeyPrefix+"*", jetstream.IgnoreDeletes())
	if err != nil {
		return fmt.Errorf("auth: read credentials: %w", err)
	}
	defer stopWatch(w)
	var recs []jetstream.KeyValueEntry
	for {
		var (
			e  jetstream.KeyValueEntry
			ok bool
		)
		select {
		case <-ctx.Done():
			return fmt.Errorf("auth: read credentials: %w", ctx.Err())
		case e, ok = <-w.Updates():
		}
		if !ok {
			return errors.New("auth: read credentials: the watch of the bucket ended")
		}
		if e == nil {
			break // the bucket's state is delivered
		}
		recs = append(recs, e)
	}
	for _, e := range recs {
		var rec Record
		if err := json.Unmarshal(e.Value(), &rec); err != nil {
			return fmt.Errorf("auth: read %s: %w", e.Key(), err)
		}
		if rec.ID == "" {
			rec.ID = strings.TrimPrefix(e.Key(), CredentialKeyPrefix)
		}
		if err := f(rec, e.Revision()); err != nil {
			return err
		}
	}
	return nil
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
