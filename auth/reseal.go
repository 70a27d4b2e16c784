package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// This file re-seals every signing secret under the key ring's first key, so
// that an older key can leave the ring.

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
