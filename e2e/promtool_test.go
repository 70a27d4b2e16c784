package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/gateway"
	"github.com/hookgate/hookgate/internal/hgtest"
	"github.com/hookgate/hookgate/metrics"
)

// TestMetricsPassPromtool feeds a busy gateway's /metrics to
// `promtool check metrics` and checks that no token used reaches them.
//
// Lint policy: every problem promtool reports fails the test, including
// problems about metrics outside hookgate_* (the Go and process collectors of
// client_golang). The contract says /metrics, "with the Go and process
// collectors", passes `promtool check metrics`, and operators lint the whole
// endpoint, not our part of it; promtool also exits non-zero (3) for any lint
// problem, so tolerating some would mean tolerating a failing exit status. The
// failure message still says which problems come from hookgate_* metrics
// (fix in package metrics) and which from the collectors hookgate registers
// (configure or filter them in package metrics).
func TestMetricsPassPromtool(t *testing.T) {
	promtool := requireTool(t, "prometheus", "promtool")
	// The optional per-application and last-seen views are on, so that
	// promtool lints their families too.
	g := hgtest.StartGateway(t, "", func(cfg *gateway.Config) {
		cfg.Metrics = metrics.Options{PerApp: true, PerAppMax: metrics.DefaultPerAppMax, CredentialSeen: true, CredentialMax: metrics.DefaultCredentialMax}
	})
	reg := hgtest.Registry(t, g.NATSURL(), "")
	// Credential names are the organization's free text: no label may hold them.
	names := []string{"Promtool Hits Überwachung", "Promtool Deploy \"web\"", "Promtool Revoked"}
	hits := hgtest.Issue(t, reg, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: names[0]})
	deploy := hgtest.Issue(t, reg, auth.IssueRequest{Org: "acme", Kind: auth.KindDeploy, App: "web", Name: names[1]})
	revoked := hgtest.Issue(t, reg, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: names[2]})

	const (
		platformToken = "platform-token-0123456789abcdef" // well-formed, unknown
		typoToken     = "hgh_thisIsNotAValidChecksumToken0123456789abcdefXYZ012"
		shortToken    = "short"
	)
	body := []byte(`{"status":"ok"}`)
	post := func(path, token string, hdr map[string]string, want int) {
		t.Helper()
		code, reply, _ := hgtest.Post(t, g.URL+path, token, body, hdr)
		if code != want {
			t.Fatalf("POST %s: got %d %s, want %d", path, code, reply, want)
		}
	}
	post("/v1/hits/web", hits.Token, nil, http.StatusAccepted)
	post("/v1/hits/api", hits.Token, map[string]string{"Idempotency-Key": "k1"}, http.StatusAccepted)
	post("/v1/hits/api", hits.Token, map[string]string{"Idempotency-Key": "k1"}, http.StatusAccepted) // duplicate
	post("/v1/deploys/web", deploy.Token, nil, http.StatusAccepted)
	post("/v1/deploys/web", "", map[string]string{
		"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("ci:"+deploy.Token)),
	}, http.StatusAccepted)
	post("/v1/hits/web", "", nil, http.StatusUnauthorized)
	post("/v1/hits/web", platformToken, nil, http.StatusUnauthorized)
	post("/v1/hits/web", typoToken, nil, http.StatusUnauthorized)
	post("/v1/hits/web", shortToken, nil, http.StatusUnauthorized)
	post("/v1/deploys/web", hits.Token, nil, http.StatusForbidden)
	post("/v1/deploys/api", deploy.Token, nil, http.StatusForbidden)
	// Tokens where a careless gateway might turn them into a label. (Not a
	// lowercase token as a valid {app}: that is an application name the
	// sender chose, which the per-application view labels on purpose.)
	post("/v1/hits/"+typoToken, hits.Token, nil, http.StatusBadRequest)
	post("/v1/hits/web?token="+deploy.Token, hits.Token, nil, http.StatusAccepted)
	post("/v2/"+deploy.Token, deploy.Token, nil, http.StatusNotFound)
	post("/v1/hits/web", revoked.Token, nil, http.StatusAccepted) // cached as valid, then revoked
	text, err := getBody(g.MetricsURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`hookgate_http_requests_total{code="202",route="hits"} 5`,
		`hookgate_http_requests_total{code="202",route="deploys"} 2`,
		`hookgate_auth_failures_total{reason="missing"} 1`,
		`hookgate_auth_failures_total{reason="forbidden"} 2`,
		`hookgate_app_webhooks_total{app="api",kind="hits",org="acme"} 1`,
		`hookgate_credential_last_seen_timestamp_seconds{credential="` + deploy.ID + `",org="acme"}`,
	} {
		if !bytes.Contains(text, []byte(want)) {
			t.Errorf("/metrics lacks %q", want)
		}
	}

	// Revoke a token the gateway has cached as valid; the wait may be
	// answered 202 until the delete arrives, so the counts above come first.
	if err := reg.Revoke(context.Background(), revoked.ID); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	poll(t, 5*time.Second, 10*time.Millisecond, "revoked token refused", func() error {
		code, reply, _ := hgtest.Post(t, g.URL+"/v1/hits/web", revoked.Token, body, nil)
		if code != http.StatusUnauthorized {
			return errors.New("revoked token still accepted: " + string(reply))
		}
		return nil
	})

	if text, err = getBody(g.MetricsURL + "/metrics"); err != nil {
		t.Fatal(err)
	}

	// No token in any form the gateway ever held it: as sent, its hash (the
	// bucket key), or the Basic credentials that carried it.
	for _, tok := range []string{hits.Token, deploy.Token, revoked.Token, platformToken, typoToken, shortToken} {
		sum := sha256.Sum256([]byte(tok))
		for _, form := range []string{tok, hex.EncodeToString(sum[:]), base64.StdEncoding.EncodeToString([]byte("ci:" + tok))} {
			if bytes.Contains(text, []byte(form)) {
				t.Errorf("/metrics contains a token (or its hash or Basic form) %.8s...", form)
			}
		}
	}
	for _, name := range names {
		if bytes.Contains(text, []byte(name)) {
			t.Errorf("/metrics contains the credential name %q", name)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(text)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	t.Logf("promtool check metrics on %d bytes, %d lines: err=%v stdout=%q stderr=%q",
		len(text), bytes.Count(text, []byte("\n")), runErr, stdout.String(), stderr.String())
	var ours, collectors []string
	for line := range strings.Lines(stdout.String() + stderr.String()) {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		if strings.HasPrefix(line, "hookgate_") {
			ours = append(ours, line)
		} else {
			collectors = append(collectors, line)
		}
	}
	if runErr != nil || len(ours)+len(collectors) > 0 {
		t.Errorf("promtool check metrics failed (%v)\nproblems in hookgate_* metrics:\n  %s\nother problems (Go/process collectors, promhttp, or promtool errors):\n  %s",
			runErr, strings.Join(ours, "\n  "), strings.Join(collectors, "\n  "))
	}
}
