package main

import (
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hookgate/hookgate/internal/hgtest"
)

// The real binary, a real SIGTERM, under load: /readyz turns 503 while the
// gateway goes on serving through --shutdown-delay, a second SIGTERM ends the
// delay, requests in flight finish with their acks, the process exits 0
// within --shutdown-timeout of it, and every 202 is in the stream.
func TestSIGTERMUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: builds the binary and drains it under load")
	}
	const shutdownTimeout = 10 * time.Second
	gw := startBinary(t, "--shutdown-timeout", shutdownTimeout.String(), "--shutdown-delay", "1h")
	cmd, stderr, exited, dataDir := gw.cmd, gw.stderr, gw.exited, gw.dataDir
	listen, metricsAddr, natsURL := gw.listen, gw.metricsAddr, gw.natsURL
	code, out, errOut := runCLI(t, noEnv, "token", "issue", "--org", "acme", "--kind", "hits", "--name", "n", "--json", "--nats-url", natsURL)
	if code != 0 {
		t.Fatalf("issue: %s", errOut)
	}
	var is issued
	decodeOne(t, out, &is)

	l := hgtest.StartLoad(t, []string{"http://" + listen}, is.Token, 8, 800000)
	l.WaitCount(t, 30*time.Second, 200, "202s before SIGTERM", func(r hgtest.Reply) bool { return r.Code == 202 })
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	signalled := time.Now()
	hgtest.WaitFor(t, 5*time.Second, func() error {
		if hgtest.Ready("http://"+metricsAddr) == nil {
			return errors.New("/readyz still says ready after SIGTERM")
		}
		return nil
	})
	l.WaitCount(t, 30*time.Second, 100, "202s during the shutdown delay", func(r hgtest.Reply) bool {
		return r.Code == 202 && r.At.After(signalled)
	})
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil { // the second: no more delay
		t.Fatal(err)
	}
	var waitErr error
	select {
	case waitErr = <-exited:
	case <-time.After(shutdownTimeout + 5*time.Second):
		t.Fatalf("serve still running %s after the second SIGTERM", shutdownTimeout+5*time.Second)
	}
	took := time.Since(start)
	results := l.Stop()
	if waitErr != nil {
		t.Fatalf("serve exited with %v after SIGTERM:\n%s", waitErr, stderr.String())
	}
	if took > shutdownTimeout {
		t.Errorf("exit took %s, over --shutdown-timeout %s", took, shutdownTimeout)
	}

	// Read the stream back from the same store.
	srv := hgtest.RunNATSWith(t, hgtest.NATSOptions(dataDir))
	_, js := hgtest.Connect(t, srv.ClientURL())
	accepted := hgtest.CheckStoredOnce(t, results, hgtest.StoredByKey(t, js, "HOOKS"))
	counts := hgtest.Codes(results)
	for c, n := range counts {
		if c != 202 && c != 0 { // 0: connection refused or closed, the sender retries
			t.Errorf("%d replies %d during shutdown", n, c)
		}
	}
	t.Logf("SIGTERM: %d requests, %d 202 (all stored once), %d refused connections; exit 0 after %s",
		len(results), accepted, counts[0], took.Round(time.Millisecond))
	if !strings.Contains(stderr.String(), "hookgate stopped") {
		t.Errorf("no 'hookgate stopped' log line:\n%s", stderr.String())
	}
}
