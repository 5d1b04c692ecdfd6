package main

import (
	"log/slog"
	"os"
	"path"
	"runtime/debug"
	"strconv"
	"strings"
)

// Go's collector lets the heap grow to twice what is live before it collects (GOGC=100) and knows nothing
// of a container's memory limit: with the memory layer and the writer's queue full (256 MiB each by
// default) and large answers in flight, the process grew past 1 GB on 300-550 MB of live heap, where a
// container with a 1 GB limit kills it. Under such a limit the collector is given a soft limit below it
// (unless GOMEMLIMIT says otherwise), so it collects harder as the process nears the limit instead.

// memoryLimitShare is the part of the container's limit given to Go's heap; the rest is for what the
// collector does not see: SQLite's memory (one WebAssembly instance per connection), stacks, the binary.
const memoryLimitShare = 0.85

// noMemoryLimit is where cgroup v1 writes "no limit" (a page-rounded MaxInt64); anything this large is none.
const noMemoryLimit = 1 << 62

// setMemoryLimit gives Go's collector a soft limit under the memory limit of the process's cgroup, when
// there is one and GOMEMLIMIT is unset, and logs it. It returns the limit set, or 0.
func setMemoryLimit(log *slog.Logger, getenv func(string) string) int64 {
	if getenv("GOMEMLIMIT") != "" {
		return 0 // the runtime applied it
	}
	self, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return 0
	}
	limit := cgroupMemoryLimit(string(self), "/sys/fs/cgroup")
	if limit <= 0 {
		return 0
	}
	soft := int64(float64(limit) * memoryLimitShare)
	debug.SetMemoryLimit(soft)
	log.Info("the container's memory limit bounds Go's heap", "container_limit_bytes", limit, "go_memory_limit_bytes", soft)
	return soft
}

// cgroupMemoryLimit is the lowest memory limit on the cgroup named in self (the text of /proc/self/cgroup)
// and its parents, under root (where the cgroup file systems are mounted): cgroup v2's memory.max, or v1's
// memory.limit_in_bytes in the memory hierarchy. 0 when there is none.
func cgroupMemoryLimit(self, root string) int64 {
	var dir, file string
	for line := range strings.Lines(self) {
		id, rest, _ := strings.Cut(strings.TrimSpace(line), ":")
		controllers, p, ok := strings.Cut(rest, ":")
		switch {
		case !ok:
		case id == "0" && controllers == "" && dir == "": // v2, unless v1 has a memory hierarchy
			dir, file = path.Join(root, p), "memory.max"
		case strings.Contains(","+controllers+",", ",memory,"):
			dir, file = path.Join(root, "memory", p), "memory.limit_in_bytes"
		}
	}
	if dir == "" {
		return 0
	}
	var lowest int64
	for {
		if b, err := os.ReadFile(path.Join(dir, file)); err == nil {
			if n, err := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err == nil && n > 0 && n < noMemoryLimit &&
				(lowest == 0 || n < lowest) {
				lowest = n
			}
		}
		if len(dir) <= len(root) || dir == "/" {
			return lowest
		}
		dir = path.Dir(dir)
	}
}
