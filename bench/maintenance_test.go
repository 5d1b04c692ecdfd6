package bench

import (
	"crypto/sha256"
	"encoding/binary"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/valyala/fasthttp"

	"llmcache/actors"
	"llmcache/bench/fakeupstream"
	"llmcache/db"
	llmproxy "llmcache/httpx/proxy"
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
			dbPath := filepath.Join(b.TempDir(), "cache.db")
			if withMaintenance {
				fillExpired(b, dbPath, 100_000)
			}
			p := startProxyConfig(b, fake.URL(), func(c *llmproxy.Config) {
				c.DatabaseURL = dbPath
				c.Pipeline.MemoryEnabled = false
				c.Maintenance = nil // started below, once the hits are warm
			})
			bodies := make([][]byte, 64)
			for i := range bodies {
				bodies[i] = fakeupstream.ChatRequest(i)
			}
			warm(b, p, bodies)
			if withMaintenance {
				// A second proxy's maintenance on the same file: its writer deletes while this one's readers hit.
				startProxyConfig(b, fake.URL(), func(c *llmproxy.Config) {
					c.DatabaseURL = dbPath
					m := actors.DefaultMaintenanceConfig()
					c.Maintenance = &m
				})
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

// fillExpired writes n expired 1 KB entries into the database at path.
func fillExpired(b *testing.B, path string, n int) {
	store, err := db.Open(path, db.Options{})
	if err != nil {
		b.Fatal(err)
	}
	writer := actors.NewWriter(store, actors.DefaultWriterConfig(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	expired := time.Now().Add(-time.Hour).UnixMilli()
	body := make([]byte, 1024)
	for i := range n {
		var k [8]byte
		binary.LittleEndian.PutUint64(k[:], uint64(i))
		writer.Put(&db.Entry{Key: sha256.Sum256(k[:]), Body: body, ContentType: "application/json", Kind: "chat",
			CreatedAt: expired, ExpiresAt: expired + 1})
	}
	writer.Stop()
	if err := store.Close(); err != nil {
		b.Fatal(err)
	}
}
