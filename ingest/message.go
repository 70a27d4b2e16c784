package ingest

import (
	"context"
	"encoding/hex"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/valyala/fasthttp"

	"github.com/hookgate/hookgate/auth"
)

// This file builds the stored message of an accepted webhook, publishes it
// and writes the 202.

// Headers of a stored message, as the contract names them: the credential
// always, the key's two only with a key. Organization, application and kind
// are the subject's tokens, and the time received is the stream's own
// timestamp of the message.
const (
	hdrCredential     = "Hook-Credential"
	hdrMsgID          = "Nats-Msg-Id"
	hdrIdempotencyKey = "Hook-Idempotency-Key"
	hdrAuth           = "Hook-Auth"  // how a sender that cannot send Authorization authenticated
	hdrEvent          = "Hook-Event" // the sender's own event name
)

// HeaderAllowance is what the gateway's own NATS headers can add to a body:
// the broker's limits must hold both.
const HeaderAllowance = 1024

// publish stores an accepted webhook and answers 202 once JetStream has
// acknowledged it, or 503.
func (h *Handler) publish(ctx *fasthttp.RequestCtx, req *request, cred *auth.Credential, idemKey, body []byte, now time.Time) int {
	kind := string(req.kind)
	var sbuf [256]byte // room for the usual subject; append grows past it
	sb := append(append(append(sbuf[:0], h.cfg.SubjectPrefix...), '.'), cred.Org...)
	sb = append(append(append(append(sb, '.'), req.app...), '.'), kind...)
	subject := subjects.intern(sb)
	// app as a slice of subject: no string of its own.
	app := subject[len(h.cfg.SubjectPrefix)+len(cred.Org)+2 : len(subject)-len(kind)-1]

	out := msgPool.Get().(*outMsg)
	defer msgPool.Put(out)
	var msgID string
	if idemKey != nil {
		msgID = scopedMsgID(cred.Org, app, req.kind, idemKey)
	}
	out.setHeaders(cred.ID, idemKey, msgID)
	out.set(hdrAuth, out.auth, req.hookAuth)
	out.set(hdrEvent, out.event, eventNames.intern(req.event))
	out.msg.Subject = subject
	// The body itself, not a copy: the publisher is done with the message
	// when Publish returns, and the body lives until this handler returns.
	out.msg.Data = body

	pubStart := time.Now()
	// Not ctx: fasthttp cancels it at shutdown, and in-flight requests must
	// finish their acks then. The publish timeout bounds the wait.
	ack, err := h.pub.Publish(context.Background(), &out.msg)
	if err != nil {
		why := h.failureReason(err)
		h.metrics.PublishFailure(why)
		h.logFailure(failedPublish, why, req, err)
		return h.refuse(ctx, req, refusalUnavailable, "", 1)
	}
	h.metrics.Published(req.kind, ack.Duplicate, time.Since(pubStart))
	if !ack.Duplicate {
		h.metrics.Accepted(cred.Org, app, req.kind, cred.ID, now)
	}

	ctx.SetStatusCode(fasthttp.StatusAccepted)
	ctx.Response.Header.SetContentTypeBytes(contentTypeJSON)
	var buf [128]byte
	b := append(buf[:0], `{"stream":`...)
	b = strconv.AppendQuote(b, ack.Stream)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, ack.Seq, 10)
	b = append(b, `,"duplicate":`...)
	b = strconv.AppendBool(b, ack.Duplicate)
	b = append(b, '}')
	ctx.SetBody(b) // copies
	return fasthttp.StatusAccepted
}

// internTable hands out one string per distinct event name, so that the
// Hook-Event of a request costs no allocation once its name was seen: senders
// use a few dozen names. It holds at most max; past that, each is allocated.
type internTable struct {
	mu  sync.RWMutex
	m   map[string]string
	max int
}

var eventNames = internTable{m: map[string]string{}, max: 1000}

// subjects are interned too: a gateway serves a bounded set of
// organizations and applications, and the subject was the one string every
// accepted webhook allocated. Names that reach it are validated (at most 63
// bytes each), so the table holds at most max small strings.
var subjects = internTable{m: map[string]string{}, max: 10000}

func (t *internTable) intern(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	t.mu.RLock()
	s, ok := t.m[string(b)] // no allocation for the lookup
	t.mu.RUnlock()
	if ok {
		return s
	}
	s = string(b)
	t.mu.Lock()
	if len(t.m) < t.max {
		t.m[s] = s
	}
	t.mu.Unlock()
	return s
}

// outMsg is a reusable outgoing message: its header map and value slices are
// made once, so a publish only sets strings.
type outMsg struct {
	msg         nats.Msg
	cred        []string
	msgID, idem []string
	auth, event []string
}

var msgPool = sync.Pool{New: func() any {
	o := &outMsg{cred: make([]string, 1), msgID: make([]string, 1), idem: make([]string, 1), auth: make([]string, 1), event: make([]string, 1)}
	o.msg.Header = nats.Header{hdrCredential: o.cred}
	return o
}}

// set sets header key to value through its reusable slice, or removes it
// when value is empty.
func (o *outMsg) set(key string, slot []string, value string) {
	if value == "" {
		delete(o.msg.Header, key)
		return
	}
	slot[0] = value
	o.msg.Header[key] = slot
}

// setHeaders sets the message's headers: the credential, and with a key the
// key and its Nats-Msg-Id.
func (o *outMsg) setHeaders(credID string, key []byte, msgID string) {
	o.cred[0] = credID
	if key == nil {
		delete(o.msg.Header, hdrMsgID)
		delete(o.msg.Header, hdrIdempotencyKey)
		return
	}
	o.msgID[0], o.idem[0] = msgID, string(key)
	o.msg.Header[hdrMsgID], o.msg.Header[hdrIdempotencyKey] = o.msgID, o.idem
}

// scopedMsgID turns a sender's Idempotency-Key into a Nats-Msg-Id of its
// organization, application and kind, so two organizations never collide.
func scopedMsgID(org, app string, kind auth.Kind, key []byte) string {
	// Names are at most 63 bytes, the kind 6, the key 200: it fits on the stack.
	var buf [3*64 + 8 + 200]byte
	b := append(append(append(append(append(append(append(buf[:0],
		org...), 0), app...), 0), kind...), 0), key...)
	sum := auth.Sum256(b)
	var id [2 + 32]byte
	copy(id[:], "k-")
	hex.Encode(id[2:], sum[:16])
	return string(id[:])
}
