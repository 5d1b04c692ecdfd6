package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"testing"
)

// keyFilterStats is what /stats says of the filter of the keys on disk.
func keyFilterStats(t *testing.T, p *testProxy) (state string, skipped int64) {
	t.Helper()
	resp, body := p.Get("/stats")
	var s struct {
		KeyFilter    string `json:"key_filter"`
		ReadsSkipped int64  `json:"store_reads_skipped"`
	}
	if resp.StatusCode != 200 || json.Unmarshal(body, &s) != nil {
		t.Fatalf("/stats: status %d, body %s", resp.StatusCode, body)
	}
	return s.KeyFilter, s.ReadsSkipped
}

// TestE2EKeyFilter: once the filter of the keys on disk is loaded after a restart, a new request skips its
// SQLite read (counted in /stats), while every answer on disk, stored before the restart or since, is still
// a hit from SQLite; read_only answers 404 for what is absent and the stored bytes for what is there. After a
// flushall the old answers are misses again.
func TestE2EKeyFilter(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) { c.Cache.Enabled = false }) // every hit from SQLite
	stored := map[string][]byte{}
	for i := range 20 {
		body := chatBody(fmt.Sprint("stored before the restart ", i))
		resp, b := p.Post("/v1/chat/completions", body)
		expectCache(t, "first", resp, b, 200, "MISS")
		stored[body] = b
	}
	p.Restart()
	waitFor(t, "the key filter to load", func() bool { s, _ := keyFilterStats(t, p); return s == "ready" })
	_, before := keyFilterStats(t, p)

	// Stored since the restart: its key reached the filter with its put.
	since := chatBody("stored after the restart")
	resp, b := p.Post("/v1/chat/completions", since)
	expectCache(t, "a new prompt", resp, b, 200, "MISS")
	stored[since] = b
	if _, after := keyFilterStats(t, p); after != before+1 {
		t.Errorf("store_reads_skipped went from %d to %d for one new prompt, want +1", before, after)
	}
	p.waitWritten()
	for body, want := range stored {
		resp, b := p.Post("/v1/chat/completions", body)
		expectCache(t, "a stored prompt", resp, b, 200, "HIT")
		if !bytes.Equal(b, want) {
			t.Fatalf("a stored prompt's hit differs from its first answer:\n%s\n%s", b, want)
		}
		resp, b = p.Post("/v1/chat/completions", body, "X-Cache-Mode", "read_only")
		expectCache(t, "a stored prompt, read_only", resp, b, 200, "HIT")
	}
	calls := p.Fake.CallsTo("chat")
	resp, b = p.Post("/v1/chat/completions", chatBody("never stored"), "X-Cache-Mode", "read_only")
	if e := expectError(t, "read_only, never stored", resp, b, 404); string(e.Error.Code) != `"cache_miss"` {
		t.Errorf("read_only miss: code %s, want cache_miss", e.Error.Code)
	}
	expectCalls(t, p, calls)

	resp, b = p.Post("/cache/flushall", ``)
	deletedCount(t, resp.StatusCode, b)
	for body := range stored {
		resp, b := p.Post("/v1/chat/completions", body, "X-Cache-Mode", "read_only")
		expectError(t, "read_only after flushall", resp, b, 404)
		break
	}
}
