package main

import (
	"bytes"
	"strconv"
)

// cgroupMemoryMax returns the memory limit of the container serve runs in
// (cgroup v2 memory.max, else cgroup v1 memory.limit_in_bytes), or false
// when there is none.
//
// serve collects garbage at 4x heap growth (GOGC 400) for CPU, and in
// embedded mode the heap holds the broker's duplicate window, one entry per
// message for --dedup-window: at a sustained 16k webhooks/s that is about
// two million ids and a live heap of a few hundred MiB. Telling the Go
// runtime the container's limit makes it collect harder as the heap nears
// it, instead of growing into an OOM kill.
func cgroupMemoryMax(readFile func(string) ([]byte, error)) (int64, bool) {
	for _, path := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := readFile(path)
		if err != nil {
			continue
		}
		v := string(bytes.TrimSpace(b))
		if v == "max" {
			return 0, false
		}
		n, err := strconv.ParseInt(v, 10, 64)
		// cgroup v1 reports "no limit" as a huge page-rounded number.
		if err != nil || n <= 0 || n >= 1<<60 {
			return 0, false
		}
		return n, true
	}
	return 0, false
}

// memoryLimitFor is the soft limit serve gives the runtime: 90% of the
// container's, leaving room for what the runtime does not count (stacks of
// idle connections' goroutines are counted; cgo and the kernel's socket
// buffers are not).
func memoryLimitFor(containerMax int64) int64 { return containerMax / 10 * 9 }
