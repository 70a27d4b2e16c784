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
	fmt.Fprintf(&b, "- body: %d-byte JSON object, `Authorization: Bearer`, keep-alive, loopback\n", len(e.body))
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
	b.WriteString(`
- rate: completed responses (broker ceilings: stored messages) per second.
- broker ceiling, hookgate's message: the same payload with the headers the contract requires on every stored
  message (Nats-Msg-Id unique per message, Hook-Org, Hook-App, Hook-Kind, Hook-Credential, Hook-Received-At,
  Content-Type), as hookgate publishes it; not one of the issue's references, shown to tell the broker's
  cost of the contract's message from the gateway's own work.
- server CPU: the process serving HTTP (ceiling server, peer, hookgate); for the broker ceilings it is the publishing client.
- broker CPU: the nats-server child; "-" where there is no broker or it shares the gateway's process.
- CPU is user+system seconds from /proc/<pid>/stat (10 ms ticks), per 10,000 completed requests.
- RSS: VmRSS / VmHWM of the server process after the measurement (broker ceilings: the nats-server's).
- stored: messages the stream gained; it may exceed 2xx by the requests cut off when the generator stopped.
- other procs CPU s: CPU seconds that processes outside the benchmark used during the measurement
  (/proc/stat busy time minus the benchmark's own processes); well above 0 means the figures are skewed.
`)

	// Medians per measurement.
	b.WriteString("\n### Medians over the runs\n\n")
	b.WriteString("| measurement | rate | p50 | p99 | p99.9 | server CPU s/10k | broker CPU s/10k | server RSS MiB |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, name := range []string{rowHTTP, rowBroker, rowBrokerM, rowPeer, rowHG, rowHGHalf} {
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

	// Ratios per run.
	b.WriteString("\n### hookgate's ratios\n\n")
	b.WriteString("| run | hookgate req/s | vs net/http peer | combined limit 1/(1/http+1/broker) | vs combined limit | p99 at half peak (target rate) | combined limit with hookgate's message | vs it |\n|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	var vsPeer, vsComb, vsCombMsg, halfP99 []float64
	for run := 1; run <= e.o.runs; run++ {
		get := func(name string) (row, bool) {
			for _, r := range rows {
				if r.run == run && r.name == name {
					return r, true
				}
			}
			return row{}, false
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
		combMsg, vcm := "-", "-"
		if bm, ok := get(rowBrokerM); ok {
			c := 1 / (1/hc.res.rate() + 1/bm.res.rate())
			combMsg, vcm = fmt.Sprintf("%.0f /s", c), fmt.Sprintf("%.2f×", hg.res.rate()/c)
			vsCombMsg = append(vsCombMsg, hg.res.rate()/c)
		}
		fmt.Fprintf(&b, "| %d | %.0f | %.2f× | %.0f /s | %.2f× | %s | %s | %s |\n", run, hg.res.rate(), vp, comb, vc, half, combMsg, vcm)
	}
	if len(vsPeer) > 0 {
		half := "-"
		if len(halfP99) > 0 {
			half = fmtDur(time.Duration(median(halfP99)))
		}
		vcm := "-"
		if len(vsCombMsg) > 0 {
			vcm = fmt.Sprintf("%.2f×", median(vsCombMsg))
		}
		fmt.Fprintf(&b, "| median | | %.2f× | | %.2f× | %s | | %s |\n", median(vsPeer), median(vsComb), half, vcm)
	}
	return b.String()
}
