package bench

import (
	"crypto/sha256"
	"encoding/binary"
	"io"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"llmcache/actors"
	"llmcache/db"
)

// BenchmarkWriter measures the writer actor's sustained rate of stored 1 KB answers, with puts arriving
// from several goroutines as they do from upstream calls. The target is 50,000 answers/s.
func BenchmarkWriter(b *testing.B) {
	for _, batch := range []int{20, 200} {
		b.Run("batch_write_size="+strconv.Itoa(batch), func(b *testing.B) {
			store, err := db.Open(filepath.Join(b.TempDir(), "cache.db"), db.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer store.Close()
			w := actors.NewWriter(store, actors.WriterConfig{BatchSize: batch}, slog.New(slog.NewTextHandler(io.Discard, nil)))
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
			s := w.Stats()
			if s.Batches > 0 {
				b.ReportMetric(float64(s.Written)/float64(s.Batches), "answers/batch")
			}
			w.Stop()
		})
	}
}
