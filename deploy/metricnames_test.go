package deploy_test

import (
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/metrics"
)

// exportedSeries returns the name of every series a gateway's /metrics
// serves, with both optional views (per application, credential last seen)
// on: hookgate's own families, a histogram's _bucket, _sum and _count, and
// the Go and process collectors'. It reads them from package metrics' own
// handler, so a rule or panel is checked against what hookgate really exports.
func exportedSeries(t *testing.T) map[string]bool {
	t.Helper()
	m := metrics.New("test", metrics.Options{PerApp: true, PerAppMax: metrics.DefaultPerAppMax, CredentialSeen: true, CredentialMax: metrics.DefaultCredentialMax})
	// The optional views' families appear once they hold a series.
	m.Accepted("acme", "web", auth.KindHits, "cred-1", time.Unix(1, 0))
	m.WatchReadiness(func() error { return nil }) // as gateway.Start does
	rec := httptest.NewRecorder()
	m.Handler(func() error { return nil }).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	names := map[string]bool{}
	for line := range strings.Lines(rec.Body.String()) {
		if line = strings.TrimSpace(line); line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, _, _ := strings.Cut(line, "{")
		name, _, _ = strings.Cut(name, " ")
		names[name] = true
	}
	for _, want := range []string{"hookgate_http_requests_total", "hookgate_publish_duration_seconds_bucket",
		"hookgate_app_webhooks_total", "go_goroutines", "process_resident_memory_bytes"} {
		if !names[want] {
			t.Fatalf("/metrics of package metrics has no %s; the series read from it: %v", want, names)
		}
	}
	return names
}

// checkMetricName says why a rule or panel may not select name, or "": it
// must be a series hookgate exports, or one of extra (such as up, which
// Prometheus makes itself).
func checkMetricName(name string, exported map[string]bool, extra ...string) string {
	if exported[name] || slices.Contains(extra, name) {
		return ""
	}
	return "not a series hookgate's /metrics serves"
}
