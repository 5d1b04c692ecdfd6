//go:build !race

package httpx

import (
	"bytes"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/valyala/fasthttp"

	"llmcache/bench/fakeupstream"
	"llmcache/pipeline"
)

// TestMemoryHitAllocs proves that a memory hit, from the front end's handler through every stage and
// back, allocates nothing per request (STYLE habit 6). It runs without -race, which allocates itself.
func TestMemoryHitAllocs(t *testing.T) {
	pipe := testPipeline(t, nil)
	// As main wires it: every answer updates a request-duration histogram.
	durations := metrics.NewSet().NewPrometheusHistogram("llmcache_request_duration_seconds")
	s := New(Config{Observe: func(_ pipeline.Kind, _ *pipeline.Response, took time.Duration) { durations.Update(took.Seconds()) }},
		pipe, func() error { return nil })

	var ctx fasthttp.RequestCtx
	body := fakeupstream.ChatRequest(7)
	serve := func() {
		ctx.Request.Reset()
		ctx.Response.Reset()
		ctx.Request.Header.SetMethod("POST")
		ctx.Request.SetRequestURI("/v1/chat/completions")
		ctx.Request.Header.SetContentType("application/json")
		ctx.Request.Header.Set("Authorization", "Bearer sk-test")
		ctx.Request.SetBodyRaw(body)
		s.srv.Handler(&ctx)
	}
	serve() // the miss that fills the cache
	if got := string(ctx.Response.Header.Peek("X-Cache")); got != "MISS" {
		t.Fatalf("first request: X-Cache %q, want MISS (status %d: %s)", got, ctx.Response.StatusCode(), ctx.Response.Body())
	}
	want := string(ctx.Response.Body())
	for range 100 { // warm pools and scratch buffers
		serve()
	}
	allocs := testing.AllocsPerRun(1000, serve)
	if got := string(ctx.Response.Header.Peek("X-Cache")); got != "HIT" || string(ctx.Response.Body()) != want {
		t.Fatalf("repeated request: X-Cache %q, body equal %v; want a HIT with the first answer's bytes", got, string(ctx.Response.Body()) == want)
	}
	if allocs > 0 {
		t.Errorf("a memory hit allocates %.1f times per request; want 0", allocs)
	}

	// The same answer streamed: its replay is kept on the entry, so a streamed hit allocates nothing either.
	body = bytes.Replace(body, []byte(`{`), []byte(`{"stream":true,"stream_options":{"include_usage":true},`), 1)
	for range 100 {
		serve()
	}
	allocs = testing.AllocsPerRun(1000, serve)
	if got, ct := string(ctx.Response.Header.Peek("X-Cache")), string(ctx.Response.Header.ContentType()); got != "HIT" || ct != "text/event-stream" {
		t.Fatalf("streamed request: X-Cache %q, Content-Type %q; want a HIT replayed as SSE", got, ct)
	}
	if allocs > 0 {
		t.Errorf("a streamed memory hit allocates %.1f times per request; want 0", allocs)
	}
}
