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
	refused attemptSet     // attempts the stream refused (no responders); under Publisher.mu
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
// bounds its re-sends (schedule.mayResend), and returns the one it had. Until
// it is called re-sends are not bounded.
func (p *Publisher) SetDuplicateWindow(d time.Duration) (was time.Duration) {
	return time.Duration(p.window.Swap(int64(d)))
}

// mayResend says whether a re-send now would not add a second copy of the
// message (schedule.mayResend), under the window the stream has now.
func (p *Publisher) mayResend(s schedule, a attempts) bool {
	return s.mayResend(a, time.Now(), time.Duration(p.window.Load()))
}

// Connected reports whether the connection is up.
func (p *Publisher) Connected() bool { return p.nc.Status() == nats.CONNECTED }

// Publish sends msg and waits for its ack. While NATS is disconnected it
// fails at once with ErrDisconnected. Without an ack it re-sends the same
// message while that is safe (schedule.mayResend): for a message with a
// Nats-Msg-Id the stream's duplicate window keeps one copy; one without is
// re-sent only after the stream refused every attempt (no responders). It
// fails with ErrPublishTimeout when the timeout passes. A failure promises nothing: the
// message may have been stored. Publish does not keep msg after it returns:
// its caller may reuse it.
//
// Each pass of its loop sends an attempt if it may, then waits (await) for an
// ack of any attempt, the timer or a reconnect. Attempts are numbered by
// pass, so a pass that sends nothing leaves a gap.
func (p *Publisher) Publish(ctx context.Context, msg *nats.Msg) (Ack, error) {
	_, keyed := msg.Header[nats.MsgIdHdr]
	s := newSchedule(time.Now(), p.timeout, p.resend, keyed)
	w := p.waiters.Get().(*waiter)
	id := p.nextID.Add(1)
	p.mu.Lock()
	p.waiting[id] = w
	p.mu.Unlock()
	taken := false // an ack for id was received here
	defer func() { p.release(id, w, taken) }()

	var a attempts
	for attempt := 1; ; attempt++ {
		reconnected := p.reconnectSignal() // before the send, so no reconnect after it is missed
		if attempt > 1 {
			a.refused = p.refused(w) // a refusal may have come with the timer
		}
		if attempt == 1 || p.mayResend(s, a) {
			if err := p.send(msg, id, attempt); err != nil {
				return Ack{}, err
			}
			a.sent = a.sent.with(attempt)
			if attempt > 1 {
				s.lastSend = time.Now()
			}
		} else if !p.Connected() {
			return Ack{}, ErrDisconnected // earlier attempts' acks went with the connection
		}
		w.timer.Reset(s.nextPass(time.Now()))
		r, acked, err := p.await(ctx, w, a, s, reconnected, msg.Subject)
		if err != nil {
			return Ack{}, err
		}
		if acked {
			taken = true
			if r.err != nil {
				return Ack{}, fmt.Errorf("bus: publish %s: %w", msg.Subject, r.err)
			}
			// With one attempt out nothing else can have been stored: the
			// usual path skips the lock.
			if !a.sent.just(r.attempt) {
				a.refused = p.refused(w)
			}
			r.ack.Duplicate = a.sendersDuplicate(r.attempt, r.ack.Duplicate)
			return r.ack, nil
		}
		if s.expired(time.Now()) {
			return Ack{}, ErrPublishTimeout
		}
	}
}

// send puts attempt of publish id out, with a reply subject that names both.
// It does not check the connection's status first: Status takes the
// connection's lock, which nats.go's flusher holds while it writes, and
// PublishMsg fails at once anyway while disconnected (publishes are never
// buffered).
func (p *Publisher) send(msg *nats.Msg, id uint64, attempt int) error {
	var subj [128]byte
	r := strconv.AppendUint(append(subj[:0], p.inbox...), id, 10)
	msg.Reply = string(strconv.AppendInt(append(r, '.'), int64(attempt), 10))
	if err := p.nc.PublishMsg(msg); err != nil {
		if !p.Connected() || errors.Is(err, nats.ErrReconnectBufExceeded) || errors.Is(err, nats.ErrConnectionClosed) || errors.Is(err, nats.ErrConnectionDraining) {
			return ErrDisconnected
		}
		return fmt.Errorf("bus: publish %s: %w", msg.Subject, err)
	}
	return nil
}

// await waits out one pass of Publish. It returns the result of an ack of
// any attempt (acked); an error that ends the publish; or neither, when it is
// time to look again: the timer fired, or the connection came back while a
// re-send is still safe (an ack lost with the old connection would otherwise
// cost the whole timeout).
//
// A refusal does not end the pass, as an ack of another attempt may be right
// behind it. Once every attempt sent was refused the timer is moved to
// re-send at the usual pace, since re-sending is safe again.
func (p *Publisher) await(ctx context.Context, w *waiter, a attempts, s schedule, reconnected <-chan struct{}, subject string) (r ackResult, acked bool, err error) {
	for {
		select {
		case r := <-w.done:
			w.timer.Stop()
			return r, true, nil
		case <-w.poke:
			a.refused = p.refused(w)
			if !a.anyMayBeStored() {
				w.timer.Reset(s.afterRefusals(time.Now()))
			}
		case <-ctx.Done():
			w.timer.Stop()
			return ackResult{}, false, fmt.Errorf("bus: publish %s: %w", subject, ctx.Err())
		case <-reconnected:
			w.timer.Stop()
			a.refused = p.refused(w)
			if !p.mayResend(s, a) {
				// The acks of earlier attempts went with the old connection,
				// and a re-send could be stored twice.
				return ackResult{}, false, ErrDisconnected
			}
			return ackResult{}, false, nil
		case <-w.timer.C:
			return ackResult{}, false, nil
		}
	}
}

// refused returns the attempts of w's publish that the stream refused.
func (p *Publisher) refused(w *waiter) attemptSet {
	p.mu.Lock()
	defer p.mu.Unlock()
	return w.refused
}

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
	if err1 != nil || err2 != nil || attempt < 1 {
		// Not an ack of ours: attempts count from 1, and a shift by a
		// negative attempt would panic on the subscription's goroutine.
		return
	}
	if len(m.Data) == 0 && m.Header.Get("Status") == "503" {
		// No stream took this attempt (during a leader election, say). The
		// publish goes on waiting, perhaps for another attempt's ack right
		// behind this, so its waiter stays registered: it is only told.
		p.mu.Lock()
		if w, ok := p.waiting[id]; ok {
			w.refused = w.refused.withRefused(attempt)
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
