package main

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ncruces/go-sqlite3"
)

// TestE2EWriteFailureDegradesHealthButServes: when the database cannot take writes (here another process
// holds its write lock past the busy timeout, as a full or read-only disk would refuse them), answers are
// still served, /healthz says degraded, and once writes work again what waited is written.
func TestE2EWriteFailureDegradesHealthButServes(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the 5 s busy timeout")
	}
	p := newTestProxy(t, nil)
	lock, err := sqlite3.Open(p.DBPath)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := lock.Exec(`BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	r1, b1 := p.Post("/v1/chat/completions", chatBody("while locked"))
	expectCache(t, "miss while writes fail", r1, b1, 200, "MISS")
	key := cacheKey(t, r1)
	waitFor(t, "/healthz to report the failing writes", func() bool {
		resp, _ := p.Get("/healthz")
		return resp.StatusCode == 503
	})
	_, body := p.Get("/healthz")
	var h struct{ Status, Error string }
	if err := json.Unmarshal(body, &h); err != nil || h.Status != "degraded" || !strings.Contains(h.Error, "cannot write") {
		t.Fatalf("degraded /healthz body %s: want status degraded and the write error", body)
	}
	if st := getStats(t, p); st.Writer.LastError == "" {
		t.Error("/stats writer.last_error is empty while writes fail")
	}
	r2, b2 := p.Post("/v1/chat/completions", chatBody("while locked"))
	expectCache(t, "hit while writes fail", r2, b2, 200, "HIT")
	r3, b3 := p.Post("/v1/chat/completions", chatBody("another while locked"))
	expectCache(t, "another miss while writes fail", r3, b3, 200, "MISS")

	if err := lock.Exec(`ROLLBACK`); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "/healthz to recover", func() bool {
		resp, _ := p.Get("/healthz")
		return resp.StatusCode == 200
	})
	p.waitWritten()
	db := openCacheDB(t, p.DBPath)
	db.mustRow(key, b1)
	db.mustRow(cacheKey(t, r3), b3)
}
