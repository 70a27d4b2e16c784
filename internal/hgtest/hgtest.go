// Package hgtest starts real parts for tests and checks what they did: an
// embedded NATS server with JetStream, a whole gateway on loopback ports,
// credentials in its bucket, load on it, and reading back its stream and its
// metrics.
package hgtest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/bus"
	"github.com/hookgate/hookgate/gateway"
)

// NATSOptions returns options for a test NATS server with JetStream stored in
// dir, on a random loopback port.
func NATSOptions(dir string) *server.Options {
	return &server.Options{
		ServerName: "hgtest",
		Host:       "127.0.0.1",
		Port:       server.RANDOM_PORT,
		JetStream:  true,
		StoreDir:   dir,
		NoLog:      true,
		NoSigs:     true,
	}
}

// RunNATS starts a NATS server with JetStream in a temp dir; it stops with the test.
func RunNATS(t testing.TB) *server.Server {
	t.Helper()
	return RunNATSWith(t, NATSOptions(t.TempDir()))
}

// RunNATSWith starts a NATS server with opts; it stops with the test.
func RunNATSWith(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("nats server: %v", err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatalf("nats server did not start")
	}
	t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	return s
}

// Connect returns a client connection to url (nats.go's options, then opts),
// closed with the test.
func Connect(t testing.TB, url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatalf("connect %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatalf("jetstream: %v", err)
	}
	return nc, js
}

// Listen opens a loopback listener on a free port.
func Listen(t testing.TB) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	return ln
}

// LogBuffer collects a gateway's log lines for assertions.
type LogBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *LogBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything logged so far.
func (b *LogBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Gateway is a running gateway with what tests need to talk to it.
type Gateway struct {
	*gateway.Gateway
	URL        string // http://127.0.0.1:port of the webhook listener
	MetricsURL string
	Logs       *LogBuffer
	Stop       func() // shuts it down and waits; also run at cleanup
}

// StartGateway starts a gateway against natsURL (empty: embedded in a temp
// dir) on loopback ports, logging at debug into Logs, and waits for /readyz.
// configure may change the config before start.
func StartGateway(t testing.TB, natsURL string, configure func(*gateway.Config)) *Gateway {
	t.Helper()
	logs := &LogBuffer{}
	ln, mln := Listen(t), Listen(t)
	cfg := gateway.DefaultConfig()
	cfg.Listener, cfg.MetricsLn = ln, mln
	cfg.NATS = bus.ConnConfig{URL: natsURL}
	cfg.DataDir, cfg.EmbeddedListen = t.TempDir(), "127.0.0.1:0"
	cfg.Logger = slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if configure != nil {
		configure(&cfg)
	}
	// Listeners configure replaced (a test of --listen) are not the gateway's to close.
	if cfg.Listener != ln {
		ln.Close()
	}
	if cfg.MetricsLn != mln {
		mln.Close()
	}
	ctx, cancel := context.WithCancel(context.Background())
	g, err := gateway.Start(ctx, cfg)
	if err != nil {
		cancel()
		for _, l := range []net.Listener{cfg.Listener, cfg.MetricsLn} {
			if l != nil { // a failed Start leaves the listeners it was given open
				l.Close()
			}
		}
		t.Fatalf("start gateway: %v", err)
	}
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := g.Wait(); err != nil {
				t.Errorf("gateway stopped with: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	hg := &Gateway{Gateway: g, URL: "http://" + g.Addr().String(), MetricsURL: "http://" + g.MetricsAddr().String(), Logs: logs, Stop: stop}
	WaitFor(t, 15*time.Second, func() error { return hg.ReadyErr() })
	return hg
}

// ReadyErr asks the gateway's /readyz.
func (g *Gateway) ReadyErr() error { return Ready(g.MetricsURL) }

// Ready asks metricsURL/readyz: nil for 200, else why not.
func Ready(metricsURL string) error {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(metricsURL + "/readyz")
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("readyz %d: %s", resp.StatusCode, body)
	}
	return nil
}

// Metric scrapes metricsURL/metrics for one series, written as in the
// exposition format (`name{label="v"}`, labels in name order); found is false
// when the series is not there (yet).
func Metric(metricsURL, series string) (v float64, found bool, err error) {
	body, err := scrape(metricsURL)
	if err != nil {
		return 0, false, err
	}
	for line := range strings.Lines(body) {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			v, err := strconv.ParseFloat(strings.TrimSpace(rest), 64)
			return v, err == nil, err
		}
	}
	return 0, false, nil
}

// Scrape returns the whole /metrics page of metricsURL.
func Scrape(t testing.TB, metricsURL string) string {
	t.Helper()
	body, err := scrape(metricsURL)
	if err != nil {
		t.Fatalf("scrape %s: %v", metricsURL, err)
	}
	return body
}

func scrape(metricsURL string) (string, error) {
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get(metricsURL + "/metrics")
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return string(body), err
}

// MetricValue is Metric for a series that must be there: anything else fails
// the test.
func MetricValue(t testing.TB, metricsURL, series string) float64 {
	t.Helper()
	v, found, err := Metric(metricsURL, series)
	if err != nil {
		t.Fatalf("%s: %v", series, err)
	}
	if !found {
		t.Fatalf("%s not in /metrics", series)
	}
	return v
}

// WaitNotReady waits up to timeout for /readyz to stop answering 200, after
// what (for the failure message) should have made the gateway not ready.
func (g *Gateway) WaitNotReady(t testing.TB, timeout time.Duration, what string) {
	t.Helper()
	WaitFor(t, timeout, func() error {
		if g.ReadyErr() == nil {
			return fmt.Errorf("/readyz still 200 after %s", what)
		}
		return nil
	})
}

// Registry returns a credentials registry on the bucket of the server at url.
func Registry(t testing.TB, url, bucket string) *auth.Registry {
	t.Helper()
	_, js := Connect(t, url)
	if bucket == "" {
		bucket = "hookgate-tokens"
	}
	kv, err := bus.EnsureBucket(context.Background(), js, bucket, 1)
	if err != nil {
		t.Fatalf("bucket: %v", err)
	}
	return &auth.Registry{KV: kv}
}

// Issue creates a credential through the registry.
func Issue(t testing.TB, reg *auth.Registry, req auth.IssueRequest) auth.Issued {
	t.Helper()
	is, err := reg.Issue(context.Background(), req)
	if err != nil {
		t.Fatalf("issue: %v", err)
	}
	return is
}

// postClient bounds a Post: a gateway that never answers fails the test
// instead of hanging it until go test's own timeout.
var postClient = &http.Client{Timeout: 30 * time.Second}

// Post sends a webhook with a bearer token and returns status, body and headers.
func Post(t testing.TB, url, token string, body []byte, hdr map[string]string) (int, []byte, http.Header) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		t.Fatalf("request: %v", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		if v == "" {
			req.Header.Del(k)
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := postClient.Do(req)
	if err != nil {
		t.Fatalf("post %s: %v", url, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out, resp.Header
}

// WaitFor polls f until it returns nil or timeout passes, then fails the test
// with f's last error.
func WaitFor(t testing.TB, timeout time.Duration, f func() error) {
	t.Helper()
	if err := Poll(timeout, f); err != nil {
		t.Fatalf("condition not met in %s: %v", timeout, err)
	}
}

// Poll calls f every 10ms until it returns nil or timeout passes; it returns
// f's last error.
func Poll(timeout time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := f()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(10 * time.Millisecond)
	}
}
