package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// capped hands out the children of a metric vector for at most max label
// sets. A sender choosing application names must not be able to grow
// Prometheus without bound: past the cap, new label sets are dropped and
// counted instead.
//
// Its key is the label values as an array, not a joined string: a lookup of
// a child it has costs no allocation (a joined key escaped into sync.Map's
// interface, and the variadic labels into the vector's function, two
// allocations on every accepted webhook).
type capped[K comparable, T any] struct {
	vec     func(labels ...string) T
	max     int
	dropped prometheus.Counter

	mu   sync.RWMutex
	seen map[K]T
}

func newCapped[K comparable, T any](max int, dropped prometheus.Counter, vec func(labels ...string) T) *capped[K, T] {
	return &capped[K, T]{vec: vec, max: max, dropped: dropped, seen: make(map[K]T)}
}

// get returns the child for key if it has one.
func (c *capped[K, T]) get(key K) (child T, ok bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	child, ok = c.seen[key]
	return child, ok
}

// add returns the child for key, made from labels if it is new, or ok=false
// when the cap has been reached.
func (c *capped[K, T]) add(key K, labels ...string) (child T, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if child, ok = c.seen[key]; ok {
		return child, true
	}
	if len(c.seen) >= c.max {
		c.dropped.Inc()
		return child, false
	}
	child = c.vec(labels...)
	c.seen[key] = child
	return child, true
}
