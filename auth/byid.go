package auth

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/hookgate/hookgate/signature"
)

// This file finds signing credentials by id (a signed request names its
// credential with ?credential=), with the same trust and revocation rules as
// tokens: by-id entries share the token cache and its event memory.

// ErrInvalidSigningCredential is returned by LookupByID for a credential id
// that cannot verify a signature: unknown, expired, revoked, rotated away,
// without a signing secret, or with one that cannot be unsealed. One answer
// for all, as the contract's invalid_signature is.
var ErrInvalidSigningCredential = errors.New("auth: no valid signing credential")

// LookupByID returns the credential named id (a signed request's
// ?credential=) with its unsealed signing secrets in Secrets (the current one
// first, then those in a grace period), ErrInvalidSigningCredential, or
// ErrUnavailable when the bucket could not be read. Memory answers while
// the store is trusted; otherwise, or on a miss, the cred.<id> record is
// read. A warm lookup reads nothing, unseals nothing and does not allocate.
// The returned credential is shared: do not change it.
func (s *Store) LookupByID(ctx context.Context, id []byte) (*Credential, error) {
	if !ValidRecordID(id) {
		return nil, ErrInvalidSigningCredential
	}
	k := idKey(id)
	if _, r, ok := s.cached(k); ok {
		s.obs.CacheLookup(true)
		return s.signer(ctx, r)
	}
	s.obs.CacheLookup(false)
	sid := string(id)
	_, r, err := s.fill(ctx, k, CredentialKey(sid), func(v []byte) (*Credential, *idRecord) { return nil, s.decodeID(sid, v) })
	if err != nil {
		return nil, err
	}
	return s.signer(ctx, r)
}

// CachedByID returns the credential named id, as LookupByID would, when
// memory alone can tell it is valid: its cred.<id> and the tok. records it
// needs are in memory, and its secrets unsealed. ok is false when only
// LookupByID can tell (it reads what memory lacks, and gives the refusal).
// A hit counts as a cache lookup. It does not allocate.
func (s *Store) CachedByID(id []byte) (cred *Credential, ok bool) {
	if cred, ok = s.cachedByID(id); ok {
		s.obs.CacheLookup(true)
	}
	return cred, ok
}

func (s *Store) cachedByID(id []byte) (*Credential, bool) {
	if !ValidRecordID(id) {
		return nil, false
	}
	_, r, ok := s.cached(idKey(id))
	if !ok || r == nil || r.open == nil {
		return nil, false
	}
	now := s.cfg.Now()
	if r.rec.Expired(now) {
		return nil, false
	}
	if live, known := s.tokenCached(r.token, &r.rec.Credential, now); !live || !known {
		return nil, false
	}
	return r.open.variant(now, func(h Hash) (live, known bool) { return s.tokenCached(h, &r.rec.Credential, now) })
}

// signer is LookupByID's answer for what memory or the bucket said of an id.
func (s *Store) signer(ctx context.Context, r *idRecord) (*Credential, error) {
	now := s.cfg.Now()
	if r == nil || r.rec.Expired(now) {
		return nil, ErrInvalidSigningCredential
	}
	o := r.open
	if o == nil {
		// It did not unseal when it was read: try again, the ring may
		// have been re-read since (kept nowhere: the next event or fill
		// keeps the result).
		if o = r.unseal(s.cfg.Unsealer); o == nil {
			return nil, ErrInvalidSigningCredential
		}
	}
	if err := s.tokenLive(ctx, r.token, &r.rec.Credential, now); err != nil {
		return nil, err
	}
	cred, _ := o.variant(now, func(h Hash) (live, known bool) { return s.tokenLive(ctx, h, &r.rec.Credential, now) == nil, true })
	return cred, nil
}

// variant is the credential whose secrets are the current one and those of
// the previous versions still in their grace period at now: their end not
// reached and their token live. known false from live means it cannot tell,
// and then neither can variant.
func (o *opened) variant(now time.Time, live func(Hash) (live, known bool)) (*Credential, bool) {
	n := 0
	for _, p := range o.previous {
		if !now.Before(p.until) {
			break // latest first: the older ones end no later
		}
		ok, known := live(p.token)
		if !known {
			return nil, false
		}
		if !ok {
			break
		}
		n++
	}
	return o.variants[n], true
}

// tokenLive checks that the tok. record of h is valid, as Lookup would (not
// counted as a token lookup), and is of the same credential as want: id,
// organization, application and kind.
func (s *Store) tokenLive(ctx context.Context, h Hash, want *Credential, now time.Time) error {
	live, known := s.tokenCached(h, want, now)
	if !known {
		cred, _, err := s.fill(ctx, h, TokenKey(h), decodeToken)
		if err != nil {
			return err
		}
		live = sameLive(cred, want, now)
	}
	if !live {
		return ErrInvalidSigningCredential
	}
	return nil
}

// tokenCached is tokenLive from memory alone: known is false when memory
// does not hold h.
func (s *Store) tokenCached(h Hash, want *Credential, now time.Time) (live, known bool) {
	cred, _, ok := s.cached(h)
	if !ok {
		return false, false
	}
	return sameLive(cred, want, now), true
}

// sameLive says whether cred, what a tok. record says, is valid at now and of
// the same credential as want.
func sameLive(cred, want *Credential, now time.Time) bool {
	return cred != nil && !cred.Expired(now) && cred.ID == want.ID && cred.Org == want.Org && cred.App == want.App && cred.Kind == want.Kind
}

// idKey is the cache and event key of credential id: the SHA-256 of a NUL
// byte and cred.<id>, which no token's hash can be (a token is visible
// ASCII). id is at most 256 bytes (ValidRecordID); it does not allocate.
func idKey(id []byte) Hash {
	var buf [1 + len(CredentialKeyPrefix) + 256]byte
	b := append(buf[:0], 0)
	b = append(b, CredentialKeyPrefix...)
	return Sum256(append(b, id...))
}

// idRecord is what memory keeps of a signing credential's cred.<id> record.
type idRecord struct {
	rec      *Record
	token    Hash    // the current token: its tok. record must be valid
	previous []grace // in a grace period, latest end first
	open     *opened // its secrets unsealed; nil when the current one did not unseal
}

// grace is an earlier version's secret, valid until its end.
type grace struct {
	token  Hash
	until  time.Time
	sealed SealedSecret
}

// opened are a record's unsealed secrets, as LookupByID returns them.
type opened struct {
	previous []grace       // those whose secret unsealed, latest end first
	variants []*Credential // variants[i]: Secrets are the current one and previous[:i]'s
}

// decodeID reads the cred.<id> record of id: nil unless it is a valid
// credential with that id, a token and a signing secret.
func (s *Store) decodeID(id string, value []byte) *idRecord {
	rec, err := ParseRecord(value)
	if err != nil || rec.ID != id || rec.Signing == nil {
		return nil
	}
	r := &idRecord{rec: rec}
	r.token, _ = ParseHash(rec.TokenSHA256) // ParseRecord checked it
	for _, p := range rec.Previous {
		h, err := ParseHash(p.TokenSHA256)
		if err != nil || p.Signing == nil {
			continue
		}
		r.previous = append(r.previous, grace{token: h, until: p.ExpiresAt, sealed: *p.Signing})
	}
	slices.SortStableFunc(r.previous, func(a, b grace) int { return b.until.Compare(a.until) })
	r.open = r.unseal(s.cfg.Unsealer)
	return r
}

// unseal opens the record's secrets with u: nil when the current one does
// not open. A previous secret that does not open is left out.
func (r *idRecord) unseal(u Unsealer) *opened {
	if u == nil {
		return nil
	}
	id := r.rec.ID
	cur, err := u.Unseal(id, *r.rec.Signing)
	if err != nil {
		return nil
	}
	o := &opened{}
	secrets := [][]byte{cur}
	for _, p := range r.previous {
		if sec, err := u.Unseal(id, p.sealed); err == nil {
			secrets = append(secrets, sec)
			o.previous = append(o.previous, p)
		}
	}
	// keys[i] is secrets[i]'s, or nil for one that cannot key a MAC (the
	// Registry refuses such secrets; a platform's own record may hold one).
	keys := make([]*signature.Key, len(secrets))
	for i, sec := range secrets {
		keys[i], _ = signature.NewKey(sec)
	}
	o.variants = make([]*Credential, len(secrets))
	for i := range secrets {
		c := r.rec.Credential
		c.Secrets = secrets[: i+1 : i+1]
		c.Keys = slices.DeleteFunc(slices.Clone(keys[:i+1]), func(k *signature.Key) bool { return k == nil })
		o.variants[i] = &c
	}
	return o
}
