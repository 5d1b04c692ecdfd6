//go:build !race

package httpx

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/valyala/fasthttp"

	"llmcache/actors"
	"llmcache/bench/fakeupstream"
	"llmcache/db"
	"llmcache/httpx/upstream"
	"llmcache/pipeline"
	"llmcache/pipeline/wire"
)

// TestMemoryHitAllocsWithGuards is TestMemoryHitAllocs with what a shared proxy turns on: a loopback
// bind's Host check, client keys with a namespace, and a Connection header to read. They allocate nothing
// per request either.
func TestMemoryHitAllocsWithGuards(t *testing.T) {
	fake, err := fakeupstream.Start(fakeupstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer fake.Close()
	store, err := db.Open(filepath.Join(t.TempDir(), "cache.db"), db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	writer := actors.NewWriter(store, actors.WriterConfig{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer writer.Stop()
	pipe, err := pipeline.New(pipeline.Config{MemoryEnabled: true, Endpoints: []pipeline.Endpoint{{Target: wire.Target{Name: "fake", URL: fake.URL()}, Weight: 1, APIKey: "sk-own"}}},
		store, writer, upstream.New())
	if err != nil {
		t.Fatal(err)
	}
	defer pipe.Stop()
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
