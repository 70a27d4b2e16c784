package bus_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookgate/hookgate/bus"
	"github.com/hookgate/hookgate/internal/hgtest"
	"github.com/nats-io/nats.go"
)

// fakeStream answers publishes on subject the way JetStream would, attempt by
// attempt (the attempt is the last token of the publisher's reply subject):
// "503" is a no-responders status, "" no answer at all, anything else the ack
// body.
func fakeStream(t *testing.T, nc *nats.Conn, subject string, answers map[string]string) {
	t.Helper()
	sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
		attempt := m.Reply[strings.LastIndexByte(m.Reply, '.')+1:]
		switch a := answers[attempt]; a {
		case "":
		case "503":
			r := nats.NewMsg(m.Reply)
			r.Header.Set("Status", "503")
			_ = nc.PublishMsg(r)
		default:
			_ = nc.Publish(m.Reply, []byte(a))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
}

// newPublisher connects to a fresh server and returns a publisher on it.
func newPublisher(t *testing.T, timeout time.Duration) (*nats.Conn, *bus.Publisher) {
	t.Helper()
	nc, err := nats.Connect(hgtest.RunNATS(t).ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	p, err := bus.NewPublisher(nc, timeout)
	if err != nil {
		t.Fatal(err)
	}
	return nc, p
}

// A "duplicate" ack is the sender's only when no other attempt of the
// gateway's own may have been stored.
func TestPublishDuplicateIsTheSendersOnly(t *testing.T) {
	nc, p := newPublisher(t, 2*time.Second) // re-sends after ~667ms
	dup := `{"stream":"HOOKS","seq":7,"duplicate":true}`
	for _, c := range []struct {
		name    string
		answers map[string]string
		want    bool
	}{
		{"first attempt finds an earlier copy", map[string]string{"1": dup}, true},
		{"first attempt refused, the re-send finds an earlier copy", map[string]string{"1": "503", "2": dup}, true},
		{"first attempt unanswered, the re-send finds a copy (maybe its own)", map[string]string{"1": "", "2": dup}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			subject := "t." + strings.ReplaceAll(c.name, " ", "_")
			fakeStream(t, nc, subject, c.answers)
			msg := nats.NewMsg(subject)
			msg.Header.Set(nats.MsgIdHdr, "k-1")
			ack, err := p.Publish(context.Background(), msg)
			if err != nil {
				t.Fatal(err)
			}
			if ack.Seq != 7 || ack.Duplicate != c.want {
				t.Fatalf("ack %+v, want seq 7 and duplicate %v", ack, c.want)
			}
		})
	}
}

// Past half the stream's duplicate window a re-send could be stored as a
// second copy, so the publisher then only waits for an earlier attempt's ack.
// Attempts the stream refused (no responders) were not stored: once all are
// refused, re-sending is safe again. A refusal does not unregister the
// publish: an ack of another attempt right behind it still arrives.
func TestPublishResendsOnlyWithinHalfTheDuplicateWindow(t *testing.T) {
	nc, p := newPublisher(t, 2*time.Second) // timer re-sends after ~667ms
	const ack = `{"stream":"HOOKS","seq":7}`
	refuse := func(reply string) {
		r := nats.NewMsg(reply)
		r.Header.Set("Status", "503")
		_ = nc.PublishMsg(r)
	}
	ackAllButFirst := func(a, reply string, _ map[string]string) {
		if a != "1" {
			_ = nc.Publish(reply, []byte(ack))
		}
	}
	for _, c := range []struct {
		name     string
		window   time.Duration
		answer   func(attempt, reply string, replies map[string]string) // runs on the stream's subscription
		attempts int                                                    // that went out
		stored   bool                                                   // an ack, else a timeout
	}{
		{"first attempt unanswered, re-send inside half the window", 10 * time.Second, ackAllButFirst, 2, true},
		{"first attempt unanswered, no re-send past half the window", time.Second, ackAllButFirst, 1, false},
		{"first attempt refused at once, re-sent past half the window", time.Second,
			func(a, reply string, _ map[string]string) {
				if a == "1" {
					refuse(reply)
				} else {
					_ = nc.Publish(reply, []byte(ack))
				}
			}, 2, true},
		{"first attempt refused late, re-sent once refused", time.Second,
			func(a, reply string, _ map[string]string) {
				if a == "1" {
					time.AfterFunc(time.Second, func() { refuse(reply) }) // after the pass at ~667ms
				} else {
					_ = nc.Publish(reply, []byte(ack))
				}
			}, 2, true},
		{"re-send refused, the first attempt's ack right behind it", 3 * time.Second,
			func(a, reply string, replies map[string]string) {
				replies[a] = reply
				if a == "2" {
					refuse(reply)
					_ = nc.Publish(replies["1"], []byte(ack))
				}
			}, 2, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			p.SetDuplicateWindow(c.window)
			subject := "w." + strings.NewReplacer(" ", "_", ",", "").Replace(c.name)
			replies := map[string]string{}
			sent := make(chan string, 16)
			sub, err := nc.Subscribe(subject, func(m *nats.Msg) {
				a := m.Reply[strings.LastIndexByte(m.Reply, '.')+1:]
				sent <- a
				c.answer(a, m.Reply, replies)
			})
			if err != nil {
				t.Fatal(err)
			}
			defer sub.Unsubscribe()
			msg := nats.NewMsg(subject)
			msg.Header.Set(nats.MsgIdHdr, "g-1")
			got, err := p.Publish(context.Background(), msg)
			if c.stored && (err != nil || got.Seq != 7) {
				t.Fatalf("ack %+v, err %v: want seq 7", got, err)
			}
			if !c.stored && !errors.Is(err, bus.ErrPublishTimeout) {
				t.Fatalf("ack %+v, err %v: want a timeout", got, err)
			}
			if n := len(sent); n != c.attempts {
				t.Fatalf("%d attempts went out, want %d", n, c.attempts)
			}
		})
	}
}

// A reconnect past half the window ends the publish with ErrDisconnected at
// once: the acks of its attempts went with the old connection, and a re-send
// could be stored twice. Inside half the window it re-sends instead.
func TestPublishReconnectPastHalfTheWindow(t *testing.T) {
	srv := hgtest.RunNATS(t)
	var p *bus.Publisher
	nc, err := nats.Connect(srv.ClientURL(), nats.ReconnectWait(10*time.Millisecond),
		nats.ReconnectHandler(func(*nats.Conn) { p.Reconnected() }))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if p, err = bus.NewPublisher(nc, 3*time.Second); err != nil { // timer re-sends after 1s
		t.Fatal(err)
	}
	sent := make(chan struct{}, 16)
	sub, err := nc.Subscribe("r.unanswered", func(*nats.Msg) { sent <- struct{}{} })
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	for _, c := range []struct {
		window   time.Duration
		want     error
		attempts int
	}{
		{time.Second, bus.ErrDisconnected, 1},   // the reconnect at ~700ms is past 500ms
		{time.Minute, bus.ErrPublishTimeout, 3}, // re-sent at the reconnect and at ~1.7s, never answered
	} {
		p.SetDuplicateWindow(c.window)
		for len(sent) > 0 {
			<-sent
		}
		reconnect := time.AfterFunc(700*time.Millisecond, func() { _ = nc.ForceReconnect() })
		msg := nats.NewMsg("r.unanswered")
		msg.Header.Set(nats.MsgIdHdr, "g-2")
		begin := time.Now()
		_, err := p.Publish(context.Background(), msg)
		reconnect.Stop()
		took := time.Since(begin)
		if !errors.Is(err, c.want) {
			t.Fatalf("window %s: err %v after %s, want %v", c.window, err, took, c.want)
		}
		if c.want == bus.ErrDisconnected && took > 2*time.Second {
			t.Fatalf("window %s: ErrDisconnected only after %s", c.window, took)
		}
		if n := len(sent); n < c.attempts {
			t.Fatalf("window %s: %d attempts reached the server, want %d", c.window, n, c.attempts)
		}
	}
}

// Anyone who may publish to the publisher's reply subjects could send an
// "ack" of attempt 0 or -1: it is ignored, not a panic that ends the gateway.
func TestPublishIgnoresAcksOfAttemptsThatCannotBe(t *testing.T) {
	nc, p := newPublisher(t, 2*time.Second)
	sub, err := nc.Subscribe("t.forged", func(m *nats.Msg) {
		base := m.Reply[:strings.LastIndexByte(m.Reply, '.')+1]
		for _, attempt := range []string{"0", "-1", "-64"} {
			refusal := nats.NewMsg(base + attempt)
			refusal.Header.Set("Status", "503")
			_ = nc.PublishMsg(refusal)
			_ = nc.Publish(base+attempt, []byte(`{"stream":"HOOKS","seq":1}`))
		}
		_ = nc.Publish(m.Reply, []byte(`{"stream":"HOOKS","seq":9}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sub.Unsubscribe() })
	ack, err := p.Publish(context.Background(), nats.NewMsg("t.forged"))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Seq != 9 {
		t.Fatalf("ack %+v, want the real ack's seq 9", ack)
	}
}

// A message without a key has no Nats-Msg-Id for the stream to drop a second
// copy by: an attempt that may have been stored is never sent again, and the
// publish times out instead; an attempt the stream refused was not stored,
// so the message goes out again.
func TestPublishWithoutAKeyIsNeverSentTwice(t *testing.T) {
	nc, p := newPublisher(t, 1500*time.Millisecond) // re-sends after 500ms
	p.SetDuplicateWindow(time.Hour)                 // re-sends of keyed messages would be safe
	for _, c := range []struct {
		name     string
		answers  map[string]string
		wantSent int
		wantErr  error
	}{
		{"unanswered", map[string]string{}, 1, bus.ErrPublishTimeout},
		{"refused, then stored", map[string]string{"1": "503", "2": `{"stream":"HOOKS","seq":3}`}, 2, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			subject := "t.keyless." + strings.ReplaceAll(c.name, " ", "_")
			var sent atomic.Int32
			counter, err := nc.Subscribe(subject, func(*nats.Msg) { sent.Add(1) })
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = counter.Unsubscribe() })
			fakeStream(t, nc, subject, c.answers)
			msg := nats.NewMsg(subject)
			msg.Header.Set("Hook-Credential", "c1")
			_, err = p.Publish(context.Background(), msg)
			if !errors.Is(err, c.wantErr) {
				t.Fatalf("Publish: %v, want %v", err, c.wantErr)
			}
			// The counter's own delivery may trail the publish's end; a
			// re-send would have gone out long before it (after 500ms).
			hgtest.WaitFor(t, 5*time.Second, func() error {
				if n := sent.Load(); int(n) < c.wantSent {
					return fmt.Errorf("sent %d times so far", n)
				}
				return nil
			})
			if n := sent.Load(); int(n) != c.wantSent {
				t.Fatalf("sent %d times, want %d", n, c.wantSent)
			}
		})
	}
}
