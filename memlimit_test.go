package main

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"testing"
)

// TestCgroupMemoryLimit: the limit of the process's cgroup is found under cgroup v2 and v1, nested or at the
// root (a container's own namespace), the lowest of a cgroup and its parents; "max" and v1's huge "none"
// are no limit.
func TestCgroupMemoryLimit(t *testing.T) {
	write := func(root, rel, content string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name  string
		self  string
		files map[string]string
		want  int64
	}{
		{"v2 in its own namespace", "0::/\n", map[string]string{"memory.max": "1073741824\n"}, 1 << 30},
		{"v2 unlimited", "0::/\n", map[string]string{"memory.max": "max\n"}, 0},
		{"v2 nested, a parent lower", "0::/a/b\n", map[string]string{"memory.max": "max\n", "a/memory.max": "536870912\n", "a/b/memory.max": "1073741824\n"}, 1 << 29},
		{"v1 nested", "4:memory:/process_api/x\n3:cpuset:/\n0::/\n", map[string]string{
			"memory/memory.limit_in_bytes":               "9223372036854771712\n",
			"memory/process_api/x/memory.limit_in_bytes": "2147483648\n",
			"memory.max": "1024\n", // v2's file: not the hierarchy memory is in
		}, 2 << 30},
		{"v1 unlimited", "4:memory:/\n", map[string]string{"memory/memory.limit_in_bytes": "9223372036854771712\n"}, 0},
		{"no memory controller", "3:cpuset:/\n", nil, 0},
		{"no files", "0::/gone\n", nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			for rel, content := range tc.files {
				write(root, rel, content)
			}
			if got := cgroupMemoryLimit(tc.self, root); got != tc.want {
				t.Errorf("limit %d, want %d", got, tc.want)
			}
		})
	}
}

// TestSetMemoryLimitLeavesGOMEMLIMIT: a GOMEMLIMIT of the user's is never replaced.
func TestSetMemoryLimitLeavesGOMEMLIMIT(t *testing.T) {
	before := debug.SetMemoryLimit(-1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if got := setMemoryLimit(log, func(k string) string { return map[string]string{"GOMEMLIMIT": "900MiB"}[k] }); got != 0 {
		t.Errorf("set a limit of %d with GOMEMLIMIT set", got)
	}
	if after := debug.SetMemoryLimit(-1); after != before {
		t.Errorf("the runtime's memory limit changed from %d to %d", before, after)
	}
}
