package main

import (
	"errors"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/hookgate/hookgate/internal/hgtest"
)

// servedBinary is `hookgate serve`, built and run as a process of its own.
type servedBinary struct {
	bin, dataDir                 string
	cmd                          *exec.Cmd
	stderr                       *hgtest.LogBuffer
	exited                       chan error // Wait's result
	listen, metricsAddr, natsURL string     // from its "hookgate started" line
}

// startBinary builds the binary in a temporary dir and runs serve on the
// embedded default, its listeners on loopback ports it picks, JSON logs, and
// args; it returns once /readyz says ready. The test's end kills it if it
// still runs.
func startBinary(t *testing.T, args ...string) *servedBinary {
	t.Helper()
	dir := t.TempDir()
	s := &servedBinary{bin: filepath.Join(dir, "hookgate"), dataDir: filepath.Join(dir, "data"), stderr: &hgtest.LogBuffer{}, exited: make(chan error, 1)}
	if out, err := exec.Command("go", "build", "-o", s.bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	s.cmd = exec.Command(s.bin, append([]string{"serve", "--listen", "127.0.0.1:0", "--metrics-listen", "127.0.0.1:0",
		"--data-dir", s.dataDir, "--embedded-nats-listen", "127.0.0.1:0", "--log-format", "json"}, args...)...)
	s.cmd.Stderr = s.stderr
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.exited <- s.cmd.Wait() }()
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			_ = s.cmd.Process.Kill()
		}
	})
	hgtest.WaitFor(t, 20*time.Second, func() error {
		var ok bool
		if s.listen, s.metricsAddr, s.natsURL, ok = started(s.stderr.String()); !ok {
			return errors.New("serve has not logged its addresses yet: " + s.stderr.String())
		}
		return hgtest.Ready("http://" + s.metricsAddr)
	})
	return s
}
