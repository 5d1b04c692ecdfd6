package trim

import (
	"hash/maphash"
	"sync"
)

// memo remembers the token count of messages by their raw JSON bytes. An evaluation replays
// multi-turn conversations: each turn's request repeats the whole history before it, so without
// this a 50k-token history would be tokenized again (~15 ms) for every new turn.
//
// It is sharded so that concurrent misses rarely share a lock, and bounded: a full shard is emptied
// rather than kept in LRU order, which costs a few recounts and no bookkeeping per lookup.
type memo struct {
	seed   maphash.Seed
	shards [memoShards]memoShard
}

const (
	memoShards   = 16
	memoPerShard = 4096 // 64k messages in all, about 2 MB
)

type memoShard struct {
	mu     sync.Mutex
	counts map[memoKey]int
}

// memoKey is a 64-bit hash and the length of the message's bytes: two different messages would have
// to collide on both to share a count.
type memoKey struct {
	hash uint64
	size int
}

func newMemo() *memo {
	m := &memo{seed: maphash.MakeSeed()}
	for i := range m.shards {
		m.shards[i].counts = make(map[memoKey]int)
	}
	return m
}

func (m *memo) key(raw []byte) memoKey { return memoKey{maphash.Bytes(m.seed, raw), len(raw)} }

func (m *memo) get(k memoKey) (int, bool) {
	s := &m.shards[k.hash%memoShards]
	s.mu.Lock()
	n, ok := s.counts[k]
	s.mu.Unlock()
	return n, ok
}

func (m *memo) put(k memoKey, n int) {
	s := &m.shards[k.hash%memoShards]
	s.mu.Lock()
	if len(s.counts) >= memoPerShard {
		clear(s.counts)
	}
	s.counts[k] = n
	s.mu.Unlock()
}
