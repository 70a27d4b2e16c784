package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
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
// requests share one connection with many publishes in flight. Its methods are
// safe to call concurrently.
type Publisher struct {
	nc      *nats.Conn
	js      jetstream.JetStream
	timeout time.Duration
	resend  time.Duration

	mu          sync.Mutex
	reconnected chan struct{} // closed and replaced at each reconnect
}

// NewPublisher returns a publisher that waits up to timeout for each ack.
func NewPublisher(nc *nats.Conn, timeout time.Duration) (*Publisher, error) {
	js, err := jetstream.New(nc,
		jetstream.WithPublishAsyncMaxPending(16384),
		// nats.go forgets an unanswered publish after this; the request has
		// given up on it by then.
		jetstream.WithPublishAsyncTimeout(timeout+time.Second),
	)
	if err != nil {
		return nil, fmt.Errorf("bus: jetstream: %w", err)
	}
	return &Publisher{
		nc: nc, js: js, timeout: timeout,
		resend:      max(timeout/3, 500*time.Millisecond),
		reconnected: make(chan struct{}),
	}, nil
}

// Reconnected tells waiting publishes to re-send at once: an ack lost with
// the old connection would otherwise cost the whole timeout. The connection's
// reconnect handler calls it.
func (p *Publisher) Reconnected() {
	p.mu.Lock()
	close(p.reconnected)
	p.reconnected = make(chan struct{})
	p.mu.Unlock()
}

func (p *Publisher) reconnectSignal() <-chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.reconnected
}

// Connected reports whether the connection is up.
func (p *Publisher) Connected() bool { return p.nc.Status() == nats.CONNECTED }

// Publish sends msg, which must carry a Nats-Msg-Id, and waits for its ack.
// While NATS is disconnected it fails at once with ErrDisconnected. Without an
// ack it re-sends the same message (the stream's duplicate window keeps one
// copy) until the timeout, then fails with ErrPublishTimeout. A failure
// promises nothing: the message may have been stored.
func (p *Publisher) Publish(ctx context.Context, msg *nats.Msg) (Ack, error) {
	deadline := time.Now().Add(p.timeout)
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for attempt := 1; ; attempt++ {
		if !p.Connected() {
			return Ack{}, ErrDisconnected
		}
		reconnected := p.reconnectSignal()
		// PublishMsgAsync registers a reply per call and sets fields on the
		// message, so each attempt gets its own.
		f, err := p.js.PublishMsgAsync(&nats.Msg{Subject: msg.Subject, Header: msg.Header, Data: msg.Data})
		if err != nil {
			if errors.Is(err, nats.ErrReconnectBufExceeded) || errors.Is(err, nats.ErrConnectionClosed) ||
				errors.Is(err, nats.ErrConnectionReconnecting) || !p.Connected() {
				return Ack{}, ErrDisconnected
			}
			return Ack{}, fmt.Errorf("bus: publish %s: %w", msg.Subject, err)
		}
		wait := min(p.resend, time.Until(deadline))
		if timer == nil {
			timer = time.NewTimer(wait)
		} else {
			timer.Reset(wait)
		}
		select {
		case a := <-f.Ok():
			// Our own re-send finding our first copy is not a duplicate the
			// sender made; when we cannot tell, we do not claim one.
			return Ack{Stream: a.Stream, Seq: a.Sequence, Duplicate: a.Duplicate && attempt == 1}, nil
		case err := <-f.Err():
			if errors.Is(err, jetstream.ErrAsyncPublishTimeout) {
				return Ack{}, ErrPublishTimeout
			}
			if !p.Connected() {
				return Ack{}, ErrDisconnected
			}
			return Ack{}, fmt.Errorf("bus: publish %s: %w", msg.Subject, err)
		case <-ctx.Done():
			return Ack{}, fmt.Errorf("bus: publish %s: %w", msg.Subject, ctx.Err())
		case <-reconnected:
		case <-timer.C:
		}
		if !time.Now().Before(deadline) {
			return Ack{}, ErrPublishTimeout
		}
	}
}
