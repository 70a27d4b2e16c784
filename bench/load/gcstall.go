package main

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Every child runs with GODEBUG=gctrace=1, so the half-peak row can say
// whether its slow requests waited on a garbage collection of the gateway or
// of the broker. Measured so on this machine: nearly every request over 5 ms
// at half peak overlapped a GC cycle of the process that holds JetStream's
// duplicate index (the embedded gateway, or the separate nats-server).

// slowAfter is the p99 target: requests slower than this are logged
// by rate-gen and matched against GC cycles.
const slowAfter = 5 * time.Millisecond

// gcCycle is one garbage collection of a child, from the start of its sweep
// termination to the end of its mark termination, as seen by this process.
type gcCycle struct{ start, end time.Time }

// gcLine matches a gctrace line and its wall-clock phases:
// "gc 13 @19.421s 0%: 1.0+134+0.007 ms clock, ...".
var gcLine = regexp.MustCompile(`^gc \d+ @[0-9.]+s \d+%: ([0-9.]+)\+([0-9.]+)\+([0-9.]+) ms clock`)

// parseGCLine returns the cycle a gctrace line reports, the line having been
// read at seen (the runtime prints it when the cycle ends).
func parseGCLine(line string, seen time.Time) (gcCycle, bool) {
	m := gcLine.FindStringSubmatch(line)
	if m == nil {
		return gcCycle{}, false
	}
	var ms float64
	for _, s := range m[1:] {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return gcCycle{}, false
		}
		ms += v
	}
	return gcCycle{start: seen.Add(-time.Duration(ms * float64(time.Millisecond))), end: seen}, true
}

// withGCTrace returns env with gctrace=1 added to GODEBUG.
func withGCTrace(env []string) []string {
	out := make([]string, 0, len(env)+1)
	debug := "gctrace=1"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "GODEBUG="); ok {
			if v != "" {
				debug = v + ",gctrace=1"
			}
			continue
		}
		out = append(out, kv)
	}
	return append(out, "GODEBUG="+debug)
}

// gcCycles returns the child's GC cycles that overlap [from, to].
func (c *child) gcCycles(from, to time.Time) []gcCycle {
	if c == nil {
		return nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []gcCycle
	for _, g := range c.gcs {
		if g.end.After(from) && g.start.Before(to) {
			out = append(out, g)
		}
	}
	return out
}

// span is one slow request: due at start, answered at end.
type span struct{ start, end time.Time }

// writeSlowLog is rate-gen's side: one line per request over slowAfter,
// "<due, unix ns> <latency ns>".
func writeSlowLog(path string, start time.Time, slow [][2]time.Duration) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, s := range slow {
		fmt.Fprintf(w, "%d %d\n", start.Add(s[0]).UnixNano(), int64(s[1]))
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func readSlowLog(path string) ([]span, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []span
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		a, b, ok := strings.Cut(sc.Text(), " ")
		due, err1 := strconv.ParseInt(a, 10, 64)
		lat, err2 := strconv.ParseInt(b, 10, 64)
		if !ok || err1 != nil || err2 != nil {
			return nil, fmt.Errorf("%s: bad line %q", path, sc.Text())
		}
		s := time.Unix(0, due)
		out = append(out, span{start: s, end: s.Add(time.Duration(lat))})
	}
	return out, sc.Err()
}

// gcNote says how many GC cycles each process ran during [from, to] and how
// many of the slow requests overlapped one of them.
func gcNote(slow []span, from, to time.Time, procs map[string]*child) string {
	var parts []string
	var all []gcCycle
	for _, name := range []string{"gateway", "broker"} {
		c, ok := procs[name]
		if !ok {
			continue
		}
		cs := c.gcCycles(from, to)
		longest := time.Duration(0)
		for _, g := range cs {
			longest = max(longest, g.end.Sub(g.start))
		}
		parts = append(parts, fmt.Sprintf("%s %d (longest %s)", name, len(cs), fmtDur(longest)))
		all = append(all, cs...)
	}
	during := 0
	for _, s := range slow {
		for _, g := range all {
			if s.start.Before(g.end) && s.end.After(g.start) {
				during++
				break
			}
		}
	}
	return fmt.Sprintf("GC cycles during the row: %s; %d requests over %s, %d of them overlapping a GC cycle",
		strings.Join(parts, ", "), len(slow), fmtDur(slowAfter), during)
}
