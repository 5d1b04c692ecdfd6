package db

import (
	"fmt"
	"testing"
)

func BenchmarkWriteBatch(b *testing.B) {
	for _, size := range []int{20, 200} {
		b.Run(fmt.Sprintf("entries=%d", size), func(b *testing.B) {
			s := openTest(b)
			body := bodyOf(0, 1<<10)
			batch := &Batch{Puts: make([]*Entry, size)}
			for i := range batch.Puts {
				batch.Puts[i] = entryOf(0)
				batch.Puts[i].Body = body
			}
			next := 0
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				for _, e := range batch.Puts { // new keys: inserts, not updates
					e.Key = keyOf(next)
					next++
				}
				if err := s.WriteBatch(batch); err != nil {
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
