package main

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// runIdle opens e.o.idle keep-alive connections to a hookgate child, sends
// one webhook on each so the server has served it, leaves them idle, and
// reports the gateway's memory.
func runIdle(e *env) error {
	n := e.o.idle
	if n > 60000 {
		return fmt.Errorf("-idle %d: at most 60000", n)
	}
	start := time.Now()
	b, err := startBroker(e.natsdBin, filepath.Join(e.tmp, "js-idle"))
	if err != nil {
		return err
	}
	defer b.stop()
	g, err := startHookgateProc(e.hookgateBin, b, "--max-conns-per-ip", strconv.Itoa(max(e.o.maxConnsPerIP, n+100)))
	if err != nil {
		return err
	}
	defer g.stop()
	t, err := hitsTarget(g.natsURL, g.addr, e.body)
	if err != nil {
		return err
	}

	type snap struct {
		rss, hwm   int64
		fds        int
		goroutines float64
	}
	take := func() snap {
		var s snap
		s.rss, s.hwm, _ = memStatus(g.pid)
		s.fds = countFDs(g.pid)
		s.goroutines = g.metricValue("go_goroutines")
		return s
	}
	time.Sleep(time.Second)
	base := take()

	req := fmt.Appendf(nil, "POST %s HTTP/1.1\r\nHost: %s\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s",
		t.path, t.addr, t.token, len(e.body), e.body)
	conns := make([]net.Conn, n)
	var next, okN, failN atomic.Int64
	var firstErr atomic.Value
	deadline := time.Now().Add(2 * time.Minute)
	var wg sync.WaitGroup
	openStart := time.Now()
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || time.Now().After(deadline) {
					return
				}
				src := net.IPv4(127, 0, 0, byte(1+i%max(1, e.o.idleSources)))
				c, err := openOne(src, t.addr, req)
				if err != nil {
					failN.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				conns[i] = c
				okN.Add(1)
			}
		}()
	}
	wg.Wait()
	openTook := time.Since(openStart)
	time.Sleep(3 * time.Second) // let the server settle into idle
	idle := take()
	time.Sleep(2 * time.Second)
	idle2 := take()
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	time.Sleep(3 * time.Second)
	closed := take()
	time.Sleep(20 * time.Second) // fasthttp lets workers idle for 10s go, checking every 10s
	closed2 := take()

	opened := okN.Load()
	var rep strings.Builder
	fmt.Fprintf(&rep, "## Idle connections: hookgate serve with %d idle keep-alive connections\n\n", n)
	fmt.Fprintf(&rep, "Command: `go run ./bench/load %s` (took %s)\n\n", strings.Join(os.Args[1:], " "), time.Since(start).Round(time.Second))
	rep.WriteString(machine(e, false))
	fmt.Fprintf(&rep, "\nOpened %d connections (%d failed) from %d source addresses in %s; each carried one 202 webhook, then stayed idle.\n\n",
		opened, failN.Load(), e.o.idleSources, openTook.Round(time.Millisecond))
	if v := firstErr.Load(); v != nil {
		fmt.Fprintf(&rep, "First error: %s\n\n", v)
	}
	rep.WriteString("| state | gateway VmRSS MiB | VmHWM MiB | open fds | goroutines |\n|---|---:|---:|---:|---:|\n")
	for _, r := range []struct {
		name string
		s    snap
	}{{"before (1 request served)", base}, {"idle, +3s", idle}, {"idle, +5s", idle2}, {"after closing all, +3s", closed}, {"after closing all, +23s", closed2}} {
		fmt.Fprintf(&rep, "| %s | %.1f | %.1f | %d | %.0f |\n", r.name, float64(r.s.rss)/(1<<20), float64(r.s.hwm)/(1<<20), r.s.fds, r.s.goroutines)
	}
	if opened > 0 {
		fmt.Fprintf(&rep, "\nPer idle connection: %.1f KiB of RSS ((idle+5s − before) / opened).\n",
			float64(idle2.rss-base.rss)/float64(opened)/1024)
	}
	fmt.Print(rep.String())
	if e.o.out != "" {
		return os.WriteFile(e.o.out, []byte(rep.String()), 0o644)
	}
	return nil
}

// openOne dials from src, sends req and reads one whole response, leaving the
// connection open and idle.
func openOne(src net.IP, addr string, req []byte) (net.Conn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(req); err != nil {
		c.Close()
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReaderSize(c, 1024), nil)
	if err != nil {
		c.Close()
		return nil, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		c.Close()
		return nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}
