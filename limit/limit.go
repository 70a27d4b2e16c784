// Package limit keeps token-bucket rate limiters per key in bounded memory.
package limit

import (
	"hash/maphash"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

const shards = 16

// Table holds one limiter per key, at most Max keys. A limiter whose bucket
// is full is the same as a new one, so it may be forgotten at any time; when
// the table is full of limiters that are not, it refuses (fails closed) rather
// than grow. Its methods are safe to call concurrently.
type Table[K comparable] struct {
	limit rate.Limit
	burst int
	max   int // per shard
	seed  maphash.Seed
	shard [shards]struct {
		mu sync.Mutex
		m  map[K]*rate.Limiter
	}
}

// New returns a table of limiters allowing perSecond events with burst, for
// at most maxKeys keys. perSecond <= 0 means no limit.
func New[K comparable](perSecond float64, burst, maxKeys int) *Table[K] {
	t := &Table[K]{limit: rate.Limit(perSecond), burst: max(burst, 1), max: max(maxKeys/shards, 1), seed: maphash.MakeSeed()}
	for i := range t.shard {
		t.shard[i].m = make(map[K]*rate.Limiter)
	}
	return t
}

// Enabled reports whether the table limits anything.
func (t *Table[K]) Enabled() bool { return t != nil && t.limit > 0 }

// Allow spends one event of key's budget. When it cannot, it returns false
// and how long until the next event would be allowed.
func (t *Table[K]) Allow(key K, now time.Time) (bool, time.Duration) {
	if !t.Enabled() {
		return true, 0
	}
	s := &t.shard[maphash.Comparable(t.seed, key)%shards]
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := t.get(s.m, key, now)
	if !ok {
		return false, time.Second
	}
	if l.AllowN(now, 1) {
		return true, 0
	}
	return false, t.wait(l, now)
}

// Spend takes one event from key's budget when there is one left.
func (t *Table[K]) Spend(key K, now time.Time) {
	if !t.Enabled() {
		return
	}
	s := &t.shard[maphash.Comparable(t.seed, key)%shards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if l, ok := t.get(s.m, key, now); ok && l.TokensAt(now) >= 1 {
		l.AllowN(now, 1)
	}
}

// Over reports whether key has no budget left, without spending any, and how
// long until it has. A full table counts as over: it cannot decide.
func (t *Table[K]) Over(key K, now time.Time) (bool, time.Duration) {
	if !t.Enabled() {
		return false, 0
	}
	s := &t.shard[maphash.Comparable(t.seed, key)%shards]
	s.mu.Lock()
	defer s.mu.Unlock()
	l, found := s.m[key]
	if !found {
		if len(s.m) >= t.max && !t.sweep(s.m, now) {
			return true, time.Second
		}
		return false, 0
	}
	if l.TokensAt(now) >= 1 {
		return false, 0
	}
	return true, t.wait(l, now)
}

// Len returns the number of keys held.
func (t *Table[K]) Len() int {
	n := 0
	for i := range t.shard {
		t.shard[i].mu.Lock()
		n += len(t.shard[i].m)
		t.shard[i].mu.Unlock()
	}
	return n
}

func (t *Table[K]) get(m map[K]*rate.Limiter, key K, now time.Time) (*rate.Limiter, bool) {
	if l, ok := m[key]; ok {
		return l, true
	}
	if len(m) >= t.max && !t.sweep(m, now) {
		return nil, false
	}
	l := rate.NewLimiter(t.limit, t.burst)
	m[key] = l
	return l, true
}

// sweep drops limiters whose bucket has refilled; it reports whether room was made.
func (t *Table[K]) sweep(m map[K]*rate.Limiter, now time.Time) bool {
	for k, l := range m {
		if l.TokensAt(now) >= float64(t.burst) {
			delete(m, k)
		}
	}
	return len(m) < t.max
}

func (t *Table[K]) wait(l *rate.Limiter, now time.Time) time.Duration {
	need := 1 - l.TokensAt(now)
	return time.Duration(math.Ceil(need / float64(t.limit) * float64(time.Second)))
}
