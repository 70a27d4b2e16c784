package bus

import (
	"testing"
	"time"
)

// sent returns the set of attempts ns, as they go out.
func sent(ns ...int) attemptSet {
	var s attemptSet
	for _, n := range ns {
		s = s.with(n)
	}
	return s
}

// refused returns the set of attempts ns, as the stream refuses them.
func refused(ns ...int) attemptSet {
	var s attemptSet
	for _, n := range ns {
		s = s.withRefused(n)
	}
	return s
}

// Attempts 1 to 63 have a bit each; from 64 on they share the last, which a
// refusal never sets.
func TestAttemptSet(t *testing.T) {
	for _, c := range []struct {
		name        string
		attempts    []int
		wantSent    attemptSet
		wantRefused attemptSet
		justOf      int // the one attempt of the set, if any
	}{
		{"none", nil, 0, 0, 0},
		{"attempt 1", []int{1}, 1, 1, 1},
		{"attempts 1 and 3, 2 skipped", []int{1, 3}, 0b101, 0b101, 0},
		{"attempt 63", []int{63}, 1 << 62, 1 << 62, 63},
		{"attempt 64", []int{64}, 1 << 63, 0, 64},
		{"attempts 64 and 100 share a bit", []int{64, 100}, 1 << 63, 0, 100},
		{"attempts 2 and 70", []int{2, 70}, 1<<63 | 0b10, 0b10, 0},
	} {
		t.Run(c.name, func(t *testing.T) {
			s, r := sent(c.attempts...), refused(c.attempts...)
			if s != c.wantSent {
				t.Errorf("sent %b, want %b", s, c.wantSent)
			}
			if r != c.wantRefused {
				t.Errorf("refused %b, want %b", r, c.wantRefused)
			}
			for _, n := range []int{1, 2, 3, 63, 64, 100} {
				if got, want := s.just(n), n == c.justOf || c.justOf >= 64 && n >= 64; got != want {
					t.Errorf("%b.just(%d) = %v, want %v", s, n, got, want)
				}
			}
		})
	}
}

// Which attempts may have been stored, and whose is a "duplicate" ack: the
// sender's only when no other attempt of the publish's own may have been
// stored.
func TestAttemptsMayBeStored(t *testing.T) {
	for _, c := range []struct {
		name        string
		a           attempts
		acked       int // the attempt whose ack says "duplicate"
		wantStored  attemptSet
		wantSenders bool
	}{
		{"first attempt acked", attempts{sent: sent(1)}, 1, sent(1), true},
		{"first refused, the re-send acked", attempts{sent: sent(1, 2), refused: refused(1)}, 2, sent(2), true},
		{"first unanswered, the re-send acked (the copy may be the first's)", attempts{sent: sent(1, 2)}, 2, sent(1, 2), false},
		{"re-send refused, the first acked", attempts{sent: sent(1, 2), refused: refused(2)}, 1, sent(1), true},
		{"first two refused, the third acked", attempts{sent: sent(1, 2, 3), refused: refused(1, 2)}, 3, sent(3), true},
		{"a pass without a send, the third acked", attempts{sent: sent(1, 3), refused: refused(1)}, 3, sent(3), true},
		{"all refused, a late ack of the first", attempts{sent: sent(1, 2), refused: refused(1, 2)}, 1, 0, true},
		{"attempt 64 acked, the others refused", attempts{sent: sent(1, 64), refused: refused(1)}, 64, sent(64), false},
		{"attempt 64 refused, the first acked", attempts{sent: sent(1, 64), refused: refused(64)}, 1, sent(1, 64), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := c.a.mayBeStored(); got != c.wantStored {
				t.Errorf("mayBeStored %b, want %b", got, c.wantStored)
			}
			if got, want := c.a.anyMayBeStored(), c.wantStored != 0; got != want {
				t.Errorf("anyMayBeStored %v, want %v", got, want)
			}
			if got := c.a.sendersDuplicate(c.acked, true); got != c.wantSenders {
				t.Errorf("sendersDuplicate(%d, true) = %v, want %v", c.acked, got, c.wantSenders)
			}
			if c.a.sendersDuplicate(c.acked, false) {
				t.Errorf("sendersDuplicate(%d, false) = true: an ack that is no duplicate became one", c.acked)
			}
		})
	}
}

// A re-send goes out only while the first attempt is less than half the
// duplicate window old, unless nothing may have been stored or the window is
// not known.
func TestScheduleMayResend(t *testing.T) {
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	s := newSchedule(t0, 2*time.Second, 667*time.Millisecond, true)
	unanswered := attempts{sent: sent(1)}
	allRefused := attempts{sent: sent(1, 2), refused: refused(1, 2)}
	for _, c := range []struct {
		name   string
		a      attempts
		at     time.Duration // after the first attempt
		window time.Duration
		want   bool
	}{
		{"inside half the window", unanswered, 667 * time.Millisecond, 10 * time.Second, true},
		{"just inside half the window", unanswered, 500*time.Millisecond - 1, time.Second, true},
		{"at half the window", unanswered, 500 * time.Millisecond, time.Second, false},
		{"past half the window", unanswered, 667 * time.Millisecond, time.Second, false},
		{"past half the window, all refused", allRefused, 667 * time.Millisecond, time.Second, true},
		{"past half the window, one of two refused", attempts{sent: sent(1, 2), refused: refused(1)}, 667 * time.Millisecond, time.Second, false},
		{"window not known", unanswered, time.Hour, 0, true},
		{"nothing sent", attempts{}, time.Hour, time.Second, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := s.mayResend(c.a, t0.Add(c.at), c.window); got != c.want {
				t.Errorf("mayResend at +%s, window %s: %v, want %v", c.at, c.window, got, c.want)
			}
		})
	}
}

// A message without a key has no duplicate check: once an attempt may have
// been stored it is never sent again, however young; refused attempts were
// not stored, so it may be sent again after them.
func TestScheduleMayResendWithoutAKey(t *testing.T) {
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	s := newSchedule(t0, 2*time.Second, 667*time.Millisecond, false)
	for _, c := range []struct {
		name   string
		a      attempts
		window time.Duration
		want   bool
	}{
		{"unanswered, young", attempts{sent: sent(1)}, time.Hour, false},
		{"unanswered, window not known", attempts{sent: sent(1)}, 0, false},
		{"refused", attempts{sent: sent(1), refused: refused(1)}, time.Hour, true},
		{"one of two refused", attempts{sent: sent(1, 2), refused: refused(1)}, time.Hour, false},
		{"nothing sent", attempts{}, time.Hour, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := s.mayResend(c.a, t0.Add(time.Millisecond), c.window); got != c.want {
				t.Errorf("mayResend: %v, want %v", got, c.want)
			}
		})
	}
}

// How long each pass waits: the re-send interval, cut short by the deadline;
// after every attempt was refused, the interval from the last send.
func TestScheduleWaits(t *testing.T) {
	t0 := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	const ms = time.Millisecond
	for _, c := range []struct {
		name              string
		lastSend          time.Duration // after the first attempt; 0: there was one attempt
		at                time.Duration // now, after the first attempt
		wantNextPass      time.Duration
		wantAfterRefusals time.Duration
		wantExpired       bool
	}{
		{"first pass", 0, 0, 667 * ms, 667 * ms, false},
		{"first refused at once", 0, 10 * ms, 667 * ms, 657 * ms, false},
		{"first refused after its pass", 0, 900 * ms, 667 * ms, 0, false},
		{"second pass", 667 * ms, 667 * ms, 667 * ms, 667 * ms, false},
		{"re-send refused", 667 * ms, 700 * ms, 667 * ms, 634 * ms, false},
		{"last pass, cut short by the deadline", 1334 * ms, 1334 * ms, 666 * ms, 666 * ms, false},
		{"refused near the deadline", 1334 * ms, 1900 * ms, 100 * ms, 100 * ms, false},
		{"at the deadline", 1334 * ms, 2000 * ms, 0, 0, true},
		{"past the deadline", 1334 * ms, 2100 * ms, -100 * ms, -100 * ms, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newSchedule(t0, 2*time.Second, 667*ms, true)
			s.lastSend = t0.Add(c.lastSend)
			now := t0.Add(c.at)
			if got := s.nextPass(now); got != c.wantNextPass {
				t.Errorf("nextPass %s, want %s", got, c.wantNextPass)
			}
			if got := s.afterRefusals(now); got != c.wantAfterRefusals {
				t.Errorf("afterRefusals %s, want %s", got, c.wantAfterRefusals)
			}
			if got := s.expired(now); got != c.wantExpired {
				t.Errorf("expired %v, want %v", got, c.wantExpired)
			}
		})
	}
}
