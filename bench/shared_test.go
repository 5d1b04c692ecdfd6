package bench

import (
	"crypto/sha256"
	"encoding/binary"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"llmcache/actors"
	"llmcache/bench/fakeupstream"
	"llmcache/db"
	"llmcache/db/redisstore"
	"llmcache/db/redisstore/redistest"
	llmproxy "llmcache/httpx/proxy"
)

// onRedis configures a proxy for the shared store at url.
func onRedis(url string) func(*llmproxy.Config) {
	return func(c *llmproxy.Config) {
		c.Store.Backend = "redis"
		c.Store.Redis.URL = url
	}
}

// BenchmarkSharedHit compares hits from the persistent tier with the memory layer off: SQLite on this
// machine against the shared store (a redis-server on loopback), in one run. Both read through the miss
// pool (8 slots); 256 distinct answers, so every request reads the store.
func BenchmarkSharedHit(b *testing.B) {
	fake := startFake(b, fakeupstream.Options{})
	bodies := make([][]byte, 256)
	for i := range bodies {
		bodies[i] = fakeupstream.ChatRequest(i)
	}
	run := func(b *testing.B, p *proxy) {
		warm(b, p, bodies)
		var next atomic.Int64
		measure(b, p.addr, func() []byte { return bodies[int(next.Add(1))%len(bodies)] }, func(r *fasthttp.Response) {
			if string(r.Header.Peek("X-Cache")) != "HIT" {
				b.Fatalf("not a hit: %s", r.Header.Peek("X-Cache"))
			}
		})
	}
	b.Run("store=sqlite", func(b *testing.B) {
		run(b, startProxyConfig(b, fake.URL(), func(c *llmproxy.Config) { c.Pipeline.MemoryEnabled = false }))
	})
	b.Run("store=redis", func(b *testing.B) {
		srv := redistest.Start(b, redistest.Options{})
		run(b, startProxyConfig(b, fake.URL(), func(c *llmproxy.Config) {
			c.Pipeline.MemoryEnabled = false
			onRedis(srv.URL())(c)
		}))
	})
}

// BenchmarkSharedWriter is BenchmarkWriter on both stores in one run: the writer actor's sustained rate of
// stored 1 KB answers into SQLite and into the shared store (pipelined batches).
func BenchmarkSharedWriter(b *testing.B) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, store := range []string{"sqlite", "redis"} {
		for _, batch := range []int{20, 200} {
			b.Run("store="+store+"/batch_write_size="+strconv.Itoa(batch), func(b *testing.B) {
				var s db.Store
				if store == "sqlite" {
					sq, err := db.Open(filepath.Join(b.TempDir(), "cache.db"), db.Options{})
					if err != nil {
						b.Fatal(err)
					}
					s = sq
				} else {
					srv := redistest.Start(b, redistest.Options{})
					rs, err := redisstore.Open(redisstore.Options{URL: srv.URL(), Log: quiet})
					if err != nil {
						b.Fatal(err)
					}
					s = rs
				}
				defer s.Close()
				w := actors.NewWriter(s, actors.WriterConfig{BatchSize: batch}, quiet)
				body := make([]byte, 1024)
				for i := range body {
					body[i] = byte('a' + i%26)
				}
				var seq atomic.Uint64
				b.SetBytes(int64(len(body)))
				b.ReportAllocs()
				start := time.Now()
				b.RunParallel(func(pb *testing.PB) {
					var k [8]byte
					for pb.Next() {
						binary.LittleEndian.PutUint64(k[:], seq.Add(1))
						w.Put(&db.Entry{Key: sha256.Sum256(k[:]), Body: body, ContentType: "application/json", Kind: "chat",
							Model: "fake-model", Endpoint: "fake", CreatedAt: time.Now().UnixMilli()})
					}
				})
				if err := w.Flush(); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "answers/s")
				w.Stop()
			})
		}
	}
}

// BenchmarkSharedFlightLatency is what a flight across instances adds: each round sends one new prompt to
// two proxies at once, and reports how much later than the first answer the second one comes, p50 and
// p99. On one instance the second request joins the first's flight; on two sharing a store, the second
// waits for the first's lock to be let go, which happens once the writer has written the answer
// (flush_interval_ms, 200 by default, bounds that wait; 20 shown too). The upstream takes 50 ms.
func BenchmarkSharedFlightLatency(b *testing.B) {
	fake := startFake(b, fakeupstream.Options{Latency: 50 * time.Millisecond})
	var seq atomic.Int64
	run := func(b *testing.B, first, second string) {
		c1, c2 := client(first), client(second)
		var added []time.Duration
		for b.Loop() {
			body := fakeupstream.ChatRequest(int(seq.Add(1)) + 1_000_000)
			var t1, t2 time.Duration
			var wg sync.WaitGroup
			began := time.Now()
			for i, c := range []*fasthttp.HostClient{c1, c2} {
				wg.Add(1)
				go func() {
					defer wg.Done()
					req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
					defer fasthttp.ReleaseRequest(req)
					defer fasthttp.ReleaseResponse(resp)
					if i == 1 {
						time.Sleep(5 * time.Millisecond) // the second asks while the first's call runs
					}
					post(b, c, chatPath, body, req, resp)
					if i == 0 {
						t1 = time.Since(began)
					} else {
						t2 = time.Since(began)
					}
				}()
			}
			wg.Wait()
			added = append(added, max(t2-t1, 0))
		}
		slices.Sort(added)
		b.ReportMetric(float64(added[len(added)/2].Microseconds())/1000, "p50-added-ms")
		b.ReportMetric(float64(added[len(added)*99/100].Microseconds())/1000, "p99-added-ms")
		if calls := fake.CallsTo("chat"); calls > int64(seq.Load()) {
			b.Fatalf("%d upstream calls for %d prompts", calls, seq.Load())
		}
	}
	b.Run("instances=1", func(b *testing.B) {
		p := startProxy(b, fake.URL(), true)
		run(b, p.addr, p.addr)
	})
	for _, flush := range []time.Duration{200 * time.Millisecond, 20 * time.Millisecond} {
		b.Run("instances=2/flush_interval_ms="+strconv.Itoa(int(flush.Milliseconds())), func(b *testing.B) {
			srv := redistest.Start(b, redistest.Options{})
			tune := func(c *llmproxy.Config) {
				onRedis(srv.URL())(c)
				c.Writer.FlushInterval = flush
			}
			a, bb := startProxyConfig(b, fake.URL(), tune), startProxyConfig(b, fake.URL(), tune)
			run(b, a.addr, bb.addr)
		})
	}
}
