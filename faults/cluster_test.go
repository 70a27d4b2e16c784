package faults_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/gateway"
	"github.com/hookgate/hookgate/internal/hgtest"
)

const (
	streamName = "HOOKS"
	bucketName = "hookgate-tokens"
	kvStream   = "KV_" + bucketName
)

// cluster is three nats-server nodes with JetStream, clustered over loopback
// routes. The nodes do not advertise each other to clients (NoAdvertise), so a
// client given one node's URL stays with that node: the tests decide who can
// reach what.
type cluster struct {
	t     testing.TB
	names []string
	opts  []*server.Options
	mu    sync.Mutex
	srv   []*server.Server // nil while a node is down
}

// startCluster starts n1, n2 and n3 and waits until JetStream can place a
// stream with three replicas.
func startCluster(t testing.TB) *cluster {
	t.Helper()
	c := &cluster{t: t, names: []string{"n1", "n2", "n3"}}
	// Every node's routes name the others' route ports before any of them
	// listens, and a restarted node comes back on its own client port (the
	// gateways' URLs): ports fixed in advance, from hgtest.Port, which no
	// outgoing connection can take between now and the binds.
	routePorts := make([]int, len(c.names))
	for i := range routePorts {
		routePorts[i] = hgtest.Port(t)
	}
	for i, name := range c.names {
		var routes []string
		for j, p := range routePorts {
			if j != i {
				routes = append(routes, fmt.Sprintf("nats-route://127.0.0.1:%d", p))
			}
		}
		c.opts = append(c.opts, &server.Options{
			ServerName: name,
			Host:       "127.0.0.1",
			Port:       hgtest.Port(t),
			JetStream:  true,
			StoreDir:   t.TempDir(),
			NoLog:      true,
			NoSigs:     true,
			Cluster: server.ClusterOpts{
				Name:        "hg",
				Host:        "127.0.0.1",
				Port:        routePorts[i],
				NoAdvertise: true,
			},
			Routes: server.RoutesFromStr(strings.Join(routes, ",")),
		})
	}
	c.srv = make([]*server.Server, len(c.names))
	// A node's Start returns before its routes are up, so starting them one
	// after the other is fine: each finds the others as they come.
	for i := range c.names {
		c.srv[i] = hgtest.RunNATSWith(t, c.opts[i].Clone())
	}
	c.waitJetStream(30 * time.Second)
	return c
}

// url is node i's client URL.
func (c *cluster) url(i int) string {
	return fmt.Sprintf("nats://127.0.0.1:%d", c.opts[i].Port)
}

// urls is every node's client URL, comma separated, as gateways take them.
func (c *cluster) urls() string {
	var us []string
	for i := range c.names {
		us = append(us, c.url(i))
	}
	return strings.Join(us, ",")
}

// index returns the node index of a server name.
func (c *cluster) index(name string) int {
	return slices.Index(c.names, name)
}

// stop shuts node i down and waits until it is gone.
func (c *cluster) stop(i int) {
	c.mu.Lock()
	s := c.srv[i]
	c.srv[i] = nil
	c.mu.Unlock()
	if s == nil {
		c.t.Fatalf("node %s is already down", c.names[i])
	}
	s.Shutdown()
	s.WaitForShutdown()
}

// restart starts node i again on the same ports and store, and waits until
// its JetStream has caught up with the cluster.
func (c *cluster) restart(i int) {
	c.t.Helper()
	s := hgtest.RunNATSWith(c.t, c.opts[i].Clone())
	c.mu.Lock()
	c.srv[i] = s
	c.mu.Unlock()
	hgtest.WaitFor(c.t, 30*time.Second, func() error {
		if !s.JetStreamIsCurrent() {
			return fmt.Errorf("node %s: JetStream not current yet", c.names[i])
		}
		return nil
	})
}

// waitJetStream polls until a stream with three replicas can be created, which
// needs a meta leader and every node's JetStream up.
func (c *cluster) waitJetStream(timeout time.Duration) {
	c.t.Helper()
	_, js := connect(c.t, c.urls())
	hgtest.WaitFor(c.t, timeout, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
			Name: "READY", Subjects: []string{"ready.>"}, Replicas: 3, Storage: jetstream.MemoryStorage,
		})
		return err
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := js.DeleteStream(ctx, "READY"); err != nil {
		c.t.Fatalf("delete READY: %v", err)
	}
}

// streamLeader returns the index of the node leading stream name.
func (c *cluster) streamLeader(js jetstream.JetStream, name string) int {
	c.t.Helper()
	return c.waitStreamLeaderNot(js, name, -1)
}

// waitStreamLeaderNot waits until stream name is led by a node other than i.
func (c *cluster) waitStreamLeaderNot(js jetstream.JetStream, name string, i int) int {
	c.t.Helper()
	var leader int
	hgtest.WaitFor(c.t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		s, err := js.Stream(ctx, name)
		if err != nil {
			return err
		}
		info, err := s.Info(ctx)
		if err != nil {
			return err
		}
		if info.Cluster == nil || info.Cluster.Leader == "" || c.index(info.Cluster.Leader) == i || c.index(info.Cluster.Leader) < 0 {
			return fmt.Errorf("stream %s: leader %+v", name, info.Cluster)
		}
		leader = c.index(info.Cluster.Leader)
		return nil
	})
	return leader
}

// clusterGateway starts a gateway on urls with three replicas, as the issue
// asks. The refused-token budget per client address is off: every request of
// these tests comes from 127.0.0.1, and the revocation probes would otherwise
// turn 401s into 429s (a refusal too, but not the path being measured).
func clusterGateway(t testing.TB, urls string) *hgtest.Gateway {
	t.Helper()
	return hgtest.StartGateway(t, urls, func(c *gateway.Config) {
		c.Replicas = 3
		c.PublishTimeout = 5 * time.Second
		c.Ingest.AuthFailureRate = 0 // off
	})
}

// connect opens a client connection that keeps reconnecting for the test's
// life; it is closed with the test.
func connect(t testing.TB, urls string) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	return hgtest.Connect(t, urls, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond), nats.Timeout(2*time.Second))
}

// bucket returns the credentials bucket, which the gateways created.
func bucket(t testing.TB, js jetstream.JetStream) jetstream.KeyValue {
	t.Helper()
	var kv jetstream.KeyValue
	hgtest.WaitFor(t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		var err error
		kv, err = js.KeyValue(ctx, bucketName)
		return err
	})
	return kv
}

// issue creates a hits credential for org and returns it with its token.
func issue(t testing.TB, reg *auth.Registry, org, name string) auth.Issued {
	t.Helper()
	var is auth.Issued
	hgtest.WaitFor(t, 20*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var err error
		is, err = reg.Issue(ctx, auth.IssueRequest{Org: org, Kind: auth.KindHits, Name: name})
		return err
	})
	return is
}

// deleteToken deletes the tok. key of token, retrying while the bucket has no
// leader, and returns when the delete is acknowledged.
func deleteToken(t testing.TB, kv jetstream.KeyValue, token string) time.Time {
	t.Helper()
	key := auth.TokenKey(auth.HashToken([]byte(token)))
	hgtest.WaitFor(t, 30*time.Second, func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		return kv.Delete(ctx, key)
	})
	return time.Now()
}

// reply is what a sender learns from one webhook request.
type reply struct {
	code       int
	retryAfter string
	errCode    string
	seq        uint64
	duplicate  bool
	raw        []byte
}

// newClient returns an HTTP client for concurrent senders. Its timeout is
// well above the publish timeout: a gateway must answer before it.
func newClient() *http.Client {
	return &http.Client{
		Timeout:   20 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 32, MaxConnsPerHost: 64, IdleConnTimeout: 30 * time.Second},
	}
}

// send posts a hits webhook and reads the contract's reply body. It is safe
// on any goroutine: it reports errors instead of failing the test.
func send(client *http.Client, gwURL, app, token, idemKey string, body []byte) (reply, error) {
	hr := hgtest.SendHit(client, gwURL, app, token, idemKey, body)
	if hr.Err != nil {
		return reply{}, hr.Err
	}
	r := reply{code: hr.Code, retryAfter: hr.RetryAfter, raw: hr.Body}
	switch r.code {
	case http.StatusAccepted:
		var ok struct {
			Stream    string `json:"stream"`
			Seq       uint64 `json:"seq"`
			Duplicate bool   `json:"duplicate"`
		}
		if err := json.Unmarshal(r.raw, &ok); err != nil || ok.Stream != streamName || ok.Seq == 0 {
			return r, fmt.Errorf("202 with a bad body %q (%v)", r.raw, err)
		}
		r.seq, r.duplicate = ok.Seq, ok.Duplicate
	default:
		var e struct {
			Error string `json:"error"`
		}
		if err := json.Unmarshal(r.raw, &e); err != nil || e.Error == "" {
			return r, fmt.Errorf("%d with a bad body %q (%v)", r.code, r.raw, err)
		}
		r.errCode = e.Error
	}
	return r, nil
}

// checkUnavailable reports what is wrong with a reply that should be the
// contract's 503: error unavailable and a Retry-After of whole seconds >= 1.
func checkUnavailable(r reply) error {
	if r.code != http.StatusServiceUnavailable || r.errCode != "unavailable" {
		return fmt.Errorf("want 503 unavailable, got %d %s", r.code, r.raw)
	}
	n, err := strconv.Atoi(r.retryAfter)
	if err != nil || n < 1 {
		return fmt.Errorf("503 with Retry-After %q, want whole seconds >= 1", r.retryAfter)
	}
	return nil
}

// percentile returns the p-th percentile (0..100) of sorted ds.
func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	i := int(float64(len(ds)-1) * p / 100)
	return ds[i]
}

// logGateway logs a gateway's own lines at info and above (not the per-request
// debug lines), for the report of a failed or surprising case.
func logGateway(t testing.TB, name string, g *hgtest.Gateway) {
	t.Helper()
	n := 0
	for line := range strings.Lines(g.Logs.String()) {
		var rec struct {
			Level string `json:"level"`
			Msg   string `json:"msg"`
		}
		if json.Unmarshal([]byte(line), &rec) != nil || rec.Level == "DEBUG" {
			continue
		}
		if n++; n > 40 {
			t.Logf("%s: (more log lines left out)", name)
			return
		}
		t.Logf("%s log: %s", name, strings.TrimSpace(line))
	}
}

// cacheHits scrapes hookgate_token_cache_requests_total{result="hit"}.
func cacheHits(g *hgtest.Gateway) (float64, error) {
	v, _, err := hgtest.Metric(g.MetricsURL, `hookgate_token_cache_requests_total{result="hit"}`)
	return v, err // not there: no hit yet
}

// watchPlacement is where a credential watch lives: the node hosting its
// ordered consumer, and the node its gateway's subscription is on.
type watchPlacement struct {
	consumer, host, subscriber string
}

// watchPlacements maps the consumers of the credentials bucket to the nodes
// that host them and the nodes their subscribers are connected to.
func (c *cluster) watchPlacements(js jetstream.JetStream) ([]watchPlacement, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, kvStream)
	if err != nil {
		return nil, err
	}
	subscriber := make(map[string]string) // subject -> node
	c.mu.Lock()
	for i, srv := range c.srv {
		if srv == nil {
			continue
		}
		cz, err := srv.Connz(&server.ConnzOptions{Subscriptions: true, Limit: 1024})
		if err != nil {
			c.mu.Unlock()
			return nil, err
		}
		for _, conn := range cz.Conns {
			for _, sub := range conn.Subs {
				subscriber[sub] = c.names[i]
			}
		}
	}
	c.mu.Unlock()
	var out []watchPlacement
	lister := s.ListConsumers(ctx)
	for ci := range lister.Info() {
		if ci.Config.DeliverSubject == "" || ci.Cluster == nil {
			continue
		}
		out = append(out, watchPlacement{consumer: ci.Name, host: ci.Cluster.Leader, subscriber: subscriber[ci.Config.DeliverSubject]})
	}
	return out, lister.Err()
}

// gatewayConns returns how many gateway connections (client name "hookgate")
// node i serves.
func (c *cluster) gatewayConns(i int) int {
	c.mu.Lock()
	s := c.srv[i]
	c.mu.Unlock()
	if s == nil {
		return 0
	}
	cz, err := s.Connz(&server.ConnzOptions{Limit: 1024})
	if err != nil {
		return -1
	}
	n := 0
	for _, conn := range cz.Conns {
		if conn.Name == "hookgate" {
			n++
		}
	}
	return n
}
