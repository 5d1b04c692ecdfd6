package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ncruces/go-sqlite3"
)

// healthz fetches /healthz and decodes its body.
func healthz(t *testing.T, p *testProxy) (int, string, string) {
	t.Helper()
	resp, body := p.Get("/healthz")
	var h struct{ Status, Reason string }
	if err := json.Unmarshal(body, &h); err != nil {
		t.Fatalf("/healthz body %s: %v", body, err)
	}
	return resp.StatusCode, h.Status, h.Reason
}

// TestE2EWriteFailureDegradesHealthButServes: when the database cannot take writes (here another process
// holds its write lock past the busy timeout, as a full or read-only disk would refuse them), answers are
// still served, /healthz says degraded with the reason and status 200 (the proxy still answers: a load
// balancer must not take it out), and once writes work again what waited is written and /healthz is ok.
//
// Nothing here depends on when a background job runs: start-up maintenance is off (it takes the write lock
// too), and the test's own connection waits for the lock instead of failing at once.
func TestE2EWriteFailureDegradesHealthButServes(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the 5 s busy timeout")
	}
	p := newTestProxy(t, func(c *fileConfig) { c.CacheMaintenance.Enabled = false })
	lock, err := sqlite3.Open(p.DBPath)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := lock.BusyTimeout(time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := lock.Exec(`BEGIN IMMEDIATE`); err != nil {
		t.Fatal(err)
	}
	r1, b1 := p.Post("/v1/chat/completions", chatBody("while locked"))
	expectCache(t, "miss while writes fail", r1, b1, 200, "MISS")
	key := cacheKey(t, r1)
	waitFor(t, "/healthz to report the failing writes", func() bool {
		_, status, _ := healthz(t, p)
		return status == "degraded"
	})
	if code, _, reason := healthz(t, p); code != 200 || !strings.Contains(reason, "cannot write") {
		t.Fatalf("degraded /healthz: %d, reason %q; want 200 and the write error", code, reason)
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
		code, status, _ := healthz(t, p)
		return code == 200 && status == "ok"
	})
	p.waitWritten()
	db := openCacheDB(t, p.DBPath)
	db.mustRow(key, b1)
	db.mustRow(cacheKey(t, r3), b3)
}
