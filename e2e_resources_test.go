package main

import (
	"encoding/json"
	"fmt"
	"runtime"
	"testing"

	"llmcache/bench/fakeupstream"
)

// End-to-end tests of the bounds the configuration promises on what the proxy holds (memory, goroutines,
// connections), measured the way a user meets them: answers through the front end, figures from /stats
// and, for memory, the live heap of this process (the proxy runs in it) after a full collection.

// liveHeap is the bytes of heap objects still reachable, after two collections (the second empties the
// pools the first only moved aside).
func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// memoryFigures is /stats memory.
type memoryFigures struct {
	Memory struct {
		Entries int64 `json:"entries"`
		Bytes   int64 `json:"bytes"`
	} `json:"memory"`
}

func getMemoryFigures(t *testing.T, p *testProxy) memoryFigures {
	t.Helper()
	resp, body := p.Get("/stats")
	var f memoryFigures
	if resp.StatusCode != 200 || json.Unmarshal(body, &f) != nil {
		t.Fatalf("/stats: status %d, body %s", resp.StatusCode, body)
	}
	return f
}

// TestE2EMemoryLayerBoundHoldsForStreamedHits: a streamed hit keeps the answer's SSE replay on its memory
// entry (twice the body and more, one per usage choice); those bytes count against cache.max_bytes like
// the body. They did not: with 100 KB answers the layer held 8 times its max_bytes once every entry had
// been replayed both ways (a 1 GB container with the default 256 MiB would have been killed).
func TestE2EMemoryLayerBoundHoldsForStreamedHits(t *testing.T) {
	const (
		answerBytes = 64 << 10
		maxBytes    = 8 << 20 // 512 KiB a shard: about eight answers
		prompts     = 48      // about 3 MiB of answers: all of them fit, without their replays
	)
	fake := startFake(t, fakeupstream.Options{AnswerBytes: answerBytes})
	p := newTestProxy(t, func(c *fileConfig) {
		c.APIEndpoints = []endpointConfig{{Name: "big", URL: fake.URL(), Weight: 1}}
		c.Cache.MaxBytes = maxBytes
		c.CacheMaintenance.Enabled = false
	})
	prompt := func(i int) string { return fmt.Sprintf("replayed answer %d", i) }
	for i := range prompts {
		resp, b := p.Post("/v1/chat/completions", chatBody(prompt(i)))
		expectCache(t, "miss", resp, b, 200, "MISS")
		if len(b) < answerBytes {
			t.Fatalf("answer of %d bytes, want at least %d", len(b), answerBytes)
		}
	}
	// A restart leaves only the memory layer holding answers (the answers just fetched are also kept a
	// moment for identical requests in flight, outside it); a first round of hits loads them from SQLite.
	p.Restart()
	for _, src := range []string{"db", "memory"} {
		for i := range prompts {
			resp, b := p.Post("/v1/chat/completions", chatBody(prompt(i)))
			expectCache(t, "hit", resp, b, 200, "HIT")
			if got := resp.Header.Get("X-Cache-Source"); got != src {
				t.Fatalf("prompt %d: X-Cache-Source %q, want %s (every answer fits in cache.max_bytes)", i, got, src)
			}
		}
	}
	before := liveHeap()
	for _, usage := range []bool{false, true} {
		for i := range prompts {
			sr, raw := p.postStream("/v1/chat/completions", chatStreamBody(prompt(i), usage))
			expectStream(t, fmt.Sprintf("streamed hit %d (usage %v)", i, usage), sr, raw, "HIT")
		}
	}
	grown := liveHeap() - before
	if grown > maxBytes {
		t.Errorf("the live heap grew by %.1f MiB over the streamed hits, more than the memory layer's whole budget (cache.max_bytes %d MiB)",
			float64(grown)/(1<<20), maxBytes>>20)
	}
	if f := getMemoryFigures(t, p); f.Memory.Bytes > maxBytes {
		t.Errorf("/stats memory.bytes = %d, over cache.max_bytes %d", f.Memory.Bytes, maxBytes)
	}
}
