package bench

import (
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"llmcache/bench/fakeupstream"
	"llmcache/httpx"
	llmproxy "llmcache/httpx/proxy"
	"llmcache/pipeline"
)

// BenchmarkMissLatency is the miss path's added latency: one connection, one request at a time, every
// request new, so each goes upstream and is stored. The same load goes straight to the fake upstream and
// through a bare reverse proxy in the same run; the difference in p50 is what llmcache adds.
func BenchmarkMissLatency(b *testing.B) {
	fake := startFake(b, fakeupstream.Options{})
	var seq atomic.Int64
	run := func(b *testing.B, addr string) {
		c := client(addr)
		req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
		defer fasthttp.ReleaseRequest(req)
		defer fasthttp.ReleaseResponse(resp)
		var took []time.Duration
		for b.Loop() {
			body := fakeupstream.ChatRequest(int(seq.Add(1)))
			began := time.Now()
			post(b, c, chatPath, body, req, resp)
			took = append(took, time.Since(began))
		}
		slices.Sort(took)
		b.ReportMetric(float64(took[len(took)/2].Microseconds()), "p50-µs")
		b.ReportMetric(float64(took[len(took)*99/100].Microseconds()), "p99-µs")
	}
	b.Run("path=direct-upstream", func(b *testing.B) { run(b, fake.Addr()) })
	b.Run("path=bare-reverse-proxy", func(b *testing.B) { run(b, startBareProxy(b, fake.Addr())) })
	b.Run("path=llmcache", func(b *testing.B) {
		p := startProxy(b, fake.URL(), true)
		trainDictionary(b, p, 1<<30) // compressing from the first measured miss (see BenchmarkMiss)
		run(b, p.addr)
	})
	// The same with bodies stored as they are (cache.compress_bodies = false).
	b.Run("path=llmcache/compress_bodies=false", func(b *testing.B) {
		run(b, startProxyConfig(b, fake.URL(), func(c *llmproxy.Config) { c.Store.SQLite.NoCompression = true }).addr)
	})
	// The same with cache_mode = off: no SQLite read, no write; what is left is the stages and the parsing.
	b.Run("path=llmcache/cache_mode=off", func(b *testing.B) {
		run(b, startProxyFull(b, fake.URL(), func(*pipeline.Config) {}, func(h *httpx.Config) { h.DefaultMode = pipeline.ModeOff }).addr)
	})
}
