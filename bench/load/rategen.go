package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"runtime"
	"slices"
	"strconv"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The fixed-rate generator runs as its own child process (-role rate-gen), so
// that its CPU is its own and it never shares a Go runtime with an in-process
// gateway. It is an open loop like wrk2: request i is due at start + i/rate
// whatever the replies do, goes out on any idle keep-alive connection of the
// pool, and its latency counts from when it was due, so a stall shows up in
// the percentiles of every request that waited behind it (no coordinated
// omission).
//
// It is one thread, one epoll loop and raw non-blocking sockets with a
// pre-built request, reading only the status line, the headers and
// Content-Length bytes of body. The Go fasthttp client with a scheduler
// goroutine and a job channel it replaced cost about 26µs of CPU per request,
// three times wrk, and that CPU came out of the two cores the gateway was
// measured on; this loop costs about 12-15µs, mostly the kernel's share of
// loopback TCP.

// rateGenResult is what the child prints, one JSON line after "result ".
type rateGenResult struct {
	Requests int64   `json:"requests"`
	OK2xx    int64   `json:"ok2xx"`
	Errors   int64   `json:"errors"`
	Missed   int64   `json:"missed"`
	P50      int64   `json:"p50_ns"`
	P99      int64   `json:"p99_ns"`
	P999     int64   `json:"p999_ns"`
	Max      int64   `json:"max_ns"`
	SendP99  int64   `json:"send_p99_ns"` // latency from the actual send, for comparison
	LateP99  int64   `json:"late_p99_ns"` // how late requests went out
	WakeP99  int64   `json:"wake_p99_ns"` // loop wake-ups later than one tick after the last: the generator starved of CPU
	NoConn   int64   `json:"no_conn"`     // times a due request found every connection busy
	CPU      float64 `json:"cpu_s"`
	Elapsed  int64   `json:"elapsed_ns"`
}

// runRateGenChild is the child side: drive addr at rate for d and print the
// result; keyed sends a fresh Idempotency-Key with each request.
func runRateGenChild(addr, path, token string, rate float64, conns int, d time.Duration, slowLog string, keyed bool) error {
	if rate <= 0 || conns < 1 || d <= 0 {
		return fmt.Errorf("rate-gen: want -rate > 0, -conns >= 1, -duration > 0")
	}
	// One goroutine runs the whole loop on one thread, like wrk -t1.
	runtime.GOMAXPROCS(1)
	runtime.LockOSThread()
	prefix := ""
	if keyed {
		prefix = keyPrefix
	}
	req := newRateRequest(path, addr, token, payload(300), prefix)
	ap, err := netip.ParseAddrPort(addr)
	if err != nil || !ap.Addr().Is4() || !ap.Addr().IsLoopback() {
		return fmt.Errorf("rate-gen: -target %q: want a 127.0.0.0/8 host:port", addr)
	}
	cpu := newCPUMeter(0)
	l, err := newRateLoop(ap, conns)
	if err != nil {
		return err
	}
	defer l.close()
	r := l.run(req, rate, d)
	r.CPU = cpu.delta()
	if slowLog != "" {
		if err := writeSlowLog(slowLog, l.start, l.slow); err != nil {
			return fmt.Errorf("rate-gen: %w", err)
		}
	}
	js, err := json.Marshal(r)
	if err != nil {
		return err
	}
	fmt.Printf("result %s\n", js)
	return nil
}

// rateRequest is rate-gen's prebuilt request. A keyed one carries an
// Idempotency-Key of keyLen bytes whose counter digits sit at keyAt: stamp
// writes request n's key in place, so a fresh key per request costs no
// allocation. The loop stamps a request just before each write of it.
type rateRequest struct {
	b     []byte
	keyAt int // offset of the key's counter digits in b; 0: no key
}

// newRateRequest builds a POST of body to path with a bearer token, and with
// an Idempotency-Key of prefix when prefix is not empty.
func newRateRequest(path, host, token string, body []byte, prefix string) rateRequest {
	r := rateRequest{b: fmt.Appendf(nil, "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nAuthorization: Bearer %s\r\n",
		path, host, token)}
	if prefix != "" {
		r.b = append(r.b, keyHeader+": "...)
		r.b = append(r.b, newKey(prefix)...)
		r.keyAt = len(r.b) - keyDigits
		r.b = append(r.b, "\r\n"...)
	}
	r.b = fmt.Appendf(r.b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	return r
}

// stamp gives the request key number n; a request without a key is left as it is.
func (r rateRequest) stamp(n uint64) {
	if r.keyAt > 0 {
		stampKey(r.b[r.keyAt:r.keyAt+keyDigits], n)
	}
}

// rateConn is one keep-alive connection of the loop, with at most one
// request in flight.
type rateConn struct {
	fd        int
	buf       []byte
	due, sent time.Duration // of the request in flight, since the loop's start
	key       uint64        // of the request in flight: its key's number, for a resend
	busy      bool
	resent    bool // the request in flight was sent again (see resend)
}

// rateLoop is a single-threaded epoll loop: non-blocking sockets, a periodic
// timerfd, no goroutine or channel per request.
type rateLoop struct {
	sa    unix.SockaddrInet4
	ep    int
	timer int
	conns []*rateConn
	idle  []*rateConn
	keys  uint64 // numbers handed to keyed requests so far, over every run

	start time.Time          // of the last run
	slow  [][2]time.Duration // of the last run: due time and latency of each request over slowAfter
}

// rateTick is how often the loop wakes: it sends every request due before
// the next tick and reads every reply that has arrived. Waking per request
// instead cost this VM about 20µs of kernel time per request (timer
// programming and idle wake-ups), CPU taken from the gateway under test.
// Latency is measured from a request's scheduled time (or its send, if it
// went early) to the tick that saw its reply, so it is overstated by up to
// one tick, never understated.
const rateTick = 250 * time.Microsecond

func newRateLoop(ap netip.AddrPort, n int) (*rateLoop, error) {
	l := &rateLoop{sa: unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}, ep: -1, timer: -1}
	var err error
	if l.ep, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if l.timer, err = unix.TimerfdCreate(unix.CLOCK_MONOTONIC, unix.TFD_CLOEXEC); err != nil {
		l.close()
		return nil, fmt.Errorf("timerfd_create: %w", err)
	}
	for i := range n {
		c := &rateConn{fd: -1, buf: make([]byte, 0, 4096)}
		l.conns = append(l.conns, c)
		if err := l.dial(i); err != nil {
			l.close()
			return nil, err
		}
		l.idle = append(l.idle, c)
	}
	return l, nil
}

// dial (re)opens connection i: a blocking connect (loopback answers at
// once), then non-blocking for the loop.
func (l *rateLoop) dial(i int) error {
	c := l.conns[i]
	if c.fd >= 0 {
		_ = unix.Close(c.fd)
		c.fd = -1
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	sa := l.sa
	if err := unix.Connect(fd, &sa); err != nil {
		_ = unix.Close(fd)
		return fmt.Errorf("connect %d.%d.%d.%d:%d: %w", sa.Addr[0], sa.Addr[1], sa.Addr[2], sa.Addr[3], sa.Port, err)
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	if err := unix.SetNonblock(fd, true); err != nil {
		_ = unix.Close(fd)
		return err
	}
	if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: int32(i)}); err != nil {
		_ = unix.Close(fd)
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	c.fd, c.buf, c.busy = fd, c.buf[:0], false
	return nil
}

func (l *rateLoop) close() {
	for _, c := range l.conns {
		if c.fd >= 0 {
			_ = unix.Close(c.fd)
		}
	}
	for _, fd := range []int{l.timer, l.ep} {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
	}
}

// run sends request i at start + i/rate on any idle connection, for d, and
// waits up to 5s more for the replies in flight.
func (l *rateLoop) run(req rateRequest, rate float64, d time.Duration) rateGenResult {
	interval := float64(time.Second) / rate
	total := int64(rate * d.Seconds())
	due := func(i int64) time.Duration { return time.Duration(float64(i) * interval) }
	lat := make([]int64, 0, total)
	send := make([]int64, 0, total)
	late := make([]int64, 0, total)
	var r rateGenResult
	events := make([]unix.EpollEvent, len(l.conns))
	inflight := 0
	start := time.Now()
	l.start, l.slow = start, l.slow[:0]
	giveUp := d + 5*time.Second
	ts := unix.NsecToTimespec(int64(rateTick))
	if err := unix.TimerfdSettime(l.timer, 0, &unix.ItimerSpec{Value: ts, Interval: ts}, nil); err != nil {
		r.Errors++
		return r
	}
	var tickBuf [8]byte
	wake := make([]int64, 0, int(d/rateTick)+1)
	var lastTick time.Duration
	for next := int64(0); next < total || inflight > 0; {
		// Replies first, so that their connections can take this tick's requests.
		n, err := epollWaitRaw(l.ep, events, 0)
		if err != nil && err != unix.EINTR {
			r.Errors++
			r.Missed += total - next + int64(inflight)
			break
		}
		for _, ev := range events[:max(n, 0)] {
			c := l.conns[ev.Fd]
			code, done, err := c.readReply()
			if err != nil {
				if c.busy && l.resend(c, req) {
					continue
				}
				if c.busy {
					r.Errors++
					inflight--
				}
				l.reconnect(c)
				continue
			}
			if !done {
				continue
			}
			end := time.Since(start)
			c.busy = false
			inflight--
			// From the scheduled time, or from the send if it went early:
			// never less than the reply took, and a request that waited for a
			// free connection or for the loop counts its wait.
			lat = append(lat, int64(end-min(c.due, c.sent)))
			if end-min(c.due, c.sent) > slowAfter {
				l.slow = append(l.slow, [2]time.Duration{c.due, end - min(c.due, c.sent)})
			}
			send = append(send, int64(end-c.sent))
			late = append(late, int64(max(0, c.sent-c.due)))
			if code >= 200 && code < 300 {
				r.OK2xx++
			} else {
				r.Errors++
			}
			l.idle = append(l.idle, c)
		}
		now := time.Since(start)
		if next < total {
			// Ticks fall on multiples of rateTick since start, unless the
			// loop fell behind (a periodic timerfd does not queue missed ticks).
			wake = append(wake, int64(max(0, now-lastTick-rateTick)))
			lastTick = now
		}
		if now > giveUp {
			r.Missed += total - next + int64(inflight)
			break
		}
		// Every request due before the next tick goes now.
		for next < total && len(l.idle) > 0 && due(next) < now+rateTick {
			c := l.idle[len(l.idle)-1]
			l.idle = l.idle[:len(l.idle)-1]
			l.keys++
			c.due, c.sent, c.key, c.busy, c.resent = due(next), now, l.keys, true, false
			next++
			inflight++
			req.stamp(c.key)
			if err := writeAll(c.fd, req.b); err != nil && !l.resend(c, req) {
				r.Errors++
				inflight--
				l.reconnect(c)
			}
		}
		if next < total && len(l.idle) == 0 && due(next) <= now {
			r.NoConn++
		}
		// Sleep until the next tick (a blocking read of the timerfd).
		_, _, _ = unix.RawSyscall(unix.SYS_READ, uintptr(l.timer), uintptr(unsafe.Pointer(&tickBuf[0])), 8)
	}
	r.Requests = int64(len(lat))
	r.Elapsed = int64(d)
	r.P50, r.P99, r.P999, r.Max = quantiles(lat)
	_, r.SendP99, _, _ = quantiles(send)
	_, r.LateP99, _, _ = quantiles(late)
	_, r.WakeP99, _, _ = quantiles(wake)
	return r
}

// resend sends c's request again, once, on a new socket when the server
// closed the connection with nothing of a reply read: the keep-alive race,
// where the server closes a connection it found idle (its idle timeout) as
// the request goes out, and never reads it. HTTP clients send such a
// request again; counting it as an error would charge the server for the
// client's timing. It keeps the request's due and send times, so its
// latency counts the wait, and its key: were it stored after all, the gateway
// answers the resend as a duplicate. It reports whether the request is in
// flight again; on false the caller counts it as an error.
func (l *rateLoop) resend(c *rateConn, req rateRequest) bool {
	if c.resent || len(c.buf) > 0 {
		return false
	}
	due, sent := c.due, c.sent
	l.reconnect(c)
	// Whatever happens, the request is c's again.
	l.idle = slices.DeleteFunc(l.idle, func(x *rateConn) bool { return x == c })
	c.due, c.sent, c.busy, c.resent = due, sent, true, true
	req.stamp(c.key)
	return c.fd >= 0 && writeAll(c.fd, req.b) == nil
}

// reconnect replaces c's socket and puts c on the idle list once: an idle
// connection the server closed (its idle timeout) is already there.
func (l *rateLoop) reconnect(c *rateConn) {
	c.busy = false
	l.idle = slices.DeleteFunc(l.idle, func(x *rateConn) bool { return x == c })
	if i := slices.Index(l.conns, c); i >= 0 && l.dial(i) == nil {
		l.idle = append(l.idle, c)
	}
}

// epollWaitRaw is epoll_wait without the Go runtime's syscall bookkeeping.
// Through unix.EpollWait, every wait longer than 20µs let sysmon take the P
// away and wake another thread to hand it to: futex and nanosleep calls
// cost more CPU than the requests themselves. The loop is the only
// goroutine doing work, so blocking its thread outright is what we want.
func epollWaitRaw(ep int, events []unix.EpollEvent, msec int) (int, error) {
	n, _, errno := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(ep), uintptr(unsafe.Pointer(&events[0])),
		uintptr(len(events)), uintptr(msec), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(n), nil
}

func writeAll(fd int, b []byte) error {
	for len(b) > 0 {
		n, err := unix.Write(fd, b)
		if err == unix.EAGAIN || err == unix.EINTR {
			continue // a full socket buffer on loopback drains in microseconds
		}
		if err != nil {
			return err
		}
		b = b[n:]
	}
	return nil
}

var errBadReply = errors.New("malformed HTTP reply")

// readReply reads what the socket holds and reports whether one whole reply
// (status line, headers, Content-Length bytes of body) has arrived.
func (c *rateConn) readReply() (code int, done bool, err error) {
	if len(c.buf) == cap(c.buf) {
		return 0, false, errBadReply
	}
	n, err := unix.Read(c.fd, c.buf[len(c.buf):cap(c.buf)])
	if err == unix.EAGAIN || err == unix.EINTR {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	if n == 0 {
		return 0, false, errors.New("connection closed by the server")
	}
	c.buf = c.buf[:len(c.buf)+n]
	if !c.busy {
		return 0, false, errBadReply // bytes nobody asked for
	}
	head, _, ok := bytes.Cut(c.buf, []byte("\r\n\r\n"))
	if !ok {
		return 0, false, nil
	}
	// "HTTP/1.1 202 Accepted"
	if len(head) < 12 || !bytes.HasPrefix(head, []byte("HTTP/1.")) {
		return 0, false, errBadReply
	}
	if code, err = strconv.Atoi(string(head[9:12])); err != nil {
		return 0, false, errBadReply
	}
	length := -1
	for line := range bytes.SplitSeq(head, []byte("\r\n")) {
		if k, v, ok := bytes.Cut(line, []byte(":")); ok && bytes.EqualFold(k, []byte("Content-Length")) {
			if length, err = strconv.Atoi(string(bytes.TrimSpace(v))); err != nil || length < 0 {
				return 0, false, errBadReply
			}
		}
	}
	if length < 0 {
		return 0, false, errBadReply
	}
	whole := len(head) + 4 + length
	if len(c.buf) < whole {
		return 0, false, nil
	}
	if len(c.buf) > whole {
		return 0, false, errBadReply
	}
	c.buf = c.buf[:0]
	return code, true, nil
}

// rateGen runs the fixed-rate generator as a child process of the benchmark.
type rateGen struct{ self string }

func (g rateGen) run(t target, conns int, d time.Duration, rate float64) (loadResult, error) {
	slowLog, err := os.CreateTemp("", "rate-gen-slow-")
	if err != nil {
		return loadResult{}, err
	}
	slowLog.Close()
	defer os.Remove(slowLog.Name())
	args := []string{"-role", "rate-gen", "-target", t.addr, "-path", t.path, "-token", t.token,
		"-rate", strconv.FormatFloat(rate, 'f', 1, 64), "-conns", strconv.Itoa(conns), "-duration", d.String(),
		"-slow-log", slowLog.Name()}
	if t.keyed {
		args = append(args, "-keyed")
	}
	c, line, err := startChild("rate-gen", g.self, args, d+30*time.Second, func(l string) (string, bool) { return cutPrefix(l, "result ") })
	if err != nil {
		return loadResult{}, err
	}
	c.stop()
	var r rateGenResult
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		return loadResult{}, fmt.Errorf("rate-gen result %q: %w", line, err)
	}
	res := loadResult{
		requests: r.Requests, ok2xx: r.OK2xx, errors: r.Errors, missed: r.Missed,
		elapsed: time.Duration(r.Elapsed), genCPU: r.CPU,
		p50: time.Duration(r.P50), p99: time.Duration(r.P99), p999: time.Duration(r.P999), max: time.Duration(r.Max),
	}
	if res.slow, err = readSlowLog(slowLog.Name()); err != nil {
		return loadResult{}, err
	}
	res.note = fmt.Sprintf("p99 from the actual send %s; sent late by %s at p99; generator woke late by %s at p99; %d ticks found every connection busy",
		fmtDur(time.Duration(r.SendP99)), fmtDur(time.Duration(r.LateP99)), fmtDur(time.Duration(r.WakeP99)), r.NoConn)
	return res, nil
}

func quantiles(l []int64) (p50, p99, p999, mx int64) {
	if len(l) == 0 {
		return 0, 0, 0, 0
	}
	slices.Sort(l)
	q := func(p float64) int64 {
		i := int(math.Ceil(p*float64(len(l)))) - 1
		return l[max(0, min(i, len(l)-1))]
	}
	return q(0.50), q(0.99), q(0.999), l[len(l)-1]
}
