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

	"github.com/nats-io/nats.go"
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

// ReissueRequest describes a rotation or a rename.
type ReissueRequest struct {
	Name string // the new name; "" keeps it
	// Grace keeps the old token and signing secret valid this long beside
	// the new ones; 0 ends them at once (and any earlier grace period too).
	Grace time.Duration
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

// Rotate issues a new token (and signing secret, if it has one) for
// credential id; the old ones stop working at once.
func (r *Registry) Rotate(ctx context.Context, id string) (Issued, error) {
	return r.Reissue(ctx, id, ReissueRequest{})
}

// Rename renames credential id and, as rotate does, issues a new token.
func (r *Registry) Rename(ctx context.Context, id, name string) (Issued, error) {
	if !ValidCredentialName(name) {
		return Issued{}, fmt.Errorf("auth: rename: name %q: want 1 to 200 characters, no control characters", name)
	}
	return r.Reissue(ctx, id, ReissueRequest{Name: name})
}

// Reissue rotates credential id, renaming it when req.Name is set: a new
// token and, for a credential that has one, a new signing secret. The old
// ones stop working at once, or at the end of req.Grace.
//
// It follows the contract's rotation order: put the new tok. key, update
// cred.<id>, then delete the old tok. key, or (with a grace) set its
// expires_at to the end of the grace. Grace periods that end with it (all
// earlier ones without a grace, expired ones with) are ended first.
func (r *Registry) Reissue(ctx context.Context, id string, req ReissueRequest) (Issued, error) {
	if req.Name != "" && !ValidCredentialName(req.Name) {
		return Issued{}, fmt.Errorf("auth: rename: name %q: want 1 to 200 characters, no control characters", req.Name)
	}
	if req.Grace < 0 {
		return Issued{}, fmt.Errorf("auth: rotate: grace %s is negative", req.Grace)
	}
	rec, rev, err := r.record(ctx, id)
	if err != nil {
		return Issued{}, err
	}
	oldHash, err := ParseHash(rec.TokenSHA256)
	if err != nil {
		return Issued{}, fmt.Errorf("auth: credential %s: %w", id, err)
	}
	clock := r.clock()
	if rec.Expired(clock) {
		return Issued{}, fmt.Errorf("auth: credential %s expired at %s: revoke it and issue a new one", id, rec.ExpiresAt.Format(time.RFC3339))
	}
	cred := rec.Credential
	if req.Name != "" {
		cred.Name = req.Name
	}
	cred.Version++
	var generated string
	if rec.Signing != nil {
		if generated, cred.Signing, err = r.newSigningSecret(id); err != nil {
			return Issued{}, fmt.Errorf("auth: rotate %s: %w", id, err)
		}
	}
	next := Record{Credential: cred}
	var graceEnds *time.Time
	if req.Grace > 0 {
		end := ceilSecond(clock.Add(req.Grace))
		if rec.ExpiresAt != nil && rec.ExpiresAt.Before(end) {
			end = *rec.ExpiresAt
		}
		graceEnds = &end
		next.Previous = append(next.Previous, Previous{Version: rec.Version, Name: rec.Name, TokenSHA256: rec.TokenSHA256, Signing: rec.Signing, ExpiresAt: end})
	}
	// Earlier grace periods go on (with a grace) until their end, at most
	// MaxPrevious of them, the last to end kept.
	var ended []Previous
	for _, p := range rec.Previous {
		if req.Grace > 0 && clock.Before(p.ExpiresAt) {
			next.Previous = append(next.Previous, p)
		} else {
			ended = append(ended, p)
		}
	}
	slices.SortStableFunc(next.Previous, func(a, b Previous) int { return b.ExpiresAt.Compare(a.ExpiresAt) })
	if len(next.Previous) > MaxPrevious {
		ended = append(ended, next.Previous[MaxPrevious:]...)
		next.Previous = next.Previous[:MaxPrevious]
	}
	for _, p := range ended {
		if err := r.deleteToken(ctx, p.TokenSHA256); err != nil {
			return Issued{}, fmt.Errorf("auth: rotate %s: end the grace period of version %d: %w (nothing else changed; run it again)", id, p.Version, err)
		}
	}

	token, h, err := newTokenFor(cred.Kind)
	if err != nil {
		return Issued{}, err
	}
	if err := r.putToken(ctx, h, cred); err != nil {
		return Issued{}, err
	}
	next.TokenSHA256 = h.String()
	data, _ := json.Marshal(next)
	newRev, err := r.KV.Update(ctx, CredentialKey(id), data, rev)
	if err != nil {
		// Someone else changed the credential meanwhile: withdraw our token.
		_ = r.KV.Delete(ctx, TokenKey(h))
		return Issued{}, fmt.Errorf("auth: update %s: %w", CredentialKey(id), err)
	}
	var finish func() error
	if graceEnds != nil {
		finish = func() error { return r.keepUntil(ctx, oldHash, *graceEnds) }
	} else {
		finish = func() error { return r.KV.Delete(ctx, TokenKey(oldHash)) }
	}
	if err := retry(ctx, finish); err != nil {
		// The old token must not outlive the record that names it (nor
		// its grace): put the record back as it was and withdraw the new
		// token, so the state stays consistent and the rotation can simply
		// be run again.
		old, _ := json.Marshal(rec)
		if _, rerr := r.KV.Update(ctx, CredentialKey(id), old, newRev); rerr == nil {
			_ = r.KV.Delete(ctx, TokenKey(h))
			return Issued{}, fmt.Errorf("auth: end the old token of %s: %w (nothing changed; run it again)", id, err)
		}
		return Issued{}, fmt.Errorf("auth: end the old token key %s of %s: %w; the old token may still work: delete that key", TokenKey(oldHash), id, err)
	}
	return Issued{Credential: cred, Token: token, SigningSecret: generated, GraceEnds: graceEnds}, nil
}

// ceilSecond rounds t up to a whole second: a grace is never shorter than
// asked.
func ceilSecond(t time.Time) time.Time {
	if tr := t.Truncate(time.Second); !tr.Equal(t) {
		return tr.Add(time.Second)
	}
	return t
}

// keepUntil sets the expires_at of token h's record to end (unless it ends
// earlier already), keeping the rest of it as it is.
func (r *Registry) keepUntil(ctx context.Context, h Hash, end time.Time) error {
	key := TokenKey(h)
	e, err := r.KV.Get(ctx, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil // gone already: nothing to keep
	}
	if err != nil {
		return err
	}
	var c Credential
	if err := json.Unmarshal(e.Value(), &c); err != nil {
		return fmt.Errorf("read the old token key: %w", err)
	}
	if c.ExpiresAt == nil || end.Before(*c.ExpiresAt) {
		c.ExpiresAt = &end
	}
	data, _ := json.Marshal(c)
	return r.updateToken(ctx, key, data, e.Revision(), *c.ExpiresAt)
}

// updateToken writes a tok. record at revision rev that is invalid from
// until: with a per-message TTL that lets NATS remove it then, where the
// bucket allows it (JS set, LimitMarkerTTL on), else as a plain update.
func (r *Registry) updateToken(ctx context.Context, key string, data []byte, rev uint64, until time.Time) error {
	if ttl := r.ttlUntil(ctx, until); ttl > 0 {
		// The KeyValue API takes a TTL only when it creates a key; the
		// stream under it takes one on any message (Nats-TTL). The
		// subject and the revision check are those of kv.Update.
		msg := &nats.Msg{Subject: "$KV." + r.KV.Bucket() + "." + key, Data: data}
		_, err := r.JS.PublishMsg(ctx, msg, jetstream.WithExpectLastSequencePerSubject(rev), jetstream.WithMsgTTL(ttl))
		return err
	}
	_, err := r.KV.Update(ctx, key, data, rev)
	return err
}

// ttlUntil is the per-message TTL that removes a record at until (whole
// seconds, a second late rather than early), or 0 when the bucket takes no
// TTLs or until has passed.
func (r *Registry) ttlUntil(ctx context.Context, until time.Time) time.Duration {
	if r.JS == nil {
		return 0
	}
	st, err := r.KV.Status(ctx)
	if err != nil || st.LimitMarkerTTL() <= 0 {
		return 0
	}
	d := until.Sub(r.clock())
	if d <= 0 {
		return 0
	}
	return d.Truncate(time.Second) + time.Second
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

// Sweep removes the grace periods that have ended: their tok. keys, and
// their entries in the records. It returns how many it removed. Every token
// command runs it first.
func (r *Registry) Sweep(ctx context.Context) (int, error) {
	clock := r.clock()
	n := 0
	var errs []error
	err := r.scan(ctx, func(rec Record, rev uint64) error {
		var keep []Previous
		removed := 0
		for _, p := range rec.Previous {
			if clock.Before(p.ExpiresAt) {
				keep = append(keep, p)
				continue
			}
			if err := r.deleteToken(ctx, p.TokenSHA256); err != nil {
				keep = append(keep, p) // the next sweep tries again
				errs = append(errs, fmt.Errorf("credential %s version %d: %w", rec.ID, p.Version, err))
				continue
			}
			removed++
		}
		if removed == 0 {
			return nil
		}
		rec.Previous = keep
		data, _ := json.Marshal(rec)
		if _, err := r.KV.Update(ctx, CredentialKey(rec.ID), data, rev); err != nil && !errors.Is(err, jetstream.ErrKeyExists) {
			// Changed meanwhile (ErrKeyExists): by a command that sweeps
			// as it goes, or the next sweep will.
			errs = append(errs, fmt.Errorf("credential %s: %w", rec.ID, err))
			return nil
		}
		n += removed
		return nil
	})
	if err == nil && len(errs) > 0 {
		err = fmt.Errorf("auth: sweep ended grace periods: %w", errors.Join(errs...))
	}
	return n, err
}

// ResealResult says what Reseal did.
type ResealResult struct {
	Key         string // the sealing key
	Records     int    // records written: cred.<id> and tok. keys
	Secrets     int    // signing secrets sealed anew
	Credentials int    // credentials with a signing secret, all now under Key
}

// Reseal seals every signing secret of the credentials' records (cred.<id>,
// its token's and its grace periods' tok. keys) that is not sealed under the
// Sealer's sealing key anew under it. Once it returns without error, no
// record needs another key of the ring. A secret that does not unseal is an
// error naming its credential and key; the others are resealed all the same.
func (r *Registry) Reseal(ctx context.Context) (ResealResult, error) {
	if r.Sealer == nil {
		return ResealResult{}, fmt.Errorf("auth: reseal: %w", ErrNoKeyRing)
	}
	res := ResealResult{Key: r.Sealer.SealingKey()}
	var errs []error
	err := r.scan(ctx, func(rec Record, rev uint64) error {
		if rec.Signing == nil && !slices.ContainsFunc(rec.Previous, func(p Previous) bool { return p.Signing != nil }) {
			return nil
		}
		if err := r.resealRecord(ctx, rec.ID, &res); err != nil {
			errs = append(errs, err)
			return nil
		}
		res.Credentials++
		return nil
	})
	if err == nil && len(errs) > 0 {
		err = fmt.Errorf("auth: reseal: %d credentials left as they were: %w", len(errs), errors.Join(errs...))
	}
	return res, err
}

// resealRecord reseals one credential: its record, with a compare-and-set
// (a rotation racing it makes it read the record again), then its tok. keys.
func (r *Registry) resealRecord(ctx context.Context, id string, res *ResealResult) error {
	key := r.Sealer.SealingKey()
	for attempt := 0; ; attempt++ {
		rec, rev, err := r.record(ctx, id)
		if errors.Is(err, ErrNotFound) {
			return nil // revoked meanwhile
		}
		if err != nil {
			return err
		}
		secrets := 0
		if rec.Signing, err = r.reseal(id, rec.Signing, &secrets); err != nil {
			return err
		}
		for i := range rec.Previous {
			if rec.Previous[i].Signing, err = r.reseal(id, rec.Previous[i].Signing, &secrets); err != nil {
				return err
			}
		}
		if secrets > 0 {
			data, _ := json.Marshal(rec)
			if _, err := r.KV.Update(ctx, CredentialKey(id), data, rev); err != nil {
				if errors.Is(err, jetstream.ErrKeyExists) && attempt < 4 {
					continue
				}
				return fmt.Errorf("credential %s: write %s: %w", id, CredentialKey(id), err)
			}
			res.Records++
			res.Secrets += secrets
		}
		// The tok. keys: the current token's and those in a grace period
		// (which keep a TTL to their end, where the bucket takes one).
		if h, err := ParseHash(rec.TokenSHA256); err == nil {
			if err := r.resealToken(ctx, id, h, key, time.Time{}, res); err != nil {
				return err
			}
		}
		for _, p := range rec.Previous {
			if h, err := ParseHash(p.TokenSHA256); err == nil {
				if err := r.resealToken(ctx, id, h, key, p.ExpiresAt, res); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

// reseal returns s sealed under the sealing key, counting it in n, or s when
// it is nil or sealed under that key already.
func (r *Registry) reseal(id string, s *SealedSecret, n *int) (*SealedSecret, error) {
	if s == nil || s.Key == r.Sealer.SealingKey() {
		return s, nil
	}
	plain, err := r.Sealer.Unseal(id, *s)
	if err != nil {
		return nil, fmt.Errorf("credential %s: unseal its signing secret (key %q): %w", id, s.Key, err)
	}
	defer clear(plain)
	out, err := r.Sealer.Seal(id, plain)
	if err != nil {
		return nil, fmt.Errorf("credential %s: %w", id, err)
	}
	*n++
	return &out, nil
}

// resealToken reseals the "signing" of token h's record, keeping every other
// field as it is; a grace period's record gets a TTL to until again (an
// update drops it).
func (r *Registry) resealToken(ctx context.Context, id string, h Hash, key string, until time.Time, res *ResealResult) error {
	return retry(ctx, func() error {
		e, err := r.KV.Get(ctx, TokenKey(h))
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		var fields map[string]json.RawMessage
		var c Credential
		if json.Unmarshal(e.Value(), &fields) != nil || json.Unmarshal(e.Value(), &c) != nil || c.Signing == nil || c.Signing.Key == key {
			return nil // nothing hookgate can or need reseal
		}
		n := 0
		s, err := r.reseal(id, c.Signing, &n)
		if err != nil {
			return err
		}
		fields["signing"], _ = json.Marshal(s)
		data, _ := json.Marshal(fields)
		if err := r.updateToken(ctx, TokenKey(h), data, e.Revision(), until); err != nil {
			return fmt.Errorf("credential %s: write its token key: %w", id, err)
		}
		res.Records++
		res.Secrets += n
		return nil
	})
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
