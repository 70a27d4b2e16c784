package faults_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/gateway"
	"github.com/hookgate/hookgate/internal/hgtest"
)

// observeFor is how long a revoked token is probed after its delete. It is
// long enough to see nats.go recreate a dead ordered consumer (it notices
// after two missed 5-second heartbeats, checked every 10 seconds), so the
// test reports how long a stale credential is served, not just that it is.
const observeFor = 30 * time.Second

// staleness is what probing a revoked token on one gateway showed.
type staleness struct {
	requests, accepted, unavailable int
	firstRefusal                    time.Duration // delete ack to first 401; 0: none seen
	lastAccepted                    time.Duration // delete ack to the last 202 sent
}

func (s staleness) String() string {
	first := "never"
	if s.firstRefusal > 0 {
		first = s.firstRefusal.Round(time.Millisecond).String()
	}
	return fmt.Sprintf("first 401 after %s; %d requests, %d accepted (last sent %s after the delete ack), %d unavailable",
		first, s.requests, s.accepted, s.lastAccepted.Round(time.Millisecond), s.unavailable)
}

// probeRevoked posts a revoked token to g every few milliseconds until the
// first 401 or until limit after the delete ack. 202 (stale) and 503 (cannot
// decide) are counted; anything else is an error.
func probeRevoked(client *http.Client, g *hgtest.Gateway, token string, deleted time.Time, limit time.Duration) (staleness, error) {
	var s staleness
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for s.requests < 100000 {
		sent := time.Now()
		r, err := send(client, g.URL, "web", token, "", []byte(`{}`))
		if err != nil {
			return s, err
		}
		s.requests++
		switch r.code {
		case http.StatusUnauthorized:
			s.firstRefusal = time.Since(deleted)
			return s, nil
		case http.StatusAccepted:
			s.accepted++
			s.lastAccepted = sent.Sub(deleted)
		case http.StatusServiceUnavailable:
			if err := checkUnavailable(r); err != nil {
				return s, err
			}
			s.unavailable++
		default:
			return s, fmt.Errorf("want 401, 202 or 503, got %d %s", r.code, r.raw)
		}
		if time.Since(deleted) > limit {
			return s, nil
		}
		<-tick.C
	}
	return s, nil
}

// checkNotLetIn applies the contract to a probe: the token is refused within
// one second of the delete, and nothing is accepted with it after that.
func checkNotLetIn(t *testing.T, who string, s staleness) {
	t.Helper()
	t.Logf("%s: %s", who, s)
	if s.lastAccepted > refusalBound {
		t.Errorf("%s: revoked token still accepted %s after its delete was acknowledged (%d requests let in); contract: refused within %s",
			who, s.lastAccepted.Round(time.Millisecond), s.accepted, refusalBound)
	}
	if s.firstRefusal == 0 {
		t.Errorf("%s: revoked token never refused within %s", who, observeFor)
	}
}

// accept posts token to g until it is accepted (the gateway may need a moment
// after a reconnect before JetStream answers).
func accept(t *testing.T, client *http.Client, g *hgtest.Gateway, token string, timeout time.Duration) {
	t.Helper()
	hgtest.WaitFor(t, timeout, func() error {
		r, err := send(client, g.URL, "web", token, "", []byte(`{}`))
		if err == nil && r.code != http.StatusAccepted {
			err = fmt.Errorf("%d %s", r.code, r.raw)
		}
		return err
	})
}

// servedFromCache reports whether a request with token is answered from g's
// credential cache (the cache-hit counter moves), and its reply code.
func servedFromCache(client *http.Client, g *hgtest.Gateway, token string) (bool, int, error) {
	before, err := cacheHits(g)
	if err != nil {
		return false, 0, err
	}
	r, err := send(client, g.URL, "web", token, "", []byte(`{}`))
	if err != nil {
		return false, 0, err
	}
	after, err := cacheHits(g)
	if err != nil {
		return false, 0, err
	}
	return after > before, r.code, nil
}

// revokeOnceTrusted waits until g answers token from its cache again (after
// an outage the gateway reads the bucket for every token until it trusts its
// cache), then deletes token's key and probes g with it. It returns how long
// the trust took to come back and what the probe saw.
func revokeOnceTrusted(t *testing.T, client *http.Client, g *hgtest.Gateway, kv jetstream.KeyValue, token string) (time.Duration, staleness) {
	t.Helper()
	t.Cleanup(func() {
		if t.Failed() {
			logGateway(t, "gateway", g)
		}
	})
	start := time.Now()
	hgtest.WaitFor(t, 30*time.Second, func() error {
		hit, code, err := servedFromCache(client, g, token)
		switch {
		case err != nil:
			return err
		case code != http.StatusAccepted:
			return fmt.Errorf("token answered %d", code)
		case !hit:
			return errors.New("token not answered from the cache")
		}
		return nil
	})
	trustedAfter := time.Since(start)
	deleted := deleteToken(t, kv, token)
	s, err := probeRevoked(client, g, token, deleted, observeFor)
	if err != nil {
		t.Fatalf("probe: %v", err)
	}
	return trustedAfter, s
}

// TestWatchStallDoesNotServeStaleCredentials shows what a gateway does with
// its credential cache when its view of the bucket is interrupted. Every case
// asserts the contract ("once a delete is written, every gateway refuses the
// token within one second") and logs how long a revoked token was in fact
// served:
//
//   - single-node: the only NATS server stops and comes back on the same port
//     and store. While it is down, webhooks get 503 at once with Retry-After
//     and /readyz is 503, for cached and uncached tokens alike. A token
//     revoked right after the reconnect is refused. Then, once the gateway
//     answers from its cache again, while its watch's consumer (lost with the
//     server's restart) may not have been recreated yet, a second token is
//     revoked and probed.
//   - pinned-gateway-node-restart: in the cluster, one gateway can reach only
//     node A (nodes do not advertise each other to clients). A stops; a token
//     is revoked through the other nodes; the free gateway refuses it at
//     once; the pinned one answers 503 while A is down and must refuse it
//     once A is back; then the same second revocation as above.
//   - watch-consumer-node-loss: the node hosting a gateway's watch consumer
//     (an R1 ordered consumer the server places on any replica of the bucket)
//     stops while that gateway stays connected through another node, so the
//     gateway sees no disconnect at all; a token is revoked right after.
func TestWatchStallDoesNotServeStaleCredentials(t *testing.T) {
	t.Run("single-node", func(t *testing.T) {
		opts := hgtest.NATSOptions(t.TempDir())
		opts.Port = hgtest.Port(t) // it restarts on the same port
		srv := hgtest.RunNATSWith(t, opts.Clone())
		url := srv.ClientURL()
		g := hgtest.StartGateway(t, url, func(c *gateway.Config) { c.Ingest.AuthFailureRate = 0 }) // refused-token budget off
		_, js := connect(t, url)
		kv := bucket(t, js)
		reg := &auth.Registry{KV: kv}
		revoked := issue(t, reg, "acme", "revoked after restart").Token
		later := issue(t, reg, "acme", "revoked once trusted").Token
		cold := issue(t, reg, "acme", "never used before the outage").Token
		client := newClient()
		defer client.CloseIdleConnections()
		accept(t, client, g, revoked, 10*time.Second)
		accept(t, client, g, later, 10*time.Second)

		srv.Shutdown()
		srv.WaitForShutdown()
		down := time.Now()
		g.WaitNotReady(t, 15*time.Second, "its NATS server stopped")
		t.Logf("/readyz 503 %s after the server stopped", time.Since(down).Round(time.Millisecond))
		for name, tok := range map[string]string{"cached": later, "cached, to be revoked": revoked, "not cached": cold} {
			start := time.Now()
			r, err := send(client, g.URL, "web", tok, "", []byte(`{}`))
			took := time.Since(start)
			if err != nil {
				t.Fatalf("%s token while NATS is down: %v", name, err)
			}
			if err := checkUnavailable(r); err != nil {
				t.Errorf("%s token while NATS is down: %v", name, err)
			}
			t.Logf("%s token while NATS is down: %d, Retry-After %s, in %s", name, r.code, r.retryAfter, took.Round(time.Microsecond))
			if took > time.Second {
				t.Errorf("%s token while NATS is down: 503 took %s; the contract says at once", name, took)
			}
		}

		hgtest.RunNATSWith(t, opts.Clone())
		up := time.Now()
		hgtest.WaitFor(t, 30*time.Second, g.ReadyErr)
		t.Logf("/readyz 200 %s after the server restarted", time.Since(up).Round(time.Millisecond))

		deleted := deleteToken(t, kv, revoked)
		s, err := probeRevoked(client, g, revoked, deleted, observeFor)
		if err != nil {
			t.Fatalf("probe: %v", err)
		}
		checkNotLetIn(t, "revoked right after the reconnect", s)

		since := time.Since(up)
		trusted, s := revokeOnceTrusted(t, client, g, kv, later)
		t.Logf("gateway answered from its cache again %s after the restart", (since + trusted).Round(time.Millisecond))
		checkNotLetIn(t, "revoked once the cache is trusted again", s)
		if t.Failed() {
			logGateway(t, "gateway", g)
		}
	})

	t.Run("pinned-gateway-node-restart", func(t *testing.T) {
		if testing.Short() {
			t.Skip("slow: a three-node cluster loses a node and gets it back")
		}
		c := startCluster(t)
		free := clusterGateway(t, c.urls())
		_, js := connect(t, c.urls())
		kv := bucket(t, js)
		// Pin the gateway to a node that does not lead the bucket, so that
		// losing it loses neither the bucket's leader nor its quorum.
		kvLeader := c.streamLeader(js, kvStream)
		pin := (kvLeader + 1) % len(c.names)
		pinned := clusterGateway(t, c.url(pin))
		reg := &auth.Registry{KV: kv}
		token := issue(t, reg, "acme", "revoked while a node is down").Token
		later := issue(t, reg, "acme", "revoked once trusted").Token
		client := newClient()
		defer client.CloseIdleConnections()
		for _, g := range []*hgtest.Gateway{free, pinned} {
			accept(t, client, g, token, 10*time.Second)
		}
		// The watch consumers whose gateway is connected to the pinned node
		// (the pinned gateway's, and the free one's if it is there too).
		var stranded []string
		hgtest.WaitFor(t, 10*time.Second, func() error {
			ps, err := c.watchPlacements(js)
			if err != nil {
				return err
			}
			stranded = stranded[:0]
			for _, p := range ps {
				if p.subscriber == "" {
					return fmt.Errorf("watch consumer %s: subscriber not found yet", p.consumer)
				}
				if p.subscriber == c.names[pin] {
					stranded = append(stranded, p.consumer)
				}
			}
			if len(stranded) == 0 {
				return fmt.Errorf("no watch consumer has its subscriber on %s: %+v", c.names[pin], ps)
			}
			return nil
		})
		t.Logf("stopping %s, the pinned gateway's only node (bucket leader %s)", c.names[pin], c.names[kvLeader])
		c.stop(pin)
		pinned.WaitNotReady(t, 15*time.Second, "its only node stopped")

		deleted := deleteToken(t, kv, token)
		s, err := probeRevoked(client, free, token, deleted, observeFor)
		if err != nil {
			t.Fatalf("probe free gateway: %v", err)
		}
		checkNotLetIn(t, "free gateway", s)

		// An outage is usually longer than the server keeps an ephemeral
		// consumer without interest (about 5s): wait until the pinned
		// gateway's watch consumer is gone (deleted, or lost with its host),
		// as it then would be.
		// The server's cleanup of the stranded consumer is its own business
		// and sometimes slower: past 30s the test goes on with it in place
		// (the gateway must refuse the token either way).
		waitOrLog(t, 30*time.Second, func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
			defer cancel()
			s, err := js.Stream(ctx, kvStream)
			if err != nil {
				return err
			}
			lister := s.ListConsumers(ctx)
			for ci := range lister.Info() {
				if slices.Contains(stranded, ci.Name) && ci.Cluster != nil && ci.Cluster.Leader != "" {
					return fmt.Errorf("watch consumer %s still served by %s", ci.Name, ci.Cluster.Leader)
				}
			}
			return lister.Err()
		})
		t.Logf("pinned gateway's watch consumer gone %s after the delete", time.Since(deleted).Round(time.Millisecond))
		r, err := send(client, pinned.URL, "web", token, "", []byte(`{}`))
		if err != nil {
			t.Fatalf("pinned gateway while its node is down: %v", err)
		}
		if err := checkUnavailable(r); err != nil {
			t.Errorf("pinned gateway, revoked token, while its node is down: %v", err)
		}

		c.restart(pin)
		up := time.Now()
		hgtest.WaitFor(t, 30*time.Second, pinned.ReadyErr)
		t.Logf("pinned gateway ready %s after %s restarted (%s after the delete)", time.Since(up).Round(time.Millisecond),
			c.names[pin], time.Since(deleted).Round(time.Millisecond))
		s, err = probeRevoked(client, pinned, token, deleted, time.Since(deleted)+observeFor)
		if err != nil {
			t.Fatalf("probe pinned gateway: %v", err)
		}
		checkNotLetIn(t, "pinned gateway, token revoked while its node was down", s)

		trusted, s := revokeOnceTrusted(t, client, pinned, kv, later)
		t.Logf("pinned gateway answered from its cache again after %s more", trusted.Round(time.Millisecond))
		checkNotLetIn(t, "pinned gateway, revoked once its cache is trusted again", s)
		if t.Failed() {
			logGateway(t, "pinned gateway", pinned)
		}
	})

	t.Run("watch-consumer-node-loss", func(t *testing.T) {
		if testing.Short() {
			t.Skip("slow: a three-node cluster loses the node of a watch consumer")
		}
		c := startCluster(t)
		_, js := connect(t, c.urls())
		var (
			gws    []*hgtest.Gateway
			victim watchPlacement
		)
		// Start gateways until one's watch consumer lives on another node
		// than the one the gateway is connected to (two in three do).
		for len(gws) < 6 && victim.host == "" {
			gws = append(gws, clusterGateway(t, c.urls()))
			hgtest.WaitFor(t, 10*time.Second, func() error {
				ps, err := c.watchPlacements(js)
				if err != nil {
					return err
				}
				if len(ps) < len(gws) {
					return fmt.Errorf("%d watch consumers for %d gateways", len(ps), len(gws))
				}
				for _, p := range ps {
					if p.subscriber == "" || p.host == "" {
						return fmt.Errorf("watch consumer %s: host %q, subscriber on %q", p.consumer, p.host, p.subscriber)
					}
					if p.host != p.subscriber {
						victim = p
					}
				}
				return nil
			})
		}
		if victim.host == "" {
			t.Fatalf("no watch consumer of %d gateways lives apart from its gateway's connection", len(gws))
		}
		kv := bucket(t, js)
		reg := &auth.Registry{KV: kv}
		token := issue(t, reg, "acme", "revoked after a watch consumer's node died").Token
		client := newClient()
		defer client.CloseIdleConnections()
		for _, g := range gws {
			accept(t, client, g, token, 10*time.Second)
		}

		host := c.index(victim.host)
		t.Logf("%d gateways; stopping %s, host of watch consumer %s whose gateway is connected to %s (bucket leader %s)",
			len(gws), victim.host, victim.consumer, victim.subscriber, c.names[c.streamLeader(js, kvStream)])
		stopped := time.Now()
		c.stop(host)
		c.waitStreamLeaderNot(js, kvStream, host)

		deleted := deleteToken(t, kv, token)
		t.Logf("delete acknowledged %s after the stop", deleted.Sub(stopped).Round(time.Millisecond))
		probes := make([]staleness, len(gws))
		errs := make([]error, len(gws))
		var wg sync.WaitGroup
		for i, g := range gws {
			wg.Add(1)
			go func() {
				defer wg.Done()
				probes[i], errs[i] = probeRevoked(client, g, token, deleted, observeFor)
			}()
		}
		wg.Wait()
		for i, g := range gws {
			if errs[i] != nil {
				t.Errorf("probe gateway %d: %v", i, errs[i])
				continue
			}
			checkNotLetIn(t, fmt.Sprintf("gateway %d", i), probes[i])
			if probes[i].accepted > 0 {
				logGateway(t, fmt.Sprintf("gateway %d", i), g)
			}
		}
	})
}

// waitOrLog polls f like hgtest.WaitFor but only logs when time runs out.
func waitOrLog(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	if err := hgtest.Poll(timeout, f); err != nil {
		t.Logf("going on after %s: %v", timeout, err)
	}
}
