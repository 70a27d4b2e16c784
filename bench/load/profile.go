package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"strings"
)

// runProfile runs the gateway in this process (gateway.Start), drives it for
// e.o.duration and writes a CPU profile and two allocation profiles (before
// and after the load, for pprof -base). With -gateway proc the broker is the
// natsd child, as for serve --nats-url, so the profile holds the gateway
// alone; otherwise it is embedded and in the profile too. With wrk or
// -profile-rate the generator is another process; with -gen go and the
// closed loop it shows up in the profile as well.
func runProfile(e *env) error {
	dir := filepath.Join(e.tmp, "embedded-profile")
	natsURL, what := "", "gateway + embedded NATS"
	if e.o.gatewayMode == "proc" {
		b, err := startBroker(e.natsdBin, filepath.Join(e.tmp, "natsd-profile"))
		if err != nil {
			return err
		}
		defer b.stop()
		natsURL, what = b.url, "the gateway alone; natsd is a child"
	}
	g, err := startHookgateInProc(dir, natsURL, "", e.o.maxConnsPerIP)
	if err != nil {
		return err
	}
	defer g.stop()
	t, err := hitsTarget(g.natsURL, g.addr, e.body)
	if err != nil {
		return err
	}
	if e.o.quiet > 0 && !waitQuiet(e.o.quiet) {
		fmt.Fprintf(os.Stderr, "(other processes still busy after %s; profiling anyway)\n", e.o.quiet)
	}
	if e.o.warmup > 0 {
		// State a measurement after the peak row meets: a full duplicate
		// window, a grown heap.
		if _, err := e.gen.run(t, e.body, e.o.conns, e.o.warmup); err != nil {
			return fmt.Errorf("warm-up: %w", err)
		}
	}
	memprofile := e.o.memprofile
	if memprofile == "" {
		memprofile = e.o.cpuprofile + ".allocs"
	}
	base := memprofile + ".base"
	if err := writeProfile("allocs", base); err != nil {
		return err
	}
	f, err := os.Create(e.o.cpuprofile)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := pprof.StartCPUProfile(f); err != nil {
		return err
	}
	if e.o.trace != "" {
		tf, err := os.Create(e.o.trace)
		if err != nil {
			return err
		}
		defer tf.Close()
		if err := trace.Start(tf); err != nil {
			return err
		}
	}
	cpu := newCPUMeter(0)
	var res loadResult
	genName := e.gen.name()
	if e.o.profileRate > 0 {
		genName = fmt.Sprintf("rate-gen @ %.0f/s", e.o.profileRate)
		res, err = rateGen{self: e.self}.run(t, e.o.conns, e.o.duration, e.o.profileRate)
	} else {
		res, err = e.gen.run(t, e.body, e.o.conns, e.o.duration)
	}
	if e.o.trace != "" {
		trace.Stop()
	}
	pprof.StopCPUProfile()
	if err != nil {
		return err
	}
	spent := cpu.delta()
	if err := writeProfile("allocs", memprofile); err != nil {
		return err
	}

	fmt.Printf("## CPU profile: hookgate in-process under %s load\n\n", genName)
	if res.note != "" {
		fmt.Printf("(%s)\n\n", res.note)
	}
	if e.gen.name() == "go" && e.o.profileRate == 0 {
		what += "; + the Go generator"
	}
	fmt.Printf("%.0f req/s, p50 %s, p99 %s, p99.9 %s, %d errors; this process (%s) used %.3f CPU s per 10k requests\n\n",
		res.rate(), fmtDur(res.p50), fmtDur(res.p99), fmtDur(res.p999), res.errors,
		what, spent/float64(max(1, res.requests))*10000)
	fmt.Printf("CPU profile: %s\nallocations: %s (base before the load, for -base: %s)\n\n", e.o.cpuprofile, memprofile, base)
	cmds := [][]string{
		{"go", "tool", "pprof", "-top", "-cum", "-nodecount=15", e.o.cpuprofile},
		{"go", "tool", "pprof", "-top", "-nodecount=15", e.o.cpuprofile},
		{"go", "tool", "pprof", "-top", "-cum", "-focus=hookgate/hookgate/", "-nodecount=20", e.o.cpuprofile},
		{"go", "tool", "pprof", "-top", "-sample_index=alloc_space", "-nodecount=15", "-base", base, memprofile},
		{"go", "tool", "pprof", "-top", "-sample_index=alloc_objects", "-nodecount=15", "-base", base, memprofile},
		{"go", "tool", "pprof", "-top", "-cum", "-sample_index=alloc_objects", "-focus=hookgate/hookgate/", "-nodecount=20", "-base", base, memprofile},
	}
	for _, c := range cmds {
		fmt.Printf("$ %s\n", strings.Join(c, " "))
		out, err := exec.Command(c[0], c[1:]...).CombinedOutput()
		if err != nil {
			fmt.Printf("(%v)\n", err)
		}
		fmt.Println(string(out))
	}
	return nil
}

func writeProfile(name, path string) error {
	runtime.GC()
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	return pprof.Lookup(name).WriteTo(f, 0)
}
