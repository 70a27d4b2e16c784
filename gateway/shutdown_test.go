package gateway_test

import (
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hookgate/hookgate/auth"
	"github.com/hookgate/hookgate/gateway"
	"github.com/hookgate/hookgate/internal/hgtest"
)

// readListener tells, on read, that a server has started reading a connection
// it accepted: a test can wait for its request to be in the server's hands.
type readListener struct {
	net.Listener
	read chan struct{} // one value for each connection's first read
}

func newReadListener(t *testing.T) *readListener {
	return &readListener{Listener: hgtest.Listen(t), read: make(chan struct{}, 16)}
}

func (l *readListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &readConn{Conn: c, read: l.read}, nil
}

type readConn struct {
	net.Conn
	once sync.Once
	read chan struct{}
}

func (c *readConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.once.Do(func() {
			select {
			case c.read <- struct{}{}:
			default:
			}
		})
	}
	return n, err
}

// wait waits until a server has read from one more connection.
func (l *readListener) wait(t *testing.T, what string) {
	t.Helper()
	select {
	case <-l.read:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: the server read nothing in 10s", what)
	}
}

// forget drops what was read so far.
func (l *readListener) forget() {
	for {
		select {
		case <-l.read:
		default:
			return
		}
	}
}

// The whole stop, the listener's drain, the metrics listener, NATS and the
// embedded server, fits in --shutdown-timeout even when a client holds a
// request open and a scrape connection stays open.
func TestShutdownFitsTheTimeout(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: waits out a held-open request at shutdown")
	}
	const timeout = 4 * time.Second
	ln, mln := newReadListener(t), newReadListener(t)
	gw := hgtest.StartGateway(t, "", func(c *gateway.Config) {
		c.Listener, c.MetricsLn = ln, mln
		c.ShutdownTimeout = timeout
	})
	mln.forget() // StartGateway's requests to /readyz
	// A webhook whose body never finishes arriving (read timeout 10s).
	c, err := net.Dial("tcp", gw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST /v1/hits/web HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer x\r\nContent-Length: 100\r\n\r\n{")
	// A metrics request whose headers never finish.
	m, err := net.Dial("tcp", gw.MetricsAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	fmt.Fprintf(m, "GET /metrics HTTP/1.1\r\nHost: x\r\n")
	ln.wait(t, "the unfinished webhook")
	mln.wait(t, "the unfinished scrape")
	start := time.Now()
	gw.Stop()
	if took := time.Since(start); took > timeout {
		t.Fatalf("stop took %s with --shutdown-timeout %s", took, timeout)
	}
}

// A stop under load (what SIGTERM does) drains: the requests in flight get
// their replies, new connections are refused, and every 202 is stored once.
func TestShutdownUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: drains a gateway under load")
	}
	srv := hgtest.RunNATS(t)
	const shutdownTimeout = 10 * time.Second
	gw := hgtest.StartGateway(t, srv.ClientURL(), func(c *gateway.Config) { c.ShutdownTimeout = shutdownTimeout })
	reg := hgtest.Registry(t, srv.ClientURL(), "")
	is := hgtest.Issue(t, reg, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "drain"})
	l := hgtest.StartLoad(t, []string{gw.URL}, is.Token, 8, 200000)
	l.WaitCount(t, 30*time.Second, 200, "202s before the stop", func(r hgtest.Reply) bool { return r.Code == 202 })
	start := time.Now()
	gw.Stop() // what SIGTERM does: serve's signal context is cancelled
	took := time.Since(start)
	if took > shutdownTimeout {
		t.Errorf("shutdown took %s, over %s", took, shutdownTimeout)
	}
	if _, err := net.DialTimeout("tcp", gw.Addr().String(), time.Second); err == nil {
		t.Error("new connections are still accepted after shutdown")
	}
	stopped := time.Now()
	l.WaitCount(t, 10*time.Second, 1, "refused connections after the stop", func(r hgtest.Reply) bool {
		return r.Code == 0 && r.At.After(stopped)
	})
	replies := l.Stop()
	codes := hgtest.Codes(replies)
	for code := range codes {
		if code != 202 && code != 0 {
			t.Errorf("%d replies of %d during shutdown", codes[code], code)
		}
	}
	_, js := hgtest.Connect(t, srv.ClientURL())
	accepted := hgtest.CheckStoredOnce(t, replies, hgtest.StoredByKey(t, js, "HOOKS"))
	for line := range strings.Lines(gw.Logs.String()) {
		if strings.Contains(line, "publish failed") || strings.Contains(line, "lookup") {
			t.Log(line)
			break
		}
	}
	t.Logf("shutdown: %d requests, %d 202, %d refused connections, lost 0; drained in %s",
		len(replies), accepted, codes[0], took.Round(time.Millisecond))
}

// With --shutdown-delay the gateway leaves the way a load balancer needs:
// /readyz says 503 at once, while new connections (each reply now closes
// its own, so every next request opens one) are accepted and served until
// the delay ends. Nothing sent before then is refused, and every 202 is
// stored once.
func TestShutdownDelayRefusesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("slow: serves through a shutdown delay under load")
	}
	srv := hgtest.RunNATS(t)
	const delay, shutdownTimeout = 2 * time.Second, 10 * time.Second
	gw := hgtest.StartGateway(t, srv.ClientURL(), func(c *gateway.Config) {
		c.ShutdownDelay, c.ShutdownTimeout = delay, shutdownTimeout
	})
	reg := hgtest.Registry(t, srv.ClientURL(), "")
	is := hgtest.Issue(t, reg, auth.IssueRequest{Org: "acme", Kind: auth.KindHits, Name: "leaving"})
	l := hgtest.StartLoad(t, []string{gw.URL}, is.Token, 8, 200000)
	l.WaitCount(t, 30*time.Second, 200, "202s before the signal", func(r hgtest.Reply) bool { return r.Code == 202 })

	start := time.Now()
	stopped := make(chan struct{})
	go func() { gw.Stop(); close(stopped) }() // what SIGTERM does
	hgtest.WaitFor(t, time.Second, func() error {
		if hgtest.Ready(gw.MetricsURL) == nil {
			return errors.New("/readyz still says ready")
		}
		return nil
	})
	if d := time.Since(start); d > delay/2 {
		t.Errorf("/readyz turned 503 only after %s", d)
	}
	// Raw, since Go's client hides the Connection header it obeys.
	reply := rawPost(t, gw.Addr().String(), is.Token, `{"during":"delay"}`)
	if !strings.HasPrefix(reply, "HTTP/1.1 202") || !strings.Contains(reply, "\r\nConnection: close\r\n") {
		t.Errorf("during the delay: %q; want 202 with Connection: close", reply)
	}
	l.WaitCount(t, delay, 100, "202s on new connections during the delay", func(r hgtest.Reply) bool {
		return r.Code == 202 && r.At.After(start)
	})
	<-stopped
	took := time.Since(start)
	if took < delay || took > delay+shutdownTimeout {
		t.Errorf("stopped %s after the signal; want between the delay %s and delay + timeout", took, delay)
	}
	replies := l.Stop()
	// A request sent as the delay ends may meet the closed listener; one
	// sent well before must not.
	servedUntil := start.Add(delay - 250*time.Millisecond)
	refused := 0
	for _, r := range replies {
		if r.Code != 202 && r.At.Before(servedUntil) {
			refused++
			t.Errorf("sent %s after the signal, before the delay ended: %d (%v)", r.At.Sub(start).Round(time.Millisecond), r.Code, r.Err)
		}
	}
	_, js := hgtest.Connect(t, srv.ClientURL())
	accepted := hgtest.CheckStoredOnce(t, replies, hgtest.StoredByKey(t, js, "HOOKS"))
	t.Logf("shutdown delay %s: %d requests, %d 202, %d refused before the delay ended, lost 0; stopped after %s",
		delay, len(replies), accepted, refused, took.Round(time.Millisecond))
}

// rawPost sends one hits webhook on a new connection and returns the reply
// as read until the server closes it (or 5s pass).
func rawPost(t *testing.T, addr, token, body string) string {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(c, "POST /v1/hits/web HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", token, len(body), body)
	out, _ := io.ReadAll(c)
	return string(out)
}
