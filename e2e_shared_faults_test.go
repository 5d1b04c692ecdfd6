package main

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"llmcache/bench/fakeupstream"
	"llmcache/db/redisstore/redistest"
	"llmcache/httpx/proxy"
)

type health struct {
	Status string `json:"status"`
	Reason string `json:"reason"`
}

func getHealth(t *testing.T, p *testProxy) (int, health) {
	t.Helper()
	resp, body := p.Get("/healthz")
	var h health
	if err := json.Unmarshal(body, &h); err != nil {
		t.Fatalf("/healthz: %v: %s", err, body)
	}
	return resp.StatusCode, h
}

// TestE2ESharedStoreOutage: the store stops mid-run and comes back. Every client request is answered (from
// memory, then upstream) while it is away; /healthz says 200 degraded with the reason and /stats why; writes
// wait, and past max_pending_bytes are dropped and counted; once the store is back, the instances see it
// without a restart, write what waited and share answers again.
func TestE2ESharedStoreOutage(t *testing.T) {
	s := newSharedStore(t, false, redistestOptions())
	ps, _ := newSharedProxies(t, 2, s, fakeupstream.Options{}, func(i int, c *fileConfig) {
		if i == 1 {
			c.Cache.MaxPendingBytes = 4096 // b keeps little while the store is away: it drops, and says so
		}
	})
	a, b := ps[0], ps[1]
	var failures, answered atomic.Int64
	var firstFailure atomic.Pointer[string]
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				p := ps[(w+i)%2]
				// Half repeat a few prompts (hits), half are new (misses that must be written).
				content := "outage " + strconv.Itoa(w) + "-" + strconv.Itoa(i)
				if i%2 == 0 {
					content = "outage repeated " + strconv.Itoa(i%10)
				}
				r := send(loadClient, p.URL+"/v1/chat/completions", chatBody(content))
				if r.err != nil || r.status != 200 || checkEcho(r.body, content) != nil {
					failures.Add(1)
					msg := strconv.Itoa(r.status) + " " + string(r.body)
					if r.err != nil {
						msg = r.err.Error()
					}
					firstFailure.CompareAndSwap(nil, &msg)
				}
				answered.Add(1)
			}
		}()
	}
	waitFor(t, "some answers before the outage", func() bool { return answered.Load() > 50 })
	s.server.Stop()
	for _, p := range ps {
		waitFor(t, "/healthz to say degraded", func() bool {
			code, h := getHealth(t, p)
			return code == 200 && h.Status == "degraded" && strings.Contains(h.Reason, "shared store")
		})
	}
	if f := getShared(t, a); f.Shared.Up || f.Shared.LastError == "" {
		t.Fatalf("/stats store.shared during the outage: %+v", f.Shared)
	}
	during := answered.Load()
	waitFor(t, "answers during the outage", func() bool { return answered.Load() > during+100 })
	waitFor(t, "b to drop what it cannot keep", func() bool {
		_, body := b.Get("/stats")
		var st struct {
			Writer struct {
				Dropped int64 `json:"dropped"`
			} `json:"writer"`
		}
		return json.Unmarshal(body, &st) == nil && st.Writer.Dropped > 0
	})
	s.server.Restart()
	for _, p := range ps {
		waitFor(t, "recovery: /healthz ok and nothing waiting for the store", func() bool {
			code, h := getHealth(t, p)
			return code == 200 && h.Status == "ok" && getStats(t, p).Writer.Pending == 0
		})
	}
	after := answered.Load()
	waitFor(t, "answers after the recovery", func() bool { return answered.Load() > after+50 })
	close(stop)
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d of %d client requests failed; the first: %s", n, answered.Load(), *firstFailure.Load())
	}
	// Shared again: a miss on a is a store hit on b.
	resp, body := a.Post("/v1/chat/completions", chatBody("after the outage"))
	expectCache(t, "a after", resp, body, 200, "MISS")
	a.waitWritten()
	resp, body = b.Post("/v1/chat/completions", chatBody("after the outage"))
	expectCache(t, "b after", resp, body, 200, "HIT")
	expectSource(t, "b after", resp.Header.Get("X-Cache-Source"), "store")
}

// TestE2ESharedGarbageEntry: an entry the store holds that does not decode (another type at the key, a body
// changed under its record) is a miss and a logged error, counted in /stats, never an answer; the fresh
// answer replaces it.
func TestE2ESharedGarbageEntry(t *testing.T) {
	s := newSharedStore(t, false, redistestOptions())
	ps, fake := newSharedProxies(t, 2, s, fakeupstream.Options{}, nil)
	a, b := ps[0], ps[1]
	resp, body := a.Post("/v1/chat/completions", chatBody("to spoil"))
	expectCache(t, "a", resp, body, 200, "MISS")
	key := cacheKey(t, resp)
	a.waitWritten()
	s.cli("hset", entryKey(key), "b", `{"choices":[{"message":{"content":"a wrong answer"}}]}`)
	resp, body = b.Post("/v1/chat/completions", chatBody("to spoil"))
	expectCache(t, "b on a spoiled entry", resp, body, 200, "MISS")
	if err := checkEcho(body, "to spoil"); err != nil {
		t.Fatalf("b answered from the spoiled entry: %v", err)
	}
	if f := getShared(t, b); f.Shared.DecodeErrors == 0 {
		t.Fatalf("decode errors not counted: %+v", f.Shared)
	}
	b.waitWritten()
	s.cli("del", entryKey(key))
	s.cli("set", entryKey(key), "not a hash at all")
	resp, body = a.Post("/v1/chat/completions", chatBody("to spoil"), "Cache-Control", "max-age=0") // past a's memory
	expectCache(t, "a on another type", resp, body, 200, "MISS")
	if calls := fake.CallsTo("chat"); calls != 3 {
		t.Fatalf("upstream calls %d, want 3", calls)
	}
}

// TestE2ESharedPasswordNeverShown: a store with requirepass; its password appears in no log line, no
// /stats, /metrics, /healthz or error body, while the store works and while it is down.
func TestE2ESharedPasswordNeverShown(t *testing.T) {
	const secret = "Pa55-w0rd-never-shown"
	s := newSharedStore(t, false, redistest.Options{Password: secret})
	var logs bytes.Buffer
	var mu sync.Mutex
	log := slog.New(slog.NewTextHandler(&lockedWriter{w: &logs, mu: &mu}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ps, _ := newSharedProxies(t, 1, s, fakeupstream.Options{}, nil)
	p := ps[0]
	// Again, logging: the start-up line carries the configuration.
	p.Stop()
	p.Log = log
	p.start()
	var seen []string
	look := func() {
		for _, path := range []string{"/stats", "/metrics", "/healthz"} {
			_, body := p.Get(path)
			seen = append(seen, path+": "+string(body))
		}
		resp, body := p.Post("/v1/chat/completions", chatBody("secret test"))
		seen = append(seen, "chat: "+resp.Header.Get("X-Cache")+" "+string(body))
		_, body = p.Post("/v1/chat/completions", `{"model":1}`)
		seen = append(seen, "bad request: "+string(body))
	}
	look()
	s.server.Stop()
	waitFor(t, "the outage to show", func() bool { _, h := getHealth(t, p); return h.Status == "degraded" })
	look()
	s.server.Restart()
	waitFor(t, "the recovery", func() bool { _, h := getHealth(t, p); return h.Status == "ok" && getStats(t, p).Writer.Pending == 0 })
	p.Stop()
	mu.Lock()
	seen = append(seen, logs.String())
	mu.Unlock()
	for _, text := range seen {
		if strings.Contains(text, secret) {
			t.Fatalf("the store's password was shown: %s", text)
		}
	}
	if !strings.Contains(seen[len(seen)-1], "redis://:***@") {
		t.Fatalf("the start-up line does not show the masked URL: %s", seen[len(seen)-1])
	}
	// A wrong password stops the start, without saying it.
	cfg := p.cfg
	cfg.Store.RedisURL = "redis://:wrong-" + secret + "@" + s.server.Addr
	pc, err := cfg.proxyConfig(func(string) string { return "" }, slog.New(slog.DiscardHandler))
	if err == nil {
		var app *proxy.Proxy
		if app, err = proxy.Start(pc); err == nil {
			app.Stop()
		}
	}
	if err == nil || strings.Contains(err.Error(), secret) {
		t.Fatalf("start with a wrong password: %v", err)
	}
}

type lockedWriter struct {
	w  *bytes.Buffer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// TestE2ESharedEventsConnectionDrops: an instance whose events connection is killed empties its memory
// layer (it may have missed a delete), takes the connection up again by itself, and answers from the store.
func TestE2ESharedEventsConnectionDrops(t *testing.T) {
	s := newSharedStore(t, false, redistestOptions())
	ps, _ := newSharedProxies(t, 1, s, fakeupstream.Options{}, nil)
	p := ps[0]
	resp, body := p.Post("/v1/chat/completions", chatBody("kept in memory"))
	expectCache(t, "miss", resp, body, 200, "MISS")
	p.waitWritten()
	resp, body = p.Post("/v1/chat/completions", chatBody("kept in memory"))
	expectSource(t, "before", resp.Header.Get("X-Cache-Source"), "memory")
	resets := getShared(t, p).Shared.MemoryResets
	s.cli("client", "kill", "type", "pubsub")
	waitFor(t, "the memory layer to be emptied", func() bool { return getShared(t, p).Shared.MemoryResets > resets })
	waitFor(t, "the store to be up again", func() bool { _, h := getHealth(t, p); return h.Status == "ok" })
	resp, body = p.Post("/v1/chat/completions", chatBody("kept in memory"))
	expectCache(t, "after", resp, body, 200, "HIT")
	expectSource(t, "after", resp.Header.Get("X-Cache-Source"), "store")
}

// TestE2ESharedStoreDownAtStart: an instance started while its store is unreachable starts anyway, answers
// (degraded, from upstream), and uses the store once it comes up, without a restart.
func TestE2ESharedStoreDownAtStart(t *testing.T) {
	s := newSharedStore(t, false, redistestOptions())
	s.server.Stop()
	ps, fake := newSharedProxies(t, 1, s, fakeupstream.Options{}, nil)
	p := ps[0]
	if code, h := getHealth(t, p); code != 200 || h.Status != "degraded" || !strings.Contains(h.Reason, "shared store") {
		t.Fatalf("/healthz with the store down at start: %d %+v", code, h)
	}
	resp, body := p.Post("/v1/chat/completions", chatBody("before the store"))
	expectCache(t, "while down", resp, body, 200, "MISS")
	s.server.Restart()
	waitFor(t, "the store to be used once up", func() bool {
		_, h := getHealth(t, p)
		return h.Status == "ok" && getStats(t, p).Writer.Pending == 0
	})
	// What was answered while the store was down has reached it since.
	if got := s.cli("exists", entryKey(cacheKey(t, resp))); got != "1" {
		t.Fatalf("the answer given while the store was down is not in the store: exists %s", got)
	}
	if fake.CallsTo("chat") != 1 {
		t.Fatal("unexpected upstream calls")
	}
}
