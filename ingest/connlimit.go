package ingest

import (
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hookgate/hookgate/internal/logsample"
)

// ConnLimits caps open connections on the webhook listener: per client
// address (IPv4, or IPv6 /64, as for the refused-token budget) and in all.
//
// fasthttp has both caps too (MaxConnsPerIP, Concurrency), but it answers
// them with a plain-text reply; a sender reads the contract's JSON here:
// 429 rate_limited for its address, 503 unavailable for the gateway, both
// with Retry-After, then the connection is closed. Over TLS nothing is
// written (the client has not finished its handshake) and the connection
// is just closed, as fasthttp does.
type ConnLimits struct {
	PerAddress int  // positive (ServerConfig.Validate)
	Total      int  // positive (ServerConfig.Validate)
	Plain      bool // the listener speaks plain HTTP: refusals get a reply
	// Trusted proxies' connections count only toward Total: they carry
	// many clients' requests.
	Trusted Proxies
	// Refused is called for each refused connection with the status sent.
	Refused func(status int)
	Logger  *slog.Logger
}

// LimitConns wraps ln so that Accept refuses connections over the limits.
func LimitConns(ln net.Listener, cfg ConnLimits) net.Listener {
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &limitedListener{
		Listener: ln, cfg: cfg, open: map[netip.Addr]int{},
		// At most one line a minute: a client opening connections in a loop
		// must not flood the log; the next line says how many were not logged.
		logs:      logsample.New(1.0/60, 1),
		lingering: make(chan struct{}, maxLingering),
	}
}

var (
	connRefusedAddress = cannedRefusal(refusalRateLimited.status, refusalRateLimited.body)
	connRefusedTotal   = cannedRefusal(refusalBusy.status, refusalBusy.body)
)

// cannedRefusal is a whole HTTP/1.1 reply, built once: a refused
// connection costs one write and no request parsing.
func cannedRefusal(status int, body []byte) []byte {
	return fmt.Appendf(nil, "HTTP/1.1 %d %s\r\nServer: hookgate\r\nContent-Type: application/json\r\nRetry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s",
		status, http.StatusText(status), len(body), body)
}

type limitedListener struct {
	net.Listener
	cfg ConnLimits

	mu    sync.Mutex
	total int
	open  map[netip.Addr]int

	logs      *logsample.Sampler
	lingering chan struct{} // refused connections draining before close
}

func (l *limitedListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		peer := peerAddr(c.RemoteAddr())
		addr, perAddr := clientKey(peer), !l.cfg.Trusted.trusts(peer)
		if status, reply := l.admit(addr, perAddr); reply != nil {
			l.refuse(c, addr, status, reply)
			continue
		}
		return &limitedConn{Conn: c, l: l, addr: addr, perAddr: perAddr}, nil
	}
}

// admit counts the connection in, or returns the status and reply that
// refuse it.
func (l *limitedListener) admit(addr netip.Addr, perAddr bool) (int, []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.total >= l.cfg.Total:
		return refusalBusy.status, connRefusedTotal
	case perAddr && l.open[addr] >= l.cfg.PerAddress:
		return refusalRateLimited.status, connRefusedAddress
	}
	l.total++
	if perAddr {
		l.open[addr]++
	}
	return 0, nil
}

func (l *limitedListener) release(addr netip.Addr, perAddr bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if !perAddr {
		return
	}
	if n := l.open[addr] - 1; n > 0 {
		l.open[addr] = n
	} else {
		delete(l.open, addr)
	}
}

func (l *limitedListener) refuse(c net.Conn, addr netip.Addr, status int, reply []byte) {
	if l.cfg.Plain {
		// A fresh socket's send buffer takes a few hundred bytes at once;
		// the deadline only guards the accept loop against the unexpected.
		_ = c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
		_, _ = c.Write(reply)
		l.lingerClose(c)
	} else {
		_ = c.Close()
	}
	if l.cfg.Refused != nil {
		l.cfg.Refused(status)
	}
	ok, leftOut := l.logs.Allow()
	if !ok {
		return
	}
	msg, limit := "connection refused: too many open from one client address", l.cfg.PerAddress
	if status == refusalBusy.status {
		msg, limit = "connection refused: too many open connections", l.cfg.Total
	}
	attrs := []any{"remote", addr.String(), "limit", limit, "status", status}
	if leftOut > 0 {
		attrs = append(attrs, "refusals_not_logged_since_last", leftOut)
	}
	l.cfg.Logger.Warn(msg, attrs...)
}

// lingerClose ends a refused connection without losing the reply: closing
// a socket with the client's request still unread makes Linux send a reset,
// and a client still writing its body would see "connection reset" instead
// of the 429. So: send FIN, read and drop what comes for at most half a
// second, then close. At most maxLingering refusals linger at once; past
// that, connections are closed at once (a flood must not grow goroutines).
func (l *limitedListener) lingerClose(c net.Conn) {
	cw, ok := c.(interface{ CloseWrite() error })
	if !ok {
		_ = c.Close()
		return
	}
	select {
	case l.lingering <- struct{}{}:
	default:
		_ = c.Close()
		return
	}
	go func() {
		defer func() { <-l.lingering }()
		_ = cw.CloseWrite()
		_ = c.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, _ = io.Copy(io.Discard, io.LimitReader(c, 1<<20))
		_ = c.Close()
	}()
}

const maxLingering = 256

// connAddress is the address a connection counts against (clientKey).
func connAddress(a net.Addr) netip.Addr { return clientKey(peerAddr(a)) }

// peerAddr is the TCP peer's address.
func peerAddr(a net.Addr) netip.Addr {
	var addr netip.Addr
	if ta, ok := a.(*net.TCPAddr); ok && ta != nil {
		addr = ta.AddrPort().Addr()
	} else if a != nil {
		if ap, err := netip.ParseAddrPort(a.String()); err == nil {
			addr = ap.Addr()
		}
	}
	return addr.Unmap()
}

type limitedConn struct {
	net.Conn
	l       *limitedListener
	addr    netip.Addr
	perAddr bool // counted toward its address's cap (not a trusted proxy)
	closed  atomic.Bool
}

func (c *limitedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.release(c.addr, c.perAddr)
	}
	return c.Conn.Close()
}
