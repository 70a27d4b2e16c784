package main

import (
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
)

// contractMsgs makes the message a hits webhook becomes in the stream: the
// body plus the headers docs/contract.md requires on every accepted message,
// with a Nats-Msg-Id of the shape the gateway gives (unique per message, so
// JetStream indexes each one in its duplicate window, as it does hookgate's).
// The "broker ceiling, hookgate's message" row publishes these, to show what
// the contract's message costs the broker apart from any HTTP work.
//
// TestContractMsgMatchesHookgate compares it with a message hookgate stored.
type contractMsgs struct {
	subject, org, app, credential string
	idPrefix                      string
	body                          []byte
	n                             uint64
}

func newContractMsgs(org, app string, body []byte) *contractMsgs {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return &contractMsgs{
		subject:    "bench." + org + "." + app + ".hits",
		org:        org,
		app:        app,
		credential: hex.EncodeToString(b[:]),
		idPrefix:   hex.EncodeToString(b[:6]) + "-",
		body:       body,
	}
}

// next returns a new message; the publisher keeps it until its ack.
func (c *contractMsgs) next() *nats.Msg {
	c.n++
	return &nats.Msg{Subject: c.subject, Data: c.body, Header: nats.Header{
		"Nats-Msg-Id":      {c.idPrefix + strconv.FormatUint(c.n, 10)},
		"Hook-Org":         {c.org},
		"Hook-App":         {c.app},
		"Hook-Kind":        {"hits"},
		"Hook-Credential":  {c.credential},
		"Hook-Received-At": {time.Now().UTC().Format(time.RFC3339Nano)},
		"Content-Type":     {"application/json"},
	}}
}
