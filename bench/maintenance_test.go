package bench

import (
	"crypto/sha256"
	"encoding/binary"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"llmcache/actors"
	"llmcache/bench/fakeupstream"
	"llmcache/db"
)

// BenchmarkHitDuringMaintenance measures SQLite-hit latency (memory layer off, so every hit reads the
// database the maintenance deletes from) with and without a maintenance run deleting 100,000 expired
// entries in the same run. It reports p50 and p99 latency.
func BenchmarkHitDuringMaintenance(b *testing.B) {
	fake := startFake(b, fakeupstream.Options{})
	for _, withMaintenance := range []bool{false, true} {
		name := "maintenance=off"
		if withMaintenance {
			name = "maintenance=on"
		}
		b.Run(name, func(b *testing.B) {
			p := startProxy(b, fake.URL(), false)
			bodies := make([][]byte, 64)
			for i := range bodies {
				bodies[i] = fakeupstream.ChatRequest(i)
			}
			warm(b, p, bodies)
			if withMaintenance {
				expired := time.Now().Add(-time.Hour).UnixMilli()
				body := make([]byte, 1024)
				for i := range 100_000 {
					var k [8]byte
					binary.LittleEndian.PutUint64(k[:], uint64(i))
					p.writer.Put(&db.Entry{Key: sha256.Sum256(k[:]), Body: body, ContentType: "application/json", Kind: "chat",
						CreatedAt: expired, ExpiresAt: expired + 1})
				}
				if err := p.writer.Flush(); err != nil {
					b.Fatal(err)
				}
				m := actors.NewMaintenance(actors.MaintenanceConfig{OnStartup: true, Interval: time.Hour}, p.writer, p.store,
					slog.New(slog.NewTextHandler(io.Discard, nil)))
				b.Cleanup(m.Stop)
			}
			c := client(p.addr)
			var mu sync.Mutex
			var all []time.Duration
			b.SetParallelism(4)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
				defer fasthttp.ReleaseRequest(req)
				defer fasthttp.ReleaseResponse(resp)
				var mine []time.Duration
				i := 0
				for pb.Next() {
					start := time.Now()
					post(b, c, chatPath, bodies[i%len(bodies)], req, resp)
					mine = append(mine, time.Since(start))
					i++
				}
				mu.Lock()
				all = append(all, mine...)
				mu.Unlock()
			})
			slices.Sort(all)
			if len(all) > 0 {
				b.ReportMetric(float64(all[len(all)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(all[len(all)*99/100].Microseconds()), "p99-µs")
			}
		})
	}
}
