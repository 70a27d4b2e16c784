package metrics

import (
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/hookgate/hookgate/auth"
)

func TestPerAppSeriesStopAtCapAndDropsAreCounted(t *testing.T) {
	m := New("test", Options{PerApp: true, PerAppMax: 3, CredentialSeen: true, CredentialMax: 2})
	now := time.Unix(1_800_000_000, 0)
	for i := range 10 {
		app := fmt.Sprintf("app-%d", i%5) // 5 applications, cap 3
		m.Accepted("acme", app, auth.KindHits, fmt.Sprintf("cred-%d", i%4), now)
	}
	if n := testutil.CollectAndCount(m.Registry, "hookgate_app_webhooks_total"); n != 3 {
		t.Fatalf("per-app series = %d, want the cap 3", n)
	}
	// app-0..2 got series (2 webhooks each); app-3 and app-4 were dropped twice each.
	if got := testutil.ToFloat64(m.perApp.dropped); got != 4 {
		t.Fatalf("dropped = %v, want 4", got)
	}
	if v, _ := m.perApp.get([3]string{"acme", "app-1", "hits"}); testutil.ToFloat64(v) != 2 {
		t.Fatalf("app-1 counted %v, want 2", testutil.ToFloat64(v))
	}
	if n := testutil.CollectAndCount(m.Registry, "hookgate_credential_last_seen_timestamp_seconds"); n != 2 {
		t.Fatalf("last-seen series = %d, want the cap 2", n)
	}
	if g, _ := m.credSeen.get([2]string{"acme", "cred-0"}); testutil.ToFloat64(g) != 1.8e9 {
		t.Fatalf("last seen %v", testutil.ToFloat64(g))
	}
}

func TestViewsOffByOptions(t *testing.T) {
	m := New("test", Options{})
	m.Accepted("acme", "web", auth.KindHits, "c1", time.Now())
	for _, name := range []string{"hookgate_app_webhooks_total", "hookgate_credential_last_seen_timestamp_seconds"} {
		if n := testutil.CollectAndCount(m.Registry, name); n != 0 {
			t.Fatalf("%s has %d series while off", name, n)
		}
	}
}

func TestRequestCountsByRouteAndCode(t *testing.T) {
	m := New("test", Options{})
	m.Request(RouteHits, 202, time.Millisecond)
	m.Request(RouteHits, 202, time.Millisecond)
	m.Request(RouteOther, 404, 0)
	m.Request(RouteDeploys, 418, 0) // a code outside the pre-resolved set still counts
	for _, c := range []struct {
		route, code string
		want        float64
	}{{"hits", "202", 2}, {"other", "404", 1}, {"deploys", "418", 1}, {"deploys", "202", 0}} {
		if got := testutil.ToFloat64(m.requests.WithLabelValues(c.route, c.code)); got != c.want {
			t.Errorf("%s %s = %v, want %v", c.route, c.code, got, c.want)
		}
	}
}

// Counting an accepted webhook whose series exist costs no allocation: it is
// on every request's path.
func TestAcceptedAllocatesNothingOnceItsSeriesExist(t *testing.T) {
	m := New("test", Options{PerApp: true, PerAppMax: 10, CredentialSeen: true, CredentialMax: 10})
	now := time.Unix(1.8e9, 0)
	m.Accepted("acme", "web", auth.KindHits, "cred-1", now)
	if n := testing.AllocsPerRun(100, func() { m.Accepted("acme", "web", auth.KindHits, "cred-1", now) }); n != 0 {
		t.Fatalf("Accepted allocates %v times per call", n)
	}
}
