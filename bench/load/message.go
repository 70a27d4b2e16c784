package main

import (
	"crypto/rand"
	"encoding/hex"

	"github.com/nats-io/nats.go"
)

// contractMsgs makes the message a hits webhook without an Idempotency-Key
// becomes in the stream: the body plus the one header docs/contract.md
// requires, Hook-Credential (no Nats-Msg-Id: the stream indexes nothing for
// it). The "broker ceiling, hookgate's message" row publishes these, to show
// what hookgate's message costs the broker over the bare body.
//
// Like hookgate, it reuses its messages and their header maps. A message is
// reused ring messages later; with fewer publishes than that in flight, its
// last publish has been acked.
//
// TestContractMsgMatchesHookgate compares it with a message hookgate stored.
type contractMsgs struct {
	ring []nats.Msg
	n    uint64
}

// contractRing is more than the broker row's 256 publishes in flight.
const contractRing = 1024

func newContractMsgs(org, app string, body []byte) *contractMsgs {
	c := &contractMsgs{ring: make([]nats.Msg, contractRing)}
	credential := randomHex(8)
	for i := range c.ring {
		c.ring[i] = nats.Msg{Subject: "bench." + org + "." + app + ".hits", Data: body, Header: nats.Header{
			"Hook-Credential": {credential},
		}}
	}
	return c
}

// next returns the next message; its caller must have fewer than
// contractRing publishes in flight.
func (c *contractMsgs) next() *nats.Msg {
	m := &c.ring[c.n%contractRing]
	c.n++
	return m
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
