package main

import (
	"context"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The broker row with hookgate's message is only worth its name while the
// message is what hookgate stores: the same header names, and values of the
// same shape and size.
func TestContractMsgMatchesHookgate(t *testing.T) {
	g, err := startHookgateInProc(t.TempDir(), "", "", 100)
	if err != nil {
		t.Fatal(err)
	}
	defer g.stop()
	body := payload(300)
	if _, err := hitsTarget(g.natsURL, g.addr, body); err != nil { // stores one webhook
		t.Fatal(err)
	}
	nc, err := nats.Connect(g.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, "HOOKS")
	if err != nil {
		t.Fatal(err)
	}
	stored, err := s.GetMsg(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}

	ref := newContractMsgs("bench", "app1", body).next()
	if got, want := slices.Sorted(maps.Keys(ref.Header)), slices.Sorted(maps.Keys(stored.Header)); !slices.Equal(got, want) {
		t.Fatalf("reference headers %q, hookgate stored %q", got, want)
	}
	for k, v := range stored.Header {
		got, want := ref.Header.Get(k), v[0]
		switch k {
		case "Hook-Credential": // per credential
			if d := len(got) - len(want); d < -4 || d > 4 {
				t.Errorf("%s: reference %q, hookgate %q: sizes differ by %d", k, got, want, d)
			}
		default:
			if got != want {
				t.Errorf("%s: reference %q, hookgate %q", k, got, want)
			}
		}
	}
	if string(ref.Data) != string(stored.Data) {
		t.Errorf("reference body differs from the stored one")
	}
}
