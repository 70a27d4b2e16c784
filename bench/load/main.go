// Command load measures hookgate on loopback against three references, in one
// run:
//
//   - http ceiling: a fasthttp server answering 202 with no broker work;
//   - broker ceiling: raw JetStream PublishAsync (256 in flight) of the same
//     payload to a file stream, no HTTP;
//   - broker ceiling with hookgate's message: the same with the one header
//     hookgate stores with a key-less webhook, Hook-Credential;
//   - hand-written peer: net/http, a token map and a synchronous js.Publish
//     per request (bench/peer);
//   - hookgate: `hookgate serve` against the same broker, POST /v1/hits/{app}
//     with a bearer token, closed loop, then at half its own peak rate;
//   - hookgate with GitHub-style signed deliveries (?credential= and
//     X-Hub-Signature-256) instead of the token, closed loop;
//   - hookgate with a fresh Idempotency-Key on every request, the same two
//     ways.
//
// The broker (bench/natsd), hookgate and the reference servers each run as a
// child process, so CPU time and memory come per process from /proc. The load
// generator is wrk when installed (-gen wrk), else a Go fasthttp client.
//
//	go run ./bench/load                       # 3 runs x 10s per measurement
//	go run ./bench/load -duration 5s -out /tmp/load.md  # the tables; BENCHMARKS.md keeps the current page
//	go run ./bench/load -idle 10000           # RSS with 10,000 idle connections
//	go run ./bench/load -rss 60s              # the broker's RSS over a minute at half peak
//	go run ./bench/load -cpuprofile cpu.out   # in-process gateway under load, profiled
//
// See bench/README.md.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

type options struct {
	duration      time.Duration
	conns         int
	runs          int
	out           string
	gen           string
	gatewayMode   string
	half          bool
	idle          int
	rss           time.Duration
	idleSources   int
	cpuprofile    string
	memprofile    string
	trace         string
	warmup        time.Duration
	profileRate   float64
	maxConnsPerIP int
	quiet         time.Duration

	// Child roles (internal).
	role, listen, natsURL, token, stream, prefix string
	genTarget, genPath, genSlowLog               string
	genRate                                      float64
	genKeyed                                     bool
	dataDir                                      string
}

func main() {
	var o options
	flag.DurationVar(&o.duration, "duration", 10*time.Second, "length of each measurement")
	flag.IntVar(&o.conns, "conns", 64, "keep-alive connections of the load generator")
	flag.IntVar(&o.runs, "runs", 3, "times to repeat the whole set of measurements")
	flag.StringVar(&o.out, "out", "", "also write the report as markdown to this file")
	flag.StringVar(&o.gen, "gen", "auto", "load generator: wrk, go, or auto (wrk when installed)")
	flag.StringVar(&o.gatewayMode, "gateway", "proc", "proc: hookgate serve --nats-url and natsd as child processes; embedded: hookgate serve with its embedded NATS as a child; inproc: gateway.Start with embedded NATS in this process")
	flag.BoolVar(&o.half, "half", true, "also measure hookgate at half its peak rate (Go generator, fixed rate)")
	flag.IntVar(&o.idle, "idle", 0, "instead: open this many idle keep-alive connections to hookgate and report its RSS")
	flag.DurationVar(&o.rss, "rss", 0, "instead: drive hookgate at half its peak for this long, key-less then with fresh keys, and report the broker's RSS at 10s and at the end")
	flag.IntVar(&o.idleSources, "idle-sources", 4, "with -idle: source addresses 127.0.0.1.. to spread the connections over")
	flag.StringVar(&o.cpuprofile, "cpuprofile", "", "instead: run the gateway in-process under load and write a CPU profile here")
	flag.StringVar(&o.memprofile, "memprofile", "", "with -cpuprofile: allocation profile file (default <cpuprofile>.allocs)")
	flag.StringVar(&o.trace, "trace", "", "with -cpuprofile: also write a runtime execution trace here (go tool trace)")
	flag.DurationVar(&o.warmup, "warmup", 0, "with -cpuprofile: first drive the gateway closed loop for this long, unprofiled (as the peak row before the half-peak row)")
	flag.Float64Var(&o.profileRate, "profile-rate", 0, "with -cpuprofile: drive the gateway at this fixed rate with rate-gen instead of the closed loop")
	flag.IntVar(&o.maxConnsPerIP, "max-conns-per-ip", 20000, "hookgate --max-conns-per-ip (every connection comes from loopback)")
	flag.DurationVar(&o.quiet, "quiet", 15*time.Second, "before each measurement, wait up to this long for other processes to leave the CPUs idle")
	flag.StringVar(&o.role, "role", "", "internal: run as a child reference server (http-ceiling, peer)")
	flag.StringVar(&o.listen, "listen", "127.0.0.1:0", "internal: child listen address")
	flag.StringVar(&o.natsURL, "nats-url", "", "internal: child NATS URL")
	flag.StringVar(&o.token, "token", "", "internal: child token")
	flag.StringVar(&o.stream, "stream", "PEER", "internal: child stream")
	flag.StringVar(&o.prefix, "prefix", "peer", "internal: child subject prefix")
	flag.StringVar(&o.genTarget, "target", "", "internal: rate-gen target host:port")
	flag.StringVar(&o.genPath, "path", hitsPath, "internal: rate-gen request path")
	flag.Float64Var(&o.genRate, "rate", 0, "internal: rate-gen requests per second")
	flag.StringVar(&o.genSlowLog, "slow-log", "", "internal: rate-gen writes each request over 5ms here")
	flag.BoolVar(&o.genKeyed, "keyed", false, "internal: rate-gen sends a fresh Idempotency-Key with each request")
	flag.StringVar(&o.dataDir, "data-dir", "", "internal: the floor's JetStream store when it embeds NATS (no -nats-url)")
	flag.Parse()

	var err error
	switch {
	case o.role == "http-ceiling":
		err = roleHTTPCeiling(o.listen)
	case o.role == "rate-gen":
		err = runRateGenChild(o.genTarget, o.genPath, o.token, o.genRate, o.conns, o.duration, o.genSlowLog, o.genKeyed)
	case o.role == "floor":
		err = roleFloor(o.listen, o.natsURL, o.dataDir)
	case o.role == "peer":
		err = rolePeer(o.listen, o.natsURL, o.token, o.stream, o.prefix)
	case o.role != "":
		err = fmt.Errorf("unknown role %q", o.role)
	default:
		err = runMain(o)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
}

// env is what every measurement needs.
type env struct {
	o           options
	tmp         string
	self        string
	hookgateBin string
	natsdBin    string
	gen         generator
	body        []byte
}

func runMain(o options) error {
	if o.duration < time.Second || o.duration > 10*time.Minute {
		return fmt.Errorf("-duration %s: want 1s to 10m", o.duration)
	}
	if o.conns < 1 || o.conns > 10000 || o.runs < 1 || o.runs > 20 {
		return fmt.Errorf("-conns 1..10000 and -runs 1..20")
	}
	switch o.gatewayMode {
	case "proc", "embedded", "inproc":
	default:
		return fmt.Errorf("-gateway %q: want proc, embedded or inproc", o.gatewayMode)
	}
	if o.rss != 0 && (o.rss <= rssFirst || o.rss > time.Hour || o.gatewayMode == "inproc") {
		return fmt.Errorf("-rss %s: want more than %s, at most 1h, with -gateway proc or embedded", o.rss, rssFirst)
	}
	e := &env{o: o, body: payload(300)}
	var err error
	if e.gen, err = pickGenerator(o.gen); err != nil {
		return err
	}
	if e.self, err = os.Executable(); err != nil {
		return err
	}
	if e.tmp, err = os.MkdirTemp("", "hookgate-bench-"); err != nil {
		return err
	}
	defer os.RemoveAll(e.tmp)
	if wg, ok := e.gen.(wrkGen); ok {
		wg.dir = e.tmp
		e.gen = wg
	}

	root, err := moduleRoot()
	if err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "building hookgate and natsd in %s ...\n", e.tmp)
	if e.hookgateBin, e.natsdBin, err = buildBinaries(root, e.tmp); err != nil {
		return err
	}
	raiseNoFile(uint64(o.idle) + 4096)

	switch {
	case o.idle > 0:
		return runIdle(e)
	case o.rss > 0:
		return runRSS(e)
	case o.cpuprofile != "":
		return runProfile(e)
	}
	return runTable(e)
}

func pickGenerator(name string) (generator, error) {
	switch name {
	case "go":
		return goGen{}, nil
	case "wrk", "auto":
		bin, err := exec.LookPath("wrk")
		if err != nil {
			if name == "wrk" {
				return nil, fmt.Errorf("-gen wrk: wrk not found (apt-get install -y wrk)")
			}
			return goGen{}, nil
		}
		return wrkGen{bin: bin}, nil
	}
	return nil, fmt.Errorf("-gen %q: want wrk, go or auto", name)
}

// payload returns a JSON object of exactly n bytes, a plausible Hits body.
func payload(n int) []byte {
	head := `{"monitor":"checkout-api","status":"down","region":"eu-west-1","checked_at":"2025-06-01T12:00:00Z","response_ms":1234,"message":"`
	tail := `"}`
	pad := n - len(head) - len(tail)
	if pad < 0 {
		pad = 0
	}
	return []byte(head + strings.Repeat("x", pad) + tail)
}

// raiseNoFile lifts RLIMIT_NOFILE to at least want (root may raise the hard
// limit too); children started afterwards inherit it.
func raiseNoFile(want uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return
	}
	if lim.Max < want {
		raised := syscall.Rlimit{Cur: want, Max: want}
		if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised) == nil {
			return
		}
	}
	lim.Cur = max(lim.Cur, min(want, lim.Max))
	_ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
}
