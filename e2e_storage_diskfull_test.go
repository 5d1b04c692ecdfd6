package main

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"os/exec"
	"runtime"
	"strings"
	"testing"

	"llmcache/bench/fakeupstream"
)

// These tests put the cache file on a real file system that fills up while the proxy runs: a small tmpfs
// mounted for the test. Mounting needs root (or CAP_SYS_ADMIN); where the test user cannot mount, they
// skip saying so, and actors' writer tests cover the same bound over a store whose writes fail. A file
// system turned read-only under the running proxy cannot be had the same way: Linux refuses to remount
// read-only while the proxy holds its files open for writing.

// mountTmpfs mounts a tmpfs of size (as mount's size= option) on a new temp dir, unmounted when the test
// ends (after the proxy, which is stopped by a cleanup registered later).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs (needs root or CAP_SYS_ADMIN): %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("cannot unmount the test's tmpfs %s: %v %s", dir, err, out)
		}
	})
	return dir
}

func remount(t *testing.T, dir, opts string) {
	t.Helper()
	if out, err := exec.Command("mount", "-o", "remount,"+opts, dir).CombinedOutput(); err != nil {
		t.Fatalf("cannot remount %s with %s: %v %s", dir, opts, err, out)
	}
}

// writerFigures decodes /stats' writer object.
type writerFigures struct {
	Writer struct {
		Pending      int64  `json:"pending"`
		PendingBytes int64  `json:"pending_bytes"`
		Written      int64  `json:"written"`
		Dropped      int64  `json:"dropped"`
		DroppedBytes int64  `json:"dropped_bytes"`
		QueueDepth   int    `json:"queue_depth"`
		LastError    string `json:"last_error"`
	} `json:"writer"`
}

func writerStats(t *testing.T, p *testProxy) writerFigures {
	t.Helper()
	resp, body := p.Get("/stats")
	var s writerFigures
	if resp.StatusCode != 200 || json.Unmarshal(body, &s) != nil {
		t.Fatalf("/stats: status %d, body %s", resp.StatusCode, body)
	}
	return s
}

// heapInUse is the live heap after a collection: the proxy runs in this process.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC() // twice: sync.Pool keeps what it held for one collection
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}

// burst sends n distinct chat requests (each a miss) and waits until the writer has taken all of them.
func burst(t *testing.T, p *testProxy, prefix string, n int) {
	t.Helper()
	for i := range n {
		r, b := p.Post("/v1/chat/completions", chatBody(fmt.Sprintf("%s %d", prefix, i)))
		expectCache(t, prefix, r, b, 200, "MISS")
	}
	waitFor(t, "the writer to take every answer", func() bool { return writerStats(t, p).Writer.QueueDepth == 0 })
}

// TestE2EStorageDiskFullBoundsPendingBytes: with the cache file on a full disk, answers are still served;
// what waits for the disk stays within cache.max_pending_bytes (the oldest dropped, counted in /stats and
// logged) instead of growing with every answer (issue: 118 MB to 1.14 GB of RSS in 8 s with 127 KB
// answers). Once the disk has room, what was kept is written without a restart.
func TestE2EStorageDiskFullBoundsPendingBytes(t *testing.T) {
	dir := mountTmpfs(t, "1m")
	fake, err := fakeupstream.Start(fakeupstream.Options{AnswerBytes: 127 << 10})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	const maxPending = 2 << 20
	config := func(dbPath string) func(*fileConfig) {
		return func(c *fileConfig) {
			c.DatabaseURL = dbPath
			c.APIEndpoints = []endpointConfig{{Name: "fake", URL: fake.URL(), Weight: 1}}
			c.Cache.Enabled = false // the memory layer holds no answer
			c.Cache.MaxPendingBytes = maxPending
			c.CacheMaintenance.Enabled = false
		}
	}
	// 127 MB of answers: growing with them would stand far above what the proxy may keep besides the
	// bound (its recent answers, at most 32 MiB, and the run's noise), whatever other tests left behind.
	const n = 1000
	const allowed = 80 << 20

	var logs syncBuffer
	p := newLoggedTestProxy(t, config(dir+"/cache.db"), slog.New(slog.NewTextHandler(&logs, nil)))
	before := heapInUse()
	burst(t, p, "disk full", n)
	var st writerFigures
	waitFor(t, "the writer to shed what exceeds max_pending_bytes", func() bool {
		st = writerStats(t, p)
		return st.Writer.PendingBytes <= maxPending && st.Writer.Dropped > 0
	})
	if st.Writer.LastError == "" || st.Writer.Written+st.Writer.Dropped+st.Writer.Pending != n {
		t.Fatalf("writer figures %+v: want the disk's error, and written + dropped + pending = %d", st.Writer, n)
	}
	if grown := heapInUse() - before; grown > allowed {
		t.Errorf("the heap grew by %d MB for %d answers of 127 KB on a full disk (max_pending_bytes is 2 MiB; at most %d MB allowed)",
			grown>>20, n, allowed>>20)
	}
	if !strings.Contains(logs.String(), "dropped the oldest cached answers waiting for the disk") {
		t.Errorf("no log line about the dropped answers:\n%s", logs.String())
	}
	t.Logf("writer on a full disk: %+v", st.Writer)

	// Room again: the answers kept are written, without a restart.
	remount(t, dir, "size=64m")
	waitFor(t, "the kept answers to be written", func() bool {
		st = writerStats(t, p)
		return st.Writer.Pending == 0 && st.Writer.LastError == ""
	})
	r, b := p.Post("/v1/chat/completions", chatBody(fmt.Sprintf("disk full %d", n-1)))
	expectCache(t, "the newest answer, kept and written", r, b, 200, "HIT")
}
