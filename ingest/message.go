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

// Headers of a stored message, as the contract names them.
const (
	hdrMsgID          = "Nats-Msg-Id"
	hdrOrg            = "Hook-Org"
	hdrApp            = "Hook-App"
	hdrKind           = "Hook-Kind"
	hdrCredential     = "Hook-Credential"
	hdrReceivedAt     = "Hook-Received-At"
	hdrContentType    = "Content-Type"
	hdrIdempotencyKey = "Hook-Idempotency-Key"
)

// HeaderAllowance is what the gateway's own NATS headers can add to a body:
// the broker's limits must hold both.
const HeaderAllowance = 1024

// publish stores an accepted webhook and answers 202 once JetStream has
// acknowledged it, or 503.
func (h *Handler) publish(ctx *fasthttp.RequestCtx, req *request, cred *auth.Credential, idemKey, body []byte, now time.Time) int {
	kind := string(req.kind)
	subject := h.cfg.SubjectPrefix + "." + cred.Org + "." + string(req.app) + "." + kind
	// app as a slice of subject: one string allocation for both.
	app := subject[len(h.cfg.SubjectPrefix)+len(cred.Org)+2 : len(subject)-len(kind)-1]
	msgID := h.msgID(cred.Org, app, req.kind, idemKey)

	out := msgPool.Get().(*outMsg)
	defer msgPool.Put(out)
	out.set(hdrMsgID, msgID)
	out.set(hdrOrg, cred.Org)
	out.set(hdrApp, app)
	out.set(hdrKind, kind)
	out.set(hdrCredential, cred.ID)
	out.set(hdrReceivedAt, now.UTC().Format(time.RFC3339Nano))
	if idemKey != nil {
		out.msg.Header[hdrIdempotencyKey] = out.idem
		out.idem[0] = string(idemKey)
	} else {
		delete(out.msg.Header, hdrIdempotencyKey)
	}
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
	var buf [256]byte
	b := append(buf[:0], `{"id":"`...)
	b = append(b, msgID...)
	b = append(b, `","stream":`...)
	b = strconv.AppendQuote(b, ack.Stream)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, ack.Seq, 10)
	b = append(b, `,"duplicate":`...)
	b = strconv.AppendBool(b, ack.Duplicate)
	b = append(b, '}')
	ctx.SetBody(b) // copies
	return fasthttp.StatusAccepted
}

// msgID is the message's Nats-Msg-Id: from the sender's Idempotency-Key when
// it gave one, else unique to this gateway process.
func (h *Handler) msgID(org, app string, kind auth.Kind, idemKey []byte) string {
	if idemKey != nil {
		return scopedMsgID(org, app, kind, idemKey)
	}
	var buf [64]byte
	return string(strconv.AppendUint(append(buf[:0], h.idPrefix...), h.idSeq.Add(1), 10))
}

// outMsg is a reusable outgoing message: its header map and value slices are
// made once, so a publish only sets strings.
type outMsg struct {
	msg  nats.Msg
	idem []string
}

var msgPool = sync.Pool{New: func() any {
	h := nats.Header{}
	for _, k := range []string{hdrMsgID, hdrOrg, hdrApp, hdrKind, hdrCredential, hdrReceivedAt} {
		h[k] = make([]string, 1)
	}
	h[hdrContentType] = []string{"application/json"}
	return &outMsg{msg: nats.Msg{Header: h}, idem: make([]string, 1)}
}}

func (o *outMsg) set(key, value string) { o.msg.Header[key][0] = value }

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
