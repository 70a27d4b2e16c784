package hgtest

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StoredByKey reads the whole stream back with an ordered consumer and
// returns, for each webhook Load sent, the stream sequences it is stored at:
// how tests prove that every 202 was stored once (CheckStoredOnce). A
// webhook is known by its Hook-Idempotency-Key, or without one by the id
// Load writes in its body ({"n":"<id>"}). It waits up to 20s for the stream
// to answer (a cluster may still be electing its leader) and fails the test
// if the whole read takes over a minute.
func StoredByKey(t testing.TB, js jetstream.JetStream, stream string) map[string][]uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var (
		s    jetstream.Stream
		info *jetstream.StreamInfo
	)
	WaitFor(t, 20*time.Second, func() error {
		var err error
		if s, err = js.Stream(ctx, stream); err != nil {
			return err
		}
		info, err = s.Info(ctx)
		return err
	})
	keys := make(map[string][]uint64)
	if info.State.Msgs == 0 {
		return keys
	}
	c, err := s.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatalf("stream %s: ordered consumer: %v", stream, err)
	}
	var seen uint64 // the last sequence read
	for seen < info.State.LastSeq {
		if ctx.Err() != nil {
			t.Fatalf("stream %s: read up to seq %d of %d before giving up", stream, seen, info.State.LastSeq)
		}
		batch, err := c.Fetch(1000, jetstream.FetchMaxWait(2*time.Second))
		if err != nil {
			if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, jetstream.ErrNoMessages) {
				continue
			}
			t.Fatalf("stream %s: fetch: %v", stream, err)
		}
		for m := range batch.Messages() {
			md, err := m.Metadata()
			if err != nil {
				t.Fatalf("stream %s: metadata: %v", stream, err)
			}
			seen = md.Sequence.Stream
			k := m.Headers().Get("Hook-Idempotency-Key")
			if k == "" {
				k = loadID(m.Data())
			}
			if k != "" {
				keys[k] = append(keys[k], seen)
			}
		}
	}
	return keys
}

// loadID is the id in a body Load sent, "" for any other body.
func loadID(body []byte) string {
	var b struct {
		N string `json:"n"`
	}
	if json.Unmarshal(body, &b) != nil {
		return ""
	}
	return b.N
}

// LastMessage returns the last message stored on subject in stream.
func LastMessage(t testing.TB, js jetstream.JetStream, stream, subject string) *jetstream.RawStreamMsg {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		t.Fatalf("stream %s: %v", stream, err)
	}
	m, err := s.GetLastMsgForSubject(ctx, subject)
	if err != nil {
		t.Fatalf("stream %s: last message on %s: %v", stream, subject, err)
	}
	return m
}

// RawKV returns the value of key in bucket as stored, read through a
// connection of its own.
func RawKV(t testing.TB, url, bucket, key string) []byte {
	t.Helper()
	_, js := Connect(t, url)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := js.KeyValue(ctx, bucket)
	if err != nil {
		t.Fatalf("bucket %s: %v", bucket, err)
	}
	e, err := kv.Get(ctx, key)
	if err != nil {
		t.Fatalf("bucket %s: %s: %v", bucket, key, err)
	}
	return e.Value()
}
