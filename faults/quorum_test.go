package faults_test

import (
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/hookgate/hookgate/internal/hgtest"
)

// The quorum drill of docs/operators.md: with 1 of 3 nodes up the gateway
// stays connected, the stream has no leader, and a webhook gets 503
// unavailable within --publish-timeout, counted as a publish failure of
// reason timeout or error (whether JetStream answers at all varies); once the
// quorum is back, the sender's retry with the same Idempotency-Key is stored
// once.
func TestQuorumLoss(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: a three-node cluster loses two nodes and gets them back")
	}
	c := startCluster(t)
	gw := clusterGateway(t, c.urls()) // --publish-timeout 5s
	reg := hgtest.Registry(t, c.url(0), "")
	token := issue(t, reg, "acme", "quorum").Token
	client := newClient()
	defer client.CloseIdleConnections()
	hgtest.WaitFor(t, 10*time.Second, func() error {
		r, err := send(client, gw.URL, "web", token, "warm", []byte(`{}`))
		if err == nil && r.code != http.StatusAccepted {
			return fmt.Errorf("warm-up: %d %s", r.code, r.raw)
		}
		return err
	})

	c.stop(1)
	c.stop(2)
	before := publishFailures(t, gw)
	start := time.Now()
	r, err := send(client, gw.URL, "web", token, "during", []byte(`{}`))
	took := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if err := checkUnavailable(r); err != nil {
		t.Fatalf("1 of 3 nodes up: %v", err)
	}
	if took > 6*time.Second {
		t.Fatalf("503 after %s, more than --publish-timeout 5s", took)
	}
	after := publishFailures(t, gw)
	if after["disconnected"] != before["disconnected"] ||
		after["timeout"]+after["error"] != before["timeout"]+before["error"]+1 {
		t.Fatalf("publish failures %v -> %v: want one more timeout or error", before, after)
	}
	t.Logf("1 of 3 up: 503 after %s; publish failures %v -> %v", took.Round(time.Millisecond), before, after)

	c.restart(1)
	c.restart(2)
	var stored reply
	hgtest.WaitFor(t, 30*time.Second, func() error {
		var err error
		stored, err = send(client, gw.URL, "web", token, "during", []byte(`{}`))
		if err == nil && stored.code != http.StatusAccepted {
			return fmt.Errorf("retry after the quorum is back: %d %s", stored.code, stored.raw)
		}
		return err
	})
	// Whether it was the first copy or not, it is stored once: one more
	// retry finds that copy.
	again, err := send(client, gw.URL, "web", token, "during", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if again.code != http.StatusAccepted || !again.duplicate || again.seq != stored.seq {
		t.Fatalf("second retry: %d %s, want 202 duplicate of seq %d", again.code, again.raw, stored.seq)
	}
}

// publishFailures reads hookgate_publish_failures_total by reason.
func publishFailures(t *testing.T, g *hgtest.Gateway) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	for _, reason := range []string{"disconnected", "timeout", "error"} {
		out[reason] = hgtest.MetricValue(t, g.MetricsURL, `hookgate_publish_failures_total{reason="`+reason+`"}`)
	}
	return out
}
