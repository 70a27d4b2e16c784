package auth

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	"github.com/nats-io/nats.go/jetstream"
)

// ErrInvalidToken is returned for a well-formed token that is not a valid
// credential: unknown, expired, rotated away or revoked.
var ErrInvalidToken = errors.New("auth: invalid token")

// ErrUnavailable is returned when the bucket could not be read to decide.
var ErrUnavailable = errors.New("auth: credentials unavailable")

// Source reads one key of the credentials bucket. jetstream.KeyValue
// implements it. It must be safe to call concurrently.
type Source interface {
	Get(ctx context.Context, key string) (jetstream.KeyValueEntry, error)
}

// Observer is told what the store does, for metrics. Its methods must be safe
// to call concurrently and cheap: CacheLookup runs on every request.
type Observer interface {
	CacheLookup(hit bool)
	TokenEvent(op EventOp)
}

// EventOp names a credential event applied from the bucket.
type EventOp string

const (
	EventPut     EventOp = "put"
	EventDelete  EventOp = "delete"
	EventInvalid EventOp = "invalid"
)

// StoreConfig sizes the cache. Zero values take the defaults.
type StoreConfig struct {
	MaxEntries    int64         // positive and negative entries held; default 100000
	PositiveTTL   time.Duration // backstop for a missed event; default 5m
	NegativeTTL   time.Duration // how long an unknown hash is remembered; default 1m
	LookupTimeout time.Duration // longest bucket read on a miss; default 2s
	// StaleAfter bounds how long the cache is trusted while the watch lags
	// behind the bucket; default 500ms, so that a revoke holds within the
	// contract's second even when the watch stalls. See Watch.
	StaleAfter time.Duration
	// Unsealer opens the signing secrets of the credentials that LookupByID
	// finds (a *secretring.File, which serve re-reads on SIGHUP); nil: none
	// opens, and no signed request verifies.
	Unsealer Unsealer
	Now      func() time.Time
	Logger   *slog.Logger // trust changes; if nil, not logged
}

// Store answers "which credential does this token hash belong to?" and, for
// signed requests, "which signing credential has this id?" from a ristretto
// cache in front of the bucket, kept current by Apply.
//
// Ordering: ristretto's Set is asynchronous and may be dropped, so the cache is
// never the authority. Every event Apply receives is also kept for a while in
// recent, which overrides the cache on lookup; a miss fills the cache only
// under mu and only when no newer event for the hash was applied meanwhile.
// Because Apply's Del is queued behind any Set that went in before it, no fill
// can land after the delete that should have removed it.
//
// Credentials by id follow the same rules: their entries and events live in
// the same cache and event memory, under idKey(id) (a hash that no token can
// have), fed by the cred.<id> events and filled from the cred.<id> record.
// Such an entry holds the credential with its signing secrets unsealed, so a
// warm signed request costs neither a bucket read nor an unseal; unsealed
// secrets exist only there, in memory. A credential found by id is valid only
// while the tok. record of its current token is (looked up like any token):
// deleting either cred.<id> or that tok. key revokes its signatures, with the
// token's own ordering guarantees. A secret in a grace period (Record.Previous)
// is valid while its own tok. record is and its end has not passed.
//
// Staleness: the cache is only as current as the watch. When the watch may
// have missed events (NATS disconnected, or the watch lagging behind the
// bucket), Distrust makes every lookup read the bucket, and entries made
// before belong to an old epoch and are never served again.
type Store struct {
	cache *ristretto.Cache[uint64, *entry]
	src   Source
	obs   Observer
	cfg   StoreConfig

	mu        sync.RWMutex
	recent    map[Hash]event
	recentN   atomic.Int64 // len(recent), read without the lock on the hot path
	recentTTL time.Duration
	lastPrune time.Time

	epoch   atomic.Uint64 // entries and events of other epochs are not served
	trusted atomic.Bool   // false: every lookup reads the bucket
}

// entry is what the cache holds for one key: a token hash (cred) or a
// credential id (id, under idKey).
type entry struct {
	hash  Hash
	cred  *Credential // a tok. key's credential; nil: known unknown
	id    *idRecord   // a cred.<id> key's signing credential; nil: none
	epoch uint64
}

type event struct {
	rev   uint64
	cred  *Credential // nil: deleted
	id    *idRecord   // nil: deleted, or not a signing credential
	at    time.Time
	epoch uint64
}

// NewStore returns a store reading misses from src.
func NewStore(src Source, obs Observer, cfg StoreConfig) (*Store, error) {
	if cfg.MaxEntries <= 0 {
		cfg.MaxEntries = 100_000
	}
	if cfg.PositiveTTL <= 0 {
		cfg.PositiveTTL = 5 * time.Minute
	}
	if cfg.NegativeTTL <= 0 {
		cfg.NegativeTTL = time.Minute
	}
	if cfg.LookupTimeout <= 0 {
		cfg.LookupTimeout = 2 * time.Second
	}
	if cfg.StaleAfter <= 0 {
		cfg.StaleAfter = 500 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if obs == nil {
		obs = nopObserver{}
	}
	cache, err := ristretto.NewCache(&ristretto.Config[uint64, *entry]{
		NumCounters: cfg.MaxEntries * 10,
		MaxCost:     cfg.MaxEntries,
		BufferItems: 64,
		// The key is the first 8 bytes of a SHA-256 already; entry.hash holds
		// the rest, compared on every hit.
		KeyToHash: func(k uint64) (uint64, uint64) { return k, 0 },
	})
	if err != nil {
		return nil, fmt.Errorf("auth: new cache: %w", err)
	}
	// An event must outlive any fill that read the bucket before it.
	recentTTL := max(time.Minute, 4*cfg.LookupTimeout)
	s := &Store{cache: cache, src: src, obs: obs, cfg: cfg, recent: make(map[Hash]event), recentTTL: recentTTL}
	s.trusted.Store(true)
	return s, nil
}

// Distrust stops serving from memory: from now on every lookup reads the
// bucket, until Trust. Everything cached so far is never served again.
func (s *Store) Distrust(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.trusted.Swap(false) {
		s.cfg.Logger.Warn("credential cache distrusted: every token is read from the bucket until the watch catches up", "reason", reason)
	}
	s.epoch.Add(1)
}

// Trust serves from memory again, starting from an empty epoch.
func (s *Store) Trust() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.epoch.Add(1)
	if !s.trusted.Swap(true) {
		s.cfg.Logger.Info("credential cache trusted again: the watch has caught up")
	}
}

// Trusted reports whether lookups may be answered from memory.
func (s *Store) Trusted() bool { return s.trusted.Load() }

// Close releases the cache.
func (s *Store) Close() { s.cache.Close() }

func cacheKey(h Hash) uint64 { return binary.LittleEndian.Uint64(h[:8]) }

// Lookup returns the valid credential for the token hash h, ErrInvalidToken,
// or ErrUnavailable when the bucket could not be read. A cache hit does not
// allocate.
func (s *Store) Lookup(ctx context.Context, h Hash) (*Credential, error) {
	if cred, _, ok := s.cached(h); ok {
		s.obs.CacheLookup(true)
		return s.valid(cred)
	}
	s.obs.CacheLookup(false)
	cred, _, err := s.fill(ctx, h, TokenKey(h), decodeToken)
	if err != nil {
		return nil, err
	}
	return s.valid(cred)
}

// Cached returns h's credential when memory holds it as valid, without
// reading the bucket: the path of almost every request, which then needs no
// other check of its token. ok is false when only Lookup can tell: a miss, a
// token known invalid, an expired credential, or memory not trusted (the
// watch lags). A hit counts as a cache lookup; a miss does not, as the Lookup
// that follows counts it.
func (s *Store) Cached(h Hash) (cred *Credential, ok bool) {
	cred, _, ok = s.cached(h)
	if !ok || cred == nil || cred.Expired(s.cfg.Now()) {
		return nil, false
	}
	s.obs.CacheLookup(true)
	return cred, true
}

func (s *Store) valid(cred *Credential) (*Credential, error) {
	if cred == nil || cred.Expired(s.cfg.Now()) {
		return nil, ErrInvalidToken
	}
	return cred, nil
}

// cached returns what memory knows of h: ok is false when only the bucket can
// tell. For a token hash it is cred; for an idKey, id.
func (s *Store) cached(h Hash) (cred *Credential, id *idRecord, ok bool) {
	if !s.trusted.Load() {
		return nil, nil, false
	}
	epoch := s.epoch.Load()
	if s.recentN.Load() > 0 {
		s.mu.RLock()
		ev, found := s.recent[h]
		s.mu.RUnlock()
		if found && ev.epoch == epoch {
			return ev.cred, ev.id, true
		}
	}
	e, found := s.cache.Get(cacheKey(h))
	if !found || e.hash != h || e.epoch != epoch {
		return nil, nil, false
	}
	return e.cred, e.id, true
}

// decodeToken reads a tok. record; nil when it makes no token valid.
func decodeToken(v []byte) (*Credential, *idRecord) {
	c, err := ParseCredential(v)
	if err != nil {
		return nil, nil
	}
	return c, nil
}

// fill reads key (the bucket key of h) and caches what decode makes of it,
// unless an event at least as new was applied meanwhile: then the event is
// the answer.
func (s *Store) fill(ctx context.Context, h Hash, key string, decode func([]byte) (*Credential, *idRecord)) (*Credential, *idRecord, error) {
	// Events applied in earlier epochs are older than this read.
	epoch := s.epoch.Load()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.LookupTimeout)
	defer cancel()
	var (
		cred *Credential
		id   *idRecord
		rev  uint64
	)
	kve, err := s.src.Get(ctx, key)
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		what := "token key"
		if strings.HasPrefix(key, CredentialKeyPrefix) {
			what = "credential record"
		}
		return nil, nil, fmt.Errorf("%w: read %s: %w", ErrUnavailable, what, err)
	default:
		rev = kve.Revision()
		cred, id = decode(kve.Value())
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.trusted.Load() || s.epoch.Load() != epoch {
		return cred, id, nil // the bucket's answer, kept nowhere
	}
	if ev, ok := s.recent[h]; ok && ev.rev >= rev {
		// The watch applied an event at least as new as what we read (a
		// replica's direct get may lag). Revisions order events across
		// epochs too: the watch applies them in order. The event is the
		// answer, and what the cache keeps.
		cred, id = ev.cred, ev.id
	}
	ttl := s.cfg.PositiveTTL
	if cred == nil && id == nil {
		ttl = s.cfg.NegativeTTL
	}
	s.cache.SetWithTTL(cacheKey(h), &entry{hash: h, cred: cred, id: id, epoch: epoch}, 1, ttl)
	return cred, id, nil
}

// Apply records one event of the bucket's tok. and cred.<id> keys, in
// revision order. A tok. put whose value does not parse makes the token
// invalid and is counted; a cred.<id> put that is no valid signing
// credential makes none (not counted: the token events are the tok. keys').
func (s *Store) Apply(key string, op jetstream.KeyValueOp, value []byte, rev uint64) {
	switch {
	case strings.HasPrefix(key, TokenKeyPrefix):
		s.applyToken(key, op, value, rev)
	case strings.HasPrefix(key, CredentialKeyPrefix):
		id := key[len(CredentialKeyPrefix):]
		if !ValidRecordID(id) {
			return // no signed request can name it
		}
		var r *idRecord
		if op == jetstream.KeyValuePut {
			r = s.decodeID(id, value)
		}
		s.remember(idKey([]byte(id)), nil, r, rev)
	}
}

func (s *Store) applyToken(key string, op jetstream.KeyValueOp, value []byte, rev uint64) {
	h, err := ParseHash(key[len(TokenKeyPrefix):])
	if err != nil {
		s.obs.TokenEvent(EventInvalid)
		return
	}
	var cred *Credential
	if op == jetstream.KeyValuePut {
		if cred, err = ParseCredential(value); err != nil {
			s.obs.TokenEvent(EventInvalid)
		} else {
			s.obs.TokenEvent(EventPut)
		}
	} else {
		s.obs.TokenEvent(EventDelete)
	}
	s.remember(h, cred, nil, rev)
}

// remember applies one event: it overrides the cache for a while (recent),
// and the cache takes it (a put) or forgets the key (anything else).
func (s *Store) remember(h Hash, cred *Credential, id *idRecord, rev uint64) {
	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	epoch := s.epoch.Load()
	s.recent[h] = event{rev: rev, cred: cred, id: id, at: now, epoch: epoch}
	if cred != nil || id != nil {
		s.cache.SetWithTTL(cacheKey(h), &entry{hash: h, cred: cred, id: id, epoch: epoch}, 1, s.cfg.PositiveTTL)
	} else {
		s.cache.Del(cacheKey(h))
	}
	if now.Sub(s.lastPrune) > time.Second {
		s.pruneLocked(now)
	}
	s.recentN.Store(int64(len(s.recent)))
}

// prune forgets events older than the time any fill can take; the cache (or a
// fresh bucket read) then carries what they said. Apply prunes too, at most
// once a second; Watch calls prune for the quiet times.
func (s *Store) prune() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pruneLocked(s.cfg.Now())
	s.recentN.Store(int64(len(s.recent)))
}

func (s *Store) pruneLocked(now time.Time) {
	s.lastPrune = now
	for h, ev := range s.recent {
		if now.Sub(ev.at) > s.recentTTL {
			delete(s.recent, h)
		}
	}
}

type nopObserver struct{}

func (nopObserver) CacheLookup(bool)   {}
func (nopObserver) TokenEvent(EventOp) {}
