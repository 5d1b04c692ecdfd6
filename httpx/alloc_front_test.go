//go:build !race

package httpx

import (
	"testing"

	"github.com/valyala/fasthttp"

	"llmcache/bench/fakeupstream"
	"llmcache/pipeline"
)

// TestMemoryHitAllocsWithGuards is TestMemoryHitAllocs with what a shared proxy turns on: a loopback
// bind's Host check, client keys with a namespace, and a Connection header to read. They allocate nothing
// per request either.
func TestMemoryHitAllocsWithGuards(t *testing.T) {
	pipe := testPipeline(t, func(e *pipeline.Endpoint) { e.APIKey = "sk-own" })
	s := New(Config{Listen: "127.0.0.1:4321", ClientKeys: []ClientKey{{Key: "other", Namespace: "team-b"}, {Key: "key-a", Namespace: "team-a"}}},
		pipe, func() error { return nil })

	var ctx fasthttp.RequestCtx
	body := fakeupstream.ChatRequest(7)
	serve := func() {
		ctx.Request.Reset()
		ctx.Response.Reset()
		ctx.Request.Header.SetMethod("POST")
		ctx.Request.SetRequestURI("/v1/chat/completions")
		ctx.Request.Header.SetHost("127.0.0.1:4321")
		ctx.Request.Header.SetContentType("application/json")
		ctx.Request.Header.Set("Authorization", "Bearer key-a")
		ctx.Request.Header.Set("Connection", "keep-alive")
		ctx.Request.SetBodyRaw(body)
		s.srv.Handler(&ctx)
	}
	serve()
	if got := string(ctx.Response.Header.Peek("X-Cache")); got != "MISS" {
		t.Fatalf("first request: X-Cache %q, want MISS (status %d: %s)", got, ctx.Response.StatusCode(), ctx.Response.Body())
	}
	for range 100 {
		serve()
	}
	allocs := testing.AllocsPerRun(1000, serve)
	if got := string(ctx.Response.Header.Peek("X-Cache")); got != "HIT" {
		t.Fatalf("repeated request: X-Cache %q, want HIT", got)
	}
	if allocs > 0 {
		t.Errorf("a memory hit allocates %.1f times per request; want 0", allocs)
	}
}
