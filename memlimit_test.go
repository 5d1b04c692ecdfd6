package main

import (
	"io"
	"log/slog"
	"runtime/debug"
	"testing"

	"github.com/KimMachineGun/automemlimit/memlimit"
)

// TestSetMemoryLimit: under a memory limit the collector gets 85% of it; a GOMEMLIMIT of the user's is never
// replaced.
func TestSetMemoryLimit(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	t.Cleanup(func() { debug.SetMemoryLimit(before) })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))

	t.Setenv("GOMEMLIMIT", "")
	share := memoryLimitShare
	if got, want := setMemoryLimit(log, memlimit.Limit(1<<30)), int64(float64(1<<30)*share); got != want || debug.SetMemoryLimit(-1) != want {
		t.Errorf("under a 1 GiB limit: set %d, the runtime's limit %d; want %d", got, debug.SetMemoryLimit(-1), want)
	}

	debug.SetMemoryLimit(before)
	t.Setenv("GOMEMLIMIT", "900MiB")
	setMemoryLimit(log, memlimit.Limit(1<<30))
	if after := debug.SetMemoryLimit(-1); after != before {
		t.Errorf("with GOMEMLIMIT set, the runtime's memory limit changed from %d to %d", before, after)
	}
}
