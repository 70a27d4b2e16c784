package e2e

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hookgate/hookgate/internal/hgtest"
)

// requireTool returns the path of the first of names found in PATH, or fails
// the test: the e2e tests never skip for a missing tool.
func requireTool(t testing.TB, debianPackage string, names ...string) string {
	t.Helper()
	for _, name := range names {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatalf("none of %s found in PATH: install the Debian package %q (apt-get install -y %s); the e2e tests need the real tool and do not skip",
		strings.Join(names, ", "), debianPackage, debianPackage)
	return ""
}

// process is an external program a test started; it is stopped (SIGTERM,
// then SIGKILL after 10s) when the test ends, and its output is logged when
// the test failed.
type process struct {
	name string
	out  *hgtest.LogBuffer
	done chan struct{}
	err  error // set before done is closed
}

func startProcess(t testing.TB, bin string, args ...string) *process {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = t.TempDir()
	p := &process{name: bin, out: &hgtest.LogBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	t.Logf("started %s (pid %d): %s", bin, cmd.Process.Pid, strings.Join(args, " "))
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%s output:\n%s", bin, p.out.String())
		}
	})
	return p
}

// exited returns an error when the process has already stopped.
func (p *process) exited() error {
	select {
	case <-p.done:
		return fmt.Errorf("%s exited early (%v); output:\n%s", p.name, p.err, p.out.String())
	default:
		return nil
	}
}

// poll calls f every interval until it returns nil, at most timeout long and
// timeout/interval+1 times, and fails the test with f's last error
// otherwise. A permanent error (wrapped with stop) ends it at once.
func poll(t testing.TB, timeout, interval time.Duration, what string, f func() error) {
	t.Helper()
	if err := pollErr(timeout, interval, f); err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// pollErr is poll returning the error instead of failing the test.
func pollErr(timeout, interval time.Duration, f func() error) error {
	deadline := time.Now().Add(timeout)
	maxTries := int(timeout/interval) + 1
	var err error
	for try := 0; try < maxTries; try++ {
		if err = f(); err == nil {
			return nil
		}
		var s stopError
		if errors.As(err, &s) || time.Now().After(deadline) {
			break
		}
		time.Sleep(interval)
	}
	return fmt.Errorf("not done within %s: %w", timeout, err)
}

type stopError struct{ error }

func (s stopError) Unwrap() error { return s.error }

// stop marks err as permanent for poll.
func stop(err error) error { return stopError{err} }

// startServer starts bin with the arguments args gives for a loopback
// address, and waits until readyPath answers 200. The tools take only a
// --listen flag, so the port is picked before they bind it: hgtest.Port, which
// no outgoing connection or other test can take meanwhile. Should a program
// of its own still hold it, bin exits with "address already in use", and
// startServer tries again with another port (3 tries in all). It returns the
// process and its base URL.
func startServer(t testing.TB, bin string, args func(listen string) []string, readyPath string) (*process, string) {
	t.Helper()
	const tries = 3
	for try := 1; try <= tries; try++ {
		listen := hgtest.Addr(t)
		p := startProcess(t, bin, args(listen)...)
		base := "http://" + listen
		err := pollErr(30*time.Second, 100*time.Millisecond, func() error {
			if err := p.exited(); err != nil {
				return stop(err)
			}
			resp, err := httpClient.Get(base + readyPath)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("%s: %d %s", readyPath, resp.StatusCode, body)
			}
			return nil
		})
		if err == nil {
			return p, base
		}
		if try < tries && p.exited() != nil && strings.Contains(p.out.String(), "address already in use") {
			t.Logf("%s could not listen on %s; trying another port", bin, listen)
			continue
		}
		t.Fatalf("%s not ready at %s%s: %v", bin, base, readyPath, err)
	}
	panic("unreachable: the last try returns or fails the test")
}

// httpClient is for the test's own requests: none may hang a test.
var httpClient = &http.Client{Timeout: 15 * time.Second}

// getBody GETs url and returns the body of a 200 reply.
func getBody(url string) ([]byte, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return body, fmt.Errorf("GET %s: %d %s", url, resp.StatusCode, body)
	}
	return body, nil
}
