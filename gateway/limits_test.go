package gateway_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/bus"
	"github.com/hookgate/hookgate/gateway"
	"github.com/hookgate/hookgate/internal/hgtest"
)

// reply is what one sender saw.
type reply struct {
	key        string
	code       int // 0: connection error
	retryAfter string
	took       time.Duration
	at         time.Time
}

// load sends POST /v1/hits/web with a unique Idempotency-Key per request from
// `senders` goroutines until stop is closed or `max` requests were sent.
type load struct {
	mu      sync.Mutex
	replies []reply
	wg      sync.WaitGroup
	stop    chan struct{}
}

func startLoad(t *testing.T, urls []string, token string, senders, max int) *load {
	l := &load{stop: make(chan struct{})}
	var sent atomic.Int64
	client := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: senders}}
	for s := range senders {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				if sent.Add(1) > int64(max) {
					return
				}
				key := fmt.Sprintf("s%d-%d", s, i)
				url := urls[(s+i)%len(urls)]
				req, _ := http.NewRequest("POST", url+"/v1/hits/web", strings.NewReader(`{"n":"`+key+`"}`))
				req.Header.Set("Authorization", "Bearer "+token)
				req.Header.Set("Idempotency-Key", key)
				start := time.Now()
				r := reply{key: key, at: start}
				resp, err := client.Do(req)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					r.code, r.retryAfter = resp.StatusCode, resp.Header.Get("Retry-After")
				} else {
					time.Sleep(5 * time.Millisecond) // a refused connection returns at once
				}
				r.took = time.Since(start)
				l.mu.Lock()
				l.replies = append(l.replies, r)
				l.mu.Unlock()
			}
		}()
	}
	return l
}

func (l *load) finish() []reply {
	close(l.stop)
	l.wg.Wait()
	return l.replies
}

// checkEveryAcceptedStoredOnce fails unless each 202's key is in the stream
// exactly once; it returns the count of 202s.
func checkEveryAcceptedStoredOnce(t *testing.T, replies []reply, stored map[string]int) (accepted int) {
	t.Helper()
	for _, r := range replies {
		if r.code == 202 {
			accepted++
			if n := stored[r.key]; n != 1 {
				t.Errorf("202 for %s but the stream holds it %d times", r.key, n)
			}
		}
	}
	for k, n := range stored {
		if n > 1 {
			t.Errorf("key %s stored %d times", k, n)
		}
	}
	return accepted
}

func count(replies []reply) map[int]int {
	m := map[int]int{}
	for _, r := range replies {
		m[r.code]++
	}
	return m
}

func TestBrokerOutageUnderLoad(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
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
	time.Sleep(time.Second)
	downAt := time.Now()
	srv.Shutdown()
	srv.WaitForShutdown()
	gw.WaitNotReady(t, 5*time.Second, "NATS went down")
	time.Sleep(2 * time.Second)
	upAt := time.Now()
	srv = hgtest.RunNATSWith(t, opts())
	hgtest.WaitFor(t, 15*time.Second, gw.ReadyErr)
	recovered := time.Now()
	time.Sleep(time.Second)
	replies := l.finish()

	codes := count(replies)
	for _, r := range replies {
		switch r.code {
		case 202:
		case 503:
			if n, err := strconv.Atoi(r.retryAfter); err != nil || n < 1 {
				t.Errorf("503 with Retry-After %q", r.retryAfter)
			}
			if r.took > publishTimeout+time.Second {
				t.Errorf("503 after %s, longer than the publish timeout", r.took)
			}
		default:
			t.Errorf("reply %d for %s: only 202 and 503 are allowed", r.code, r.key)
		}
	}
	afterRecovery := 0
	for _, r := range replies {
		if r.code == 202 && r.at.After(recovered) {
			afterRecovery++
		}
	}
	if afterRecovery == 0 {
		t.Error("no 202 after NATS came back: the gateway did not recover")
	}
	_, js := hgtest.Connect(t, srv.ClientURL())
	accepted := checkEveryAcceptedStoredOnce(t, replies, hgtest.StoredByKey(t, js, "HOOKS"))
	t.Logf("outage: %d requests, %d 202, %d 503, lost 0 of %d acknowledged; down %s, recovered %s after restart",
		len(replies), accepted, codes[503], accepted, upAt.Sub(downAt).Round(time.Millisecond), recovered.Sub(upAt).Round(time.Millisecond))
	if codes[503] == 0 {
		t.Error("no 503 while NATS was down")
	}
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
	srv.Shutdown()
	srv.WaitForShutdown()
	gw.WaitNotReady(t, 5*time.Second, "NATS went down")
	series := `hookgate_publish_failures_total{reason="disconnected"}`
	before := metricValue(t, gw.MetricsURL, series)
	start := time.Now()
	code, body, h := hgtest.Post(t, gw.URL+"/v1/hits/web", is.Token, []byte(`{}`), nil)
	if code != 503 || !strings.Contains(string(body), `"unavailable"`) || h.Get("Retry-After") == "" {
		t.Fatalf("webhook while NATS is down: %d %s %v", code, body, h)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("503 took %s while disconnected: it must come at once", took)
	}
	if after := metricValue(t, gw.MetricsURL, series); after != before+1 {
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

// The whole stop, the listener's drain, the metrics listener, NATS and the
// embedded server, fits in --shutdown-timeout even when a client holds a
// request open and a scrape connection stays open.
func TestShutdownFitsTheTimeout(t *testing.T) {
	const timeout = 4 * time.Second
	gw := hgtest.StartGateway(t, "", func(c *gateway.Config) {
		c.DataDir = t.TempDir()
		c.EmbeddedListen = fmt.Sprintf("127.0.0.1:%d", freePort(t))
		c.ShutdownTimeout = timeout
	})
	// A webhook whose body never finishes arriving (read timeout 10s).
	c, err := net.Dial("tcp", gw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/hits/web HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer x\r\nContent-Length: 100\r\n\r\n{")
	// A metrics request whose headers never finish.
	m, err := net.Dial("tcp", gw.MetricsAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	fmt.Fprintf(m, "GET /metrics HTTP/1.1\r\nHost: x\r\n")
	time.Sleep(100 * time.Millisecond) // both reach their servers
	start := time.Now()
	gw.Stop()
	if took := time.Since(start); took > timeout {
		t.Fatalf("stop took %s with --shutdown-timeout %s", took, timeout)
	}
}

func TestShutdownUnderLoad(t *testing.T) {
	srv := hgtest.RunNATS(t)
	const shutdownTimeout = 10 * time.Second
	gw := hgtest.StartGateway(t, srv.ClientURL(), func(c *gateway.Config) { c.ShutdownTimeout = shutdownTimeout })
	reg := hgtest.Registry(t, srv.ClientURL(), "")
	is := hgtest.Issue(t, reg, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "drain"})
	l := startLoad(t, []string{gw.URL}, is.Token, 8, 200000)
	time.Sleep(time.Second)
	start := time.Now()
	gw.Stop() // what SIGTERM does: serve's signal context is cancelled
	took := time.Since(start)
	if took > shutdownTimeout {
		t.Errorf("shutdown took %s, over %s", took, shutdownTimeout)
	}
	if _, err := net.DialTimeout("tcp", gw.Addr().String(), time.Second); err == nil {
		t.Error("new connections are still accepted after shutdown")
	}
	time.Sleep(200 * time.Millisecond)
	replies := l.finish()
	codes := count(replies)
	for code := range codes {
		if code != 202 && code != 0 {
			t.Errorf("%d replies of %d during shutdown", codes[code], code)
		}
	}
	_, js := hgtest.Connect(t, srv.ClientURL())
	accepted := checkEveryAcceptedStoredOnce(t, replies, hgtest.StoredByKey(t, js, "HOOKS"))
	for line := range strings.Lines(gw.Logs.String()) {
		if strings.Contains(line, "publish failed") || strings.Contains(line, "lookup") {
			t.Log(line)
			break
		}
	}
	t.Logf("shutdown: %d requests, %d 202, %d refused connections, lost 0; drained in %s",
		len(replies), accepted, codes[0], took.Round(time.Millisecond))
}

func TestRateLimits(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config) {
		c.Ingest.RateLimit, c.Ingest.RateBurst = 1, 3
		c.Ingest.AuthFailureRate, c.Ingest.AuthFailureBurst = 0.5, 4
	})
	limited := e.issue("acme", auth.KindHits, "")
	codes := []int{}
	var retry string
	for range 5 {
		code, _, h := e.post("/v1/hits/web", limited.Token, `{}`, nil)
		codes = append(codes, code)
		if code == 429 {
			retry = h.Get("Retry-After")
		}
	}
	if fmt.Sprint(codes) != "[202 202 202 429 429]" {
		t.Fatalf("per-credential: %v", codes)
	}
	if n, err := strconv.Atoi(retry); err != nil || n < 1 {
		t.Fatalf("Retry-After %q", retry)
	}

	// Refused tokens from one address: after the burst, 429 without a
	// bucket read; a token already known valid still works.
	known := e.issue("acme", auth.KindDeploy, "web")
	if code, _, _ := e.post("/v1/deploys/web", known.Token, `{}`, nil); code != 202 {
		t.Fatalf("known token: %d", code)
	}
	missesBefore := metricValue(t, e.gw.MetricsURL, `hookgate_token_cache_requests_total{result="miss"}`)
	codes = codes[:0]
	for i := range 30 {
		tok, _ := auth.NewToken(auth.KindHits)
		code, out, h := e.post("/v1/hits/web", tok, `{}`, nil)
		codes = append(codes, code)
		if code == 429 && (out["error"] != "rate_limited" || h.Get("Retry-After") == "") {
			t.Fatalf("429 reply %v %v", out, h)
		}
		_ = i
	}
	if fmt.Sprint(codes[:5]) != "[401 401 401 401 429]" {
		t.Fatalf("refused-token budget: %v", codes)
	}
	for _, c := range codes[4:] {
		if c != 429 {
			t.Fatalf("guessing went on after the budget: %v", codes)
		}
	}
	// Over the budget, a missing or malformed token is refused the same way:
	// any token not known valid gets 429.
	for _, tok := range []string{"", "short", "hgh_not-a-checksummed-token-at-all"} {
		code, out, h := e.post("/v1/hits/web", tok, `{}`, nil)
		if code != 429 || out["error"] != "rate_limited" || h.Get("Retry-After") == "" {
			t.Fatalf("token %q from an address over its budget: %d %v", tok, code, out)
		}
	}
	misses := metricValue(t, e.gw.MetricsURL, `hookgate_token_cache_requests_total{result="miss"}`) - missesBefore
	if misses > 4 {
		t.Fatalf("%v bucket reads for 30 guesses: the limit must come before the lookup", misses)
	}
	if code, _, _ := e.post("/v1/deploys/web", known.Token, `{}`, nil); code != 202 {
		t.Fatalf("known-valid token from a limited address: %d", code)
	}
	if v := metricValue(t, e.gw.MetricsURL, `hookgate_auth_failures_total{reason="rate_limited"}`); v < 28 {
		t.Fatalf("rate_limited failures = %v", v)
	}
}

// A rate without a burst (the contract's defaults are 0 and 0) starts the
// gateway and lets one second's worth through at once.
func TestRateLimitWithoutBurst(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config) { c.Ingest.RateLimit, c.Ingest.RateBurst = 1.5, 0 })
	is := e.issue("acme", auth.KindHits, "")
	var codes []int
	for range 3 {
		code, _, _ := e.post("/v1/hits/web", is.Token, `{}`, nil)
		codes = append(codes, code)
	}
	if fmt.Sprint(codes) != "[202 202 429]" {
		t.Fatalf("--rate-limit 1.5 without --rate-burst: %v", codes)
	}
}

// Two organizations whose platform gave their credentials the same id do not
// share a rate budget.
func TestRateBudgetIsPerOrganization(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config) { c.Ingest.RateLimit, c.Ingest.RateBurst = 0.2, 1 })
	kv, err := e.js.KeyValue(context.Background(), "hookgate-tokens")
	if err != nil {
		t.Fatal(err)
	}
	for _, org := range []string{"acme", "globex"} {
		token := "platform-token-of-" + org + "-0123456789"
		rec := `{"id":"1","org":"` + org + `","app":"","kind":"hits","name":"n","version":1}`
		if _, err := kv.Put(context.Background(), auth.TokenKey(auth.HashToken([]byte(token))), []byte(rec)); err != nil {
			t.Fatal(err)
		}
		hgtest.WaitFor(t, 2*time.Second, func() error {
			if code, out, _ := e.post("/v1/hits/web", token, `{}`, nil); code != 202 {
				return fmt.Errorf("%s's first webhook: %d %v", org, code, out)
			}
			return nil
		})
	}
}

func metricValue(t *testing.T, metricsURL, series string) float64 {
	t.Helper()
	v, found, err := hgtest.Metric(metricsURL, series)
	if err != nil {
		t.Fatal(err)
	}
	if !found {
		t.Fatalf("%s not in /metrics", series)
	}
	return v
}

func TestSlowClientIsCutOffWhileOthersAreServed(t *testing.T) {
	const readTimeout = time.Second
	e := newEnv(t, func(c *gateway.Config) { c.Server.ReadTimeout = readTimeout })
	is := e.issue("acme", auth.KindHits, "")
	conn, err := net.Dial("tcp", e.gw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	request := "POST /v1/hits/web HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + is.Token + "\r\nContent-Length: 2\r\n\r\n{}"
	start := time.Now()
	cut := make(chan time.Duration, 1)
	go func() {
		// The trickler: one byte every 50ms, 4.5 seconds for the whole request.
		for i := range len(request) {
			if _, err := conn.Write([]byte{request[i]}); err != nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	go func() {
		buf := make([]byte, 512)
		for {
			conn.SetReadDeadline(time.Now().Add(10 * time.Second))
			if _, err := conn.Read(buf); err != nil {
				cut <- time.Since(start)
				return
			}
		}
	}()
	// Meanwhile other clients are served.
	for range 5 {
		if code, _, _ := e.post("/v1/hits/web", is.Token, `{}`, nil); code != 202 {
			t.Fatalf("other client got %d while a slow one trickled", code)
		}
	}
	select {
	case d := <-cut:
		t.Logf("slow client cut off after %s (read timeout %s)", d.Round(time.Millisecond), readTimeout)
		if d < readTimeout-100*time.Millisecond || d > readTimeout+2*time.Second {
			t.Fatalf("cut off after %s, read timeout is %s", d, readTimeout)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("slow client never cut off")
	}
	if n := e.streamMsgs(); n != 5 {
		t.Fatalf("stream holds %d, want the 5 fast requests only", n)
	}
}

func TestConcurrencyLimitAnswers503(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config) { c.Ingest.MaxInFlight = 1; c.PublishTimeout = 3 * time.Second })
	is := e.issue("acme", auth.KindHits, "")
	// Make publishes hang: remove the stream and answer nothing on its subjects.
	if err := e.js.DeleteStream(context.Background(), "HOOKS"); err != nil {
		t.Fatal(err)
	}
	sub, err := e.nc.SubscribeSync("hooks.>")
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	e.nc.Flush()
	first := make(chan int, 1)
	go func() {
		code, _, _ := hgtest.Post(t, e.gw.URL+"/v1/hits/web", is.Token, []byte(`{}`), nil)
		first <- code
	}()
	if _, err := sub.NextMsg(5 * time.Second); err != nil {
		t.Fatalf("first publish never sent: %v", err)
	}
	code, out, h := e.post("/v1/hits/web", is.Token, `{}`, nil)
	if code != 503 || out["error"] != "unavailable" || h.Get("Retry-After") == "" {
		t.Fatalf("second request at the limit: %d %v", code, out)
	}
	if code := <-first; code != 503 {
		t.Fatalf("unacknowledged publish answered %d, want 503 after the timeout", code)
	}
}

func TestPayloadLimitFitsBroker(t *testing.T) {
	opts := hgtest.NATSOptions(t.TempDir())
	opts.MaxPayload = 64 << 10
	srv := hgtest.RunNATSWith(t, opts)
	gw := hgtest.StartGateway(t, srv.ClientURL(), func(c *gateway.Config) { c.Ingest.MaxBody = 256 << 10 })
	reg := hgtest.Registry(t, srv.ClientURL(), "")
	is := hgtest.Issue(t, reg, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "big"})
	body := func(n int) []byte { return []byte(`{"a":"` + strings.Repeat("x", n-8) + `"}`) }
	if code, out, _ := hgtest.Post(t, gw.URL+"/v1/hits/web", is.Token, body(100<<10), nil); code != 413 {
		t.Fatalf("body over the broker's max_payload: %d %s (want 413, never 5xx)", code, out)
	}
	if code, out, _ := hgtest.Post(t, gw.URL+"/v1/hits/web", is.Token, body(60<<10), nil); code != 202 {
		t.Fatalf("body within the broker's limit: %d %s", code, out)
	}
	if !strings.Contains(gw.Logs.String(), "--max-body lowered to fit the broker") {
		t.Fatal("no warning that --max-body was lowered")
	}
}

// selfSigned writes a certificate and key for 127.0.0.1 and returns their
// paths and a pool trusting it.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "hookgate test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}

func TestTLSListener(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	srv := hgtest.RunNATS(t)
	gw := hgtest.StartGateway(t, srv.ClientURL(), func(c *gateway.Config) { c.TLSCert, c.TLSKey = certFile, keyFile })
	reg := hgtest.Registry(t, srv.ClientURL(), "")
	is := hgtest.Issue(t, reg, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "tls"})
	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest("POST", "https://"+gw.Addr().String()+"/v1/hits/web", strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+is.Token)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 202 || resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Fatalf("TLS post: %d %+v", resp.StatusCode, resp.TLS)
	}
	old := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11}}}
	if _, err := old.Post("https://"+gw.Addr().String()+"/v1/hits/web", "application/json", strings.NewReader(`{}`)); err == nil {
		t.Fatal("TLS 1.1 was accepted")
	}
	if resp, err := http.Post("http://"+gw.Addr().String()+"/v1/hits/web", "application/json", strings.NewReader(`{}`)); err == nil && resp.StatusCode == 202 {
		t.Fatal("plain HTTP accepted on the TLS listener")
	}
}

func TestNATSWithAuthAndTLS(t *testing.T) {
	t.Run("user and password", func(t *testing.T) {
		opts := hgtest.NATSOptions(t.TempDir())
		opts.Username, opts.Password = "hookgate", "s3cret"
		srv := hgtest.RunNATSWith(t, opts)
		url := fmt.Sprintf("nats://127.0.0.1:%d", srv.Addr().(*net.TCPAddr).Port)
		gw := hgtest.StartGateway(t, url, func(c *gateway.Config) { c.NATS.User, c.NATS.Password = "hookgate", "s3cret" })
		if err := gw.ReadyErr(); err != nil {
			t.Fatal(err)
		}
		nc, err := bus.Dial(bus.ConnConfig{URL: url, User: "hookgate", Password: "wrong"})
		if err == nil {
			nc.Close()
			t.Fatal("wrong password accepted: the server does not require auth")
		}
	})
	t.Run("TLS", func(t *testing.T) {
		certFile, keyFile, _ := selfSigned(t)
		opts := hgtest.NATSOptions(t.TempDir())
		tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: certFile, KeyFile: keyFile})
		if err != nil {
			t.Fatal(err)
		}
		opts.TLSConfig, opts.TLS = tc, true
		srv := hgtest.RunNATSWith(t, opts)
		url := fmt.Sprintf("tls://127.0.0.1:%d", srv.Addr().(*net.TCPAddr).Port)
		gw := hgtest.StartGateway(t, url, func(c *gateway.Config) { c.NATS.TLSCA = certFile })
		if err := gw.ReadyErr(); err != nil {
			t.Fatal(err)
		}
		if nc, err := bus.Dial(bus.ConnConfig{URL: strings.Replace(url, "tls://", "nats://", 1)}); err == nil {
			nc.Close()
			t.Fatal("plain connection accepted by a TLS-only server")
		}
	})
}

func TestMaxConnsPerAddress(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config) { c.Server.MaxConnsPerIP = 2 })
	var conns []net.Conn
	for range 2 {
		c, err := net.Dial("tcp", e.gw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		conns = append(conns, c)
	}
	// The third connection from the same address gets the contract's 429
	// and is closed, whether it waits or sends its request at once (an
	// unread request must not turn the reply into a connection reset).
	is := e.issue("acme", auth.KindHits, "")
	req := "POST /v1/hits/web HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + is.Token + "\r\nContent-Length: 2\r\n\r\n{}"
	hgtest.WaitFor(t, 5*time.Second, func() error {
		return refusedWith(e.gw.Addr().String(), "", http.StatusTooManyRequests, "rate_limited")
	})
	for _, send := range []string{req, req + strings.Repeat(" ", 200<<10)} {
		for range 20 {
			if err := refusedWith(e.gw.Addr().String(), send, http.StatusTooManyRequests, "rate_limited"); err != nil {
				t.Fatalf("sending %d bytes at once: %v", len(send), err)
			}
		}
	}
	// The first two still work.
	for _, c := range conns {
		c.Write([]byte(req))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		line, err := bufio.NewReader(c).ReadString('\n')
		if !strings.HasPrefix(line, "HTTP/1.1 202") {
			t.Fatalf("existing connection got %q, %v", line, err)
		}
	}
	// Closing one frees its place for a new connection.
	conns[0].Close()
	hgtest.WaitFor(t, 5*time.Second, func() error {
		_, err := postOn(e.gw.Addr().String(), req)
		return err
	})
	if n := metricValue(t, e.gw.MetricsURL, `hookgate_http_requests_total{code="429",route="other"}`); n < 1 {
		t.Fatalf("refused connections not counted: %v", n)
	}
}

func TestMaxConnsInAll(t *testing.T) {
	e := newEnv(t, func(c *gateway.Config) { c.Server.MaxConns = 2 })
	for range 2 {
		c, err := net.Dial("tcp", e.gw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	hgtest.WaitFor(t, 5*time.Second, func() error {
		return refusedWith(e.gw.Addr().String(), "", http.StatusServiceUnavailable, "unavailable")
	})
}

// refusedWith dials addr, sends send (maybe nothing), and expects the
// contract's JSON refusal with Retry-After and then the end of the
// connection.
func refusedWith(addr, send string, status int, code string) error {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	if send != "" {
		// Written while the reply may already be on its way, as a client
		// uploading a body would; a write error after the refusal is fine.
		go c.Write([]byte(send))
	}
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return fmt.Errorf("no reply: %w", err)
	}
	defer resp.Body.Close()
	var body struct{ Error, Message string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return fmt.Errorf("status %d, body not JSON: %w", resp.StatusCode, err)
	}
	if resp.StatusCode != status || body.Error != code || body.Message == "" || resp.Header.Get("Retry-After") != "1" ||
		resp.Header.Get("Content-Type") != "application/json" {
		return fmt.Errorf("got %d %+v Retry-After %q Content-Type %q", resp.StatusCode, body, resp.Header.Get("Retry-After"), resp.Header.Get("Content-Type"))
	}
	if _, err := br.ReadByte(); err == nil {
		return fmt.Errorf("connection still open after the refusal")
	}
	return nil
}

// postOn sends one raw request on a new connection and wants a 202.
func postOn(addr, req string) (string, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.Write([]byte(req))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if !strings.HasPrefix(line, "HTTP/1.1 202") {
		return line, fmt.Errorf("got %q, %v", line, err)
	}
	return line, nil
}

func TestHeaderLimitAndIdleTimeout(t *testing.T) {
	const idle = 500 * time.Millisecond
	e := newEnv(t, func(c *gateway.Config) { c.Server.MaxHeaderSize = 4096; c.Server.IdleTimeout = idle })
	is := e.issue("acme", auth.KindHits, "")

	code, out, _ := e.post("/v1/hits/web", is.Token, `{}`, map[string]string{"X-Big": strings.Repeat("b", 8000)})
	if code != 431 || out["error"] != "headers_too_large" {
		t.Fatalf("oversized headers: %d %v", code, out)
	}
	if n := e.streamMsgs(); n != 0 {
		t.Fatalf("stored %d messages for a refused request", n)
	}

	// A keep-alive connection left idle is closed by the server.
	c, err := net.Dial("tcp", e.gw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := "POST /v1/hits/web HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + is.Token + "\r\nContent-Length: 2\r\n\r\n{}"
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	r := bufio.NewReader(c)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if line, _ := r.ReadString('\n'); !strings.HasPrefix(line, "HTTP/1.1 202") {
		t.Fatalf("first request: %q", line)
	}
	idleFrom := time.Now()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, err := r.ReadByte(); err != nil {
			break // the rest of the reply, then EOF when the server closes
		}
	}
	took := time.Since(idleFrom)
	if took < idle/2 || took > idle+3*time.Second {
		t.Fatalf("idle connection closed after %s, idle timeout %s", took, idle)
	}
	t.Logf("idle keep-alive connection closed after %s (idle timeout %s)", took.Round(time.Millisecond), idle)
}
