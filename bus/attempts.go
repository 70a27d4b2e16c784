package bus

import "time"

// This file is Publish's bookkeeping, kept apart from NATS so that it can be
// tested on explicit times: which attempts of one publish went out, which the
// stream refused, and so which may have been stored; and when the publish may
// re-send, how long it waits, and when it gives up.

// attemptSet is a set of one publish's attempts, numbered from 1. Attempts 1
// to 63 have a bit each. The last bit stands for every attempt from 64 on
// together: a set can say that one of those went out, but not which, and
// never that they were all refused. Re-sends are at least 500 ms apart, so
// that takes a --publish-timeout of over 30 s.
type attemptSet uint64

// attemptBit returns the set of attempt n alone (n from 1).
func attemptBit(n int) attemptSet { return 1 << min(n-1, 63) }

// with returns s and attempt n.
func (s attemptSet) with(n int) attemptSet { return s | attemptBit(n) }

// withRefused returns s and attempt n, for a set of refused attempts: a
// refusal of one attempt from 64 on is not recorded, as its bit stands for
// the others from 64 on too, which may have been stored.
func (s attemptSet) withRefused(n int) attemptSet {
	if n >= 64 {
		return s
	}
	return s.with(n)
}

// just reports whether attempt n is in s and no other.
func (s attemptSet) just(n int) bool { return s == attemptBit(n) }

// attempts is what one publish knows of its attempts: which went out, and
// which of those the stream says it did not store (it refused them with no
// responders). The rest may have been stored even without an ack, so a
// "duplicate" ack is the sender's only if no attempt but its own may have
// been stored (sendersDuplicate), and a re-send past half the duplicate
// window is safe only if none may have been (schedule.mayResend).
type attempts struct {
	sent    attemptSet // went out
	refused attemptSet // the stream refused, so did not store (a copy of waiter.refused)
}

// mayBeStored returns the attempts that went out and were not refused: the
// stream may have stored any of them, even if no ack came.
func (a attempts) mayBeStored() attemptSet { return a.sent &^ a.refused }

// anyMayBeStored reports whether the stream may hold a copy from any attempt.
func (a attempts) anyMayBeStored() bool { return a.mayBeStored() != 0 }

// othersMayBeStored reports whether an attempt other than n may have been
// stored. From attempt 64 on it says yes, as n shares its bit with the others
// from 64 on.
func (a attempts) othersMayBeStored(n int) bool {
	return n >= 64 || a.mayBeStored()&^attemptBit(n) != 0
}

// sendersDuplicate reports whether a "duplicate" ack of attempt n means the
// sender sent the message before (the stream holds a copy under its
// Nats-Msg-Id from an earlier request), rather than that another attempt of
// this publish got there first: only when no other attempt may have been
// stored.
func (a attempts) sendersDuplicate(n int, duplicate bool) bool {
	return duplicate && !a.othersMayBeStored(n)
}

// schedule is one publish's timing.
type schedule struct {
	start    time.Time     // the first attempt went out
	lastSend time.Time     // the latest attempt went out
	deadline time.Time     // the publish fails with ErrPublishTimeout
	every    time.Duration // how long an attempt waits for an ack before a re-send
	keyed    bool          // the message has a Nats-Msg-Id: the stream can drop a second copy
}

func newSchedule(start time.Time, timeout, every time.Duration, keyed bool) schedule {
	return schedule{start: start, lastSend: start, deadline: start.Add(timeout), every: every, keyed: keyed}
}

// mayResend says whether a re-send at now would not add a second copy of the
// message. When no attempt may have been stored, it may. Otherwise only a
// keyed message may be re-sent: JetStream drops a copy whose Nats-Msg-Id it
// stored within the duplicate window, so a re-send goes out only while the
// first attempt is less than half the window old. The other half is the
// margin for every copy's way to the stream's duplicate check: it assumes
// none takes longer than that (a broker stalled for half the window could
// still store two). A window of 0 (not known) does not bound re-sends. A
// message without a Nats-Msg-Id has no duplicate check at all: a re-send
// could always be stored twice.
func (s schedule) mayResend(a attempts, now time.Time, window time.Duration) bool {
	if !a.anyMayBeStored() {
		return true
	}
	return s.keyed && (window <= 0 || now.Sub(s.start) < window/2)
}

// nextPass is how long, from now, a pass of Publish waits for an ack before
// it looks again (and re-sends if it may): the re-send interval, cut short by
// the deadline. Without a re-send it still comes round, to notice a lost
// connection.
func (s schedule) nextPass(now time.Time) time.Duration {
	return min(s.every, s.deadline.Sub(now))
}

// afterRefusals is when, from now, to re-send once the stream refused every
// attempt that went out (none was stored, so re-sending is safe again
// whatever the window): at the usual pace from the last send, at once if
// that is past, and no later than the deadline.
func (s schedule) afterRefusals(now time.Time) time.Duration {
	return min(max(0, s.lastSend.Add(s.every).Sub(now)), s.deadline.Sub(now))
}

// expired reports whether the publish has run out of time at now.
func (s schedule) expired(now time.Time) bool { return !now.Before(s.deadline) }
