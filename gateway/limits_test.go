package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/gateway"
	"github.com/hookgate/hookgate/ingest"
	"github.com/hookgate/hookgate/internal/hgtest"
)

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
	missesBefore := hgtest.MetricValue(t, e.gw.MetricsURL, `hookgate_token_cache_requests_total{result="miss"}`)
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
	misses := hgtest.MetricValue(t, e.gw.MetricsURL, `hookgate_token_cache_requests_total{result="miss"}`) - missesBefore
	if misses > 4 {
		t.Fatalf("%v bucket reads for 30 guesses: the limit must come before the lookup", misses)
	}
	if code, _, _ := e.post("/v1/deploys/web", known.Token, `{}`, nil); code != 202 {
		t.Fatalf("known-valid token from a limited address: %d", code)
	}
	if v := hgtest.MetricValue(t, e.gw.MetricsURL, `hookgate_auth_failures_total{reason="rate_limited"}`); v < 28 {
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
	if testing.Short() {
		t.Skip("slow: waits out a 3s publish timeout")
	}
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
	if n := hgtest.MetricValue(t, e.gw.MetricsURL, `hookgate_http_requests_total{code="429",route="other"}`); n < 1 {
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

// Behind a trusted proxy each sender has its own refused-token budget, named
// by X-Forwarded-For, and the proxy's connections are not capped per address;
// an untrusted peer's X-Forwarded-For is ignored.
func TestTrustedProxiesNameTheClient(t *testing.T) {
	budget := func(c *gateway.Config) {
		c.Ingest.AuthFailureRate, c.Ingest.AuthFailureBurst = 0.01, 3
		c.Server.MaxConnsPerIP = 2
	}
	guess := func(e *env, xff string) int {
		tok, _ := auth.NewToken(auth.KindHits)
		code, _, _ := e.post("/v1/hits/web", tok, `{}`, map[string]string{"X-Forwarded-For": xff})
		return code
	}

	trusted := newEnv(t, func(c *gateway.Config) {
		budget(c)
		p, err := ingest.ParseProxies("127.0.0.0/8")
		if err != nil {
			t.Fatal(err)
		}
		c.Ingest.TrustedProxies = p
	})
	var codes []int
	for range 4 {
		codes = append(codes, guess(trusted, "1.1.1.1, 203.0.113.7"))
	}
	if fmt.Sprint(codes) != "[401 401 401 429]" {
		t.Fatalf("one sender behind the proxy: %v, want its budget of 3 then 429", codes)
	}
	if code := guess(trusted, "203.0.113.8"); code != 401 {
		t.Fatalf("another sender behind the same proxy: %d, want 401 from a budget of its own", code)
	}
	if !strings.Contains(trusted.gw.Logs.String(), `"remote":"203.0.113.8"`) {
		t.Error("the refusal's log line does not name the client behind the proxy")
	}
	// Many connections from the proxy: none refused for its address.
	is := trusted.issue("acme", auth.KindHits, "")
	req := "POST /v1/hits/web HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + is.Token + "\r\nContent-Length: 2\r\n\r\n{}"
	for i := range 5 {
		c, err := net.Dial("tcp", trusted.gw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte(req))
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if line, err := bufio.NewReader(c).ReadString('\n'); !strings.HasPrefix(line, "HTTP/1.1 202") {
			t.Fatalf("connection %d from the trusted proxy: %q, %v", i+1, line, err)
		}
	}

	untrusted := newEnv(t, budget)
	codes = codes[:0]
	for i := range 4 {
		codes = append(codes, guess(untrusted, fmt.Sprintf("203.0.113.%d", i)))
	}
	if fmt.Sprint(codes) != "[401 401 401 429]" {
		t.Fatalf("X-Forwarded-For from an untrusted peer: %v, want one budget for the peer", codes)
	}
}
