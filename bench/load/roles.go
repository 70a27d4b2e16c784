package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/valyala/fasthttp"

	"github.com/hookgate/hookgate/bench/peer"
)

// The reference servers run as children of the benchmark (this same binary,
// started again with -role), so their CPU and memory are their own. Each
// prints "ready <addr>" once it listens and stops on SIGTERM.

// roleHTTPCeiling is the "http ceiling": fasthttp reading the request and
// answering 202 with a small JSON body, no broker work at all.
func roleHTTPCeiling(listen string) error {
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	reply := []byte(`{"stream":"HOOKS","seq":1,"duplicate":false}`) // hookgate's 202 body
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			if len(ctx.Request.Header.Peek(fasthttp.HeaderAuthorization)) == 0 {
				ctx.SetStatusCode(fasthttp.StatusUnauthorized)
				return
			}
			ctx.SetStatusCode(fasthttp.StatusAccepted)
			ctx.SetContentType("application/json")
			ctx.SetBody(reply)
		},
		Name:                         "ceiling",
		NoDefaultContentType:         true,
		DisablePreParseMultipartForm: true,
		ReadTimeout:                  10 * time.Second,
		IdleTimeout:                  120 * time.Second,
	}
	fmt.Printf("ready %s\n", ln.Addr())
	go waitSignal(func() { _ = srv.Shutdown() })
	return srv.Serve(ln)
}

// rolePeer is the "hand-written peer": net/http, a token map, and a
// synchronous JetStream publish per request (bench/peer).
func rolePeer(listen, natsURL, token, stream, prefix string) error {
	nc, err := nats.Connect(natsURL, nats.Name("bench-peer"))
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	if _, err := js.Stream(context.Background(), stream); err != nil {
		return fmt.Errorf("stream %s: %w", stream, err)
	}
	h := &peer.Handler{
		JS:      js,
		Tokens:  map[string]peer.Cred{token: {ID: "peer-cred", Org: "bench"}},
		Prefix:  prefix,
		MaxBody: 262144,
		Timeout: 5 * time.Second,
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	fmt.Printf("ready %s\n", ln.Addr())
	go waitSignal(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	})
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func waitSignal(stop func()) {
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	stop()
}
