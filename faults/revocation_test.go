package faults_test

import (
	"fmt"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/internal/hgtest"
)

// refusalBound is the contract's hard bound: once a delete is written, every
// gateway refuses the token within one second.
const refusalBound = time.Second

// untilRefused posts token to g back to back until it is refused with 401,
// and returns how long after from the 401 reply arrived. Any reply other than
// 202 or 401 is an error, and so is no 401 by from+limit.
func untilRefused(client *http.Client, g *hgtest.Gateway, token string, from time.Time, limit time.Duration) (time.Duration, int, error) {
	accepted := 0
	for i := 0; ; i++ {
		r, err := send(client, g.URL, "web", token, "", []byte(`{}`))
		if err != nil {
			return 0, accepted, err
		}
		switch r.code {
		case http.StatusUnauthorized:
			if r.errCode != "invalid_token" {
				return 0, accepted, fmt.Errorf("401 with error %q, want invalid_token", r.errCode)
			}
			return time.Since(from), accepted, nil
		case http.StatusAccepted:
			accepted++
		default:
			return 0, accepted, fmt.Errorf("want 202 or 401, got %d %s", r.code, r.raw)
		}
		if since := time.Since(from); since > limit {
			return since, accepted, fmt.Errorf("still accepted %s after the delete (%d requests, %d accepted)", since.Round(time.Millisecond), i+1, accepted)
		}
	}
}

// TestRevocationAcrossGateways deletes the tok. keys of warm tokens one by one
// and measures, on each of two gateways, the time from the delete's ack to the
// first 401. Only the contract's one-second bound is asserted; the figures
// are logged.
func TestRevocationAcrossGateways(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: a three-node cluster and hundreds of revocations")
	}
	c := startCluster(t)
	gws := []*hgtest.Gateway{clusterGateway(t, c.urls()), clusterGateway(t, c.urls())}
	_, js := connect(t, c.urls())
	kv := bucket(t, js)
	reg := &auth.Registry{KV: kv}

	const n = 300
	client := newClient()
	defer client.CloseIdleConnections()

	start := time.Now()
	tokens := make([]string, n)
	for i := range tokens {
		tokens[i] = issue(t, reg, fmt.Sprintf("org%d", i%7), fmt.Sprintf("revoke %d", i)).Token
	}
	t.Logf("issued %d tokens in %s", n, time.Since(start).Round(time.Millisecond))

	// Warm every token on both gateways: one 202 each, so each sits in both
	// caches as valid.
	start = time.Now()
	for i, tok := range tokens {
		for gi, g := range gws {
			hgtest.WaitFor(t, 10*time.Second, func() error {
				r, err := send(client, g.URL, "web", tok, "", []byte(`{}`))
				if err == nil && r.code != http.StatusAccepted {
					err = fmt.Errorf("token %d on gateway %d: %d %s", i, gi, r.code, r.raw)
				}
				return err
			})
		}
	}
	t.Logf("warmed %d tokens on %d gateways in %s", n, len(gws), time.Since(start).Round(time.Millisecond))

	lat := make([][]time.Duration, len(gws))
	acceptedAfter := make([]int, len(gws))
	deleteTook := make([]time.Duration, 0, n)
	start = time.Now()
	for i, tok := range tokens {
		d0 := time.Now()
		deleted := deleteToken(t, kv, tok)
		deleteTook = append(deleteTook, deleted.Sub(d0))
		var wg sync.WaitGroup
		res := make([]time.Duration, len(gws))
		errs := make([]error, len(gws))
		for gi, g := range gws {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var acc int
				res[gi], acc, errs[gi] = untilRefused(client, g, tok, deleted, refusalBound)
				acceptedAfter[gi] += acc
			}()
		}
		wg.Wait()
		for gi := range gws {
			if errs[gi] != nil {
				t.Errorf("token %d, gateway %d: %v", i, gi, errs[gi])
				continue
			}
			lat[gi] = append(lat[gi], res[gi])
		}
		if t.Failed() && i >= 10 {
			t.Fatalf("giving up after token %d", i)
		}
	}
	t.Logf("revoked %d tokens in %s", n, time.Since(start).Round(time.Millisecond))

	slices.Sort(deleteTook)
	t.Logf("kv delete ack: p50 %s, p99 %s, max %s", percentile(deleteTook, 50), percentile(deleteTook, 99), percentile(deleteTook, 100))
	for gi := range gws {
		ds := lat[gi]
		slices.Sort(ds)
		t.Logf("gateway %d: delete ack to first 401 over %d tokens: p50 %s, p99 %s, max %s (goal p99 < 50ms); 202s after the delete ack %d",
			gi, len(ds), percentile(ds, 50).Round(10*time.Microsecond), percentile(ds, 99).Round(10*time.Microsecond),
			percentile(ds, 100).Round(10*time.Microsecond), acceptedAfter[gi])
	}
}
