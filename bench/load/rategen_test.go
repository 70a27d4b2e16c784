package main

import (
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"
)

// The fixed-rate loop against a real fasthttp server on loopback: every
// scheduled request is sent once, with its headers and body intact, and
// answered and counted.
func TestRateLoopSendsEveryScheduledRequest(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		if string(ctx.Request.Header.Peek("Authorization")) != "Bearer tok" || len(ctx.PostBody()) != 300 {
			ctx.SetStatusCode(fasthttp.StatusBadRequest)
			return
		}
		ctx.SetStatusCode(fasthttp.StatusAccepted)
		ctx.SetBodyString(`{"ok":true}`)
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })

	l, err := newRateLoop(netip.MustParseAddrPort(ln.Addr().String()), 4)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	r := l.run(newRateRequest("/v1/hits/app1", "x", "tok", payload(300), ""), 2000, 250*time.Millisecond)
	if r.Requests != 500 || r.OK2xx != 500 || r.Errors != 0 || r.Missed != 0 {
		t.Fatalf("want 500 requests, 500 2xx, no errors: %+v", r)
	}
	if r.P50 <= 0 || r.P99 < r.P50 || r.Max < r.P99 {
		t.Fatalf("percentiles out of order: %+v", r)
	}
}

func TestReadReplyCountsNon2xx(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
		ctx.SetBodyString(`{"error":"unavailable","message":"x"}`)
	}}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	l, err := newRateLoop(netip.MustParseAddrPort(ln.Addr().String()), 2)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	r := l.run(rateRequest{b: []byte("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}")}, 1000, 100*time.Millisecond)
	if r.Requests != 100 || r.OK2xx != 0 || r.Errors != 100 {
		t.Fatalf("want 100 replies, all counted as errors: %+v", r)
	}
}

// Idle connections the server closes (its idle timeout) are reopened once:
// every scheduled request is still answered, none is counted twice.
func TestRateLoopSurvivesIdleTimeouts(t *testing.T) {
	var closedIdle atomic.Int64
	// One fixed-size request at a time, and a connection idle for 20ms is
	// closed.
	ln := serveEach(t, func(c net.Conn) {
		buf := make([]byte, len(idleReq))
		for {
			_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
			if _, err := io.ReadFull(c, buf); err != nil {
				closedIdle.Add(1)
				return
			}
			if _, err := c.Write([]byte(acceptedReply)); err != nil {
				return
			}
		}
	})
	l, err := newRateLoop(netip.MustParseAddrPort(ln.Addr().String()), 8)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	r := l.run(rateRequest{b: []byte(idleReq)}, 100, 600*time.Millisecond)
	if r.Requests != 60 || r.OK2xx != 60 || r.Errors != 0 || r.Missed != 0 {
		t.Fatalf("want 60 answered requests, no errors: %+v", r)
	}
	if closedIdle.Load() == 0 {
		t.Fatal("the server closed no idle connection: the test tests nothing")
	}
	if len(l.idle) != len(l.conns) {
		t.Fatalf("%d connections on the idle list, want %d (after %d idle closes)", len(l.idle), len(l.conns), closedIdle.Load())
	}
}

const (
	idleReq       = "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}"
	acceptedReply = "HTTP/1.1 202 Accepted\r\nContent-Length: 2\r\n\r\n{}"
)

// serveEach listens on loopback and runs handle on each connection, closing
// it when handle returns; the listener closes with the test.
func serveEach(t *testing.T, handle func(net.Conn)) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return ln
}

// A request whose connection the server closes with nothing of a reply read
// (the keep-alive race: closed as idle while the request went out) is sent
// again once on a new connection: it is answered, not counted as an error,
// and counted once. A request is never sent a third time.
func TestRateLoopResendsOnceAfterAKeepAliveClose(t *testing.T) {
	for _, tt := range []struct {
		name          string
		servePerConn  int // requests a connection answers before it closes on the next
		wantOK        int64
		wantErrors    int64
		wantServerMin int64
		wantServerMax int64
	}{
		// Each connection answers one request and drops the next: every
		// request after the first is sent twice and answered.
		{"closed on the second request", 1, 10, 0, 19, 19},
		// Never a reply: each request is sent twice, then counted as an error.
		{"never answered", 0, 0, 10, 20, 20},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var read atomic.Int64
			ln := serveEach(t, func(c net.Conn) {
				buf := make([]byte, len(idleReq))
				for served := 0; ; served++ {
					if _, err := io.ReadFull(c, buf); err != nil {
						return
					}
					read.Add(1)
					if served == tt.servePerConn {
						return // closed with the request unanswered
					}
					if _, err := c.Write([]byte(acceptedReply)); err != nil {
						return
					}
				}
			})
			l, err := newRateLoop(netip.MustParseAddrPort(ln.Addr().String()), 1)
			if err != nil {
				t.Fatal(err)
			}
			defer l.close()
			r := l.run(rateRequest{b: []byte(idleReq)}, 100, 100*time.Millisecond)
			if r.OK2xx != tt.wantOK || r.Errors != tt.wantErrors || r.Missed != 0 || r.Requests != tt.wantOK {
				t.Fatalf("want %d answered and %d errors: %+v", tt.wantOK, tt.wantErrors, r)
			}
			if n := read.Load(); n < tt.wantServerMin || n > tt.wantServerMax {
				t.Fatalf("the server read %d requests, want %d to %d", n, tt.wantServerMin, tt.wantServerMax)
			}
		})
	}
}
