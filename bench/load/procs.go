package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/<pid>/stat. It
// is 100 on every Linux that Go supports outside of exotic kernels.
const clockTicks = 100

// child is a process the benchmark started: a broker, a gateway or a
// reference server. Its output is drained and the last lines kept for errors.
type child struct {
	name string
	cmd  *exec.Cmd

	mu   sync.Mutex
	tail []string
	gcs  []gcCycle // from its gctrace lines
	done chan struct{}
}

// startChild starts bin with args and waits, at most timeout, for a line of
// its stdout or stderr for which ready returns ok; it returns that value.
func startChild(name, bin string, args []string, timeout time.Duration, ready func(line string) (string, bool)) (*child, string, error) {
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	cmd.Env = withGCTrace(os.Environ())
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, "", err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, "", err
	}
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, "", fmt.Errorf("start %s: %w", name, err)
	}
	found := make(chan string, 1)
	var once sync.Once
	var wg sync.WaitGroup
	scan := func(r io.Reader) {
		defer wg.Done()
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if g, ok := parseGCLine(line, time.Now()); ok {
				c.mu.Lock()
				c.gcs = append(c.gcs, g)
				c.mu.Unlock()
				continue
			}
			c.mu.Lock()
			c.tail = append(c.tail, line)
			if len(c.tail) > 20 {
				c.tail = c.tail[len(c.tail)-20:]
			}
			c.mu.Unlock()
			if v, ok := ready(line); ok {
				once.Do(func() { found <- v })
			}
		}
	}
	wg.Add(2)
	go scan(stdout)
	go scan(stderr)
	go func() {
		wg.Wait()
		_ = cmd.Wait()
		close(c.done)
	}()
	select {
	case v := <-found:
		return c, v, nil
	case <-c.done:
		return nil, "", fmt.Errorf("%s exited before it was ready: %s", name, c.lastLines())
	case <-time.After(timeout):
		c.stop()
		return nil, "", fmt.Errorf("%s not ready within %s: %s", name, timeout, c.lastLines())
	}
}

func (c *child) pid() int { return c.cmd.Process.Pid }

func (c *child) lastLines() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return strings.Join(c.tail, " | ")
}

// stop sends SIGTERM, waits up to 15s, then kills.
func (c *child) stop() {
	if c == nil {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(15 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
	}
}

// cpuSeconds returns user+system CPU time of pid from /proc/<pid>/stat.
func cpuSeconds(pid int) (float64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0, err
	}
	// The command name may hold spaces and parentheses: fields start after the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("/proc/%d/stat: too few fields", pid)
	}
	ut, err1 := strconv.ParseUint(f[11], 10, 64) // field 14 utime
	st, err2 := strconv.ParseUint(f[12], 10, 64) // field 15 stime
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("/proc/%d/stat: bad utime/stime", pid)
	}
	return float64(ut+st) / clockTicks, nil
}

// memStatus returns VmRSS and VmHWM of pid in bytes, from /proc/<pid>/status.
func memStatus(pid int) (rss, hwm int64, err error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(v)
		if len(f) == 0 {
			continue
		}
		n, _ := strconv.ParseInt(f[0], 10, 64)
		switch k {
		case "VmRSS":
			rss = n << 10
		case "VmHWM":
			hwm = n << 10
		}
	}
	return rss, hwm, nil
}

// countFDs returns the number of open file descriptors of pid.
func countFDs(pid int) int {
	ents, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd"))
	if err != nil {
		return -1
	}
	return len(ents)
}

// selfCPU returns this process's user+system CPU seconds.
func selfCPU() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return tvSeconds(ru.Utime) + tvSeconds(ru.Stime)
}

func tvSeconds(tv syscall.Timeval) float64 {
	return float64(tv.Sec) + float64(tv.Usec)/1e6
}

// cpuMeter measures the CPU a process spends between start and stop, and
// the read and write system calls it makes meanwhile.
type cpuMeter struct {
	pid      int // 0: this process
	start    float64
	startSys int64
}

func newCPUMeter(pid int) *cpuMeter {
	m := &cpuMeter{pid: pid}
	m.start = m.read()
	m.startSys = syscallCount(pid)
	return m
}

// syscalls returns the read and write system calls made since the meter
// started (/proc/<pid>/io syscr + syscw: every socket read and write,
// including those that found nothing to read).
func (m *cpuMeter) syscalls() int64 {
	if m == nil {
		return 0
	}
	return syscallCount(m.pid) - m.startSys
}

func syscallCount(pid int) int64 {
	path := "/proc/self/io"
	if pid != 0 {
		path = "/proc/" + strconv.Itoa(pid) + "/io"
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	var n int64
	for _, line := range strings.Split(string(b), "\n") {
		k, v, ok := strings.Cut(line, ": ")
		if ok && (k == "syscr" || k == "syscw") {
			c, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			n += c
		}
	}
	return n
}

func (m *cpuMeter) read() float64 {
	if m == nil {
		return 0
	}
	if m.pid == 0 {
		return selfCPU()
	}
	v, _ := cpuSeconds(m.pid)
	return v
}

// delta returns the CPU seconds spent since the meter started.
func (m *cpuMeter) delta() float64 {
	if m == nil {
		return 0
	}
	return m.read() - m.start
}

// hookgatePGO is the profile release builds of hookgate use (the image's
// Dockerfile too); the benchmark measures what ships.
const hookgatePGO = "cmd/hookgate/hookgate.pgo"

// buildBinaries builds cmd/hookgate (with its profile) and bench/natsd into dir.
func buildBinaries(root, dir string) (hookgate, natsd string, err error) {
	hookgate = filepath.Join(dir, "hookgate")
	natsd = filepath.Join(dir, "natsd")
	for _, b := range []struct{ out, pkg, pgo string }{{hookgate, "./cmd/hookgate", hookgatePGO}, {natsd, "./bench/natsd", "off"}} {
		cmd := exec.Command("go", "build", "-pgo="+b.pgo, "-o", b.out, b.pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			return "", "", fmt.Errorf("go build %s: %w: %s", b.pkg, err, out)
		}
	}
	return hookgate, natsd, nil
}

// moduleRoot returns the directory of the main module's go.mod.
func moduleRoot() (string, error) {
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", fmt.Errorf("run this from inside the hookgate module")
	}
	return filepath.Dir(gomod), nil
}

// machineBusy returns the CPU seconds all processors have spent not idle,
// from /proc/stat.
func machineBusy() float64 {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 8 || f[0] != "cpu" {
		return 0
	}
	var busy uint64
	for i, v := range f[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		switch i {
		case 3, 4: // idle, iowait
		case 8, 9: // guest, guest_nice: already counted in user and nice
		default:
			busy += n
		}
	}
	return float64(busy) / clockTicks
}

// machineMeter tells how much CPU processes outside the benchmark used
// during a measurement: the machine's busy time minus this process's and
// the measured children's. Other work on the machine skews every figure.
type machineMeter struct{ busy, self float64 }

func newMachineMeter() *machineMeter { return &machineMeter{busy: machineBusy(), self: selfCPU()} }

// foreign returns the other processes' CPU seconds since the meter started;
// children are the CPU seconds of the benchmark's own child processes.
func (m *machineMeter) foreign(children ...float64) float64 {
	v := machineBusy() - m.busy - (selfCPU() - m.self)
	for _, c := range children {
		if c > 0 {
			v -= c
		}
	}
	return max(0, v)
}

// waitQuiet waits, at most limit, until the machine's other work uses less
// than a fifth of a core over half a second, so that a measurement does not
// start in the middle of someone's build. It reports whether it got there.
func waitQuiet(limit time.Duration) bool {
	deadline := time.Now().Add(limit)
	for {
		b0, s0 := machineBusy(), selfCPU()
		time.Sleep(500 * time.Millisecond)
		if (machineBusy()-b0)-(selfCPU()-s0) < 0.1 {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
	}
}
