package main

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hookgate/hookgate/internal/hgtest"
)

// healthcheck answers for the gateway on its metrics port: 0 when ready (or
// alive), 1 with one line otherwise.
func TestHealthcheck(t *testing.T) {
	gw := hgtest.StartGateway(t, "", nil)
	_, port, _ := net.SplitHostPort(gw.MetricsAddr().String())
	redirect := httptest.NewServer(http.RedirectHandler(gw.MetricsURL+"/readyz", http.StatusFound))
	t.Cleanup(redirect.Close)
	notReady := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, "credential watch has not synced yet", http.StatusServiceUnavailable)
	}))
	t.Cleanup(notReady.Close)
	closed := hgtest.Addr(t) // nothing listens there

	for _, tt := range []struct {
		name string
		args []string
		env  map[string]string
		code int
		out  string
	}{
		{"ready, by the port of --metrics-listen", []string{"--metrics-listen", ":" + port}, nil, exitOK, ""},
		{"ready, by HOOKGATE_METRICS_LISTEN as serve reads it", nil, map[string]string{"HOOKGATE_METRICS_LISTEN": "0.0.0.0:" + port}, exitOK, ""},
		{"alive", []string{"--live", "--metrics-listen", ":" + port}, nil, exitOK, ""},
		{"by --url", []string{"--url", gw.MetricsURL + "/readyz"}, nil, exitOK, ""},
		{"not ready", []string{"--url", notReady.URL + "/readyz"}, nil, exitFail, "503"},
		{"a redirect is not followed", []string{"--url", redirect.URL}, nil, exitFail, "302"},
		{"nothing listens", []string{"--url", "http://" + closed + "/readyz"}, nil, exitFail, "refused"},
		{"a bad --metrics-listen", []string{"--metrics-listen", "nonsense"}, nil, exitUsage, "--metrics-listen"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			getenv := func(k string) string { return tt.env[k] }
			code, _, errOut := runCLI(t, getenv, append([]string{"healthcheck"}, tt.args...)...)
			if code != tt.code || !strings.Contains(errOut, tt.out) {
				t.Fatalf("exit %d, %q; want %d and %q", code, errOut, tt.code, tt.out)
			}
			if code == exitFail && strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
				t.Fatalf("not one line: %q", errOut)
			}
		})
	}
}
