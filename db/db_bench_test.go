package db

import (
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
)

// BenchmarkWriteBatch measures WriteBatch of new ~1.3 KB answers (prose in JSON, compressed with a
// dictionary trained from 1,000 of them) next to a bare insert of the same rows (the same compressed
// bodies, compressed before the clock) into the same schema through the same driver and connection, in
// transactions of the same size, in the same run. WriteBatch compresses (the writer actor's Put does that
// before, in other goroutines): the gap is compression plus the store's own work.
func BenchmarkWriteBatch(b *testing.B) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	open := func(b *testing.B) *SQLite {
		s, err := Open(filepath.Join(b.TempDir(), "cache.db"), Options{Log: quiet, TrainAfter: 1 << 40})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		putProse(b, s, 1<<30, 1<<30+1000, 0)
		if err := s.TrainNow(); err != nil {
			b.Fatal(err)
		}
		return s
	}
	const kinds = 64 // distinct bodies, cycled
	plain := make([][]byte, kinds)
	for i := range plain {
		plain[i] = answerOf(i, 0)
	}
	for _, size := range []int{20, 200, 2000} {
		for _, impl := range []string{"store", "store-prepared"} {
			b.Run(fmt.Sprintf("entries=%d/impl=%s", size, impl), func(b *testing.B) {
				s := open(b)
				var prepared []Entry // bodies compressed before the clock, as the writer actor's Put does
				if impl == "store-prepared" {
					prepared = make([]Entry, kinds)
					for i := range prepared {
						prepared[i].Body = plain[i]
						s.Prepare(&prepared[i])
					}
				}
				batch := &Batch{Puts: make([]*Entry, size)}
				next := 0
				b.ReportAllocs()
				b.ResetTimer()
				for b.Loop() {
					for i := range batch.Puts { // new keys: inserts, not updates
						batch.Puts[i] = entryOf(next)
						batch.Puts[i].Body = plain[next%kinds]
						if prepared != nil {
							batch.Puts[i].Encoded, batch.Puts[i].Encoding = prepared[next%kinds].Encoded, prepared[next%kinds].Encoding
						}
						next++
					}
					if err := s.WriteBatch(batch); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(next)/b.Elapsed().Seconds(), "entries/s")
			})
		}
		b.Run(fmt.Sprintf("entries=%d/impl=bare-insert", size), func(b *testing.B) {
			s := open(b)
			bodies, encs := make([][]byte, kinds), make([]int64, kinds)
			for i := range bodies {
				e := &Entry{Body: plain[i]}
				s.Prepare(e)
				bodies[i], encs[i] = e.Encoded, int64(e.Encoding)
			}
			// entryOf's labels row is 1: the seed's entries have the same descriptive columns.
			c := s.w
			ins, _, err := c.Prepare(`INSERT INTO entries (key, label, version, created_at, expires_at, encoding, body) VALUES (?1, 1, 1, ?2, 0, ?3, ?4)`)
			if err != nil {
				b.Fatal(err)
			}
			defer ins.Close()
			next := 0
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				if err := c.Exec(`BEGIN IMMEDIATE`); err != nil {
					b.Fatal(err)
				}
				for range size {
					e := entryOf(next) // the same per-row work as the store's side: the entry is made
					ins.BindBlob(1, e.Key[:])
					ins.BindInt64(2, e.CreatedAt)
					ins.BindInt64(3, encs[next%kinds])
					ins.BindBlob(4, bodies[next%kinds])
					if err := ins.Exec(); err != nil {
						b.Fatal(err)
					}
					next++
				}
				if err := c.Exec(`COMMIT`); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(next)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

func BenchmarkGet(b *testing.B) {
	const n = 10_000
	s := openTest(b)
	body := bodyOf(0, 1<<10)
	for i := 0; i < n; i += 500 {
		batch := &Batch{}
		for j := i; j < i+500; j++ {
			e := entryOf(j)
			e.Body = body
			batch.Puts = append(batch.Puts, e)
		}
		if err := s.WriteBatch(batch); err != nil {
			b.Fatal(err)
		}
	}
	keys := make([]Key, n)
	for i := range keys {
		keys[i] = keyOf(i)
	}
	r := mustReader(b, s)
	var e Entry
	i := 0
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		ok, err := r.Get(&keys[i%n], &e)
		if err != nil || !ok {
			b.Fatal(ok, err)
		}
		i += 7919 // a prime: jump around the table
	}
}
