package main

import (
	"encoding/json"
	"testing"
)

// statsFigures decodes GET /stats.
type statsFigures struct {
	Requests struct {
		MemoryHits int64 `json:"memory_hits"`
		DBHits     int64 `json:"db_hits"`
		Misses     int64 `json:"misses"`
		Coalesced  int64 `json:"coalesced"`
		Errors     int64 `json:"errors"`
		Total      int64 `json:"total"`
	} `json:"requests"`
	HitRate  float64 `json:"hit_rate"`
	Upstream struct {
		Calls   int64 `json:"calls"`
		Errors  int64 `json:"errors"`
		Waiting int64 `json:"waiting"`
	} `json:"upstream"`
	Writer struct {
		Pending   int64  `json:"pending"`
		Written   int64  `json:"written"`
		LastError string `json:"last_error"`
	} `json:"writer"`
	Maintenance *maintenanceFigures `json:"maintenance"`
	IdleFlushes *int64              `json:"idle_flushes"`
	Store       struct {
		Entries       int64 `json:"entries"`
		Dictionaries  int64 `json:"dictionaries"`
		Dictionary    int64 `json:"dictionary"`
		CorruptBodies int64 `json:"corrupt_bodies"`
	} `json:"store"`
}

type maintenanceFigures struct {
	Runs        int64 `json:"runs"`
	LastExpired int64 `json:"last_expired_deleted"`
	LastUnused  int64 `json:"last_unused_deleted"`
	LastEvicted int64 `json:"last_evicted"`
}

// idleFlushes is how many idle flushes /stats says were done.
func idleFlushes(t *testing.T, p *testProxy) int64 {
	if n := getStats(t, p).IdleFlushes; n != nil {
		return *n
	}
	return 0
}

func getStats(t *testing.T, p *testProxy) statsFigures {
	t.Helper()
	resp, body := p.Get("/stats")
	var s statsFigures
	if resp.StatusCode != 200 || json.Unmarshal(body, &s) != nil {
		t.Fatalf("/stats: status %d, body %s", resp.StatusCode, body)
	}
	return s
}

// TestE2EStatsCounts: after a known mix of misses, memory hits, SQLite hits and errors, /stats says so.
func TestE2EStatsCounts(t *testing.T) {
	p := newTestProxy(t, noRetries)
	for _, c := range []string{"s1", "s2", "s3"} {
		resp, b := p.Post("/v1/chat/completions", chatBody(c))
		expectCache(t, "miss", resp, b, 200, "MISS")
	}
	for range 2 {
		resp, b := p.Post("/v1/chat/completions", chatBody("s1"))
		expectCache(t, "hit", resp, b, 200, "HIT")
	}
	resp, b := p.Post("/v1/chat/completions", `{"model":1}`)
	expectError(t, "bad", resp, b, 400)
	p.Fake.FailNext(1, 500, "", nil)
	resp, _ = p.Post("/v1/chat/completions", chatBody("s4"))
	if resp.StatusCode != 500 {
		t.Fatalf("status %d, want the upstream's 500", resp.StatusCode)
	}
	// The three answers reach disk in the writer's time.
	d := openCacheDB(t, p.DBPath)
	waitFor(t, "three rows on disk", func() bool { return d.count() == 3 })
	waitFor(t, "/stats to count them written", func() bool { s := getStats(t, p); return s.Writer.Written >= 3 && s.Store.Entries >= 3 })
	s := getStats(t, p)
	if s.Requests.Misses != 3 || s.Requests.MemoryHits != 2 || s.Requests.DBHits != 0 || s.Requests.Errors != 2 {
		t.Errorf("requests %+v, want 3 misses, 2 memory hits, 0 db hits, 2 errors", s.Requests)
	}
	if s.Upstream.Calls != 4 || s.Upstream.Errors != 1 {
		t.Errorf("upstream %+v, want 4 calls and 1 error", s.Upstream)
	}
	if s.HitRate != 0.4 {
		t.Errorf("hit_rate %v, want 0.4 (2 hits of 5 answers)", s.HitRate)
	}
	if s.Writer.Written != 3 || s.Store.Entries != 3 || s.Writer.LastError != "" {
		t.Errorf("writer %+v, store %+v: want 3 written, 3 entries, no error", s.Writer, s.Store)
	}
	p.Restart()
	resp, b = p.Post("/v1/chat/completions", chatBody("s2"))
	expectCache(t, "db hit", resp, b, 200, "HIT")
	if s := getStats(t, p); s.Requests.DBHits != 1 || s.Requests.Misses != 0 {
		t.Errorf("after restart %+v, want 1 db hit and 0 misses (counters start again)", s.Requests)
	}
}
