package main

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"time"
)

// machine describes where the numbers come from.
func machine(e *env, withGen bool) string {
	var b strings.Builder
	cpu := "unknown"
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				cpu = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	gov, _ := exec.Command("go", "version").Output()
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	fmt.Fprintf(&b, "- nproc: %d\n", runtime.NumCPU())
	fmt.Fprintf(&b, "- CPU: %s\n", cpu)
	fmt.Fprintf(&b, "- go: %s\n", strings.TrimSpace(string(gov)))
	fmt.Fprintf(&b, "- kernel: %s\n", strings.TrimSpace(string(kernel)))
	var gen string
	if w, ok := e.gen.(wrkGen); ok {
		out, _ := exec.Command(w.bin, "-v").CombinedOutput()
		first, _, _ := strings.Cut(string(out), "\n")
		gen = fmt.Sprintf("%s (`%s`), -t1 -c%d", w.bin, strings.TrimSpace(first), e.o.conns)
	} else {
		gen = fmt.Sprintf("Go fasthttp.HostClient, %d keep-alive connections, closed loop", e.o.conns)
	}
	if withGen {
		fmt.Fprintf(&b, "- load generator: %s\n", gen)
	}
	fmt.Fprintf(&b, "- body: %d-byte JSON object, `Authorization: Bearer` (signed row: `?credential=` and `X-Hub-Signature-256`), keep-alive, loopback\n", len(e.body))
	fmt.Fprintf(&b, "- hookgate: %s\n", map[string]string{
		"proc":     "`hookgate serve --nats-url` (child process) against bench/natsd (child process), file storage",
		"embedded": "`hookgate serve` with its embedded NATS server (child process, as a new user runs it; server CPU is gateway and broker together), file storage",
		"inproc":   "gateway.Start in the benchmark process with an embedded NATS server, file storage",
	}[e.o.gatewayMode])
	return b.String()
}

func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "-"
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	default:
		return fmt.Sprintf("%.0fms", float64(d)/float64(time.Millisecond))
	}
}

func fmtCPU(r row, cpu float64) string {
	if cpu < 0 {
		return "-"
	}
	return fmt.Sprintf("%.3f", r.per10k(cpu))
}

func fmtMiB(n int64) string {
	if n <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.0f", float64(n)/(1<<20))
}

func check(r row) string {
	if r.stored < 0 {
		return "n/a"
	}
	if r.stored >= r.counted {
		return "ok"
	}
	return fmt.Sprintf("**%d missing**", r.counted-r.stored)
}

const tableHead = "| run | measurement | generator | rate | p50 | p99 | p99.9 | server CPU s/10k | broker CPU s/10k | gen CPU s/10k | server RSS / peak MiB | errors | 2xx counted | stored | stored ≥ 2xx | other procs CPU s |\n" +
	"|---:|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|\n"

func tableRow(r row) string {
	stored := "-"
	if r.stored >= 0 {
		stored = fmt.Sprint(r.stored)
	}
	gen := r.gen
	if r.res.note != "" {
		gen += " (" + r.res.note + ")"
	}
	if r.res.missed > 0 {
		gen += fmt.Sprintf(" (%d not sent in time)", r.res.missed)
	}
	return fmt.Sprintf("| %d | %s | %s | %.0f %s | %s | %s | %s | %s | %s | %s | %s / %s | %d | %d | %s | %s | %.1f |\n",
		r.run, r.name, gen, r.res.rate(), r.unit, fmtDur(r.res.p50), fmtDur(r.res.p99), fmtDur(r.res.p999),
		fmtCPU(r, r.srvCPU), fmtCPU(r, r.brkCPU), fmtCPU(r, r.res.genCPU), fmtMiB(r.srvRSS), fmtMiB(r.srvHWM),
		r.res.errors, r.counted, stored, check(r), r.foreign)
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func report(e *env, rows []row, took time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "## Load: hookgate against its references\n\n")
	fmt.Fprintf(&b, "Command: `go run ./bench/load %s` (%d runs, %s per measurement, took %s)\n\n",
		strings.Join(os.Args[1:], " "), e.o.runs, e.o.duration, took.Round(time.Second))
	b.WriteString(machine(e, true))
	b.WriteString("\n")
	b.WriteString(tableHead)
	for _, r := range rows {
		b.WriteString(tableRow(r))
	}
	b.WriteString(notes)
	b.WriteString(medians(rows))
	b.WriteString(ratios(e, rows))
	b.WriteString(floorRatios(e, rows))
	return b.String()
}

const notes = `
- rate: completed responses (broker ceilings: stored messages) per second.
- broker ceiling, hookgate's message: the same payload with the one header hookgate stores with a webhook that
  has no Idempotency-Key, Hook-Credential, as hookgate publishes it; not one of the issue's references, shown to
  tell the broker's cost of the stored message from the gateway's own work. The combined limit uses the
  bare-body broker ceiling.
- floor: fasthttp, one publish of the body as hookgate's lean message through hookgate's bus.Publisher, the
  wait for its ack, and a 202 with its sequence; no credential check, validation, metrics or logs (floor.go).
  With -gateway embedded its JetStream runs in its own process, as the embedded gateway's does.
- hookgate, signed: every request is a GitHub-style signed delivery of the same body: no Authorization, the
  credential named by ?credential=<id>, and X-Hub-Signature-256 (sha256= and the hex HMAC-SHA256 of the body with
  the credential's signing secret, computed once); no X-GitHub-Delivery, so its webhooks are key-less like the
  hookgate row's. The gateway looks the credential up by id and verifies the signature over the body on every
  request; measured after the key-less bearer rows, on the same gateway, closed loop only.
- hookgate, fresh key: every request carries an Idempotency-Key never sent before, so hookgate also stores
  Nats-Msg-Id (derived from the key) and Hook-Idempotency-Key, and the broker indexes each id for the stream's
  duplicate window (2 minutes, hookgate's default); measured after the key-less rows, on the same gateway.
- gateway CPU/req vs http ceiling CPU/req (ratios): hookgate's server CPU s/10k over the http ceiling's, per run;
  with -gateway embedded the serve process holds the broker too, so its CPU includes the broker's.
- server CPU: the process serving HTTP (ceiling server, peer, hookgate); for the broker ceilings it is the publishing client.
- broker CPU: the nats-server child; "-" where there is no broker or it shares the gateway's process.
- read+write syscalls/req (floor table): the server process's read and write system calls (/proc/<pid>/io
  syscr + syscw: socket reads and writes, including reads that found nothing yet, and with -gateway embedded
  the broker's file writes) per completed request.
- CPU is user+system seconds from /proc/<pid>/stat (10 ms ticks), per 10,000 completed requests.
- RSS: VmRSS / VmHWM of the server process after the measurement (broker ceilings: the nats-server's).
- stored: messages the stream gained; it may exceed 2xx by the requests cut off when the generator stopped.
- other procs CPU s: CPU seconds that processes outside the benchmark used during the measurement
  (/proc/stat busy time minus the benchmark's own processes); well above 0 means the figures are skewed.
`

// medians is the table of each measurement's medians over the runs.
func medians(rows []row) string {
	var b strings.Builder
	b.WriteString("\n### Medians over the runs\n\n")
	b.WriteString("| measurement | rate | p50 | p99 | p99.9 | server CPU s/10k | broker CPU s/10k | server RSS MiB |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, name := range []string{rowHTTP, rowBroker, rowBrokerM, rowPeer, rowFloor, rowHG, rowHGSign, rowHGHalf, rowHGKey, rowHGKeyH} {
		var rate, p50, p99, p999, cpu, brk, rss []float64
		unit := ""
		for _, r := range rows {
			if r.name != name {
				continue
			}
			unit = r.unit
			rate = append(rate, r.res.rate())
			p50 = append(p50, float64(r.res.p50))
			p99 = append(p99, float64(r.res.p99))
			p999 = append(p999, float64(r.res.p999))
			cpu = append(cpu, r.per10k(r.srvCPU))
			if r.brkCPU >= 0 {
				brk = append(brk, r.per10k(r.brkCPU))
			}
			rss = append(rss, float64(r.srvRSS))
		}
		if len(rate) == 0 {
			continue
		}
		brkS := "-"
		if len(brk) > 0 {
			brkS = fmt.Sprintf("%.3f", median(brk))
		}
		fmt.Fprintf(&b, "| %s | %.0f %s | %s | %s | %s | %.3f | %s | %s |\n", name, median(rate), unit,
			fmtDur(time.Duration(median(p50))), fmtDur(time.Duration(median(p99))), fmtDur(time.Duration(median(p999))),
			median(cpu), brkS, fmtMiB(int64(median(rss))))
	}
	return b.String()
}

// ratios is hookgate's ratios per run against its references, with their
// medians, the targets for the mode that was run, the signed row's peak over
// the bearer row's, and the keyed rows' ratios to the key-less ones.
func ratios(e *env, rows []row) string {
	var b strings.Builder
	b.WriteString("\n### hookgate's ratios\n\n")
	b.WriteString("| run | hookgate req/s | vs net/http peer | combined limit 1/(1/http+1/broker) | vs combined limit | p99 at half peak (target rate) | gateway CPU/req vs http ceiling CPU/req | combined limit with hookgate's message | vs it |\n" +
		"|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var m ratioMedians
	var vsPeer, vsComb, vsCombMsg, halfP99, cpuRatio, signPeak, keyPeak, keyHalfP99 []float64
	for run := 1; run <= e.o.runs; run++ {
		get := func(name string) (row, bool) { return rowOf(rows, run, name) }
		if r, ok := get(rowHGSign); ok {
			if hg, ok := get(rowHG); ok && hg.res.rate() > 0 {
				signPeak = append(signPeak, r.res.rate()/hg.res.rate())
			}
		}
		if r, ok := get(rowHGKey); ok {
			if hg, ok := get(rowHG); ok && hg.res.rate() > 0 {
				keyPeak = append(keyPeak, r.res.rate()/hg.res.rate())
			}
		}
		if r, ok := get(rowHGKeyH); ok {
			keyHalfP99 = append(keyHalfP99, float64(r.res.p99))
		}
		hg, ok1 := get(rowHG)
		pr, ok2 := get(rowPeer)
		hc, ok3 := get(rowHTTP)
		bc, ok4 := get(rowBroker)
		if !ok1 || !ok2 || !ok3 || !ok4 {
			continue
		}
		comb := 1 / (1/hc.res.rate() + 1/bc.res.rate())
		vp, vc := hg.res.rate()/pr.res.rate(), hg.res.rate()/comb
		vsPeer, vsComb = append(vsPeer, vp), append(vsComb, vc)
		half := "-"
		if h, ok := get(rowHGHalf); ok {
			half = fmt.Sprintf("%s (%.0f/s)", fmtDur(h.res.p99), h.rateGoal)
			halfP99 = append(halfP99, float64(h.res.p99))
		}
		cr := "-"
		if c := hc.per10k(hc.srvCPU); c > 0 {
			v := hg.per10k(hg.srvCPU) / c
			cr = fmt.Sprintf("%.2f×", v)
			cpuRatio = append(cpuRatio, v)
		}
		combMsg, vcm := "-", "-"
		if bm, ok := get(rowBrokerM); ok {
			c := 1 / (1/hc.res.rate() + 1/bm.res.rate())
			combMsg, vcm = fmt.Sprintf("%.0f /s", c), fmt.Sprintf("%.2f×", hg.res.rate()/c)
			vsCombMsg = append(vsCombMsg, hg.res.rate()/c)
		}
		fmt.Fprintf(&b, "| %d | %.0f | %.2f× | %.0f /s | %.2f× | %s | %s | %s | %s |\n", run, hg.res.rate(), vp, comb, vc, half, cr, combMsg, vcm)
	}
	m.vsPeer, m.vsComb, m.halfP99, m.cpuRatio = medianOf(vsPeer), medianOf(vsComb), medianOf(halfP99), medianOf(cpuRatio)
	if len(vsPeer) > 0 {
		fmt.Fprintf(&b, "| median | | %s | | %s | %s | %s | | %s |\n",
			fmtRatio(m.vsPeer), fmtRatio(m.vsComb), fmtDur(time.Duration(m.halfP99.v)), fmtRatio(m.cpuRatio), fmtRatio(medianOf(vsCombMsg)))
		b.WriteString("\n")
		gs := goals(e.o.gatewayMode)
		for _, g := range gs {
			b.WriteString(g.line(m))
		}
		if len(gs) == 0 {
			fmt.Fprintf(&b, "- no targets for -gateway %s: they are set for embedded and proc\n", e.o.gatewayMode)
		}
	}
	if len(signPeak) > 0 {
		fmt.Fprintf(&b, "\nsigned / bearer peak: %s (median %s; GitHub-style X-Hub-Signature-256, no target).\n",
			joinEach(signPeak, func(v float64) string { return fmt.Sprintf("%.2f×", v) }), fmtRatio(medianOf(signPeak)))
	}
	if len(keyPeak) > 0 {
		fmt.Fprintf(&b, "\nWith a fresh Idempotency-Key per request (no target): peak %s of the key-less peak (median %s)",
			joinEach(keyPeak, func(v float64) string { return fmt.Sprintf("%.2f×", v) }), fmtRatio(medianOf(keyPeak)))
		if len(keyHalfP99) > 0 {
			fmt.Fprintf(&b, "; p99 at half its own peak %s (median %s; key-less %s)",
				joinEach(keyHalfP99, func(v float64) string { return fmtDur(time.Duration(v)) }),
				fmtDur(time.Duration(median(keyHalfP99))), fmtDur(time.Duration(m.halfP99.v)))
		}
		b.WriteString(".\n")
	}
	return b.String()
}

// joinEach formats each of v, comma-separated.
func joinEach(v []float64, f func(float64) string) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = f(x)
	}
	return strings.Join(s, ", ")
}

// measured is a median, or nothing when no run measured it.
type measured struct {
	v  float64
	ok bool
}

func medianOf(v []float64) measured { return measured{median(v), len(v) > 0} }

func fmtRatio(m measured) string {
	if !m.ok {
		return "-"
	}
	return fmt.Sprintf("%.2f×", m.v)
}

// ratioMedians are the medians over the runs that the targets judge.
type ratioMedians struct {
	vsPeer, vsComb, halfP99, cpuRatio measured
}

// goal is one of the targets hookgate's figures are held to, judged on the
// medians over the runs.
type goal struct {
	what string
	get  func(ratioMedians) measured
	met  func(float64) bool
	dur  bool // the figure is a duration; else a ratio
}

func (g goal) line(m ratioMedians) string {
	v := g.get(m)
	if !v.ok {
		return fmt.Sprintf("- target: %s: not measured\n", g.what)
	}
	shown := fmtRatio(v)
	if g.dur {
		shown = fmtDur(time.Duration(v.v))
	}
	return fmt.Sprintf("- target: %s: %s (%s)\n", g.what, shown, metOrNot(g.met(v.v)))
}

// goals are the targets of each -gateway mode; inproc, a profiling aid, has none.
func goals(mode string) []goal {
	var (
		vsPeer   = func(m ratioMedians) measured { return m.vsPeer }
		vsComb   = func(m ratioMedians) measured { return m.vsComb }
		cpuRatio = func(m ratioMedians) measured { return m.cpuRatio }
		p99Half  = goal{"p99 at half peak (key-less) under 5 ms", func(m ratioMedians) measured { return m.halfP99 },
			func(v float64) bool { return time.Duration(v) < slowAfter }, true}
	)
	switch mode {
	case "embedded":
		return []goal{
			{"hookgate at least 2× the net/http peer", vsPeer, func(v float64) bool { return v >= 2 }, false},
			{"hookgate at least 0.85 of the combined limit", vsComb, func(v float64) bool { return v >= 0.85 }, false},
			p99Half,
		}
	case "proc":
		return []goal{
			{"hookgate at least 0.75 of the combined limit", vsComb, func(v float64) bool { return v >= 0.75 }, false},
			{"gateway CPU per request at most 2× the http ceiling's", cpuRatio, func(v float64) bool { return v <= 2 }, false},
			p99Half,
		}
	}
	return nil
}

// floorRatios sets hookgate and the targets' references against the floor
// (floor.go) per run: what the wait for an ack costs any gateway, and what
// hookgate's checks cost on top.
func floorRatios(e *env, rows []row) string {
	var b strings.Builder
	b.WriteString("\n### Against the floor (fasthttp + one publish and its ack, no checks)\n\n")
	b.WriteString("| run | floor req/s | floor vs combined limit | floor CPU/req vs http ceiling CPU/req | hookgate vs floor, rate | hookgate CPU/req vs floor CPU/req | read+write syscalls/req: http ceiling, floor, hookgate |\n" +
		"|---:|---:|---:|---:|---:|---:|---|\n")
	var vsComb, cpuVsHTTP, hgRate, hgCPU []float64
	for run := 1; run <= e.o.runs; run++ {
		get := func(name string) (row, bool) { return rowOf(rows, run, name) }
		fl, ok1 := get(rowFloor)
		hc, ok2 := get(rowHTTP)
		bc, ok3 := get(rowBroker)
		hg, ok4 := get(rowHG)
		if !ok1 || !ok2 || !ok3 || !ok4 || fl.res.rate() == 0 || hc.per10k(hc.srvCPU) == 0 || fl.per10k(fl.srvCPU) == 0 {
			continue
		}
		comb := 1 / (1/hc.res.rate() + 1/bc.res.rate())
		v := []float64{fl.res.rate() / comb, fl.per10k(fl.srvCPU) / hc.per10k(hc.srvCPU), hg.res.rate() / fl.res.rate(), hg.per10k(hg.srvCPU) / fl.per10k(fl.srvCPU)}
		vsComb, cpuVsHTTP, hgRate, hgCPU = append(vsComb, v[0]), append(cpuVsHTTP, v[1]), append(hgRate, v[2]), append(hgCPU, v[3])
		perReq := func(r row) float64 { return float64(r.srvSys) / float64(max(1, r.res.requests)) }
		fmt.Fprintf(&b, "| %d | %.0f | %.2f× | %.2f× | %.2f× | %.2f× | %.2f, %.2f, %.2f |\n", run, fl.res.rate(), v[0], v[1], v[2], v[3],
			perReq(hc), perReq(fl), perReq(hg))
	}
	if len(vsComb) > 0 {
		fmt.Fprintf(&b, "| median | | %s | %s | %s | %s | |\n", fmtRatio(medianOf(vsComb)), fmtRatio(medianOf(cpuVsHTTP)), fmtRatio(medianOf(hgRate)), fmtRatio(medianOf(hgCPU)))
	}
	return b.String()
}

// rowOf finds the row name of run.
func rowOf(rows []row, run int, name string) (row, bool) {
	for _, r := range rows {
		if r.run == run && r.name == name {
			return r, true
		}
	}
	return row{}, false
}
