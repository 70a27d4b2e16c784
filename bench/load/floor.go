package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/valyala/fasthttp"

	"github.com/hookgate/hookgate/bus"
)

// The floor is what any gateway that keeps hookgate's promise must do per
// request, and nothing else: read the request over HTTP (fasthttp, as the
// http ceiling), publish its body to JetStream with hookgate's lean message,
// wait for that message's ack (a 202 is a promise that it is stored), and
// answer with the ack's sequence. No credentials, no validation, no metrics,
// no logs. It publishes through hookgate's own bus.Publisher, the least-work
// path to an ack over nats.go that hookgate has found, and with -nats-url ""
// it runs JetStream in its own process over an in-process connection, as the
// embedded default does. So hookgate against the floor is the cost of
// hookgate's checks, and the floor against the http ceiling and the broker
// ceiling is the cost of waiting for one ack per request.

const (
	rowFloor     = "floor: fasthttp + publish, no checks"
	floorStream  = "FLOOR"
	floorSubject = "floor.bench.app.hits"
)

// roleFloor serves the floor on listen, against natsURL or ("") an embedded
// server storing JetStream in dataDir.
func roleFloor(listen, natsURL, dataDir string) error {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(400) // as hookgate serve does
	}
	var opts []nats.Option
	if natsURL == "" {
		dir, err := floorDataDir(dataDir)
		if err != nil {
			return err
		}
		s, err := bus.StartEmbedded(bus.EmbeddedConfig{Listen: "127.0.0.1:0", DataDir: dir})
		if err != nil {
			return err
		}
		defer s.Shutdown()
		natsURL = s.ClientURL()
		opts = append(opts, nats.InProcessServer(s))
	}
	nc, err := nats.Connect(natsURL, append(opts, nats.Name("bench-floor"))...)
	if err != nil {
		return err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name: floorStream, Subjects: []string{"floor.>"}, Storage: jetstream.FileStorage, Duplicates: 2 * time.Minute,
	}); err != nil {
		return fmt.Errorf("stream %s: %w", floorStream, err)
	}
	pub, err := bus.NewPublisher(nc, 5*time.Second)
	if err != nil {
		return err
	}
	header := nats.Header{"Hook-Credential": {"floor-cred"}} // only read by nats.go
	srv := &fasthttp.Server{
		Handler: func(ctx *fasthttp.RequestCtx) {
			msg := nats.Msg{Subject: floorSubject, Header: header, Data: ctx.PostBody()}
			ack, err := pub.Publish(ctx, &msg)
			if err != nil {
				ctx.SetStatusCode(fasthttp.StatusServiceUnavailable)
				return
			}
			var buf [64]byte
			b := append(buf[:0], `{"stream":"FLOOR","seq":`...)
			b = strconv.AppendUint(b, ack.Seq, 10)
			b = append(b, `,"duplicate":false}`...)
			ctx.SetStatusCode(fasthttp.StatusAccepted)
			ctx.SetContentType("application/json")
			ctx.SetBody(b)
		},
		Name:                         "floor",
		NoDefaultContentType:         true,
		DisablePreParseMultipartForm: true,
		ReadTimeout:                  10 * time.Second,
		IdleTimeout:                  120 * time.Second,
	}
	ln, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	fmt.Printf("ready %s\n", ln.Addr())
	go waitSignal(func() { _ = srv.Shutdown() })
	return srv.Serve(ln)
}

// measureFloor drives the floor closed loop: against the broker b, or with
// JetStream in the floor's own process when embedded (its CPU then holds
// the broker's, as the embedded gateway's does).
func measureFloor(e *env, b *broker, run int, d time.Duration, conns int, embedded bool) (row, error) {
	args := []string{"-role", "floor"}
	if embedded {
		args = append(args, "-data-dir", filepath.Join(e.tmp, "floor-"+strconv.Itoa(run)))
	} else {
		args = append(args, "-nats-url", b.url)
	}
	c, addr, err := startChild("floor", e.self, args, 30*time.Second, readyAddr)
	if err != nil {
		return row{}, err
	}
	defer c.stop()
	t := target{addr: addr, path: hitsPath, token: "floor-token-unchecked"}
	if err := probe(t, e.body, 10*time.Second); err != nil {
		return row{}, err
	}
	mach := newMachineMeter()
	cpu := newCPUMeter(c.pid())
	var brk *cpuMeter
	if !embedded {
		brk = newCPUMeter(b.pid)
	}
	res, err := e.gen.run(t, e.body, conns, d)
	if err != nil {
		return row{}, err
	}
	r := row{name: rowFloor, gen: e.gen.name(), unit: "req/s", res: res, srvCPU: cpu.delta(), srvSys: cpu.syscalls(), brkCPU: -1, counted: res.ok2xx, stored: -1}
	if brk != nil {
		r.brkCPU = brk.delta()
	}
	r.foreign = mach.foreign(r.srvCPU, max(r.brkCPU, 0), extGenCPU(e, res))
	r.srvRSS, r.srvHWM, _ = memStatus(c.pid())
	if !embedded {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = b.js.DeleteStream(ctx, floorStream)
	}
	return r, nil
}

// floorDataDir checks that an embedded floor was told where to store, so
// that it never writes into the working directory.
func floorDataDir(dir string) (string, error) {
	if dir == "" {
		return "", fmt.Errorf("-role floor: -nats-url or -data-dir")
	}
	return dir, os.MkdirAll(dir, 0o700)
}
