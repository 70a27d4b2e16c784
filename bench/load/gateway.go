package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/valyala/fasthttp"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/bus"
	"github.com/hookgate/hookgate/gateway"
)

const (
	hooksStream = "HOOKS"
	hitsPath    = "/v1/hits/app1"
)

// broker is a NATS server with JetStream for one run, and a client of it.
type broker struct {
	url string
	pid int // 0: inside this process
	nc  *nats.Conn
	js  jetstream.JetStream
	c   *child
	dir string
}

// startBroker starts bench/natsd as a child with its store in a fresh dir.
func startBroker(natsdBin, dir string) (*broker, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	c, url, err := startChild("natsd", natsdBin, []string{"-store", dir}, 30*time.Second, func(line string) (string, bool) {
		return strings.CutPrefix(line, "natsd ready ")
	})
	if err != nil {
		return nil, err
	}
	b := &broker{url: url, pid: c.pid(), c: c, dir: dir}
	if err := b.connect(); err != nil {
		c.stop()
		return nil, err
	}
	return b, nil
}

func (b *broker) connect() error {
	nc, err := nats.Connect(b.url, nats.Name("bench-load"))
	if err != nil {
		return fmt.Errorf("connect %s: %w", b.url, err)
	}
	b.nc = nc
	b.js, err = jetstream.New(nc)
	return err
}

func (b *broker) stop() {
	if b == nil {
		return
	}
	if b.nc != nil {
		b.nc.Close()
	}
	b.c.stop()
	if b.dir != "" {
		_ = os.RemoveAll(b.dir)
	}
}

// ensureStream creates a file stream over subjects prefix.> when missing.
func (b *broker) ensureStream(name, prefix string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: name, Subjects: []string{prefix + ".>"}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute,
	})
	return err
}

// streamMsgs returns how many messages the stream holds (0 when missing).
func (b *broker) streamMsgs(name string) int64 {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := b.js.Stream(ctx, name)
	if err != nil {
		return 0
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0
	}
	return int64(info.State.Msgs)
}

// hookgate is a running gateway under test.
type hookgate struct {
	addr       string
	metricsURL string
	natsURL    string
	pid        int    // 0: this process
	proc       *child // nil: this process
	stop       func()
}

// startHookgateProc runs `hookgate serve` as a child against the broker.
func startHookgateProc(bin string, b *broker, extra ...string) (*hookgate, error) {
	g, err := startServe(bin, append([]string{"--nats-url", b.url}, extra...)...)
	if err != nil {
		return nil, err
	}
	g.natsURL = b.url
	return g, nil
}

// startHookgateEmbedded runs `hookgate serve` as a child with its embedded
// NATS server storing JetStream in dir: what a new user gets from one
// command. Gateway and broker are then one process and one CPU figure.
func startHookgateEmbedded(bin, dir string, extra ...string) (*hookgate, error) {
	return startServe(bin, append([]string{"--data-dir", dir, "--embedded-nats-listen", "127.0.0.1:0"}, extra...)...)
}

// startServe runs `hookgate serve` on loopback ports and waits until it is
// ready; natsURL is the one it logged.
func startServe(bin string, extra ...string) (*hookgate, error) {
	args := append([]string{"serve",
		"--listen", "127.0.0.1:0",
		"--metrics-listen", "127.0.0.1:0",
		"--log-format", "json",
		"--log-level", "info",
		"--shutdown-timeout", "5s",
	}, extra...)
	var listen, metricsListen, natsURL string
	c, _, err := startChild("hookgate", bin, args, 30*time.Second, func(line string) (string, bool) {
		var l struct {
			Msg           string `json:"msg"`
			Listen        string `json:"listen"`
			MetricsListen string `json:"metrics_listen"`
			NATSURL       string `json:"nats_url"`
		}
		if json.Unmarshal([]byte(line), &l) != nil || l.Msg != "hookgate started" {
			return "", false
		}
		listen, metricsListen, natsURL = l.Listen, l.MetricsListen, l.NATSURL
		return l.Listen, true
	})
	if err != nil {
		return nil, err
	}
	g := &hookgate{addr: listen, metricsURL: "http://" + metricsListen, natsURL: natsURL, pid: c.pid(), proc: c, stop: c.stop}
	if err := g.waitReady(30 * time.Second); err != nil {
		c.stop()
		return nil, fmt.Errorf("%w: %s", err, c.lastLines())
	}
	return g, nil
}

// startHookgateInProc runs the gateway in this process via gateway.Start:
// against natsURL, or ("") with an embedded NATS server storing JetStream in
// dir; with the key ring secretKeys ("": secret-keys in dir, created there
// on the embedded default).
func startHookgateInProc(dir, natsURL, secretKeys string, maxConnsPerIP int) (*hookgate, error) {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400) // as hookgate serve does
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	mln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		ln.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	cfg := gateway.DefaultConfig()
	cfg.Listener, cfg.MetricsLn = ln, mln
	cfg.DataDir, cfg.EmbeddedListen, cfg.SecretKeys = dir, "127.0.0.1:0", secretKeys
	cfg.NATS.URL = natsURL
	cfg.Server.MaxConnsPerIP = maxConnsPerIP
	cfg.Logger, cfg.Version = slog.New(slog.DiscardHandler), "bench"
	g, err := gateway.Start(ctx, cfg)
	if err != nil {
		cancel()
		return nil, err
	}
	h := &hookgate{
		addr: g.Addr().String(), metricsURL: "http://" + g.MetricsAddr().String(), natsURL: g.NATSURL(),
		stop: func() { cancel(); _ = g.Wait() },
	}
	if err := h.waitReady(30 * time.Second); err != nil {
		h.stop()
		return nil, err
	}
	return h, nil
}

func (g *hookgate) waitReady(timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		resp, err := http.Get(g.metricsURL + "/readyz")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = string(body)
		} else {
			last = err.Error()
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("hookgate not ready in %s: %s", timeout, last)
}

// hitsTarget issues a hits token on natsURL and checks that the gateway at
// addr accepts a webhook with it: the target every hookgate row drives.
func hitsTarget(natsURL, addr string, body []byte) (target, error) {
	token, err := issueHitsToken(natsURL)
	if err != nil {
		return target{}, fmt.Errorf("issue token: %w", err)
	}
	t := target{addr: addr, path: hitsPath, token: token}
	if err := probe(t, body, 15*time.Second); err != nil {
		return target{}, err
	}
	return t, nil
}

// issueHitsToken writes an organization-wide hits credential into the
// gateway's bucket through auth.Registry, as `hookgate token issue` does.
func issueHitsToken(natsURL string) (string, error) {
	is, err := issueHits(natsURL, auth.IssueRequest{Org: "bench", Kind: auth.KindHits, Name: "bench load"}, nil)
	if err != nil {
		return "", err
	}
	return is.Token, nil
}

// issueHits issues req through an auth.Registry on the gateway's bucket;
// sealer seals a signing secret (nil: none can be issued).
func issueHits(natsURL string, req auth.IssueRequest, sealer auth.Sealer) (auth.Issued, error) {
	nc, err := nats.Connect(natsURL, nats.Name("bench-issue"))
	if err != nil {
		return auth.Issued{}, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return auth.Issued{}, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kv, err := bus.EnsureBucket(ctx, js, "hookgate-tokens", 1)
	if err != nil {
		return auth.Issued{}, err
	}
	reg := &auth.Registry{KV: kv, Sealer: sealer}
	return reg.Issue(ctx, req)
}

// probe posts until the target answers 2xx (the token may take a moment to
// reach the gateway's watch), at most for timeout.
func probe(t target, body []byte, timeout time.Duration) error {
	req := newRequest(t, body)
	defer fasthttp.ReleaseRequest(req)
	resp := fasthttp.AcquireResponse()
	defer fasthttp.ReleaseResponse(resp)
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		err := fasthttp.DoTimeout(req, resp, 5*time.Second)
		if err == nil && resp.StatusCode()/100 == 2 {
			return nil
		}
		if err != nil {
			last = err.Error()
		} else {
			last = fmt.Sprintf("%d %s", resp.StatusCode(), resp.Body())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("probe %s: no 2xx within %s: %s", t.url(), timeout, last)
}

// metricValue sums the samples of metric whose labels include all of want
// (e.g. `code="202"`), from the gateway's /metrics.
func (g *hookgate) metricValue(metric string, want ...string) float64 {
	resp, err := http.Get(g.metricsURL + "/metrics")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var sum float64
	for _, line := range bytes.Split(body, []byte("\n")) {
		s := string(line)
		if !strings.HasPrefix(s, metric+"{") && !strings.HasPrefix(s, metric+" ") {
			continue
		}
		ok := true
		for _, w := range want {
			if !strings.Contains(s, w) {
				ok = false
			}
		}
		if !ok {
			continue
		}
		f := strings.Fields(s)
		v, err := strconv.ParseFloat(f[len(f)-1], 64)
		if err == nil {
			sum += v
		}
	}
	return sum
}
