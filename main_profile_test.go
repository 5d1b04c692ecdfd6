package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestCPUProfileFlag: -cpuprofile writes a CPU profile (gzipped, as pprof reads it) when the proxy stops, and
// a path it cannot create stops the start with exit code 1 and a message.
func TestCPUProfileFlag(t *testing.T) {
	dir := t.TempDir()
	prof := filepath.Join(dir, "cpu.prof")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncBuffer
	code := make(chan int, 1)
	go func() {
		code <- run(ctx, []string{"-demo", "-listen", "127.0.0.1:0", "-db", filepath.Join(dir, "cache.db"), "-cpuprofile", prof},
			func(string) string { return "" }, &stderr)
	}()
	waitFor(t, "the proxy to listen", func() bool { return strings.Contains(stderr.String(), "llmcache listening") })
	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("exit code %d\n%s", c, stderr.String())
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the proxy did not stop")
	}
	data, err := os.ReadFile(prof)
	if err != nil || !bytes.HasPrefix(data, []byte{0x1f, 0x8b}) {
		t.Fatalf("profile: %v, %d bytes, not gzipped", err, len(data))
	}

	var refused syncBuffer
	if c := run(context.Background(), []string{"-demo", "-cpuprofile", filepath.Join(dir, "missing", "cpu.prof")},
		func(string) string { return "" }, &refused); c != 1 || !strings.Contains(refused.String(), "cannot create the CPU profile") {
		t.Fatalf("an impossible profile path: exit code %d, %q", c, refused.String())
	}
}
