package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// The -rss mode watches the broker's memory while hookgate runs at half its
// peak for a while: the duplicate index of a keyed stream grows for the
// whole duplicate window, and a key-less stream should not grow at all.

// rssFirst is when the first sample of the broker's RSS is taken.
const rssFirst = 10 * time.Second

// rssTarget is the most the key-less broker's RSS may grow from rssFirst to
// the end.
const rssTarget = 1.5

// rssRow is one drive at half peak.
type rssRow struct {
	keyed      bool
	peak       float64 // req/s, closed loop for -duration
	res        loadResult
	rate       float64 // the target rate: half of peak
	first, end int64   // bytes, the broker's VmRSS at rssFirst and at the end
	hwm        int64   // bytes, the broker's VmHWM at the end
	window     time.Duration
}

func (r rssRow) growth() float64 {
	if r.first <= 0 {
		return 0
	}
	return float64(r.end) / float64(r.first)
}

// runRSS drives a fresh broker and gateway key-less, then fresh ones with a
// fresh key per request, and reports the broker's RSS.
func runRSS(e *env) error {
	start := time.Now()
	var rows []rssRow
	for _, keyed := range []bool{false, true} {
		r, err := measureRSS(e, keyed)
		if err != nil {
			return fmt.Errorf("-rss, %s: %w", keyedName(keyed), err)
		}
		rows = append(rows, r)
	}
	rep := rssReport(e, rows, time.Since(start))
	fmt.Print(rep)
	if e.o.out != "" {
		return os.WriteFile(e.o.out, []byte(rep), 0o644)
	}
	return nil
}

func keyedName(keyed bool) string {
	if keyed {
		return "fresh key per request"
	}
	return "key-less"
}

// measureRSS starts a broker and a gateway as -gateway says (embedded: the
// gateway's process is the broker), measures the gateway's peak closed loop
// for -duration, then drives it at half that rate for -rss, sampling the
// broker's VmRSS at rssFirst and at the end.
func measureRSS(e *env, keyed bool) (rssRow, error) {
	name := "rss-" + map[bool]string{false: "keyless", true: "keyed"}[keyed]
	dir := filepath.Join(e.tmp, name)
	maxConns := []string{"--max-conns-per-ip", strconv.Itoa(e.o.maxConnsPerIP)}
	var (
		g      *hookgate
		broker int // pid
		err    error
	)
	if e.o.gatewayMode == "embedded" {
		if g, err = startHookgateEmbedded(e.hookgateBin, dir, maxConns...); err != nil {
			return rssRow{}, err
		}
		broker = g.pid
	} else {
		b, err := startBroker(e.natsdBin, dir)
		if err != nil {
			return rssRow{}, err
		}
		defer b.stop()
		if g, err = startHookgateProc(e.hookgateBin, b, maxConns...); err != nil {
			return rssRow{}, err
		}
		broker = b.pid
	}
	defer g.stop()
	t, err := hitsTarget(g.natsURL, g.addr, e.body)
	if err != nil {
		return rssRow{}, err
	}
	t.keyed = keyed
	r := rssRow{keyed: keyed}
	if r.window, err = duplicateWindow(g.natsURL, hooksStream); err != nil {
		return rssRow{}, err
	}

	quiet := func(what string) {
		if e.o.quiet > 0 && !waitQuiet(e.o.quiet) {
			fmt.Fprintf(os.Stderr, "  (other processes still busy after %s; measuring %s anyway)\n", e.o.quiet, what)
		}
	}
	quiet("the peak")
	peak, err := e.gen.run(t, e.body, e.o.conns, e.o.duration)
	if err != nil {
		return rssRow{}, err
	}
	r.peak, r.rate = peak.rate(), peak.rate()/2
	fmt.Fprintf(os.Stderr, "  %s: peak %.0f req/s; %s at %.0f/s ...\n", keyedName(keyed), r.peak, e.o.rss, r.rate)
	quiet("the drive at half peak")

	// Sample while rate-gen runs: at rssFirst and at the end of the drive.
	from := time.Now()
	stop := make(chan struct{})
	sampled := make(chan [2]int64, 1)
	go func() {
		var rss [2]int64
		for i, at := range []time.Duration{rssFirst, e.o.rss} {
			select {
			case <-time.After(time.Until(from.Add(at))):
				rss[i], _, _ = memStatus(broker)
			case <-stop:
			}
		}
		sampled <- rss
	}()
	r.res, err = rateGen{self: e.self}.run(t, e.o.conns, e.o.rss, r.rate)
	close(stop)
	rss := <-sampled
	if err != nil {
		return rssRow{}, err
	}
	r.first, r.end = rss[0], rss[1]
	_, r.hwm, _ = memStatus(broker)
	return r, nil
}

// duplicateWindow returns the duplicate window of the stream the gateway
// made: the benchmark leaves its creation to the gateway, with the gateway's
// default --dedup-window.
func duplicateWindow(natsURL, stream string) (time.Duration, error) {
	nc, err := nats.Connect(natsURL, nats.Name("bench-rss"))
	if err != nil {
		return 0, err
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := js.Stream(ctx, stream)
	if err != nil {
		return 0, fmt.Errorf("stream %s: %w", stream, err)
	}
	return s.CachedInfo().Config.Duplicates, nil
}

func rssReport(e *env, rows []rssRow, took time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Broker memory: hookgate at half its peak for %s\n\n", e.o.rss)
	fmt.Fprintf(&b, "Command: `go run ./bench/load %s` (took %s)\n\n", strings.Join(os.Args[1:], " "), took.Round(time.Second))
	b.WriteString(machine(e, true))
	brokerIs := map[string]string{
		"proc":     "the nats-server child (bench/natsd)",
		"embedded": "the `hookgate serve` process, gateway and embedded broker in one",
	}[e.o.gatewayMode]
	fmt.Fprintf(&b, "- broker: %s; a fresh broker and store for each row\n\n", brokerIs)
	fmt.Fprintf(&b, "| mode | Idempotency-Key | peak (closed loop, %s) | rate (half peak, rate-gen) | p99 | errors | broker VmRSS at %s MiB | at end (%s) MiB | end / %s | broker VmHWM MiB | duplicate window |\n",
		e.o.duration, rssFirst, e.o.rss, rssFirst)
	b.WriteString("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, r := range rows {
		errs := strconv.FormatInt(r.res.errors, 10)
		if r.res.missed > 0 {
			errs += fmt.Sprintf(" (%d not sent in time)", r.res.missed)
		}
		fmt.Fprintf(&b, "| %s | %s | %.0f req/s | %.0f req/s | %s | %s | %.1f | %.1f | %.2f× | %.1f | %s |\n",
			e.o.gatewayMode, keyedName(r.keyed), r.peak, r.res.rate(), fmtDur(r.res.p99), errs,
			float64(r.first)/(1<<20), float64(r.end)/(1<<20), r.growth(), float64(r.hwm)/(1<<20), r.window)
	}
	fmt.Fprintf(&b, `
- peak: hookgate closed loop for -duration, with fresh keys or none as the row, on the row's fresh broker; the
  drive at half of it follows on the same broker, so a keyed row's duplicate index starts with the peak's ids.
- VmRSS of the broker process from /proc/<pid>/status, %s after the drive started and at its end.
- duplicate window: of the HOOKS stream, which hookgate serve creates with its default --dedup-window. With a
  key per request the broker indexes every message id for that long, so its RSS grows until the window is full
  (no target); a key-less message carries no id and the broker indexes nothing.
`, rssFirst)
	for _, r := range rows {
		if r.keyed {
			continue
		}
		fmt.Fprintf(&b, "\nTarget: the key-less broker's RSS at the end within %.1f× of its RSS at %s: %.2f× (%s).\n",
			rssTarget, rssFirst, r.growth(), metOrNot(r.first > 0 && r.growth() <= rssTarget))
	}
	return b.String()
}

func metOrNot(ok bool) string {
	if ok {
		return "met"
	}
	return "not met"
}
