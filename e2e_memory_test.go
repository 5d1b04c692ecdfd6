package main

import (
	"fmt"
	"os"
	"testing"
)

// TestE2EMemoryLayerBounded: the memory stage keeps at most cache.max_items answers (and cache.max_bytes of
// them); the rest are still served, from SQLite, with identical bytes.
func TestE2EMemoryLayerBounded(t *testing.T) {
	for _, tc := range []struct {
		name  string
		apply func(*fileConfig)
	}{
		{"max_items", func(c *fileConfig) { c.Cache.MaxItems = 16 }},
		{"max_bytes", func(c *fileConfig) { c.Cache.MaxBytes = 16 * 2000 }}, // one ~1.6 KB answer per shard
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newTestProxy(t, tc.apply)
			const n = 64
			first := make([]string, n)
			for i := range n {
				resp, body := p.Post("/v1/chat/completions", chatBody(fmt.Sprintf("bounded %d", i)))
				expectCache(t, "first", resp, body, 200, "MISS")
				first[i] = string(body)
			}
			// Answers the memory stage lets go of are served from SQLite: wait for all of them on disk.
			d := openCacheDB(t, p.DBPath)
			waitFor(t, "every answer on disk", func() bool { return d.count() == n })
			fromMemory := 0
			for i := range n {
				resp, body := p.Post("/v1/chat/completions", chatBody(fmt.Sprintf("bounded %d", i)))
				expectCache(t, "repeat", resp, body, 200, "HIT")
				if string(body) != first[i] {
					t.Fatalf("repeat %d: bytes differ from the first answer", i)
				}
				if resp.Header.Get("X-Cache-Source") == "memory" {
					fromMemory++
				}
			}
			// 16 shards hold one answer each, so at most 16 of the 64 can still be in memory.
			if fromMemory > 16 {
				t.Errorf("%d of %d answers were still in memory, want at most 16 (the bound)", fromMemory, n)
			}
			if calls := p.Fake.CallsTo("chat"); calls != n {
				t.Errorf("upstream chat calls = %d, want %d (one per distinct request)", calls, n)
			}
		})
	}
}

// TestE2EReplayLargerThanMemory: an evaluation run replayed in turn, with more distinct prompts than the
// memory layer holds, is still answered partly from memory, the same share each round, byte for byte: an
// entry read from SQLite does not evict one asked for as often as itself (an LRU that let it would evict,
// each time, the entry asked for next, and serve nothing from memory).
func TestE2EReplayLargerThanMemory(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) { c.Cache.MaxItems = 16 }) // one answer in each of 16 shards
	const n = 48
	first := make([]string, n)
	for i := range n {
		resp, body := p.Post("/v1/chat/completions", chatBody(fmt.Sprintf("replayed %d", i)))
		expectCache(t, "first", resp, body, 200, "MISS")
		first[i] = string(body)
	}
	d := openCacheDB(t, p.DBPath)
	waitFor(t, "every answer on disk", func() bool { return d.count() == n })
	var fromMemory [3]int
	for round := range fromMemory {
		for i := range n {
			resp, body := p.Post("/v1/chat/completions", chatBody(fmt.Sprintf("replayed %d", i)))
			expectCache(t, "replayed", resp, body, 200, "HIT")
			if string(body) != first[i] {
				t.Fatalf("round %d, prompt %d: bytes differ from the first answer", round, i)
			}
			if resp.Header.Get("X-Cache-Source") == "memory" {
				fromMemory[round]++
			}
		}
	}
	t.Logf("answers from memory in each round: %v of %d", fromMemory, n)
	for round, m := range fromMemory {
		if m > 16 {
			t.Errorf("round %d: %d answers from memory, more than the 16 it may hold", round, m)
		}
		if round > 0 && m < 10 {
			t.Errorf("round %d: %d of %d answers from memory; at most 16 fit, and they should stay", round, m, n)
		}
	}
	if calls := p.Fake.CallsTo("chat"); calls != n {
		t.Errorf("upstream chat calls = %d, want %d", calls, n)
	}
}

// TestE2EHitsCounted: hits, from memory and from SQLite, reach hit_count and last_hit_at on disk (in
// batches, so the check is made after a clean stop, which flushes them).
func TestE2EHitsCounted(t *testing.T) {
	p := newTestProxy(t, nil)
	body := chatBody("count my hits")
	resp, b := p.Post("/v1/chat/completions", body)
	expectCache(t, "miss", resp, b, 200, "MISS")
	key := cacheKey(t, resp)
	for range 3 {
		resp, b = p.Post("/v1/chat/completions", body)
		expectCache(t, "memory hit", resp, b, 200, "HIT")
	}
	p.Restart()
	resp, b = p.Post("/v1/chat/completions", body)
	expectCache(t, "db hit", resp, b, 200, "HIT")
	if src := resp.Header.Get("X-Cache-Source"); src != "db" {
		t.Fatalf("after restart X-Cache-Source %q, want db", src)
	}
	p.Stop()
	row := openCacheDB(t, p.DBPath).mustRow(key, b)
	if row.HitCount != 4 || row.LastHitAt == 0 {
		t.Errorf("hit_count %d, last_hit_at %d; want 4 hits (3 from memory, 1 from SQLite) and a time", row.HitCount, row.LastHitAt)
	}
}

// TestE2EIdleFlushEmptiesWAL: after idle_timeout_seconds without requests, what waits is written and the
// WAL is checkpointed to an empty file, while the proxy keeps running.
func TestE2EIdleFlushEmptiesWAL(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) {
		c.IdleFlush = idleFlushConfig{Enabled: true, IdleTimeoutSeconds: 1.5, CheckIntervalSeconds: 0.05}
		c.Cache.FlushInterval = 60_000 // only the idle flush writes
		c.Cache.BatchWriteSize = 1000
	})
	resp, b := p.Post("/v1/chat/completions", chatBody("idle"))
	expectCache(t, "miss", resp, b, 200, "MISS")
	key := cacheKey(t, resp)
	wal := p.DBPath + "-wal"
	// Only the idle flush writes here, and it empties the WAL after writing: an empty WAL once /stats counts
	// the answer written is its work.
	waitFor(t, "the idle flush to write the answer and empty the WAL", func() bool {
		if getStats(t, p).Writer.Written < 1 {
			return false
		}
		st, err := os.Stat(wal)
		return idleFlushes(t, p) > 0 && err == nil && st.Size() == 0
	})
	openCacheDB(t, p.DBPath).mustRow(key, b)
	resp, b = p.Post("/v1/chat/completions", chatBody("idle"))
	expectCache(t, "after the idle flush", resp, b, 200, "HIT")
}
