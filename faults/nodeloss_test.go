package faults_test

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/internal/hgtest"
)

// gwStats are one gateway's figures in TestNodeLossUnderLoad.
type gwStats struct {
	requests, accepted, unavailable int
	acceptedAfter, unavailableAfter int // replies after the kill began
	acceptedRetry, duplicateReplies int // 202 on a retry of a 503; of those, "duplicate": true
	slowest, slowestAfter           time.Duration
	lost, duplicates, wrongSeq      int
}

// TestNodeLossUnderLoad kills the HOOKS stream leader while eight senders post
// to two gateways, and checks that every 202 is stored exactly once, at the
// sequence its reply named, that nothing but 202 and 503 is ever answered, and
// that both gateways accept again after the kill.
func TestNodeLossUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: a three-node cluster loses its stream leader under load")
	}
	c := startCluster(t)
	gws := []*hgtest.Gateway{clusterGateway(t, c.urls()), clusterGateway(t, c.urls())}
	_, js := connect(t, c.urls())
	reg := &auth.Registry{KV: bucket(t, js)}
	token := issue(t, reg, "acme", "node loss").Token

	const (
		senders   = 8
		retries   = 3     // a sender retries a 503 this often, on the other gateway, with the same key
		perSender = 20000 // bound on keys per sender

		minBefore     = 300             // 202s before the kill
		runAfter      = 4 * time.Second // load after the kill
		minAfterPerGW = 20              // 202s after the kill, on each gateway
	)

	client := newClient()
	defer client.CloseIdleConnections()
	// Both gateways know the token before the load starts.
	for i, g := range gws {
		hgtest.WaitFor(t, 10*time.Second, func() error {
			r, err := send(client, g.URL, "web", token, fmt.Sprintf("warm-%d", i), []byte(`{}`))
			if err == nil && r.code != http.StatusAccepted {
				err = fmt.Errorf("warm-up on gateway %d: %d %s", i, r.code, r.raw)
			}
			return err
		})
	}

	type acceptance struct {
		gw        int
		seq       uint64
		duplicate bool
	}
	var (
		mu       sync.Mutex
		stats    = make([]gwStats, len(gws))
		accepted = make(map[string]acceptance)
		only503  = make(map[string]bool) // keys never accepted
		problems []string

		killedAt atomic.Int64 // UnixNano when the kill began; 0 before
		stop     atomic.Bool
		wg       sync.WaitGroup
	)
	problem := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(problems) < 20 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
		stop.Store(true) // one wrong reply is enough to fail; stop the load
	}
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; n < perSender && !stop.Load(); n++ {
				key := fmt.Sprintf("s%d-%d", s, n)
				body := fmt.Appendf(nil, `{"sender":%d,"n":%d}`, s, n)
				gw := (s + n) % len(gws)
				for attempt := 0; attempt <= retries; attempt++ {
					start := time.Now()
					r, err := send(client, gws[gw].URL, "web", token, key, body)
					took := time.Since(start)
					// Answered after the kill began (requests in flight at
					// the kill count as after it).
					after := killedAt.Load() != 0 && start.Add(took).UnixNano() > killedAt.Load()
					if err != nil {
						problem("gateway %d, key %s: %v", gw, key, err)
						return
					}
					mu.Lock()
					st := &stats[gw]
					st.requests++
					st.slowest = max(st.slowest, took)
					if after {
						st.slowestAfter = max(st.slowestAfter, took)
					}
					switch r.code {
					case http.StatusAccepted:
						st.accepted++
						if after {
							st.acceptedAfter++
						}
						if attempt > 0 {
							st.acceptedRetry++
							if r.duplicate {
								st.duplicateReplies++
							}
						}
						accepted[key] = acceptance{gw: gw, seq: r.seq, duplicate: r.duplicate}
						delete(only503, key)
					case http.StatusServiceUnavailable:
						st.unavailable++
						if after {
							st.unavailableAfter++
						}
						only503[key] = true
					}
					mu.Unlock()

					switch {
					case r.code == http.StatusAccepted && r.duplicate && attempt == 0:
						problem("gateway %d, key %s: first request answered duplicate: %s", gw, key, r.raw)
						return
					case r.code == http.StatusAccepted:
					case r.code == http.StatusServiceUnavailable:
						if err := checkUnavailable(r); err != nil {
							problem("gateway %d, key %s: %v", gw, key, err)
							return
						}
						gw = (gw + 1) % len(gws)
						continue
					default:
						problem("gateway %d, key %s: only 202 and 503 are allowed, got %d %s", gw, key, r.code, r.raw)
						return
					}
					break
				}
			}
		}()
	}
	finish := func() {
		stop.Store(true)
		wg.Wait()
	}
	defer finish()

	snapshot := func() []gwStats {
		mu.Lock()
		defer mu.Unlock()
		return append([]gwStats(nil), stats...)
	}
	// Phase 1: load on a healthy cluster.
	begin := time.Now()
	hgtest.WaitFor(t, 60*time.Second, func() error {
		if stop.Load() {
			return nil // a sender failed; reported below
		}
		n := 0
		for _, st := range snapshot() {
			n += st.accepted
		}
		if n < minBefore || time.Since(begin) < time.Second {
			return fmt.Errorf("%d accepted before the kill, want %d", n, minBefore)
		}
		return nil
	})

	// Phase 2: the stream leader dies.
	leader := c.streamLeader(js, streamName)
	t.Logf("killing %s, leader of %s and server of %d of the 2 gateway connections, after %s of load",
		c.names[leader], streamName, c.gatewayConns(leader), time.Since(begin).Round(time.Millisecond))
	killStart := time.Now()
	killedAt.Store(killStart.UnixNano())
	c.stop(leader)
	t.Logf("%s down after %s", c.names[leader], time.Since(killStart).Round(time.Millisecond))
	hgtest.WaitFor(t, 60*time.Second, func() error {
		if stop.Load() {
			return nil
		}
		if since := time.Since(time.Unix(0, killedAt.Load())); since < runAfter {
			return fmt.Errorf("only %s since the kill", since)
		}
		for i, st := range snapshot() {
			if st.acceptedAfter < minAfterPerGW {
				return fmt.Errorf("gateway %d: %d accepted after the kill, want %d", i, st.acceptedAfter, minAfterPerGW)
			}
		}
		return nil
	})
	finish()
	newLeader := c.waitStreamLeaderNot(js, streamName, leader)
	t.Logf("load stopped %s after the kill; new %s leader %s", time.Since(time.Unix(0, killedAt.Load())).Round(time.Millisecond), streamName, c.names[newLeader])
	for _, p := range problems {
		t.Error(p)
	}

	// Read everything back.
	stored := hgtest.StoredByKey(t, js, streamName)
	total := 0
	for _, seqs := range stored {
		total += len(seqs)
	}
	for key, a := range accepted {
		seqs := stored[key]
		st := &stats[a.gw]
		switch {
		case len(seqs) == 0:
			st.lost++
			if st.lost <= 5 {
				t.Errorf("gateway %d accepted key %s (seq %d, duplicate %v) but it is not in the stream", a.gw, key, a.seq, a.duplicate)
			}
		case len(seqs) > 1:
			st.duplicates++
			if st.duplicates <= 5 {
				t.Errorf("gateway %d accepted key %s; it is stored %d times, at %v", a.gw, key, len(seqs), seqs)
			}
		case seqs[0] != a.seq:
			st.wrongSeq++
			if st.wrongSeq <= 5 {
				t.Errorf("gateway %d accepted key %s at seq %d; it is stored at %d", a.gw, key, a.seq, seqs[0])
			}
		}
	}
	dup503, stored503 := 0, 0
	for key := range only503 {
		switch n := len(stored[key]); {
		case n == 1:
			stored503++ // a 503 promises nothing: this one was stored after all
		case n > 1:
			dup503++
			if dup503 <= 5 {
				t.Errorf("key %s only ever got 503 and is stored %d times, at %v", key, n, stored[key])
			}
		}
	}

	var sum gwStats
	for i, st := range stats {
		t.Logf("gateway %d: requests %d, 202 %d (after the kill %d; on a retry %d, of which duplicate %d), 503 %d (after the kill %d), lost %d, duplicates %d, wrong seq %d, slowest reply %s (after the kill %s)",
			i, st.requests, st.accepted, st.acceptedAfter, st.acceptedRetry, st.duplicateReplies, st.unavailable, st.unavailableAfter,
			st.lost, st.duplicates, st.wrongSeq, st.slowest.Round(time.Millisecond), st.slowestAfter.Round(time.Millisecond))
		sum.requests += st.requests
		sum.accepted += st.accepted
		sum.unavailable += st.unavailable
		sum.lost += st.lost
		sum.duplicates += st.duplicates
		if st.acceptedAfter == 0 {
			t.Errorf("gateway %d accepted nothing after %s was killed", i, c.names[leader])
		}
	}
	t.Logf("total: requests %d, 202 %d, 503 %d, distinct keys accepted %d, keys only refused %d (of them stored anyway %d, stored twice %d), stream messages %d, lost %d, duplicates %d",
		sum.requests, sum.accepted, sum.unavailable, len(accepted), len(only503), stored503, dup503, total, sum.lost, sum.duplicates)
}
