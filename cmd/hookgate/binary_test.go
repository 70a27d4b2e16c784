package main

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hookgate/hookgate/internal/hgtest"
)

// The contract's newer lines, tried from outside with the built binary:
// healthcheck, hookgate_ready and the stream gauges, the stream's limits,
// --trusted-proxies, a signed delivery with a credential issued --signing
// (the embedded default made the key ring), and --shutdown-delay on SIGTERM.
func TestBinaryProductionAndSigning(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: builds and runs the binary")
	}
	srv := startBinary(t, "--trusted-proxies", "127.0.0.0/8", "--auth-failure-rate", "0.01", "--auth-failure-burst", "2",
		"--stream-max-bytes", "100000000", "--shutdown-delay", "2s", "--shutdown-timeout", "5s")
	cmd, stderr, exited, dataDir, bin := srv.cmd, srv.stderr, srv.exited, srv.dataDir, srv.bin
	listen, metricsAddr, natsURL := srv.listen, srv.metricsAddr, srv.natsURL
	run := func(args ...string) (int, string, string) {
		c := exec.Command(bin, args...)
		var out, errOut bytes.Buffer
		c.Stdout, c.Stderr = &out, &errOut
		err := c.Run()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, out.String(), errOut.String()
	}

	// healthcheck, ready and alive.
	for _, args := range [][]string{{"healthcheck", "--url", "http://" + metricsAddr + "/readyz"}, {"healthcheck", "--live", "--metrics-listen", metricsAddr}} {
		if code, _, errOut := run(args...); code != 0 {
			t.Fatalf("%v: exit %d %s", args, code, errOut)
		}
	}
	metricsURL := "http://" + metricsAddr
	for series, want := range map[string]float64{"hookgate_ready": 1, "hookgate_stream_max_bytes": 100000000} {
		if v := hgtest.MetricValue(t, metricsURL, series); v != want {
			t.Errorf("%s = %v, want %v", series, v, want)
		}
	}

	// A signing credential, issued with the key ring serve made in its data dir.
	code, out, errOut := run("token", "issue", "--org", "acme", "--kind", "deploy", "--app", "web", "--name", "github",
		"--signing", "--secret-keys", filepath.Join(dataDir, "secret-keys"), "--json", "--nats-url", natsURL)
	if code != 0 {
		t.Fatalf("issue --signing: exit %d %s", code, errOut)
	}
	var signing struct {
		ID            string `json:"id"`
		SigningSecret string `json:"signing_secret"`
	}
	if err := jsonDecode(out, &signing); err != nil || !strings.HasPrefix(signing.SigningSecret, "whsec_") {
		t.Fatalf("issue --signing printed %q (%v)", out, err)
	}
	body := []byte(`{"action":"created"}`)
	mac := hmac.New(sha256.New, []byte(signing.SigningSecret))
	mac.Write(body)
	status, reply := postRaw(t, "http://"+listen+"/v1/deploys/web?credential="+signing.ID, body,
		map[string]string{"X-Hub-Signature-256": "sha256=" + hex.EncodeToString(mac.Sum(nil)), "X-GitHub-Event": "deployment"})
	if status != 202 {
		t.Fatalf("signed delivery: %d %s", status, reply)
	}

	// Behind a trusted proxy, each client named by X-Forwarded-For has its own
	// refused-token budget.
	var codes []int
	for range 3 {
		s, _ := postRaw(t, "http://"+listen+"/v1/hits/web", []byte(`{}`), map[string]string{"Authorization": "Bearer hgh_guess_0123456789abcdef", "X-Forwarded-For": "203.0.113.7"})
		codes = append(codes, s)
	}
	other, _ := postRaw(t, "http://"+listen+"/v1/hits/web", []byte(`{}`), map[string]string{"Authorization": "Bearer hgh_guess_0123456789abcdef", "X-Forwarded-For": "203.0.113.8"})
	if fmt.Sprint(codes) != "[401 401 429]" || other != 401 {
		t.Fatalf("refused-token budgets behind the proxy: %v then %d for another client; want [401 401 429] then 401", codes, other)
	}

	// SIGTERM: not ready at once, still serving for the delay, then exit 0.
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	signalled := time.Now()
	hgtest.WaitFor(t, time.Second, func() error {
		if code, _, _ := run("healthcheck", "--url", metricsURL+"/readyz"); code != 1 {
			return errors.New("healthcheck still says ready")
		}
		return nil
	})
	if s, reply := postRaw(t, "http://"+listen+"/v1/deploys/web?credential="+signing.ID, body,
		map[string]string{"X-Hub-Signature-256": "sha256=" + hex.EncodeToString(mac.Sum(nil))}); s != 202 {
		t.Errorf("during the shutdown delay: %d %s", s, reply)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("serve exited with %v:\n%s", err, stderr.String())
		}
		if took := time.Since(signalled); took < 2*time.Second || took > 7*time.Second {
			t.Errorf("exit %s after SIGTERM; want after the 2s delay, within delay + timeout", took)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("serve still running after SIGTERM")
	}
	if strings.Contains(stderr.String(), signing.SigningSecret) {
		t.Error("the log holds the signing secret")
	}
}

func jsonDecode(s string, v any) error {
	return json.NewDecoder(strings.NewReader(s)).Decode(v)
}

func postRaw(t *testing.T, url string, body []byte, hdr map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(raw)
}
