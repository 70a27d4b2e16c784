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
	Now        func() time.Time
	Logger     *slog.Logger // trust changes; if nil, not logged
}

// Store answers "which credential does this token hash belong to?" from a
// ristretto cache in front of the bucket, kept current by Apply.
//
// Ordering: ristretto's Set is asynchronous and may be dropped, so the cache is
// never the authority. Every event Apply receives is also kept for a while in
// recent, which overrides the cache on lookup; a miss fills the cache only
// under mu and only when no newer event for the hash was applied meanwhile.
// Because Apply's Del is queued behind any Set that went in before it, no fill
// can land after the delete that should have removed it.
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

type entry struct {
	hash  Hash
	cred  *Credential // nil: known unknown
	epoch uint64
}

type event struct {
	rev   uint64
	cred  *Credential // nil: deleted
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
	if cred, ok := s.cached(h); ok {
		s.obs.CacheLookup(true)
		return s.valid(cred)
	}
	s.obs.CacheLookup(false)
	cred, err := s.fill(ctx, h)
	if err != nil {
		return nil, err
	}
	return s.valid(cred)
}

// Known reports whether h is cached as a valid credential, without reading the
// bucket. Rate limiting uses it to let known-good tokens through.
func (s *Store) Known(h Hash) bool {
	cred, ok := s.cached(h)
	return ok && cred != nil && !cred.Expired(s.cfg.Now())
}

func (s *Store) valid(cred *Credential) (*Credential, error) {
	if cred == nil || cred.Expired(s.cfg.Now()) {
		return nil, ErrInvalidToken
	}
	return cred, nil
}

// cached returns what memory knows of h: ok is false when only the bucket can tell.
func (s *Store) cached(h Hash) (cred *Credential, ok bool) {
	if !s.trusted.Load() {
		return nil, false
	}
	epoch := s.epoch.Load()
	if s.recentN.Load() > 0 {
		s.mu.RLock()
		ev, found := s.recent[h]
		s.mu.RUnlock()
		if found && ev.epoch == epoch {
			return ev.cred, true
		}
	}
	e, found := s.cache.Get(cacheKey(h))
	if !found || e.hash != h || e.epoch != epoch {
		return nil, false
	}
	return e.cred, true
}

func (s *Store) fill(ctx context.Context, h Hash) (*Credential, error) {
	// Events applied in earlier epochs are older than this read.
	epoch := s.epoch.Load()
	ctx, cancel := context.WithTimeout(ctx, s.cfg.LookupTimeout)
	defer cancel()
	var (
		cred *Credential
		rev  uint64
	)
	kve, err := s.src.Get(ctx, TokenKey(h))
	switch {
	case errors.Is(err, jetstream.ErrKeyNotFound):
	case err != nil:
		return nil, fmt.Errorf("%w: read token key: %w", ErrUnavailable, err)
	default:
		rev = kve.Revision()
		if c, perr := ParseCredential(kve.Value()); perr == nil {
			cred = c
		}
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.trusted.Load() || s.epoch.Load() != epoch {
		return cred, nil // the bucket's answer, kept nowhere
	}
	if ev, ok := s.recent[h]; ok && ev.rev >= rev {
		// The watch applied an event at least as new as what we read (a
		// replica's direct get may lag). Revisions order events across
		// epochs too: the watch applies them in order. The event is the
		// answer, and what the cache keeps.
		cred = ev.cred
	}
	ttl := s.cfg.PositiveTTL
	if cred == nil {
		ttl = s.cfg.NegativeTTL
	}
	s.cache.SetWithTTL(cacheKey(h), &entry{hash: h, cred: cred, epoch: epoch}, 1, ttl)
	return cred, nil
}

// Apply records one event of the bucket's tok. keys, in revision order. A put
// whose value does not parse makes the token invalid and is counted.
func (s *Store) Apply(key string, op jetstream.KeyValueOp, value []byte, rev uint64) {
	if !strings.HasPrefix(key, TokenKeyPrefix) {
		return // cred.<id> and anything else: not the cache's business
	}
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

	now := s.cfg.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	epoch := s.epoch.Load()
	s.recent[h] = event{rev: rev, cred: cred, at: now, epoch: epoch}
	if cred != nil {
		s.cache.SetWithTTL(cacheKey(h), &entry{hash: h, cred: cred, epoch: epoch}, 1, s.cfg.PositiveTTL)
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
