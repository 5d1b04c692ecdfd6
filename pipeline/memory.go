package pipeline

import (
	"sync"
	"sync/atomic"
)

// memEntry is one answer held in memory. Its fields never change after it is inserted (replays is filled
// once, atomically; replayBytes and counted are the shard's): a request may read it (and the front end
// send its body) after the memory stage has evicted it.
type memEntry struct {
	key         Key
	body        []byte
	contentType string
	endpoint    string
	createdAt   int64 // unix ms
	expiresAt   int64 // unix ms, 0 = never
	version     int64
	size        int64 // what it counts against the byte budget
	tokens      int64 // the upstream's usage.total_tokens for this answer: what a hit saves

	// replays are the answer synthesised as SSE for streamed hits, without and with the usage chunk, made
	// by the first streamed hit of each kind: a replay is about five times the body, too much to build per
	// request (streamed hits were 0.61x plain hits when they did).
	replays [2]atomic.Pointer[[]byte]
	// replayBytes is what the replays count against the byte budget besides size, and counted which of them
	// it holds: they live as long as the entry, so a budget that left them out held several times
	// cache.max_bytes once entries had been replayed. A replay is counted once, by whichever of put and
	// keepReplay sees it first (an entry read from SQLite is replayed before it is put). Guarded by the
	// shard's mu.
	replayBytes int64
	counted     [2]bool
}

// expired reports whether e's TTL has passed at now (unix ms).
func (e *memEntry) expired(now int64) bool { return e.expiresAt != 0 && now >= e.expiresAt }

// entryOverhead approximates what an entry costs beyond its body: map slot, node, entry, strings.
const entryOverhead = 256

// memory is the memory stage: answers by key in shards, each an LRU with its own byte and item budget.
//
// A fresh answer always goes in, evicting the least recently used. An entry read from SQLite (or the
// shared store) goes into a full shard only when the shard's frequency sketch says it was asked for more
// often than the entry it would evict (promote). Without that, a replay of more distinct prompts than
// max_items, asked in turn as an evaluation run asks them, found nothing in memory: each entry read
// evicted the one asked for soonest after it, and every request was a SQLite read that also copied its
// answer into memory for nothing. With it the shard keeps what it holds, and that share of the replay is
// answered from memory (bench/replay.sh).
//
// A shard is a mutex-guarded map and list, used inline by the goroutine of each request, not an actor: a
// lookup through a shard actor (asked on a channel, answering on another) is two goroutine hand-offs.
// BenchmarkMemoryLookup (2 shared cores, 2026-12-06): 56 ns per lookup under the shard's mutex against
// 480 ns through a shard actor from one goroutine and 770 ns from 64, the lookup itself being the same.
// With 16 shards, lookups on two cores rarely meet on one lock.
type memory struct {
	shards []memShard
	off    bool // cache.enabled = false: nothing is kept, every lookup misses
}

type memShard struct {
	mu       sync.Mutex
	entries  map[Key]*lruNode // guarded by mu
	head     lruNode          // head.next is the most recently used, head.prev the least; guarded by mu
	bytes    int64            // guarded by mu
	freq     *frequencySketch // how often each key was asked for lately; guarded by mu
	maxItems int
	maxBytes int64

	published, publishedBytes atomic.Int64 // len(entries) and bytes, for /stats without the lock
	_                         [40]byte     // keeps neighbouring shards' locks off one cache line
}

// lruNode links a memEntry into its shard's recency list.
type lruNode struct {
	e          *memEntry
	prev, next *lruNode
}

func newMemory(cfg *Config) *memory {
	m := &memory{off: !cfg.MemoryEnabled, shards: make([]memShard, cfg.MemoryShards)}
	perItems := (cfg.MemoryMaxItems + cfg.MemoryShards - 1) / cfg.MemoryShards
	perBytes := cfg.MemoryMaxBytes / int64(cfg.MemoryShards)
	for i := range m.shards {
		s := &m.shards[i]
		s.entries = make(map[Key]*lruNode, min(perItems, 1<<12))
		s.maxItems, s.maxBytes = max(perItems, 1), max(perBytes, 1)
		if !m.off {
			// Sized for the entries the shard can hold, which max_bytes bounds too (each counts entryOverhead
			// at least): sized by max_items alone, a max_items of millions took hundreds of MB of sketches.
			s.freq = newFrequencySketch(int(min(int64(s.maxItems), s.maxBytes/entryOverhead+1)))
		}
		s.head.next, s.head.prev = &s.head, &s.head
	}
	return m
}

// shard spreads keys over shards by their first bytes (they are SHA-256 output, so uniform).
func (m *memory) shard(k *Key) *memShard {
	return &m.shards[int(uint32(k[0])|uint32(k[1])<<8)%len(m.shards)]
}

// get returns the entry for k unless it is absent or expired at now (an expired one is dropped), and
// marks it recently used. It counts the request for k in the shard's sketch, found or not.
func (m *memory) get(k *Key, now int64) *memEntry {
	if m.off {
		return nil
	}
	s := m.shard(k)
	s.mu.Lock()
	s.freq.add(k)
	n := s.entries[*k]
	if n == nil {
		s.mu.Unlock()
		return nil
	}
	if n.e.expired(now) {
		s.unlink(n)
		s.publish()
		s.mu.Unlock()
		return nil
	}
	s.moveToFront(n)
	e := n.e
	s.mu.Unlock()
	return e
}

// put inserts or replaces e, evicting the least recently used entries past the shard's budget.
func (m *memory) put(e *memEntry) {
	if m.off {
		return
	}
	s := m.shard(&e.key)
	s.mu.Lock()
	s.insert(e)
	s.mu.Unlock()
}

// insert puts or replaces e, evicting past the budget, and reports whether e is held. An e larger than
// the shard's byte budget is not (it would evict every entry, itself last); what the shard held for its key
// is dropped all the same, as e replaces it. mu must be held.
func (s *memShard) insert(e *memEntry) bool {
	if e.size > s.maxBytes {
		if n := s.entries[e.key]; n != nil {
			s.unlink(n)
			s.publish()
		}
		return false
	}
	if n := s.entries[e.key]; n != nil {
		s.bytes += e.size - n.e.size - n.e.replayBytes
		n.e = e
		s.moveToFront(n)
	} else {
		n = &lruNode{e: e}
		s.entries[e.key] = n
		s.bytes += e.size
		n.prev, n.next = &s.head, s.head.next
		s.head.next.prev = n
		s.head.next = n
	}
	s.countReplays(e)
	s.evict()
	s.publish()
	return true
}

// promote puts e, an entry read from SQLite or the shared store, unless its shard is full and e's key was
// asked for no more often than the shard's least recently used entry's (not counting the request that read
// it, which get has counted), and that entry has not expired: then e stays out and promote returns false. A key the shard holds is
// replaced as by put, unless by an older answer.
func (m *memory) promote(e *memEntry) bool {
	if m.off {
		return false
	}
	s := m.shard(&e.key)
	s.mu.Lock()
	n := s.entries[e.key]
	if n != nil && n.e.createdAt > e.createdAt {
		// A fresh answer was put while e was read: the store holds it too, and e is the answer it replaced.
		s.mu.Unlock()
		return false
	}
	if n == nil && s.head.prev != &s.head &&
		(len(s.entries) >= s.maxItems || s.bytes+e.size > s.maxBytes) &&
		s.freq.estimate(&e.key)-1 <= s.freq.estimate(&s.head.prev.e.key) && !s.head.prev.e.expired(nowMillis()) {
		s.mu.Unlock()
		return false
	}
	held := s.insert(e)
	s.mu.Unlock()
	return held
}

// keepReplay counts a replay just kept on e against e's shard, evicting past the budget as put does (e
// itself, when it is the least recently used). An entry the shard does not hold is not counted here: its
// replay goes with it, or put counts it.
func (m *memory) keepReplay(e *memEntry) {
	if m.off {
		return
	}
	s := m.shard(&e.key)
	s.mu.Lock()
	if node := s.entries[e.key]; node != nil && node.e == e {
		s.countReplays(e)
		s.evict()
		s.publish()
	}
	s.mu.Unlock()
}

// countReplays adds e's replays not yet counted to the shard's bytes. mu must be held, and e held by s.
func (s *memShard) countReplays(e *memEntry) {
	for i := range e.replays {
		if b := e.replays[i].Load(); b != nil && !e.counted[i] {
			e.counted[i] = true
			e.replayBytes += int64(cap(*b)) // what it holds
			s.bytes += int64(cap(*b))
		}
	}
}

// evict drops the least recently used entries past the shard's budget. mu must be held.
func (s *memShard) evict() {
	for (len(s.entries) > s.maxItems || s.bytes > s.maxBytes) && s.head.prev != &s.head {
		s.unlink(s.head.prev)
	}
}

// drop removes the keys named, or every entry when all.
func (m *memory) drop(keys []Key, all bool) {
	if all {
		for i := range m.shards {
			s := &m.shards[i]
			s.mu.Lock()
			clear(s.entries)
			s.head.next, s.head.prev = &s.head, &s.head
			s.bytes = 0
			s.publish()
			s.mu.Unlock()
		}
		return
	}
	for i := range keys {
		s := m.shard(&keys[i])
		s.mu.Lock()
		if n := s.entries[keys[i]]; n != nil {
			s.unlink(n)
			s.publish()
		}
		s.mu.Unlock()
	}
}

// size is the entries and bytes held, as last published by each shard.
func (m *memory) size() (entries, bytes int64) {
	for i := range m.shards {
		entries += m.shards[i].published.Load()
		bytes += m.shards[i].publishedBytes.Load()
	}
	return entries, bytes
}

// publish mirrors the shard's size for readers without the lock. mu must be held.
func (s *memShard) publish() {
	s.published.Store(int64(len(s.entries)))
	s.publishedBytes.Store(s.bytes)
}

// unlink removes n. mu must be held.
func (s *memShard) unlink(n *lruNode) {
	n.prev.next = n.next
	n.next.prev = n.prev
	n.prev, n.next = nil, nil
	delete(s.entries, n.e.key)
	s.bytes -= n.e.size + n.e.replayBytes
}

// moveToFront marks n most recently used. mu must be held.
func (s *memShard) moveToFront(n *lruNode) {
	if s.head.next == n {
		return
	}
	n.prev.next = n.next
	n.next.prev = n.prev
	n.prev, n.next = &s.head, s.head.next
	s.head.next.prev = n
	s.head.next = n
}
