package main

import (
	"log/slog"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// Go's collector lets the heap grow to twice what is live before it collects (GOGC=100) and knows nothing
// of a container's memory limit: with the memory layer and the writer's queue full (256 MiB each by
// default) and large answers in flight, the process grew past 1 GB on 300-550 MB of live heap, where a
// container with a 1 GB limit kills it. Under such a limit the collector is given a soft limit below it
// (unless GOMEMLIMIT says otherwise), so it collects harder as the process nears the limit instead.
// automemlimit finds the limit (cgroup v1 or v2, through the mount table, the lowest of the process's
// cgroup and its parents).

// memoryLimitShare is the part of the container's limit given to Go's heap; the rest is for what the
// collector does not see: SQLite's memory (one WebAssembly instance per connection), stacks, the binary.
const memoryLimitShare = 0.85

// setMemoryLimit gives Go's collector a soft limit of memoryLimitShare of the limit that provider reports
// (memlimit.FromCgroup: the container's), unless GOMEMLIMIT is set, and logs it. It returns the runtime's
// memory limit afterwards (math.MaxInt64 when there is none).
func setMemoryLimit(log *slog.Logger, provider memlimit.Provider) int64 {
	limit, err := memlimit.Set(memlimit.WithRatio(memoryLimitShare), memlimit.WithProvider(provider), memlimit.WithLogger(log))
	if err != nil {
		log.Warn("Go's heap is not bounded by the container's memory limit (GOMEMLIMIT and AUTOMEMLIMIT set it by hand)", "err", err)
	}
	return limit
}
