// Package logsample lets some log lines of one kind through and counts the
// rest, so that a flood (an outage fails every request) cannot bury the log
// and the next line written can say how many were left out.
package logsample

import (
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Sampler admits perSecond lines with a burst; it is safe for concurrent use.
type Sampler struct {
	limit   *rate.Limiter
	leftOut atomic.Int64
}

// New returns a sampler of perSecond lines after a first burst.
func New(perSecond float64, burst int) *Sampler {
	return &Sampler{limit: rate.NewLimiter(rate.Limit(perSecond), burst)}
}

// Allow reports whether a line may be written now. When it may, leftOut is
// the number of lines refused since the last one allowed.
func (s *Sampler) Allow() (ok bool, leftOut int64) { return s.allowAt(time.Now()) }

func (s *Sampler) allowAt(now time.Time) (ok bool, leftOut int64) {
	if !s.limit.AllowN(now, 1) {
		s.leftOut.Add(1)
		return false, 0
	}
	return true, s.leftOut.Swap(0)
}
