package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// This file issues a credential anew (rotate, rename) and keeps the old
// token and signing secret for a grace period, ended by NATS (a per-key TTL)
// or by Sweep.

// ReissueRequest describes a rotation or a rename.
type ReissueRequest struct {
	Name string // the new name; "" keeps it
	// Grace keeps the old token and signing secret valid this long beside
	// the new ones; 0 ends them at once (and any earlier grace period too).
	Grace time.Duration
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
	var ended []Previous
	next.Previous, ended, graceEnds = graces(rec, req.Grace, clock)
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
// graces returns the grace periods a rotation of rec with grace leaves
// (latest end first), those it ends, and when the new one ends (nil without
// a grace). Earlier grace periods go on (with a grace) until their end, at
// most MaxPrevious of them, the last to end kept.
func graces(rec Record, grace time.Duration, clock time.Time) (kept, ended []Previous, ends *time.Time) {
	if grace > 0 {
		end := ceilSecond(clock.Add(grace))
		if rec.ExpiresAt != nil && rec.ExpiresAt.Before(end) {
			end = *rec.ExpiresAt
		}
		ends = &end
		kept = append(kept, Previous{Version: rec.Version, Name: rec.Name, TokenSHA256: rec.TokenSHA256, Signing: rec.Signing, ExpiresAt: end})
	}
	for _, p := range rec.Previous {
		if grace > 0 && clock.Before(p.ExpiresAt) {
			kept = append(kept, p)
		} else {
			ended = append(ended, p)
		}
	}
	slices.SortStableFunc(kept, func(a, b Previous) int { return b.ExpiresAt.Compare(a.ExpiresAt) })
	if len(kept) > MaxPrevious {
		ended = append(ended, kept[MaxPrevious:]...)
		kept = kept[:MaxPrevious]
	}
	return kept, ended, ends
}

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
