package main

import (
	"fmt"
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
			if err := p.app.writer.Flush(); err != nil {
				t.Fatal(err)
			}
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
				// Just served (and so just put in memory): an immediate repeat is a memory hit.
				resp, _ = p.Post("/v1/chat/completions", chatBody(fmt.Sprintf("bounded %d", i)))
				if src := resp.Header.Get("X-Cache-Source"); src != "memory" {
					t.Fatalf("immediate repeat %d: X-Cache-Source %q, want memory", i, src)
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
