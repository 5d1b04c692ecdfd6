//go:build !race

// The race detector makes every copy of a 63 MiB answer slow (over a minute for this test): it runs in
// the passes without it (.ci/run's end-to-end pass through curl, and plain go test).

package main

import (
	"bytes"
	"encoding/hex"
	"testing"

	"llmcache/bench/fakeupstream"
)

// hitsOnDisk reads an entry's hit count from the proxy's file without loading its body.
func hitsOnDisk(t *testing.T, path, keyHex string) int64 {
	t.Helper()
	key, err := hex.DecodeString(keyHex)
	if err != nil {
		t.Fatal(err)
	}
	d := openCacheDB(t, path)
	defer d.c.Close()
	st, _, err := d.c.Prepare(`SELECT ifnull((SELECT hit_count FROM hits WHERE key = ?1), 0)`)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.BindBlob(1, key); err != nil {
		t.Fatal(err)
	}
	if !st.Step() {
		t.Fatalf("cannot read hit count: %v", st.Err())
	}
	return st.ColumnInt64(0)
}

// TestE2EStorageLargeAnswerHitManyTimes: an answer just under 64 MiB is stored, served as a hit from
// SQLite many times (the memory layer off, so every hit reads the file and is counted on disk), and again
// after a restart; the proxy never falls over (issue: a ~100 MB answer crashed the writer on its first hit,
// and again after each restart).
func TestE2EStorageLargeAnswerHitManyTimes(t *testing.T) {
	if testing.Short() {
		t.Skip("moves a 63 MiB answer a dozen times")
	}
	fake, err := fakeupstream.Start(fakeupstream.Options{AnswerBytes: 63 << 20})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	p := newTestProxy(t, func(c *fileConfig) {
		c.APIEndpoints = []endpointConfig{{Name: "big", URL: fake.URL(), Weight: 1}}
		c.Cache.Enabled = false // every hit comes from SQLite
		c.CacheMaintenance.Enabled = false
	})
	body := chatBody("a very long answer")
	r, miss := p.Post("/v1/chat/completions", body)
	expectCache(t, "miss", r, miss, 200, "MISS")
	if len(miss) < 63<<20 || len(miss) >= 64<<20 {
		t.Fatalf("answer of %d bytes, want just under 64 MiB", len(miss))
	}
	key := cacheKey(t, r)
	p.waitWritten()
	const hits = 3
	for i := range hits {
		r, b := p.Post("/v1/chat/completions", body)
		expectCache(t, "hit", r, b, 200, "HIT")
		if src := r.Header.Get("X-Cache-Source"); src != "db" || !bytes.Equal(b, miss) {
			t.Fatalf("hit %d: source %q, %d bytes, equal to the miss %v", i, src, len(b), bytes.Equal(b, miss))
		}
	}
	waitFor(t, "the hits to be counted on disk", func() bool {
		p.waitWritten()
		return hitsOnDisk(t, p.DBPath, key) == hits
	})
	if st := getStats(t, p); st.Writer.LastError != "" {
		t.Fatalf("writer error: %s", st.Writer.LastError)
	}

	p.Restart()
	r, b := p.Post("/v1/chat/completions", body)
	expectCache(t, "hit after restart", r, b, 200, "HIT")
	if !bytes.Equal(b, miss) {
		t.Fatal("the hit after the restart differs from the miss")
	}
	if got := fake.CallsTo("chat"); got != 1 {
		t.Fatalf("%d upstream calls, want 1", got)
	}
	p.Stop()
	if n := hitsOnDisk(t, p.DBPath, key); n != hits+1 {
		t.Fatalf("hit_count %d on disk after the restart, want %d", n, hits+1)
	}
	openCacheDB(t, p.DBPath).mustRow(key, miss)
}
