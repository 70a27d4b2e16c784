package main

import (
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hookgate/hookgate/internal/hgtest"
)

// The real binary, a real SIGTERM, under load: requests in flight finish
// with their acks, the process exits 0 within --shutdown-timeout, and every
// 202 is in the stream.
func TestSIGTERMUnderLoad(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "hookgate")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	listen, metricsAddr, natsAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	dataDir := filepath.Join(dir, "data")
	const shutdownTimeout = 10 * time.Second
	cmd := exec.Command(bin, "serve", "--listen", listen, "--metrics-listen", metricsAddr, "--data-dir", dataDir,
		"--embedded-nats-listen", natsAddr, "--shutdown-timeout", shutdownTimeout.String())
	var stderr hgtest.LogBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	}()
	hgtest.WaitFor(t, 20*time.Second, func() error { return readyz(metricsAddr) })
	code, out, errOut := runCLI(t, noEnv, "token", "issue", "--org", "acme", "--kind", "hits", "--name", "n", "--json", "--nats-url", "nats://"+natsAddr)
	if code != 0 {
		t.Fatalf("issue: %s", errOut)
	}
	var is issued
	decodeOne(t, out, &is)

	type result struct {
		key  string
		code int
	}
	var (
		mu      sync.Mutex
		results []result
		wg      sync.WaitGroup
		stop    = make(chan struct{})
	)
	client := &http.Client{Timeout: 15 * time.Second}
	for s := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 100000; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("s%d-%d", s, i)
				req, _ := http.NewRequest("POST", "http://"+listen+"/v1/hits/web", strings.NewReader(`{}`))
				req.Header.Set("Authorization", "Bearer "+is.Token)
				req.Header.Set("Idempotency-Key", key)
				r := result{key: key}
				if resp, err := client.Do(req); err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					r.code = resp.StatusCode
				} else {
					time.Sleep(5 * time.Millisecond)
				}
				mu.Lock()
				results = append(results, r)
				mu.Unlock()
			}
		}()
	}
	time.Sleep(time.Second)
	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	select {
	case waitErr = <-exited:
	case <-time.After(shutdownTimeout + 5*time.Second):
		t.Fatalf("serve still running %s after SIGTERM", shutdownTimeout+5*time.Second)
	}
	took := time.Since(start)
	close(stop)
	wg.Wait()
	if waitErr != nil {
		t.Fatalf("serve exited with %v after SIGTERM:\n%s", waitErr, stderr.String())
	}
	if took > shutdownTimeout {
		t.Errorf("exit took %s, over --shutdown-timeout %s", took, shutdownTimeout)
	}

	// Read the stream back from the same store.
	srv := hgtest.RunNATSWith(t, hgtest.NATSOptions(dataDir))
	_, js := hgtest.Connect(t, srv.ClientURL())
	stored := hgtest.StoredByKey(t, js, "HOOKS")
	counts := map[int]int{}
	for _, r := range results {
		counts[r.code]++
		switch r.code {
		case 202:
			if stored[r.key] != 1 {
				t.Errorf("202 for %s, stored %d times", r.key, stored[r.key])
			}
		case 0: // connection refused or closed: the sender retries
		default:
			t.Errorf("reply %d during shutdown", r.code)
		}
	}
	t.Logf("SIGTERM: %d requests, %d 202 (all stored once), %d refused connections, other %d; exit 0 after %s",
		len(results), counts[202], counts[0], len(results)-counts[202]-counts[0], took.Round(time.Millisecond))
	if !strings.Contains(stderr.String(), "hookgate stopped") {
		t.Errorf("no 'hookgate stopped' log line:\n%s", stderr.String())
	}
}
