package main

import (
	"bytes"
	"strings"
	"testing"
)

// TestE2ENoCacheRefreshes: Cache-Control: no-cache fetches fresh and stores it; later requests get the fresh
// answer.
func TestE2ENoCacheRefreshes(t *testing.T) {
	p := newTestProxy(t, nil)
	body := chatBody("refresh me")
	r1, b1 := p.Post("/v1/chat/completions", body)
	expectCache(t, "first", r1, b1, 200, "MISS")

	r2, b2 := p.Post("/v1/chat/completions", body, "Cache-Control", "no-cache")
	expectCache(t, "no-cache", r2, b2, 200, "REFRESH")
	expectCalls(t, p, 2)
	if bytes.Equal(b1, b2) {
		t.Fatal("no-cache returned the cached bytes; the fake upstream numbers every answer, so it was not fetched")
	}
	if cacheKey(t, r2) != cacheKey(t, r1) {
		t.Error("no-cache changed the key")
	}
	if cs := r2.Header.Get("Cache-Status"); !strings.Contains(cs, "stored") {
		t.Errorf("no-cache: Cache-Status %q does not say stored", cs)
	}

	r3, b3 := p.Post("/v1/chat/completions", body)
	expectCache(t, "after refresh", r3, b3, 200, "HIT")
	if !bytes.Equal(b3, b2) {
		t.Error("the hit after a refresh is not the refreshed answer")
	}
	// The body form does the same.
	r4, b4 := p.Post("/v1/chat/completions", `{"model":"fake-model","cache":{"no-cache":true},"messages":[{"role":"user","content":"refresh me"}]}`)
	expectCache(t, "cache.no-cache", r4, b4, 200, "REFRESH")
	expectCalls(t, p, 3)

	// And the refreshed answer is the one on disk.
	p.Restart()
	r5, b5 := p.Post("/v1/chat/completions", body)
	expectCache(t, "after restart", r5, b5, 200, "HIT")
	if !bytes.Equal(b5, b4) {
		t.Error("after a restart the db serves an older answer than the last refresh")
	}
	expectCalls(t, p, 3)
}

// TestE2ENoStore: Cache-Control: no-store answers without storing, so the next request misses.
func TestE2ENoStore(t *testing.T) {
	p := newTestProxy(t, nil)
	body := chatBody("do not keep")
	r1, b1 := p.Post("/v1/chat/completions", body, "Cache-Control", "no-store")
	expectCache(t, "no-store", r1, b1, 200, "MISS")
	if cs := r1.Header.Get("Cache-Status"); strings.Contains(cs, "stored") {
		t.Errorf("no-store: Cache-Status %q says stored", cs)
	}
	r2, b2 := p.Post("/v1/chat/completions", body, "Cache-Control", "private, no-store")
	expectCache(t, "no-store again", r2, b2, 200, "MISS")
	expectCalls(t, p, 2)

	r3, b3 := p.Post("/v1/chat/completions", `{"model":"fake-model","messages":[{"role":"user","content":"do not keep"}],"cache":{"no-store":true}}`)
	expectCache(t, "cache.no-store", r3, b3, 200, "MISS")
	expectCalls(t, p, 3)

	p.Stop()
	if n := openCacheDB(t, p.DBPath).count(); n != 0 {
		t.Fatalf("%d rows on disk after no-store requests only", n)
	}
}

// TestE2ENamespaceAndSample: namespaces and sample indexes are separate key spaces; the body's cache object
// and the headers name the same spaces.
func TestE2ENamespaceAndSample(t *testing.T) {
	p := newTestProxy(t, nil)
	body := chatBody("spaces")
	inNS := func(ns string) string {
		return `{"model":"fake-model","messages":[{"role":"user","content":"spaces"}],"cache":{"namespace":` + jsonString(ns) + `}}`
	}
	inSample := func(k string) string {
		return `{"model":"fake-model","cache":{"sample":` + k + `},"messages":[{"role":"user","content":"spaces"}]}`
	}
	type req struct {
		name, body string
		header     []string
	}
	distinct := []req{
		{"default", body, nil},
		{"namespace a", body, []string{"X-Cache-Namespace", "a"}},
		{"namespace b", body, []string{"X-Cache-Namespace", "b"}},
		{"sample 1", body, []string{"X-Cache-Sample", "1"}},
		{"sample 2", body, []string{"X-Cache-Sample", "2"}},
		{"namespace a sample 1", body, []string{"X-Cache-Namespace", "a", "X-Cache-Sample", "1"}},
	}
	keys := map[string]string{}
	answers := map[string][]byte{}
	for i, r := range distinct {
		resp, b := p.Post("/v1/chat/completions", r.body, r.header...)
		expectCache(t, r.name, resp, b, 200, "MISS")
		expectCalls(t, p, int64(i+1))
		k := cacheKey(t, resp)
		if other, dup := keys[k]; dup {
			t.Errorf("%q and %q share key %s", r.name, other, k)
		}
		keys[k] = r.name
		answers[r.name] = b
	}
	same := []struct {
		req
		as string
	}{
		{req{"body namespace a", inNS("a"), nil}, "namespace a"},
		{req{"body namespace b", inNS("b"), nil}, "namespace b"},
		{req{"body sample 2", inSample("2"), nil}, "sample 2"},
		{req{"sample 0", body, []string{"X-Cache-Sample", "0"}}, "default"},
		{req{"empty namespace", inNS(""), nil}, "default"},
		{req{"header namespace a", body, []string{"X-Cache-Namespace", "a"}}, "namespace a"},
	}
	for _, r := range same {
		resp, b := p.Post("/v1/chat/completions", r.body, r.header...)
		expectCache(t, r.name, resp, b, 200, "HIT")
		if keys[cacheKey(t, resp)] != r.as {
			t.Errorf("%s: served from %q's entry, want %q's", r.name, keys[cacheKey(t, resp)], r.as)
		}
		if !bytes.Equal(b, answers[r.as]) {
			t.Errorf("%s: answer is not %q's", r.name, r.as)
		}
	}
	expectCalls(t, p, int64(len(distinct)))
}

// TestE2EModeReadOnly: read_only never calls the upstream; an unseen request is a 404 cache_miss, a seen one
// a hit. The body form and the configured default behave alike.
func TestE2EModeReadOnly(t *testing.T) {
	p := newTestProxy(t, nil)
	r, b := p.Post("/v1/chat/completions", chatBody("unseen"), "X-Cache-Mode", "read_only")
	e := expectError(t, "read_only miss", r, b, 404)
	if str(e.Error.Code) != "cache_miss" {
		t.Errorf("read_only miss: error code %s, want cache_miss", e.Error.Code)
	}
	r, b = p.Post("/v1/chat/completions", `{"model":"fake-model","cache":{"mode":"read_only"},"messages":[{"role":"user","content":"unseen"}]}`)
	if e := expectError(t, "cache.mode read_only miss", r, b, 404); str(e.Error.Code) != "cache_miss" {
		t.Errorf("cache.mode read_only miss: error code %s, want cache_miss", e.Error.Code)
	}
	expectCalls(t, p, 0)

	r1, b1 := p.Post("/v1/chat/completions", chatBody("seen"))
	expectCache(t, "seen", r1, b1, 200, "MISS")
	r2, b2 := p.Post("/v1/chat/completions", chatBody("seen"), "X-Cache-Mode", "read_only")
	expectCache(t, "read_only hit", r2, b2, 200, "HIT")
	if !bytes.Equal(b1, b2) {
		t.Error("read_only hit differs from the stored answer")
	}
	// From the db as well (strict replay of an evaluation after a restart).
	p.Restart()
	r3, b3 := p.Post("/v1/chat/completions", chatBody("seen"), "X-Cache-Mode", "read_only")
	expectCache(t, "read_only db hit", r3, b3, 200, "HIT")
	if !bytes.Equal(b1, b3) {
		t.Error("read_only db hit differs from the stored answer")
	}
	expectCalls(t, p, 1)

	// cache_mode = "read_only" is the default for requests that do not say; a header overrides it.
	q := newTestProxy(t, func(c *fileConfig) { c.CacheMode = "read_only" })
	r, b = q.Post("/v1/chat/completions", chatBody("config read_only"))
	if e := expectError(t, "cache_mode read_only", r, b, 404); str(e.Error.Code) != "cache_miss" {
		t.Errorf("cache_mode read_only: error code %s, want cache_miss", e.Error.Code)
	}
	expectCalls(t, q, 0)
	r, b = q.Post("/v1/chat/completions", chatBody("config read_only"), "X-Cache-Mode", "read_write")
	expectCache(t, "read_write over a read_only default", r, b, 200, "MISS")
	expectCalls(t, q, 1)
}

// TestE2EModeOffAndWriteOnly: off neither looks up nor stores (BYPASS); write_only fetches and stores.
func TestE2EModeOffAndWriteOnly(t *testing.T) {
	p := newTestProxy(t, nil)
	body := chatBody("modes")
	r, b := p.Post("/v1/chat/completions", body, "X-Cache-Mode", "off")
	expectCache(t, "off", r, b, 200, "BYPASS")
	expectCalls(t, p, 1)
	r1, b1 := p.Post("/v1/chat/completions", body)
	expectCache(t, "after off", r1, b1, 200, "MISS") // off stored nothing
	expectCalls(t, p, 2)
	r, b = p.Post("/v1/chat/completions", body, "X-Cache-Mode", "off")
	expectCache(t, "off over a stored entry", r, b, 200, "BYPASS")
	if bytes.Equal(b, b1) {
		t.Error("off served the stored answer")
	}
	expectCalls(t, p, 3)

	r, bw := p.Post("/v1/chat/completions", body, "X-Cache-Mode", "write_only")
	expectCache(t, "write_only", r, bw, 200, "REFRESH")
	expectCalls(t, p, 4)
	r, b = p.Post("/v1/chat/completions", body)
	expectCache(t, "after write_only", r, b, 200, "HIT")
	if !bytes.Equal(b, bw) {
		t.Error("the hit after write_only is not the answer write_only stored")
	}
	expectCalls(t, p, 4)
}

// TestE2EInvalidControls: a control the proxy cannot read is a 400 naming it, and nothing goes upstream.
func TestE2EInvalidControls(t *testing.T) {
	p := newTestProxy(t, nil)
	body := chatBody("controls")
	withCache := func(obj string) string {
		return `{"model":"fake-model","messages":[{"role":"user","content":"controls"}],"cache":` + obj + `}`
	}
	cases := []struct {
		name, body string
		header     []string
		names      string // the control the error must name
	}{
		{"mode header", body, []string{"X-Cache-Mode", "sometimes"}, "X-Cache-Mode"},
		{"sample header", body, []string{"X-Cache-Sample", "two"}, "X-Cache-Sample"},
		{"negative sample", body, []string{"X-Cache-Sample", "-1"}, "X-Cache-Sample"},
		{"ttl header", body, []string{"X-Cache-TTL", "1.5"}, "X-Cache-TTL"},
		{"max-age", body, []string{"Cache-Control", "max-age=soon"}, "Cache-Control"},
		{"body mode", withCache(`{"mode":"sometimes"}`), nil, "cache.mode"},
		{"body sample", withCache(`{"sample":"1"}`), nil, "cache.sample"},
		{"body ttl", withCache(`{"ttl":-5}`), nil, "cache.ttl"},
		{"body no-store", withCache(`{"no-store":"yes"}`), nil, "cache.no-store"},
		{"body namespace", withCache(`{"namespace":7}`), nil, "cache.namespace"},
		{"body unknown", withCache(`{"forever":true}`), nil, "cache.forever"},
		{"body not an object", withCache(`"off"`), nil, "cache"},
	}
	for _, c := range cases {
		r, b := p.Post("/v1/chat/completions", c.body, c.header...)
		e := expectError(t, c.name, r, b, 400)
		if str(e.Error.Param) != c.names && !strings.Contains(e.Error.Message, c.names) {
			t.Errorf("%s: error does not name %s: %s", c.name, c.names, b)
		}
		if e.Error.Type != "invalid_request_error" {
			t.Errorf("%s: error type %q, want invalid_request_error", c.name, e.Error.Type)
		}
	}
	expectCalls(t, p, 0)
	r, b := p.Post("/v1/chat/completions", body)
	expectCache(t, "a good request afterwards", r, b, 200, "MISS")
}
