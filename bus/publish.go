package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/valyala/fastjson"
)

// Publish errors, told apart because senders and operators care which.
var (
	ErrDisconnected   = errors.New("bus: not connected to NATS")
	ErrPublishTimeout = errors.New("bus: no JetStream ack in time")
)

// Ack is JetStream's receipt for a stored message.
type Ack struct {
	Stream    string
	Seq       uint64
	Duplicate bool
}

// Publisher writes messages to JetStream and waits for their acks. Many
// requests share one connection with many publishes in flight.
//
// It speaks JetStream's publish protocol directly rather than through
// nats.go's async publisher: one wildcard subscription receives every ack,
// and a waiter per request (pooled, with its own timer) is found by the ack's
// subject. That keeps a publish to a handful of allocations, where the
// general-purpose path spends a timer, two channels, a future and a JSON
// decode per message. Its methods are safe to call concurrently.
type Publisher struct {
	nc      *nats.Conn
	timeout time.Duration
	resend  time.Duration
	window  atomic.Int64 // the stream's duplicate window in ns; 0: not known
	inbox   string       // <inbox>.<id>.<attempt> is each publish's reply subject
	sub     *nats.Subscription

	mu      sync.Mutex
	waiting map[uint64]*waiter
	nextID  atomic.Uint64

	reconnMu    sync.Mutex                    // serializes Reconnected
	reconnected atomic.Pointer[chan struct{}] // closed and replaced at each reconnect

	waiters sync.Pool
	parser  fastjson.Parser // used only by the ack goroutine
}

type waiter struct {
	done    chan ackResult // the ack that ends the publish
	poke    chan struct{}  // an attempt was refused (room for one; never blocks)
	refused uint64         // attempts the stream refused (no responders); under Publisher.mu
	timer   *time.Timer
}

type ackResult struct {
	ack     Ack
	attempt int
	err     error
}

// NewPublisher subscribes to its acks and returns a publisher that waits up
// to timeout for each.
func NewPublisher(nc *nats.Conn, timeout time.Duration) (*Publisher, error) {
	p := &Publisher{
		nc: nc, timeout: timeout,
		resend:  max(timeout/3, 500*time.Millisecond),
		inbox:   nc.NewInbox() + ".",
		waiting: make(map[uint64]*waiter),
	}
	first := make(chan struct{})
	p.reconnected.Store(&first)
	p.waiters.New = func() any {
		t := time.NewTimer(time.Hour)
		t.Stop()
		return &waiter{done: make(chan ackResult, 1), poke: make(chan struct{}, 1), timer: t}
	}
	sub, err := nc.Subscribe(p.inbox+">", p.onAck)
	if err != nil {
		return nil, fmt.Errorf("bus: subscribe to acks: %w", err)
	}
	// Acks must never be dropped for being many: the publishes in flight
	// bound them.
	if err := sub.SetPendingLimits(-1, -1); err != nil {
		return nil, fmt.Errorf("bus: ack subscription limits: %w", err)
	}
	p.sub = sub
	return p, nil
}

// Reconnected tells waiting publishes to re-send at once: an ack lost with
// the old connection would otherwise cost the whole timeout. The connection's
// reconnect handler calls it.
func (p *Publisher) Reconnected() {
	p.reconnMu.Lock()
	defer p.reconnMu.Unlock()
	next := make(chan struct{})
	close(*p.reconnected.Swap(&next))
}

// reconnectSignal is read on every publish: an atomic load, not a lock that
// all requests would queue on.
func (p *Publisher) reconnectSignal() <-chan struct{} { return *p.reconnected.Load() }

// SetDuplicateWindow tells the publisher the stream's duplicate window, which
// bounds its re-sends (mayResend), and returns the one it had. Until it is
// called re-sends are not bounded.
func (p *Publisher) SetDuplicateWindow(d time.Duration) (was time.Duration) {
	return time.Duration(p.window.Swap(int64(d)))
}

// mayResend says whether a re-send of one publish would not add a second copy
// of it. JetStream drops a copy whose Nats-Msg-Id it stored within the
// duplicate window, so a re-send goes out only while the first attempt is
// less than half the window old, or when no earlier attempt may have been
// stored at all. The other half is the margin for every copy's way to the
// stream's duplicate check: it assumes none takes longer than that (a broker
// stalled for half the window could still store two).
func (p *Publisher) mayResend(first time.Time, maybeStored bool) bool {
	w := time.Duration(p.window.Load())
	return !maybeStored || w <= 0 || time.Since(first) < w/2
}

// Connected reports whether the connection is up.
func (p *Publisher) Connected() bool { return p.nc.Status() == nats.CONNECTED }

// Publish sends msg, which must carry a Nats-Msg-Id, and waits for its ack.
// While NATS is disconnected it fails at once with ErrDisconnected. Without an
// ack it re-sends the same message (the stream's duplicate window keeps one
// copy) while that is safe (mayResend), and fails with ErrPublishTimeout when
// the timeout passes. A failure promises nothing: the message may have been
// stored. Publish does not keep msg after it returns: its caller may reuse it.
func (p *Publisher) Publish(ctx context.Context, msg *nats.Msg) (Ack, error) {
	start := time.Now()
	deadline := start.Add(p.timeout)
	w := p.waiters.Get().(*waiter)
	id := p.nextID.Add(1)
	p.mu.Lock()
	p.waiting[id] = w
	p.mu.Unlock()
	taken := false // an ack for id was received here
	defer func() { p.release(id, w, taken) }()

	// Which attempts went out, and which the stream said it did not take
	// (no responders): a "duplicate" ack is the sender's only if no other
	// attempt of ours may have been stored.
	var sent, notStored uint64
	var subj [128]byte
	lastSend := start
	for attempt := 1; ; attempt++ {
		reconnected := p.reconnectSignal()
		if attempt > 1 {
			notStored = p.refused(w) // a refusal may have come with the timer
		}
		resend := attempt == 1 || p.mayResend(start, sent&^notStored != 0)
		if !resend && !p.Connected() {
			return Ack{}, ErrDisconnected // earlier attempts' acks went with the connection
		}
		if resend {
			// No status check first: Status takes the connection's lock,
			// which nats.go's flusher holds while it writes, and PublishMsg
			// fails at once anyway while disconnected (publishes are never
			// buffered).
			r := strconv.AppendUint(append(subj[:0], p.inbox...), id, 10)
			msg.Reply = string(strconv.AppendInt(append(r, '.'), int64(attempt), 10))
			if err := p.nc.PublishMsg(msg); err != nil {
				if !p.Connected() || errors.Is(err, nats.ErrReconnectBufExceeded) || errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionDraining) {
					return Ack{}, ErrDisconnected
				}
				return Ack{}, fmt.Errorf("bus: publish %s: %w", msg.Subject, err)
			}
			sent |= attemptBit(attempt)
			if attempt > 1 {
				lastSend = time.Now()
			}
		}
		// Without a re-send only an ack of an earlier attempt can still
		// come, or refusals of all of them, after which a re-send is safe
		// again; the timer still comes round to notice a lost connection.
		w.timer.Reset(min(p.resend, time.Until(deadline)))
	wait:
		select {
		case r := <-w.done:
			taken = true
			w.timer.Stop()
			if r.err != nil {
				return Ack{}, fmt.Errorf("bus: publish %s: %w", msg.Subject, r.err)
			}
			if sent != attemptBit(r.attempt) { // more than this attempt went out
				notStored = p.refused(w)
			}
			// Our own re-send finding an earlier copy of ours is not a
			// duplicate the sender made.
			r.ack.Duplicate = r.ack.Duplicate && r.attempt < 64 && sent&^notStored&^attemptBit(r.attempt) == 0
			return r.ack, nil
		case <-w.poke:
			// Refused attempts were not stored. Keep waiting for an ack of
			// another attempt, or for the timer to re-send: at the usual
			// pace from the last send, now that re-sending is safe again.
			notStored = p.refused(w)
			if sent&^notStored == 0 {
				w.timer.Reset(min(max(0, time.Until(lastSend.Add(p.resend))), time.Until(deadline)))
			}
			goto wait
		case <-ctx.Done():
			w.timer.Stop()
			return Ack{}, fmt.Errorf("bus: publish %s: %w", msg.Subject, ctx.Err())
		case <-reconnected:
			w.timer.Stop()
			if !p.mayResend(start, sent&^p.refused(w) != 0) {
				// The acks of earlier attempts went with the old connection,
				// and a re-send could be stored twice.
				return Ack{}, ErrDisconnected
			}
		case <-w.timer.C:
		}
		if !time.Now().Before(deadline) {
			return Ack{}, ErrPublishTimeout
		}
	}
}

// refused returns the attempts of w's publish that the stream refused.
func (p *Publisher) refused(w *waiter) uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return w.refused
}

// attemptBit is attempt's bit in a set of attempts, for attempts 1 to 63.
// The last bit stands for any attempt from 64 on and is never marked as not
// stored, so past 63 attempts no duplicate is claimed (re-sends are at least
// 500 ms apart: this takes a --publish-timeout of over 30 s).
func attemptBit(attempt int) uint64 { return 1 << min(attempt-1, 63) }

// release unregisters a waiter and pools it. An ack that was already taken
// for it is drained first, so a reused waiter never sees another's ack.
func (p *Publisher) release(id uint64, w *waiter, taken bool) {
	w.timer.Stop()
	p.mu.Lock()
	_, stillWaiting := p.waiting[id]
	delete(p.waiting, id)
	w.refused = 0
	p.mu.Unlock()
	select {
	case <-w.poke: // no refusal comes once it is unregistered
	default:
	}
	if !stillWaiting && !taken {
		<-w.done // onAck took it and is sending (or sent) the result
	}
	p.waiters.Put(w)
}

// onAck runs on the subscription's goroutine for every ack.
func (p *Publisher) onAck(m *nats.Msg) {
	// Subject: <inbox><id>.<attempt>
	rest := m.Subject[len(p.inbox):]
	dot := strings.IndexByte(rest, '.')
	if dot < 0 {
		return
	}
	id, err1 := strconv.ParseUint(rest[:dot], 10, 64)
	attempt, err2 := strconv.Atoi(rest[dot+1:])
	if err1 != nil || err2 != nil {
		return
	}
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
		// No stream took this attempt (during a leader election, say). The
		// publish goes on waiting, perhaps for another attempt's ack right
		// behind this, so its waiter stays registered: it is only told.
		p.mu.Lock()
		if w, ok := p.waiting[id]; ok {
			if attempt < 64 {
				w.refused |= attemptBit(attempt)
			}
			select {
			case w.poke <- struct{}{}:
			default:
			}
		}
		p.mu.Unlock()
		return
	}
	p.mu.Lock()
	w, ok := p.waiting[id]
	delete(p.waiting, id)
	p.mu.Unlock()
	if !ok {
		return // the request gave up; a late ack of a re-send
	}
	w.done <- p.parseAck(m, attempt)
}

func (p *Publisher) parseAck(m *nats.Msg, attempt int) ackResult {
	v, err := p.parser.ParseBytes(m.Data)
	if err != nil {
		return ackResult{attempt: attempt, err: fmt.Errorf("bad JetStream ack %q: %w", m.Data, err)}
	}
	if e := v.Get("error"); e != nil {
		return ackResult{attempt: attempt, err: fmt.Errorf("JetStream: %s (code %d, err_code %d)",
			e.GetStringBytes("description"), e.GetInt("code"), e.GetInt("err_code"))}
	}
	stream := v.GetStringBytes("stream")
	seq := v.GetUint64("seq")
	if len(stream) == 0 || seq == 0 {
		return ackResult{attempt: attempt, err: fmt.Errorf("bad JetStream ack %q", m.Data)}
	}
	return ackResult{attempt: attempt, ack: Ack{Stream: internStream(stream), Seq: seq, Duplicate: v.GetBool("duplicate")}}
}

// internStream avoids a string allocation per ack: a gateway writes to one stream.
var lastStream atomic.Pointer[string]

func internStream(b []byte) string {
	if s := lastStream.Load(); s != nil && *s == string(b) {
		return *s
	}
	s := string(b)
	lastStream.Store(&s)
	return s
}
