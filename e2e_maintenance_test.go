package main

import (
	"fmt"
	"testing"
	"time"

	"github.com/ncruces/go-sqlite3"
)

// TestE2EMaintenanceDeletesWhatTheRulesName: on start (cleanup_on_startup), maintenance deletes expired
// entries, and entries unused for retention_days whose hit_count is below min_hit_count; nothing else.
func TestE2EMaintenanceDeletesWhatTheRulesName(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) {
		c.CacheMaintenance = maintenanceConfig{Enabled: true, IntervalHours: 12, RetentionDays: 30, CleanupOnStartup: true, MinHitCount: 2}
	})
	keys := map[string]string{}
	for _, name := range []string{"fresh", "expired", "old-unused", "old-popular", "old-once"} {
		header := []string{}
		if name == "expired" {
			header = []string{"X-Cache-TTL", "1"}
		}
		resp, b := p.Post("/v1/chat/completions", chatBody(name), header...)
		expectCache(t, name, resp, b, 200, "MISS")
		keys[name] = cacheKey(t, resp)
	}
	p.Stop()
	// Age three entries by 40 days, directly in the file, as time would have.
	old := time.Now().Add(-40 * 24 * time.Hour).UnixMilli()
	w, err := sqlite3.Open(p.DBPath)
	if err != nil {
		t.Fatal(err)
	}
	for name, hits := range map[string]int{"old-unused": 0, "old-popular": 5, "old-once": 1} {
		if err := w.Exec(fmt.Sprintf(`UPDATE entries SET created_at = %[1]d WHERE hex(key) = upper('%[3]s');
			INSERT INTO hits (key, hit_count, last_hit_at) VALUES (unhex('%[3]s'), %[2]d, %[1]d)
			ON CONFLICT (key) DO UPDATE SET hit_count = excluded.hit_count, last_hit_at = excluded.last_hit_at`, old, hits, keys[name])); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	// The TTL entry expires one second after it was stored.
	r, ok := openCacheDB(t, p.DBPath).row(keys["expired"])
	if !ok {
		t.Fatal("the ttl entry is not on disk")
	}
	expires := r.ExpiresAt
	waitFor(t, "the ttl entry to expire", func() bool { return expires != 0 && time.Now().UnixMilli() > expires })

	p.start()
	rep := waitMaintenance(t, p)
	if rep.LastExpired != 1 || rep.LastUnused != 2 {
		t.Errorf("report: %d expired, %d unused deleted; want 1 and 2", rep.LastExpired, rep.LastUnused)
	}
	p.Stop()
	db := openCacheDB(t, p.DBPath)
	for name, want := range map[string]bool{"fresh": true, "expired": false, "old-unused": false, "old-popular": true, "old-once": false} {
		if _, ok := db.row(keys[name]); ok != want {
			t.Errorf("%s: on disk %v, want %v", name, ok, want)
		}
	}
}

// TestE2EMaintenanceMaxDBBytes: past max_db_bytes, the least recently used entries go (never-hit ones
// first) until the pages in use fit.
func TestE2EMaintenanceMaxDBBytes(t *testing.T) {
	p := newTestProxy(t, nil)
	const n = 200
	keys := make([]string, n)
	for i := range n {
		resp, b := p.Post("/v1/chat/completions", chatBody(fmt.Sprintf("evict %d", i)))
		expectCache(t, "fill", resp, b, 200, "MISS")
		keys[i] = cacheKey(t, resp)
	}
	for i := range 5 { // the five oldest are used again: they must survive
		resp, b := p.Post("/v1/chat/completions", chatBody(fmt.Sprintf("evict %d", i)))
		expectCache(t, "hit", resp, b, 200, "HIT")
	}
	p.Stop()
	// 200 answers take ~290 KB; an empty database ~180 KB (a page of 8 KiB for each table and index: the
	// answers', labels, dicts, response_ids and the Batch API's), so some 40 answers fit.
	const limit = 240_000
	p.cfg.CacheMaintenance.MaxDBBytes = limit
	p.start()
	rep := waitMaintenance(t, p)
	p.Stop()
	if rep.LastEvicted == 0 {
		t.Fatalf("nothing evicted with %d entries over a %d-byte limit", n, limit)
	}
	db := openCacheDB(t, p.DBPath)
	var pages, free, size int64
	for q, dst := range map[string]*int64{"PRAGMA page_count": &pages, "PRAGMA freelist_count": &free, "PRAGMA page_size": &size} {
		st, _, err := db.c.Prepare(q)
		if err != nil || !st.Step() {
			t.Fatalf("%s: %v", q, err)
		}
		*dst = st.ColumnInt64(0)
		st.Close()
	}
	if used := (pages - free) * size; used > limit {
		t.Errorf("%d bytes in use after eviction, want at most %d", used, limit)
	}
	for i := range 5 {
		if _, ok := db.row(keys[i]); !ok {
			t.Errorf("entry %d was hit recently but was evicted", i)
		}
	}
	if left := db.count(); left >= n || int64(left) != n-rep.LastEvicted {
		t.Errorf("%d rows left, %d evicted of %d", left, rep.LastEvicted, n)
	}
}

// waitMaintenance waits for the first maintenance run and returns what /stats says it did.
func waitMaintenance(t *testing.T, p *testProxy) maintenanceFigures {
	t.Helper()
	var m maintenanceFigures
	waitFor(t, "the start-up maintenance run", func() bool {
		s := getStats(t, p)
		if s.Maintenance != nil {
			m = *s.Maintenance
		}
		return m.Runs > 0
	})
	return m
}
