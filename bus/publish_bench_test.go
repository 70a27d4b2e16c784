package bus_test

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate/bus"
	"github.com/hookgate/hookgate/internal/hgtest"
)

// benchPublisher returns a publisher on an in-process NATS server and the
// subject prefix its messages go to: a JetStream stream in memory when
// stream, else a plain subscriber that acks every message at once (the
// publisher's own cost, without the store's).
func benchPublisher(b *testing.B, stream bool) (*bus.Publisher, string) {
	b.Helper()
	nc, js := hgtest.Connect(b, hgtest.RunNATS(b).ClientURL())
	if stream {
		_, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
			Name: "BENCH", Subjects: []string{"bench.>"}, Storage: jetstream.MemoryStorage,
			Duplicates: 2 * time.Minute, MaxMsgs: 100_000,
		})
		if err != nil {
			b.Fatal(err)
		}
	} else {
		ack := []byte(`{"stream":"BENCH","seq":1}`)
		sub, err := nc.Subscribe("bench.>", func(m *nats.Msg) { _ = nc.Publish(m.Reply, ack) })
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = sub.Unsubscribe() })
	}
	p, err := bus.NewPublisher(nc, 5*time.Second)
	if err != nil {
		b.Fatal(err)
	}
	p.SetDuplicateWindow(2 * time.Minute)
	return p, "bench.x"
}

// benchMsg returns a 300-byte message and a function that gives it the next
// of a run of distinct Nats-Msg-Ids (one allocation, as the handler spends).
func benchMsg(subject, prefix string) (*nats.Msg, func()) {
	msg := nats.NewMsg(subject)
	msg.Data = make([]byte, 300)
	id := []string{""}
	msg.Header[nats.MsgIdHdr] = id
	var n uint64
	var buf [64]byte
	return msg, func() {
		n++
		id[0] = string(strconv.AppendUint(append(buf[:0], prefix...), n, 10))
	}
}

// BenchmarkPublish is one publish at a time and its ack: the publisher's
// whole round trip.
func BenchmarkPublish(b *testing.B) {
	for _, c := range []struct {
		name   string
		stream bool
	}{{"stream", true}, {"responder", false}} {
		b.Run(c.name, func(b *testing.B) {
			p, subject := benchPublisher(b, c.stream)
			msg, next := benchMsg(subject, "s-")
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				next()
				if _, err := p.Publish(ctx, msg); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkPublishParallel is the same with 32 publishes per core in flight,
// so waiters are registered, pooled and found by their acks concurrently.
func BenchmarkPublishParallel(b *testing.B) {
	for _, c := range []struct {
		name   string
		stream bool
	}{{"stream", true}, {"responder", false}} {
		b.Run(c.name, func(b *testing.B) {
			p, subject := benchPublisher(b, c.stream)
			ctx := context.Background()
			var g atomic.Uint64
			b.SetParallelism(32)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				msg, next := benchMsg(subject, "p"+strconv.FormatUint(g.Add(1), 10)+"-")
				for pb.Next() {
					next()
					if _, err := p.Publish(ctx, msg); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
