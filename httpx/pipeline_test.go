package httpx

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"llmcache/actors"
	"llmcache/bench/fakeupstream"
	"llmcache/db"
	"llmcache/httpx/upstream"
	"llmcache/pipeline"
)

// testPipeline assembles the pipeline with the defaults users run (pipeline.DefaultConfig, the writer's
// defaults, a real SQLite file) in front of a fake upstream; ep adjusts its one endpoint. Everything stops
// when the test ends.
func testPipeline(t testing.TB, ep func(*pipeline.Endpoint)) *pipeline.Pipeline {
	t.Helper()
	fake, err := fakeupstream.Start(fakeupstream.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fake.Close() })
	store, err := db.Open(filepath.Join(t.TempDir(), "cache.db"), db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	writer := actors.NewWriter(store, actors.DefaultWriterConfig(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	cfg := pipeline.DefaultConfig()
	e := pipeline.DefaultEndpoint(fake.URL())
	e.Name = "fake"
	if ep != nil {
		ep(&e)
	}
	cfg.Endpoints = []pipeline.Endpoint{e}
	pipe, err := pipeline.New(cfg, store, writer, upstream.New())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		pipe.Stop()
		writer.Stop()
		store.Close()
	})
	return pipe
}
