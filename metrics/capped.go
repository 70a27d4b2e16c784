package metrics

import (
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// capped hands out the children of a metric vector for at most max label
// sets. A sender choosing application names must not be able to grow
// Prometheus without bound: past the cap, new label sets are dropped and
// counted instead.
type capped[T any] struct {
	vec     func(labels ...string) T
	max     int
	dropped prometheus.Counter

	seen sync.Map // key -> T
	mu   sync.Mutex
	n    int
}

func newCapped[T any](max int, dropped prometheus.Counter, vec func(labels ...string) T) *capped[T] {
	return &capped[T]{vec: vec, max: max, dropped: dropped}
}

// get returns the child for key (made of labels), or ok=false when the cap
// has been reached.
func (c *capped[T]) get(key string, labels ...string) (child T, ok bool) {
	if v, found := c.seen.Load(key); found {
		return v.(T), true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if v, found := c.seen.Load(key); found {
		return v.(T), true
	}
	if c.n >= c.max {
		c.dropped.Inc()
		return child, false
	}
	child = c.vec(labels...)
	c.seen.Store(key, child)
	c.n++
	return child, true
}
