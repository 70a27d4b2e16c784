package hgtest

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// Port returns a loopback TCP port for a server that must be given its port
// before it listens or listen on it again after a restart: a NATS node (its
// routes name the other nodes' ports; a restarted node keeps its own), or a
// program that only takes a --listen flag. Whatever can bind 127.0.0.1:0 and
// hand over the listener (gateway.Config.Listener) or report the address it
// got should do that instead.
//
// Why not bind :0, close, and use that port later: the kernel picks the source
// port of every outgoing connection, of any process on the machine, from the
// same ephemeral range (/proc/sys/net/ipv4/ip_local_port_range) as :0, so the
// port can be taken before the server binds it ("address already in use",
// seen when a test's binds came seconds after its picks). Port picks outside
// that range, where the kernel never hands out a port by itself. Two tests
// (in this process or another) cannot pick the same port: each holds an
// flock on a file named after its port until the test ends, and the kernel
// drops the lock if the process dies. The port is also checked free when
// picked; only a program binding that very port of its own accord could
// still take it.
func Port(t testing.TB) int {
	t.Helper()
	lo, hi := ephemeralRange()
	// Above 10000, away from the ports services usually run on.
	ranges := [][2]int{{10000, lo - 1}, {hi + 1, 65535}}
	var candidates int
	for _, r := range ranges {
		candidates += max(0, r[1]-r[0]+1)
	}
	if candidates == 0 {
		t.Fatalf("no port outside the ephemeral range %d-%d", lo, hi)
	}
	dir := filepath.Join(os.TempDir(), "hgtest-ports")
	if err := os.MkdirAll(dir, 0o777); err != nil {
		t.Fatalf("port locks: %v", err)
	}
	for range 200 {
		n := rand.IntN(candidates)
		port := 0
		for _, r := range ranges {
			if size := max(0, r[1]-r[0]+1); n < size {
				port = r[0] + n
				break
			} else {
				n -= size
			}
		}
		if lock, ok := lockPort(dir, port); ok {
			if ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
				ln.Close()
				t.Cleanup(func() { lock.Close() })
				return port
			}
			lock.Close()
		}
	}
	t.Fatalf("no free port outside the ephemeral range %d-%d after 200 tries", lo, hi)
	return 0
}

// Addr is 127.0.0.1 and a Port.
func Addr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", Port(t))
}

// lockPort takes the lock of port; closing the file releases it.
func lockPort(dir string, port int) (*os.File, bool) {
	f, err := os.OpenFile(filepath.Join(dir, strconv.Itoa(port)), os.O_CREATE|os.O_RDWR, 0o666)
	if err != nil {
		return nil, false
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, false
	}
	return f, true
}

// ephemeralRange reads the kernel's ephemeral port range; Linux's default
// when it cannot.
func ephemeralRange() (lo, hi int) {
	lo, hi = 32768, 60999
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return lo, hi
	}
	l, err1 := strconv.Atoi(f[0])
	h, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || l > h {
		return lo, hi
	}
	return l, h
}
