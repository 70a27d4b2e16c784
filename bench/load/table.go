package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Row names.
const (
	rowHTTP    = "http ceiling"
	rowBroker  = "broker ceiling"
	rowBrokerM = "broker ceiling, hookgate's message"
	rowPeer    = "net/http peer"
	rowHG      = "hookgate"
	rowHGHalf  = "hookgate @ half peak"
	rowHGSign  = "hookgate, signed"
	rowHGKey   = "hookgate, fresh key"
	rowHGKeyH  = "hookgate, fresh key @ half peak"
	peerStream = "PEER"
)

// row is one measurement.
type row struct {
	run      int
	name     string
	gen      string
	unit     string // req/s or msg/s
	res      loadResult
	srvCPU   float64 // CPU seconds of the server process (gateway, peer, ceiling; publisher for the broker row)
	srvSys   int64   // read and write system calls of the server process
	brkCPU   float64 // CPU seconds of the broker; <0: not separate
	srvRSS   int64   // bytes, VmRSS after the measurement
	srvHWM   int64   // bytes, VmHWM
	stored   int64   // messages the stream gained; <0: not applicable
	counted  int64   // 2xx the generator counted (or 202s the gateway counted)
	rateGoal float64 // fixed-rate rows: the target rate
	foreign  float64 // CPU seconds used by processes outside the benchmark meanwhile
}

func (r row) per10k(cpu float64) float64 {
	if r.res.requests == 0 {
		return 0
	}
	return cpu / float64(r.res.requests) * 10000
}

func runTable(e *env) error {
	start := time.Now()
	var rows []row
	for run := 1; run <= e.o.runs; run++ {
		fmt.Fprintf(os.Stderr, "run %d/%d\n", run, e.o.runs)
		rs, err := runOnce(e, run)
		rows = append(rows, rs...)
		if err != nil {
			return fmt.Errorf("run %d: %w", run, err)
		}
	}
	rep := report(e, rows, time.Since(start))
	fmt.Print(rep)
	if e.o.out != "" {
		if err := os.WriteFile(e.o.out, []byte(rep), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// runOnce measures every row once, with a fresh broker and fresh servers.
func runOnce(e *env, run int) (rows []row, err error) {
	d, conns := e.o.duration, e.o.conns
	b, err := startBroker(e.natsdBin, filepath.Join(e.tmp, "js-"+strconv.Itoa(run)))
	if err != nil {
		return nil, err
	}
	defer b.stop()
	quiet := func(what string) {
		if e.o.quiet > 0 && !waitQuiet(e.o.quiet) {
			fmt.Fprintf(os.Stderr, "  (other processes still busy after %s; measuring %s anyway)\n", e.o.quiet, what)
		}
	}
	add := func(r row) {
		r.run = run
		rows = append(rows, r)
		fmt.Fprintf(os.Stderr, "  %-34s %10.0f %s  p50 %-9s p99 %-9s p99.9 %-9s errors %d\n",
			r.name, r.res.rate(), r.unit, fmtDur(r.res.p50), fmtDur(r.res.p99), fmtDur(r.res.p999), r.res.errors)
	}

	// a. http ceiling.
	quiet(rowHTTP)
	r, err := measureHTTPCeiling(e, d, conns)
	if err != nil {
		return rows, err
	}
	add(r)

	// b. broker ceiling, then with the message the contract makes of a
	// webhook without an Idempotency-Key (Hook-Credential, no Nats-Msg-Id).
	quiet(rowBroker)
	if r, err = measureBroker(b, e.body, d, false); err != nil {
		return rows, err
	}
	add(r)
	quiet(rowBrokerM)
	if r, err = measureBroker(b, e.body, d, true); err != nil {
		return rows, err
	}
	add(r)

	// c. hand-written peer.
	quiet(rowPeer)
	if r, err = measurePeer(e, b, d, conns); err != nil {
		return rows, err
	}
	add(r)

	// d. the floor under hookgate's own work (floor.go), with the broker
	// where hookgate has it: in its process on the embedded default.
	quiet(rowFloor)
	embedded := e.o.gatewayMode != "proc"
	if r, err = measureFloor(e, b, run, d, conns, embedded); err != nil {
		return rows, err
	}
	add(r)

	// e. hookgate, then at half its peak rate, then with GitHub-style
	// signed deliveries; then closed loop and at half its peak with a fresh
	// Idempotency-Key per request, after the key-less rows so that these
	// meet no duplicate index the keyed ones filled. Every mode gets the
	// key ring the benchmark writes (signed.go).
	var g *hookgate
	var brk *broker
	ring := filepath.Join(e.tmp, "secret-keys-"+strconv.Itoa(run))
	if err := createKeyRing(ring); err != nil {
		return rows, err
	}
	serveArgs := []string{"--max-conns-per-ip", strconv.Itoa(e.o.maxConnsPerIP), "--secret-keys", ring}
	switch e.o.gatewayMode {
	case "inproc", "embedded":
		dir := filepath.Join(e.tmp, "embedded-"+strconv.Itoa(run))
		if e.o.gatewayMode == "inproc" {
			g, err = startHookgateInProc(dir, "", ring, e.o.maxConnsPerIP)
		} else {
			g, err = startHookgateEmbedded(e.hookgateBin, dir, serveArgs...)
		}
		if err == nil {
			brk = &broker{url: g.natsURL} // pid 0: its CPU is the gateway's
			if err = brk.connect(); err == nil {
				defer brk.nc.Close()
			}
		}
	default:
		brk = b
		g, err = startHookgateProc(e.hookgateBin, b, serveArgs...)
	}
	if err != nil {
		return rows, fmt.Errorf("hookgate: %w", err)
	}
	defer g.stop()
	t, err := hitsTarget(g.natsURL, g.addr, e.body)
	if err != nil {
		return rows, err
	}
	quiet(rowHG)
	if r, err = measureHookgate(e, g, brk, t, d, conns, 0); err != nil {
		return rows, err
	}
	add(r)
	if e.o.half {
		quiet(rowHGHalf)
		if r, err = measureHookgate(e, g, brk, t, d, conns, r.res.rate()/2); err != nil {
			return rows, err
		}
		add(r)
	}
	st, err := signedTarget(g.natsURL, g.addr, ring, e.body)
	if err != nil {
		return rows, err
	}
	quiet(rowHGSign)
	if r, err = measureHookgate(e, g, brk, st, d, conns, 0); err != nil {
		return rows, err
	}
	add(r)
	t.keyed = true
	quiet(rowHGKey)
	if r, err = measureHookgate(e, g, brk, t, d, conns, 0); err != nil {
		return rows, err
	}
	add(r)
	if e.o.half {
		quiet(rowHGKeyH)
		if r, err = measureHookgate(e, g, brk, t, d, conns, r.res.rate()/2); err != nil {
			return rows, err
		}
		add(r)
	}
	return rows, nil
}

func measureHTTPCeiling(e *env, d time.Duration, conns int) (row, error) {
	c, addr, err := startChild("http-ceiling", e.self, []string{"-role", "http-ceiling"}, 30*time.Second, readyAddr)
	if err != nil {
		return row{}, err
	}
	defer c.stop()
	t := target{addr: addr, path: hitsPath, token: "ceiling-token-0123456789"}
	if err := probe(t, e.body, 10*time.Second); err != nil {
		return row{}, err
	}
	mach := newMachineMeter()
	cpu := newCPUMeter(c.pid())
	res, err := e.gen.run(t, e.body, conns, d)
	if err != nil {
		return row{}, err
	}
	r := row{name: rowHTTP, gen: e.gen.name(), unit: "req/s", res: res, srvCPU: cpu.delta(), srvSys: cpu.syscalls(), brkCPU: -1, stored: -1, counted: res.ok2xx}
	r.foreign = mach.foreign(r.srvCPU, extGenCPU(e, res))
	r.srvRSS, r.srvHWM, _ = memStatus(c.pid())
	return r, nil
}

// measureBroker publishes the payload with PublishAsync, 256 in flight, to a
// file stream for d, then waits for every ack. With contractHeaders each
// message also carries the header hookgate stores with a key-less webhook
// (contractMsgs).
func measureBroker(b *broker, body []byte, d time.Duration, contractHeaders bool) (row, error) {
	const stream, subject = "BENCH", "bench.org.app.hits"
	if err := b.ensureStream(stream, "bench"); err != nil {
		return row{}, err
	}
	var asyncErrs atomic.Int64
	js, err := jetstream.New(b.nc,
		jetstream.WithPublishAsyncMaxPending(256),
		jetstream.WithPublishAsyncErrHandler(func(jetstream.JetStream, *nats.Msg, error) { asyncErrs.Add(1) }),
	)
	if err != nil {
		return row{}, err
	}
	before := b.streamMsgs(stream)
	mach := newMachineMeter()
	self := newCPUMeter(0)
	brk := newCPUMeter(b.pid)
	start := time.Now()
	deadline := start.Add(d)
	var sent, pubErrs int64
	msgs := newContractMsgs("bench", "app1", body)
	publish := func() error {
		if contractHeaders {
			_, err := js.PublishMsgAsync(msgs.next())
			return err
		}
		_, err := js.PublishAsync(subject, body)
		return err
	}
	const maxMsgs = 50_000_000 // a bound on the loop besides the clock
	for sent < maxMsgs {
		if sent%64 == 0 && !time.Now().Before(deadline) {
			break
		}
		if err := publish(); err != nil {
			pubErrs++
			continue
		}
		sent++
	}
	select {
	case <-js.PublishAsyncComplete():
	case <-time.After(30 * time.Second):
		return row{}, fmt.Errorf("broker ceiling: acks still missing 30s after the last publish")
	}
	elapsed := time.Since(start)
	stored := b.streamMsgs(stream) - before
	res := loadResult{requests: stored, ok2xx: stored, elapsed: elapsed, errors: pubErrs + asyncErrs.Load(), genCPU: -1}
	name, gen := rowBroker, "PublishAsync/256"
	if contractHeaders {
		name, gen = rowBrokerM, "PublishMsgAsync/256, Hook-Credential"
	}
	r := row{name: name, gen: gen, unit: "msg/s", res: res, srvCPU: self.delta(), brkCPU: brk.delta(), stored: stored, counted: sent}
	r.foreign = mach.foreign(r.brkCPU)
	r.srvRSS, r.srvHWM, _ = memStatus(b.pid)
	// The stream is not needed any more: keep the broker's disk and memory small.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = b.js.DeleteStream(ctx, stream)
	return r, nil
}

func measurePeer(e *env, b *broker, d time.Duration, conns int) (row, error) {
	if err := b.ensureStream(peerStream, "peer"); err != nil {
		return row{}, err
	}
	token := "peer-token-0123456789abcdef"
	c, addr, err := startChild("peer", e.self, []string{"-role", "peer", "-nats-url", b.url, "-token", token,
		"-stream", peerStream, "-prefix", "peer"}, 30*time.Second, readyAddr)
	if err != nil {
		return row{}, err
	}
	defer c.stop()
	t := target{addr: addr, path: hitsPath, token: token}
	if err := probe(t, e.body, 10*time.Second); err != nil {
		return row{}, err
	}
	before := b.streamMsgs(peerStream)
	mach := newMachineMeter()
	cpu := newCPUMeter(c.pid())
	brk := newCPUMeter(b.pid)
	res, err := e.gen.run(t, e.body, conns, d)
	if err != nil {
		return row{}, err
	}
	r := row{name: rowPeer, gen: e.gen.name(), unit: "req/s", res: res, srvCPU: cpu.delta(), brkCPU: brk.delta(), counted: res.ok2xx}
	r.foreign = mach.foreign(r.srvCPU, r.brkCPU, extGenCPU(e, res))
	r.srvRSS, r.srvHWM, _ = memStatus(c.pid())
	time.Sleep(200 * time.Millisecond) // acks of requests cut off at the end
	r.stored = b.streamMsgs(peerStream) - before
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_ = b.js.DeleteStream(ctx, peerStream)
	return r, nil
}

// measureHookgate drives hookgate closed loop (rate 0) or at a fixed rate,
// with a fresh key per request when t is keyed; a signed t only closed loop.
func measureHookgate(e *env, g *hookgate, b *broker, t target, d time.Duration, conns int, rate float64) (row, error) {
	before := b.streamMsgs(hooksStream)
	accepted := g.metricValue("hookgate_http_requests_total", `code="202"`)
	mach := newMachineMeter()
	var cpu, brk *cpuMeter
	if g.pid != 0 {
		cpu = newCPUMeter(g.pid)
		if b.pid != 0 {
			brk = newCPUMeter(b.pid)
		}
	} else {
		cpu = newCPUMeter(0) // gateway, embedded NATS and any in-process generator together
	}
	var (
		res  loadResult
		err  error
		name = hookgateRow(t, rate)
		gen  = e.gen.name()
	)
	if rate > 0 {
		if t.sig != "" {
			return row{}, fmt.Errorf("%s: rate-gen sends no signed requests", name)
		}
		gen = fmt.Sprintf("rate-gen @ %.0f/s", rate)
		from := time.Now()
		res, err = rateGen{self: e.self}.run(t, conns, d, rate)
		procs := map[string]*child{}
		if g.proc != nil {
			procs["gateway"] = g.proc
		}
		if b.pid != 0 && b.c != nil {
			procs["broker"] = b.c
		}
		if err == nil && len(procs) > 0 {
			res.note = joinNote(res.note, gcNote(res.slow, from, time.Now(), procs))
		}
	} else {
		res, err = e.gen.run(t, e.body, conns, d)
	}
	if err != nil {
		return row{}, err
	}
	r := row{name: name, gen: gen, unit: "req/s", res: res, srvCPU: cpu.delta(), srvSys: cpu.syscalls(), brkCPU: -1, counted: res.ok2xx, rateGoal: rate}
	if brk != nil {
		r.brkCPU = brk.delta()
	}
	inProcGen := rate == 0 && gen == "go"
	ext := 0.0
	if !inProcGen {
		ext = res.genCPU
	}
	if g.pid == 0 {
		r.foreign = mach.foreign(ext)
		if inProcGen {
			// One process: gateway, broker and generator cannot be told apart.
			r.res.genCPU = -1
			r.res.note = joinNote(r.res.note, "server CPU and RSS include the generator")
		}
	} else {
		r.foreign = mach.foreign(r.srvCPU, r.brkCPU, ext)
	}
	pid := g.pid
	if pid == 0 {
		pid = os.Getpid()
	}
	r.srvRSS, r.srvHWM, _ = memStatus(pid)
	time.Sleep(200 * time.Millisecond)
	r.stored = b.streamMsgs(hooksStream) - before
	if n := g.metricValue("hookgate_http_requests_total", `code="202"`); n >= 0 && accepted >= 0 {
		// The gateway may count more: replies cut off when the generator stopped.
		if got := int64(n - accepted); got < r.counted {
			r.res.note = joinNote(r.res.note, fmt.Sprintf("gateway counted only %d 202s", got))
		}
	}
	return r, nil
}

// hookgateRow names the row that drives t closed loop (rate 0) or at a
// fixed rate.
func hookgateRow(t target, rate float64) string {
	switch {
	case t.sig != "":
		return rowHGSign
	case t.keyed && rate > 0:
		return rowHGKeyH
	case t.keyed:
		return rowHGKey
	case rate > 0:
		return rowHGHalf
	}
	return rowHG
}

func joinNote(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

func readyAddr(line string) (string, bool) { return cutPrefix(line, "ready ") }

func cutPrefix(s, p string) (string, bool) {
	if len(s) >= len(p) && s[:len(p)] == p {
		return s[len(p):], true
	}
	return "", false
}

// extGenCPU is the generator's CPU when it ran as its own process (wrk).
func extGenCPU(e *env, res loadResult) float64 {
	if e.gen.name() == "wrk" {
		return res.genCPU
	}
	return 0
}
