package main

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
)

// target is one HTTP endpoint to drive. A request carries the bearer token,
// or, for a signed target, no token: its path names the credential
// (?credential=<id>) and sig is its X-Hub-Signature-256 (signed.go).
type target struct {
	addr  string // host:port
	path  string
	token string // "" for a signed target
	sig   string // X-Hub-Signature-256 of the body; "": not signed
	keyed bool   // a fresh Idempotency-Key with every request (keys.go)
}

func (t target) url() string { return "http://" + t.addr + t.path }

// credentialHeader is the header that authenticates every request to t: the
// signature of a signed target, else the bearer token.
func (t target) credentialHeader() (name, value string) {
	if t.sig != "" {
		return signatureHeader, t.sig
	}
	return fasthttp.HeaderAuthorization, "Bearer " + t.token
}

// loadResult is what one load run measured.
type loadResult struct {
	requests int64 // completed responses
	ok2xx    int64 // responses with a 2xx status
	errors   int64 // connect/read/write/timeout errors and non-2xx
	elapsed  time.Duration
	p50      time.Duration
	p99      time.Duration
	p999     time.Duration
	max      time.Duration
	genCPU   float64 // CPU seconds the load generator spent
	missed   int64   // fixed rate: scheduled requests never sent in time
	slow     []span  // fixed rate: requests over slowAfter
	note     string
}

func (r loadResult) rate() float64 {
	if r.elapsed <= 0 {
		return 0
	}
	return float64(r.requests) / r.elapsed.Seconds()
}

// generator drives a target with keep-alive connections.
type generator interface {
	name() string
	run(t target, body []byte, conns int, d time.Duration) (loadResult, error)
}

// ---- wrk ----

type wrkGen struct {
	bin string
	dir string // where the Lua scripts go
}

func (wrkGen) name() string { return "wrk" }

// wrkScript sets the method, body and headers (the credential's: Authorization
// or the signature), and at the end prints the exact counts and the p99.9
// that wrk's --latency table does not show.
const wrkScript = `wrk.method = "POST"
wrk.body = [==[%s]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["%s"] = "%s"

%s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("HG_RESULT requests=%%.0f duration_us=%%.0f status=%%.0f connect=%%.0f read=%%.0f write=%%.0f timeout=%%.0f p50=%%.0f p99=%%.0f p999=%%.0f max=%%.0f\n",
    summary.requests, summary.duration, e.status, e.connect, e.read, e.write, e.timeout,
    latency:percentile(50), latency:percentile(99), latency:percentile(99.9), latency.max))
end
`

// wrkKeyScript is the request function of a keyed row: a fresh key per
// request, from a prefix the benchmark draws for each wrk run and a counter
// (one Lua state: wrk runs with -t1). wrk then formats every request instead
// of sending one prebuilt request, which costs it more CPU per request.
const wrkKeyScript = `local key_n = 0
request = function()
  key_n = key_n + 1
  wrk.headers["Idempotency-Key"] = string.format("%s-%%016d", key_n)
  return wrk.format()
end
`

var (
	reWrkRPS = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	reWrkPct = regexp.MustCompile(`^\s+(50|75|90|99)%\s+([0-9.]+)(us|ms|s)\s*$`)
)

func (g wrkGen) run(t target, body []byte, conns int, d time.Duration) (loadResult, error) {
	script := filepath.Join(g.dir, "post.lua")
	if err := os.WriteFile(script, wrkLua(t, body), 0o600); err != nil {
		return loadResult{}, err
	}
	secs := max(1, int(math.Round(d.Seconds())))
	cmd := exec.Command(g.bin, "-t1", "-c"+strconv.Itoa(conns), "-d"+strconv.Itoa(secs)+"s",
		"--timeout", "10s", "--latency", "-s", script, t.url())
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return loadResult{}, fmt.Errorf("wrk: %w: %s", err, out.String())
	}
	r := loadResult{}
	if u, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.genCPU = tvSeconds(u.Utime) + tvSeconds(u.Stime)
	}
	// The standard --latency output, parsed as a cross-check of the Lua line.
	var wrkRPS float64
	pct := map[string]time.Duration{}
	sc := bufio.NewScanner(bytes.NewReader(out.Bytes()))
	var hg string
	for sc.Scan() {
		line := sc.Text()
		if m := reWrkRPS.FindStringSubmatch(line); m != nil {
			wrkRPS, _ = strconv.ParseFloat(m[1], 64)
		}
		if m := reWrkPct.FindStringSubmatch(line); m != nil {
			pct[m[1]] = parseWrkDuration(m[2], m[3])
		}
		if strings.HasPrefix(line, "HG_RESULT ") {
			hg = line
		}
	}
	if hg == "" {
		return loadResult{}, fmt.Errorf("wrk printed no HG_RESULT line: %s", out.String())
	}
	kv := map[string]float64{}
	for _, f := range strings.Fields(hg)[1:] {
		k, v, _ := strings.Cut(f, "=")
		kv[k], _ = strconv.ParseFloat(v, 64)
	}
	us := func(k string) time.Duration { return time.Duration(kv[k] * float64(time.Microsecond)) }
	r.requests = int64(kv["requests"])
	r.elapsed = us("duration_us")
	r.ok2xx = r.requests - int64(kv["status"])
	r.errors = int64(kv["status"] + kv["connect"] + kv["read"] + kv["write"] + kv["timeout"])
	r.p50, r.p99, r.p999, r.max = us("p50"), us("p99"), us("p999"), us("max")
	if p, ok := pct["99"]; ok && r.p99 > 0 && absDur(p-r.p99) > r.p99/20+10*time.Microsecond {
		r.note = fmt.Sprintf("wrk table p99 %s vs script %s", p, r.p99)
	}
	if wrkRPS > 0 && math.Abs(wrkRPS-r.rate()) > wrkRPS*0.02 {
		r.note = fmt.Sprintf("wrk Requests/sec %.0f vs counted %.0f", wrkRPS, r.rate())
	}
	return r, nil
}

// wrkLua is the script of a wrk run against t.
func wrkLua(t target, body []byte) []byte {
	keyed := ""
	if t.keyed {
		keyed = fmt.Sprintf(wrkKeyScript, randomHex(keyPrefixLen/2))
	}
	name, value := t.credentialHeader()
	return fmt.Appendf(nil, wrkScript, body, name, value, keyed)
}

func parseWrkDuration(v, unit string) time.Duration {
	f, _ := strconv.ParseFloat(v, 64)
	switch unit {
	case "us":
		return time.Duration(f * float64(time.Microsecond))
	case "ms":
		return time.Duration(f * float64(time.Millisecond))
	default:
		return time.Duration(f * float64(time.Second))
	}
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// ---- Go generator (fasthttp client) ----

type goGen struct{}

func (goGen) name() string { return "go" }

func newHostClient(addr string, conns int) *fasthttp.HostClient {
	return &fasthttp.HostClient{
		Addr:                addr,
		MaxConns:            conns,
		MaxIdleConnDuration: time.Minute,
		ReadTimeout:         10 * time.Second,
		WriteTimeout:        10 * time.Second,
		MaxConnWaitTimeout:  10 * time.Second,
	}
}

func newRequest(t target, body []byte) *fasthttp.Request {
	req := fasthttp.AcquireRequest()
	req.SetRequestURI(t.url())
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.Header.Set(t.credentialHeader())
	req.SetBody(body)
	return req
}

// run is a closed loop: conns workers, each sending its next request as soon
// as the last one is answered, until d has passed. For a keyed target each
// request carries a fresh key.
func (goGen) run(t target, body []byte, conns int, d time.Duration) (loadResult, error) {
	hc := newHostClient(t.addr, conns)
	cpu := newCPUMeter(0)
	start := time.Now()
	deadline := start.Add(d)
	lats := make([][]time.Duration, conns)
	var ok2xx, errs atomic.Int64
	var wg sync.WaitGroup
	for w := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := newRequest(t, body)
			defer fasthttp.ReleaseRequest(req)
			resp := fasthttp.AcquireResponse()
			defer fasthttp.ReleaseResponse(resp)
			var key []byte
			if t.keyed {
				key = newKey(keyPrefix)
			}
			l := make([]time.Duration, 0, 1<<14)
			for {
				t0 := time.Now()
				if !t0.Before(deadline) {
					break
				}
				if key != nil {
					stampKey(key[keyLen-keyDigits:], keySeq.Add(1))
					req.Header.SetBytesV(keyHeader, key)
				}
				err := hc.Do(req, resp)
				if err != nil {
					errs.Add(1)
					time.Sleep(time.Millisecond) // no hot loop on a dead server
					continue
				}
				l = append(l, time.Since(t0))
				tally(resp, &ok2xx, &errs)
			}
			lats[w] = l
		}()
	}
	wg.Wait()
	r := summarize(slices.Concat(lats...))
	r.elapsed = time.Since(start)
	r.ok2xx = ok2xx.Load()
	r.errors = errs.Load()
	r.genCPU = cpu.delta()
	return r, nil
}

func summarize(l []time.Duration) loadResult {
	if len(l) == 0 {
		return loadResult{}
	}
	slices.Sort(l)
	q := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(l)))) - 1
		return l[max(0, min(i, len(l)-1))]
	}
	return loadResult{requests: int64(len(l)), p50: q(0.50), p99: q(0.99), p999: q(0.999), max: l[len(l)-1]}
}

// tally counts a reply as 2xx or as an error.
func tally(resp *fasthttp.Response, ok2xx, errs *atomic.Int64) {
	if sc := resp.StatusCode(); sc >= 200 && sc < 300 {
		ok2xx.Add(1)
	} else {
		errs.Add(1)
	}
}
