package pipeline

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"testing"
)

// BenchmarkMemoryLookup measures one memory lookup as the memory stage does it (a shard's mutex, in the
// request's goroutine) against the same lookup through a shard actor (a goroutine owning the shard, asked
// over a channel and answering on another: the design before), from as many goroutines as requests
// arrive on. The figure decides whether the stage is an actor or a lock (memory.go says which and why).
func BenchmarkMemoryLookup(b *testing.B) {
	cfg := DefaultConfig()
	m := newMemory(&cfg)
	keys := make([]Key, 4096)
	for i := range keys {
		var n [8]byte
		binary.LittleEndian.PutUint64(n[:], uint64(i))
		keys[i] = sha256.Sum256(n[:])
		m.put(&memEntry{key: keys[i], body: make([]byte, 1300), size: 1300 + entryOverhead})
	}
	now := nowMillis()
	for _, parallel := range []int{1, 64} {
		b.Run(fmt.Sprintf("stage=mutex-shards/goroutines=%d", parallel), func(b *testing.B) {
			b.SetParallelism(parallel)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					if m.get(&keys[i%len(keys)], now) == nil {
						b.Error("a stored key missed")
					}
					i++
				}
			})
		})
		b.Run(fmt.Sprintf("stage=actor-shards/goroutines=%d", parallel), func(b *testing.B) {
			type ask struct {
				key   *Key
				reply chan *memEntry
			}
			shards := make([]chan ask, cfg.MemoryShards)
			for i := range shards {
				shards[i] = make(chan ask, 256)
				go func(in chan ask) {
					for a := range in {
						a.reply <- m.get(a.key, now) // the lookup itself, as the actor would do it
					}
				}(shards[i])
			}
			defer func() {
				for _, s := range shards {
					close(s)
				}
			}()
			b.SetParallelism(parallel)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				reply := make(chan *memEntry, 1)
				i := 0
				for pb.Next() {
					k := &keys[i%len(keys)]
					shards[int(uint32(k[0])|uint32(k[1])<<8)%len(shards)] <- ask{k, reply}
					if <-reply == nil {
						b.Error("a stored key missed")
					}
					i++
				}
			})
		})
	}
}
