package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/gateway"
	"github.com/hookgate/hookgate/internal/hgtest"
)

// NATS stops under load and comes back on the same port and store: only 202
// and 503 are answered meanwhile, every 202 is stored once, and the gateway
// accepts again once NATS is back. With keys, the gateway's re-sends are
// dropped by the stream as duplicates; without, it never re-sends what may
// have been stored, so nothing is stored twice by its own doing either.
func TestBrokerOutageUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: NATS stops and restarts under load")
	}
	t.Run("with keys", func(t *testing.T) { brokerOutageUnderLoad(t, hgtest.StartLoad) })
	t.Run("without keys", func(t *testing.T) { brokerOutageUnderLoad(t, hgtest.StartLoadWithoutKeys) })
}

func brokerOutageUnderLoad(t *testing.T, startLoad func(testing.TB, []string, string, int, int) *hgtest.Load) {
	dir := t.TempDir()
	port := hgtest.Port(t) // the restarted server listens where the gateway reconnects
	opts := func() *server.Options {
		o := hgtest.NATSOptions(dir)
		o.Port = port
		return o
	}
	srv := hgtest.RunNATSWith(t, opts())
	const publishTimeout = 2 * time.Second
	gw := hgtest.StartGateway(t, srv.ClientURL(), func(c *gateway.Config) { c.PublishTimeout = publishTimeout })
	reg := hgtest.Registry(t, srv.ClientURL(), "")
	is := hgtest.Issue(t, reg, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "outage"})
	if code, body, _ := hgtest.Post(t, gw.URL+"/v1/hits/web", is.Token, []byte(`{}`), map[string]string{"Idempotency-Key": "warm"}); code != 202 {
		t.Fatalf("warm-up: %d %s", code, body)
	}

	l := startLoad(t, []string{gw.URL}, is.Token, 6, 200000)
	accepted := func(r hgtest.Reply) bool { return r.Code == 202 }
	l.WaitCount(t, 30*time.Second, 200, "202s before the outage", accepted)
	downAt := time.Now()
	srv.Shutdown()
	srv.WaitForShutdown()
	gw.WaitNotReady(t, 5*time.Second, "NATS went down")
	l.WaitCount(t, 30*time.Second, 100, "503s during the outage", func(r hgtest.Reply) bool {
		return r.Code == 503 && r.At.After(downAt)
	})
	upAt := time.Now()
	srv = hgtest.RunNATSWith(t, opts())
	hgtest.WaitFor(t, 15*time.Second, gw.ReadyErr)
	recovered := time.Now()
	l.WaitCount(t, 30*time.Second, 100, "202s after NATS came back", func(r hgtest.Reply) bool {
		return r.Code == 202 && r.At.After(recovered)
	})
	replies := l.Stop()

	codes := hgtest.Codes(replies)
	for _, r := range replies {
		switch r.Code {
		case 202:
		case 503:
			if n, err := strconv.Atoi(r.RetryAfter); err != nil || n < 1 {
				t.Errorf("503 with Retry-After %q", r.RetryAfter)
			}
			if r.Took > publishTimeout+time.Second {
				t.Errorf("503 after %s, longer than the publish timeout", r.Took)
			}
		default:
			t.Errorf("reply %d for %s (%v): only 202 and 503 are allowed", r.Code, r.Key, r.Err)
		}
	}
	_, js := hgtest.Connect(t, srv.ClientURL())
	n := hgtest.CheckStoredOnce(t, replies, hgtest.StoredByKey(t, js, "HOOKS"))
	t.Logf("outage: %d requests, %d 202, %d 503, lost 0 of %d acknowledged; down %s, recovered %s after restart",
		len(replies), n, codes[503], n, upAt.Sub(downAt).Round(time.Millisecond), recovered.Sub(upAt).Round(time.Millisecond))
}

// While NATS is down a webhook gets 503 at once, counted as a publish failure
// for the disconnection: the cache is distrusted meanwhile, so it fails at the
// token read, before any publish.
func TestWebhookWhileDisconnectedCountsAsDisconnected(t *testing.T) {
	srv := hgtest.RunNATS(t)
	gw := hgtest.StartGateway(t, srv.ClientURL(), nil)
	reg := hgtest.Registry(t, srv.ClientURL(), "")
	is := hgtest.Issue(t, reg, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "down"})
	if code, body, _ := hgtest.Post(t, gw.URL+"/v1/hits/web", is.Token, []byte(`{}`), nil); code != 202 {
		t.Fatalf("before the outage: %d %s", code, body)
	}
	if v := hgtest.MetricValue(t, gw.MetricsURL, "hookgate_ready"); v != 1 {
		t.Fatalf("hookgate_ready %v while ready", v)
	}
	srv.Shutdown()
	srv.WaitForShutdown()
	gw.WaitNotReady(t, 5*time.Second, "NATS went down")
	if v := hgtest.MetricValue(t, gw.MetricsURL, "hookgate_ready"); v != 0 {
		t.Fatalf("hookgate_ready %v while /readyz says 503", v)
	}
	series := `hookgate_publish_failures_total{reason="disconnected"}`
	before := hgtest.MetricValue(t, gw.MetricsURL, series)
	start := time.Now()
	code, body, h := hgtest.Post(t, gw.URL+"/v1/hits/web", is.Token, []byte(`{}`), nil)
	if code != 503 || !strings.Contains(string(body), `"unavailable"`) || h.Get("Retry-After") == "" {
		t.Fatalf("webhook while NATS is down: %d %s %v", code, body, h)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("503 took %s while disconnected: it must come at once", took)
	}
	if after := hgtest.MetricValue(t, gw.MetricsURL, series); after != before+1 {
		t.Fatalf("%s went %v -> %v for one 503 while disconnected", series, before, after)
	}
}

// sampledLines counts the JSON log lines that match and adds up the number
// of lines each says were left out (its leftOutKey).
func sampledLines(logs *hgtest.LogBuffer, leftOutKey string, match func(level, msg string) bool) (n int, leftOut int64) {
	for l := range strings.Lines(logs.String()) {
		var v map[string]any
		if json.Unmarshal([]byte(l), &v) != nil {
			continue
		}
		level, _ := v["level"].(string)
		msg, _ := v["msg"].(string)
		if match(level, msg) {
			n++
			left, _ := v[leftOutKey].(float64)
			leftOut += int64(left)
		}
	}
	return n, leftOut
}

// An outage fails every request: its warnings are sampled, not one line per
// request, and the next line written says how many were left out.
func TestOutageWarningsAreSampled(t *testing.T) {
	srv := hgtest.RunNATS(t)
	logs := &hgtest.LogBuffer{}
	gw := hgtest.StartGateway(t, srv.ClientURL(), func(c *gateway.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	reg := hgtest.Registry(t, srv.ClientURL(), "")
	is := hgtest.Issue(t, reg, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "outage"})
	srv.Shutdown()
	srv.WaitForShutdown()
	gw.WaitNotReady(t, 5*time.Second, "NATS went down")

	failures := func() (n int, leftOut int64) {
		return sampledLines(logs, "warnings_not_logged_since_last", func(level, msg string) bool {
			return level == "WARN" && strings.HasSuffix(msg, " failed")
		})
	}
	const sent = 300
	start := time.Now()
	for range sent {
		if code, body, _ := hgtest.Post(t, gw.URL+"/v1/hits/web", is.Token, []byte(`{}`), nil); code != 503 {
			t.Fatalf("webhook while NATS is down: %d %s", code, body)
		}
	}
	// The sampler's burst is 10 lines, then one a second.
	n, _ := failures()
	if limit := 10 + int(time.Since(start).Seconds()) + 1; n == 0 || n > limit {
		t.Fatalf("%d failure warnings for %d failed requests in %v, want 1 to %d", n, sent, time.Since(start), limit)
	}
	hgtest.WaitFor(t, 5*time.Second, func() error {
		hgtest.Post(t, gw.URL+"/v1/hits/web", is.Token, []byte(`{}`), nil)
		if _, leftOut := failures(); leftOut == 0 {
			return errors.New("no warning says how many were left out")
		}
		return nil
	})
	n, leftOut := failures()
	if total := int64(n) + leftOut; total < sent {
		t.Fatalf("%d warnings written + %d said to be left out = %d, fewer than the %d failed requests", n, leftOut, total, sent)
	}
}

// What the embedded server reports as an error reaches the gateway's log
// (before, it logged nothing: a full disk was silent), sampled, since any
// client of its port can provoke one.
func TestEmbeddedServerErrorsAreLogged(t *testing.T) {
	logs := &hgtest.LogBuffer{}
	gw := hgtest.StartGateway(t, "", func(c *gateway.Config) {
		c.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	})
	addr := strings.TrimPrefix(gw.NATSURL(), "nats://")
	// What the client sent is not quoted in the log: it may be anything.
	garble := func() error {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "CONNECT {\"verbose\":false}\r\nNOT-A-PROTOCOL-Bearer-hgh_secret\r\n")
		// The server answers -ERR and closes: wait for that, so that each
		// connection's error is logged before the next.
		_, err = io.Copy(io.Discard, c)
		return err
	}
	const garbled = 60
	for range garbled {
		if err := garble(); err != nil {
			t.Fatal(err)
		}
	}
	count := func() (n int, leftOut int64) {
		return sampledLines(logs, "server_lines_not_logged_since_last", func(level, msg string) bool {
			return level == "ERROR" && strings.Contains(msg, "embedded NATS server: ") && strings.Contains(msg, "parser ERROR")
		})
	}
	hgtest.WaitFor(t, 5*time.Second, func() error {
		if n, _ := count(); n == 0 {
			return errors.New("the server's parser errors are not in the log")
		}
		return nil
	})
	if n, _ := count(); n >= garbled {
		t.Fatalf("%d lines for %d garbled connections: not sampled", n, garbled)
	}
	hgtest.WaitFor(t, 5*time.Second, func() error {
		if err := garble(); err != nil {
			return err
		}
		if _, leftOut := count(); leftOut == 0 {
			return errors.New("no line says how many were left out")
		}
		return nil
	})
	if strings.Contains(logs.String(), "hgh_secret") {
		t.Fatalf("the log quotes what a client sent:\n%s", logs.String())
	}
}

// serve creates the stream with the contract's limits (a week, no size
// limit; the oldest go first), and exports its state; an existing stream
// keeps its own limits, and serve says which of its flags did not apply.
func TestStreamLimitsAndGauges(t *testing.T) {
	srv := hgtest.RunNATS(t)
	gw := hgtest.StartGateway(t, srv.ClientURL(), nil)
	_, js := hgtest.Connect(t, srv.ClientURL())
	s, err := js.Stream(context.Background(), "HOOKS")
	if err != nil {
		t.Fatal(err)
	}
	sc := s.CachedInfo().Config
	if sc.MaxAge != 168*time.Hour || sc.MaxBytes != -1 || sc.Discard != jetstream.DiscardOld {
		t.Fatalf("stream limits: max age %v, max bytes %d, discard %v; want 168h, -1, old", sc.MaxAge, sc.MaxBytes, sc.Discard)
	}
	reg := hgtest.Registry(t, srv.ClientURL(), "")
	is := hgtest.Issue(t, reg, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "gauges"})
	for range 3 {
		if code, body, _ := hgtest.Post(t, gw.URL+"/v1/hits/web", is.Token, []byte(`{"n":1}`), nil); code != 202 {
			t.Fatalf("%d %s", code, body)
		}
	}
	hgtest.WaitFor(t, 10*time.Second, func() error {
		if v := hgtest.MetricValue(t, gw.MetricsURL, "hookgate_stream_messages"); v < 3 {
			return fmt.Errorf("hookgate_stream_messages %v", v)
		}
		return nil
	})
	if v := hgtest.MetricValue(t, gw.MetricsURL, "hookgate_stream_bytes"); v <= 0 {
		t.Errorf("hookgate_stream_bytes %v", v)
	}
	if v := hgtest.MetricValue(t, gw.MetricsURL, "hookgate_stream_max_bytes"); v != -1 {
		t.Errorf("hookgate_stream_max_bytes %v, want -1 (none)", v)
	}

	second := hgtest.StartGateway(t, srv.ClientURL(), func(c *gateway.Config) {
		c.StreamMaxAge, c.StreamMaxBytes = time.Hour, 1<<30
	})
	for _, want := range []string{"--stream-max-age applies only when serve creates", "--stream-max-bytes applies only when serve creates"} {
		if !strings.Contains(second.Logs.String(), want) {
			t.Errorf("no warning %q in:\n%s", want, second.Logs.String())
		}
	}
}

// A stream JetStream will not create with serve's limits (here: more bytes
// than its store may hold) stops the gateway with the reason, instead of
// retrying for ever.
func TestStreamRefusedStopsTheGateway(t *testing.T) {
	opts := hgtest.NATSOptions(t.TempDir())
	opts.JetStreamMaxStore = 8 << 20
	srv := hgtest.RunNATSWith(t, opts)
	cfg := gateway.DefaultConfig()
	cfg.Listener, cfg.MetricsLn = hgtest.Listen(t), hgtest.Listen(t)
	cfg.NATS.URL = srv.ClientURL()
	cfg.StreamMaxBytes = 1 << 40
	cfg.Logger = slog.New(slog.DiscardHandler)
	g, err := gateway.Start(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- g.Wait() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "refused to create the stream") || !strings.Contains(err.Error(), "--stream-max-bytes") {
			t.Fatalf("stopped with %v; want the refusal and what to change", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("the gateway still runs with a stream JetStream will not create")
	}
}
