package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/internal/hgtest"
)

// promVector is the answer of /api/v1/query for an instant vector.
type promVector struct {
	Status    string `json:"status"`
	ErrorType string `json:"errorType"`
	Error     string `json:"error"`
	Data      struct {
		ResultType string `json:"resultType"`
		Result     []struct {
			Metric map[string]string `json:"metric"`
			Value  [2]any            `json:"value"` // [unix time, "value"]
		} `json:"result"`
	} `json:"data"`
}

// promQuery runs an instant query and returns the single sample's value and
// the raw JSON answer.
func promQuery(base, query string) (value string, raw []byte, err error) {
	raw, err = getBody(base + "/api/v1/query?" + url.Values{"query": {query}}.Encode())
	if err != nil {
		return "", raw, err
	}
	var v promVector
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", raw, stop(fmt.Errorf("query %s: %w: %s", query, err, raw))
	}
	if v.Status != "success" {
		return "", raw, stop(fmt.Errorf("query %s: %s %s: %s", query, v.ErrorType, v.Error, raw))
	}
	if v.Data.ResultType != "vector" || len(v.Data.Result) != 1 {
		return "", raw, fmt.Errorf("query %s: want one sample, got %s", query, raw)
	}
	s, ok := v.Data.Result[0].Value[1].(string)
	if !ok {
		return "", raw, stop(fmt.Errorf("query %s: sample value is not a string: %s", query, raw))
	}
	return s, raw, nil
}

// TestPrometheusScrapesGateway has a real Prometheus scrape a gateway that
// accepted N webhooks and checks the counter Prometheus stored.
func TestPrometheusScrapesGateway(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: runs a real Prometheus until it has scraped")
	}
	const (
		n   = 25
		job = "hookgate-e2e"
	)
	prometheus := requireTool(t, "prometheus", "prometheus")
	g := hgtest.StartGateway(t, "", nil)
	reg := hgtest.Registry(t, g.NATSURL(), "")
	tok := hgtest.Issue(t, reg, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "prometheus e2e"})
	for i := range n {
		body := fmt.Appendf(nil, `{"check":"disk","n":%d}`, i)
		code, reply, _ := hgtest.Post(t, g.URL+"/v1/hits/web", tok.Token, body, nil)
		if code != http.StatusAccepted {
			t.Fatalf("webhook %d: got %d %s, want 202", i, code, reply)
		}
	}

	dir := t.TempDir()
	target := strings.TrimPrefix(g.MetricsURL, "http://")
	config := fmt.Sprintf(`global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: %s
    metrics_path: /metrics
    static_configs:
      - targets: ['%s']
`, job, target)
	configFile := filepath.Join(dir, "prometheus.yml")
	if err := os.WriteFile(configFile, []byte(config), 0o600); err != nil {
		t.Fatal(err)
	}
	p, base := startServer(t, prometheus, func(listen string) []string {
		return []string{
			"--config.file=" + configFile,
			"--storage.tsdb.path=" + t.TempDir(),
			"--web.listen-address=" + listen,
			"--log.level=warn",
		}
	}, "/-/ready")

	requests := `hookgate_http_requests_total{route="hits",code="202"}`
	var answer []byte
	poll(t, 60*time.Second, 250*time.Millisecond, "Prometheus sees "+requests+" == 25", func() error {
		if err := p.exited(); err != nil {
			return stop(err)
		}
		v, raw, err := promQuery(base, requests)
		answer = raw
		if err != nil {
			return err
		}
		if v != fmt.Sprint(n) {
			return fmt.Errorf("value %s, want %d: %s", v, n, raw)
		}
		return nil
	})
	t.Logf("query %s answered: %s", requests, answer)

	up := fmt.Sprintf(`up{job=%q}`, job)
	v, raw, err := promQuery(base, up)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("query %s answered: %s", up, raw)
	if v != "1" {
		t.Errorf("%s = %s, want 1: %s", up, v, raw)
	}
	var targets struct {
		Data struct {
			ActiveTargets []struct {
				ScrapeURL string `json:"scrapeUrl"`
				Health    string `json:"health"`
				LastError string `json:"lastError"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	raw, err = getBody(base + "/api/v1/targets?state=active")
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(raw, &targets); err != nil {
		t.Fatalf("targets: %v: %s", err, raw)
	}
	if len(targets.Data.ActiveTargets) != 1 || targets.Data.ActiveTargets[0].Health != "up" ||
		targets.Data.ActiveTargets[0].ScrapeURL != g.MetricsURL+"/metrics" {
		t.Errorf("want one healthy target %s/metrics, got %s", g.MetricsURL, raw)
	}
}
