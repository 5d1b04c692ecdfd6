package main

import (
	"bytes"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestE2EMissThenHit: the same chat request twice is one upstream call, and the hit is the miss's bytes.
func TestE2EMissThenHit(t *testing.T) {
	p := newTestProxy(t, nil)
	body := chatBody("hello there")

	r1, b1 := p.Post("/v1/chat/completions", body)
	expectCache(t, "first", r1, b1, 200, "MISS")
	if got := r1.Header.Get("Cache-Status"); got != "llmcache; fwd=miss; stored" {
		t.Errorf("first: Cache-Status = %q, want %q", got, "llmcache; fwd=miss; stored")
	}
	if got := r1.Header.Get("X-Cache-Source"); got != "upstream" {
		t.Errorf("first: X-Cache-Source = %q, want upstream", got)
	}
	if err := checkEcho(b1, "hello there"); err != nil {
		t.Fatal(err)
	}
	k1 := cacheKey(t, r1)

	r2, b2 := p.Post("/v1/chat/completions", body)
	expectCache(t, "second", r2, b2, 200, "HIT")
	if got := r2.Header.Get("X-Cache-Source"); got != "memory" {
		t.Errorf("second: X-Cache-Source = %q, want memory", got)
	}
	if r2.Header.Get("Cache-Status") == "" {
		t.Error("second: no Cache-Status header")
	}
	if k2 := cacheKey(t, r2); k2 != k1 {
		t.Errorf("second: X-Cache-Key %s, first had %s", k2, k1)
	}
	if !bytes.Equal(b1, b2) {
		t.Errorf("hit body differs from the miss body:\n miss %s\n hit  %s", b1, b2)
	}
	if ct := r2.Header.Get("Content-Type"); ct != r1.Header.Get("Content-Type") {
		t.Errorf("hit Content-Type %q, miss had %q", ct, r1.Header.Get("Content-Type"))
	}
	expectCalls(t, p, 1)
}

// TestE2EKeyEquivalence: spellings that canonicalise alike share one entry; each differs
// from the base request in one way only.
func TestE2EKeyEquivalence(t *testing.T) {
	p := newTestProxy(t, nil)
	cases := []struct{ name, first, second string }{
		{"key order and whitespace",
			`{"model":"fake-model","temperature":0.5,"messages":[{"role":"user","content":"order"}]}`,
			"{\n  \"messages\" : [ { \"content\" : \"order\" , \"role\" : \"user\" } ] ,\n\t\"temperature\": 0.5, \"model\":\"fake-model\"\n}"},
		{"escaped and literal characters",
			`{"model":"fake-model","messages":[{"role":"user","content":"caf\u00e9 \"q\" \/"}]}`,
			`{"model":"fake-model","messages":[{"role":"user","content":"café \u0022q\u0022 /"}]}`},
		{"number spellings",
			`{"model":"fake-model","temperature":1.0,"max_tokens":100,"messages":[{"role":"user","content":"numbers"}]}`,
			`{"model":"fake-model","temperature":1,"max_tokens":1e2,"messages":[{"role":"user","content":"numbers"}]}`},
		{"stream_options and user",
			`{"model":"fake-model","messages":[{"role":"user","content":"excluded"}]}`,
			`{"model":"fake-model","stream_options":{"include_usage":true},"user":"alice","messages":[{"role":"user","content":"excluded"}]}`},
		{"user differs",
			`{"model":"fake-model","user":"bob","messages":[{"role":"user","content":"users"}]}`,
			`{"model":"fake-model","user":"carol","messages":[{"role":"user","content":"users"}]}`},
		{"stream false and absent",
			`{"model":"fake-model","stream":false,"messages":[{"role":"user","content":"stream"}]}`,
			`{"model":"fake-model","messages":[{"role":"user","content":"stream"}]}`},
	}
	calls := int64(0)
	for _, c := range cases {
		r1, b1 := p.Post("/v1/chat/completions", c.first)
		expectCache(t, c.name+": first", r1, b1, 200, "MISS")
		calls++
		r2, b2 := p.Post("/v1/chat/completions", c.second)
		expectCache(t, c.name+": second", r2, b2, 200, "HIT")
		if cacheKey(t, r1) != cacheKey(t, r2) {
			t.Errorf("%s: keys differ", c.name)
		}
		if !bytes.Equal(b1, b2) {
			t.Errorf("%s: hit body differs from the miss body", c.name)
		}
		expectCalls(t, p, calls)
	}
}

// TestE2EKeyDistinct: a request differing from another in any field that shapes the answer never shares its
// entry. Each variant is a new upstream call, then a hit of its own.
func TestE2EKeyDistinct(t *testing.T) {
	p := newTestProxy(t, nil)
	const msgs = `"messages":[{"role":"user","content":"distinct"}]`
	variants := []struct{ name, body string }{
		{"base", `{"model":"fake-model",` + msgs + `}`},
		{"messages content", `{"model":"fake-model","messages":[{"role":"user","content":"distinct!"}]}`},
		{"message role", `{"model":"fake-model","messages":[{"role":"system","content":"x"},{"role":"user","content":"distinct"}]}`},
		{"temperature 0.7", `{"model":"fake-model","temperature":0.7,` + msgs + `}`},
		{"temperature 0.8", `{"model":"fake-model","temperature":0.8,` + msgs + `}`},
		{"top_p", `{"model":"fake-model","top_p":0.9,` + msgs + `}`},
		{"seed", `{"model":"fake-model","seed":1,` + msgs + `}`},
		{"seed 2", `{"model":"fake-model","seed":2,` + msgs + `}`},
		{"big seed", `{"model":"fake-model","seed":12345678901234567890,` + msgs + `}`},
		{"big seed + 1", `{"model":"fake-model","seed":12345678901234567891,` + msgs + `}`},
		{"max_tokens", `{"model":"fake-model","max_tokens":16,` + msgs + `}`},
		{"response_format", `{"model":"fake-model","response_format":{"type":"json_object"},` + msgs + `}`},
		{"n", `{"model":"fake-model","n":2,` + msgs + `}`},
		{"tools", `{"model":"fake-model","tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],` + msgs + `}`},
		{"logprobs", `{"model":"fake-model","logprobs":true,` + msgs + `}`},
		{"model", `{"model":"other-model",` + msgs + `}`},
		{"vendor extension", `{"model":"fake-model","top_k":40,` + msgs + `}`},
	}
	keys := map[string]string{}
	bodies := map[string][]byte{}
	for i, v := range variants {
		r, b := p.Post("/v1/chat/completions", v.body)
		expectCache(t, v.name, r, b, 200, "MISS")
		expectCalls(t, p, int64(i+1))
		k := cacheKey(t, r)
		if other, dup := keys[k]; dup {
			t.Errorf("%q and %q share key %s", v.name, other, k)
		}
		keys[k] = v.name
		bodies[v.name] = b
	}
	for _, v := range variants {
		r, b := p.Post("/v1/chat/completions", v.body)
		expectCache(t, v.name+" again", r, b, 200, "HIT")
		if !bytes.Equal(b, bodies[v.name]) {
			t.Errorf("%s: the hit is not this variant's answer", v.name)
		}
	}
	expectCalls(t, p, int64(len(variants)))
}

// TestE2ERestartServesFromDB: after a restart the memory layer is empty and SQLite answers, byte for byte.
func TestE2ERestartServesFromDB(t *testing.T) {
	p := newTestProxy(t, nil)
	body := chatBody("survive a restart")
	r1, b1 := p.Post("/v1/chat/completions", body)
	expectCache(t, "before restart", r1, b1, 200, "MISS")

	p.Restart()
	r2, b2 := p.Post("/v1/chat/completions", body)
	expectCache(t, "after restart", r2, b2, 200, "HIT")
	if got := r2.Header.Get("X-Cache-Source"); got != "db" {
		t.Errorf("after restart: X-Cache-Source = %q, want db", got)
	}
	if !bytes.Equal(b1, b2) {
		t.Errorf("db hit differs from the original answer:\n first %s\n after %s", b1, b2)
	}
	if cacheKey(t, r1) != cacheKey(t, r2) {
		t.Error("the key changed across a restart")
	}
	// The db hit warms the memory layer.
	r3, b3 := p.Post("/v1/chat/completions", body)
	expectCache(t, "third", r3, b3, 200, "HIT")
	if got := r3.Header.Get("X-Cache-Source"); got != "memory" {
		t.Errorf("third: X-Cache-Source = %q, want memory", got)
	}
	if !bytes.Equal(b1, b3) {
		t.Error("memory hit after a db hit differs from the original answer")
	}
	expectCalls(t, p, 1)
}

// TestE2EMemoryOffServesFromDB: with cache.enabled = false SQLite still serves. Writes are
// batched, so the second request waits for the row rather than for a guessed time.
func TestE2EMemoryOffServesFromDB(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) { c.Cache.Enabled = false })
	body := chatBody("memory off")
	r1, b1 := p.Post("/v1/chat/completions", body)
	expectCache(t, "first", r1, b1, 200, "MISS")
	key := cacheKey(t, r1)
	d := openCacheDB(t, p.DBPath)
	waitFor(t, "the row on disk", func() bool { _, ok := d.row(key); return ok })

	for i := range 3 {
		r, b := p.Post("/v1/chat/completions", body)
		expectCache(t, "repeat", r, b, 200, "HIT")
		if got := r.Header.Get("X-Cache-Source"); got != "db" {
			t.Errorf("repeat %d: X-Cache-Source = %q, want db (the memory layer is off)", i, got)
		}
		if !bytes.Equal(b, b1) {
			t.Errorf("repeat %d: db hit differs from the original answer", i)
		}
	}
	expectCalls(t, p, 1)
}

// TestE2ERowsOnDisk: after requests and a stop, every answer is a row holding what the client got, with the
// route kind, the model asked and the endpoint that answered.
func TestE2ERowsOnDisk(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) {
		c.APIEndpoints[0].Name = "fake-endpoint"
		c.APIEndpoints[0].Model = "served-model"
	})
	type sent struct {
		key, model string
		body       []byte
	}
	var all []sent
	for i, model := range []string{"model-a", "model-b", "model-a"} {
		content := "row " + strconv.Itoa(i)
		r, b := p.Post("/v1/chat/completions", `{"model":"`+model+`","messages":[{"role":"user","content":"`+content+`"}]}`)
		expectCache(t, content, r, b, 200, "MISS")
		all = append(all, sent{key: cacheKey(t, r), model: model, body: b})
	}
	// A hit adds no row; a namespaced request is its own row.
	r, b := p.Post("/v1/chat/completions", `{"model":"model-a","messages":[{"role":"user","content":"row 0"}]}`)
	expectCache(t, "repeat", r, b, 200, "HIT")
	r, b = p.Post("/v1/chat/completions", `{"model":"model-a","messages":[{"role":"user","content":"row 0"}]}`, "X-Cache-Namespace", "team-x")
	expectCache(t, "namespaced", r, b, 200, "MISS")
	nsKey, nsBody := cacheKey(t, r), b
	// A completion is a row of kind "completion".
	r, b = p.Post("/v1/completions", `{"model":"model-c","prompt":"complete me"}`)
	expectCache(t, "completion", r, b, 200, "MISS")
	cKey, cBody := cacheKey(t, r), b

	p.Stop()
	d := openCacheDB(t, p.DBPath)
	if n := d.count(); n != 5 {
		t.Fatalf("%d rows on disk, want 5", n)
	}
	for _, s := range all {
		row := d.mustRow(s.key, s.body)
		if row.Kind != "chat" || row.Model != s.model || row.Endpoint != "fake-endpoint" ||
			row.UpstreamModel != "served-model" || row.Namespace != "" || row.ExpiresAt != 0 {
			t.Errorf("row %s = kind %q model %q endpoint %q upstream_model %q namespace %q expires %d; want chat, %q, fake-endpoint, served-model, \"\", 0",
				s.key, row.Kind, row.Model, row.Endpoint, row.UpstreamModel, row.Namespace, row.ExpiresAt, s.model)
		}
		if !strings.HasPrefix(row.ContentType, "application/json") {
			t.Errorf("row %s content type %q", s.key, row.ContentType)
		}
	}
	if row := d.mustRow(nsKey, nsBody); row.Namespace != "team-x" || row.Model != "model-a" {
		t.Errorf("namespaced row: namespace %q model %q, want team-x, model-a", row.Namespace, row.Model)
	}
	if row := d.mustRow(cKey, cBody); row.Kind != "completion" || row.Model != "model-c" {
		t.Errorf("completion row: kind %q model %q, want completion, model-c", row.Kind, row.Model)
	}
}

// TestE2ETTLRecorded: X-Cache-TTL sets the row's expiry.
func TestE2ETTLRecorded(t *testing.T) {
	p := newTestProxy(t, nil)
	r, b := p.Post("/v1/chat/completions", chatBody("ttl"), "X-Cache-TTL", "3600")
	expectCache(t, "ttl", r, b, 200, "MISS")
	key := cacheKey(t, r)
	p.Stop()
	row := openCacheDB(t, p.DBPath).mustRow(key, b)
	if row.ExpiresAt == 0 {
		t.Fatal("X-Cache-TTL: 3600 stored an entry that never expires")
	}
}

// TestE2EWriterFlushesWithoutStop: with batch_write_size 20 and flush_interval_ms 200, answers reach disk
// while the proxy runs, the last partial batch by the interval.
func TestE2EWriterFlushesWithoutStop(t *testing.T) {
	p := newTestProxy(t, func(c *fileConfig) {
		c.Cache.BatchWriteSize = 20
		c.Cache.FlushInterval = 200
	})
	const n = 45 // two batches by size, five by the interval
	keys := make([]string, n)
	answers := make([][]byte, n)
	for i := range n {
		r, b := p.Post("/v1/chat/completions", chatBody("writer "+strconv.Itoa(i)))
		expectCache(t, "writer", r, b, 200, "MISS")
		keys[i], answers[i] = cacheKey(t, r), b
	}
	d := openCacheDB(t, p.DBPath)
	waitFor(t, "45 rows on disk", func() bool { return d.count() == n })
	for i := range n {
		d.mustRow(keys[i], answers[i])
	}
}

// TestE2ESharedDBFile: two proxies in turn on one database file see each other's entries (the file is the
// cache, not the process).
func TestE2ESharedDBFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "shared.db")
	a := newTestProxy(t, func(c *fileConfig) { c.DatabaseURL = "sqlite://" + path })
	r1, b1 := a.Post("/v1/chat/completions", chatBody("shared"))
	expectCache(t, "proxy a", r1, b1, 200, "MISS")
	a.Stop()

	b := newTestProxy(t, func(c *fileConfig) { c.DatabaseURL = path })
	r2, b2 := b.Post("/v1/chat/completions", chatBody("shared"))
	expectCache(t, "proxy b", r2, b2, 200, "HIT")
	if !bytes.Equal(b1, b2) {
		t.Error("proxy b served other bytes than proxy a stored")
	}
	expectCalls(t, b, 0)
}
