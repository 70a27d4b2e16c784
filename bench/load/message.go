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
// Like hookgate, it reuses its messages and their header maps and sets only
// the id and the time per message, so the publisher's own cost stays near
// nats.go's header encoding. A message is reused ring messages later; with
// fewer publishes than that in flight, its last publish has been acked.
//
// TestContractMsgMatchesHookgate compares it with a message hookgate stored.
type contractMsgs struct {
	idPrefix string
	ring     []nats.Msg
	n        uint64
}

// contractRing is more than the broker row's 256 publishes in flight.
const contractRing = 1024

func newContractMsgs(org, app string, body []byte) *contractMsgs {
	c := &contractMsgs{idPrefix: randomHex(6) + "-", ring: make([]nats.Msg, contractRing)}
	credential := randomHex(8)
	for i := range c.ring {
		c.ring[i] = nats.Msg{Subject: "bench." + org + "." + app + ".hits", Data: body, Header: nats.Header{
			"Nats-Msg-Id":      {""},
			"Hook-Org":         {org},
			"Hook-App":         {app},
			"Hook-Kind":        {"hits"},
			"Hook-Credential":  {credential},
			"Hook-Received-At": {""},
			"Content-Type":     {"application/json"},
		}}
	}
	return c
}

// next returns the next message; its caller must have fewer than
// contractRing publishes in flight.
func (c *contractMsgs) next() *nats.Msg {
	m := &c.ring[c.n%contractRing]
	c.n++
	m.Header["Nats-Msg-Id"][0] = c.idPrefix + strconv.FormatUint(c.n, 10)
	m.Header["Hook-Received-At"][0] = time.Now().UTC().Format(time.RFC3339Nano)
	return m
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
