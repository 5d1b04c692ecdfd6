package pipeline

import (
	"bytes"
	"hash/maphash"
	"sync"
)

// keyMemo remembers what keying a request gave, by the request's exact bytes and everything else that goes
// into its key: an evaluation run replays identical bytes, and a memo hit costs a hash of the body and one
// comparison instead of parsing it and writing its canonical form (about 70% of a memory hit's work in the
// pipeline before the memo: BenchmarkKeying, bench/README.md).
//
// It is exact: an entry holds the request bytes and the header controls it was keyed with, and is used only
// when they are equal, so two requests with different canonical keys can never share one. What keying
// depends on besides them (ignore_fields, enable_thinking) is fixed for the pipeline's life. Only chat and
// whole completions requests are memoised (embeddings and batched completions carry a list of item keys).
//
// Shards are mutex-guarded maps from a seeded hash to the entries with that hash. A shard over its budget
// is emptied whole: cheap, and a replay fills it again with what it asks.
type keyMemo struct {
	seed   maphash.Seed
	shards [16]memoShard
}

type memoShard struct {
	mu    sync.Mutex
	bySum map[uint64][]*memoEntry // guarded by mu
	bytes int                     // entries' bytes held, overhead included; guarded by mu
	_     [40]byte                // keeps neighbouring shards' locks off one cache line
}

// memoEntry is one keyed request: its inputs (kind, tenant, header controls, body) and what the keyer set.
type memoEntry struct {
	kind    Kind
	tenant  *Tenant
	headers Controls // as the front end set them, before the body's cache object
	body    []byte

	key                  Key
	controls             Controls // after the body's cache object and the tenant's namespace
	thinking             Thinking
	stream, includeUsage bool
	modelStart, modelEnd int
}

// memoShardBytes bounds what one shard holds, its entries counted with their bodies (16 MiB over all
// shards).
const memoShardBytes = 1 << 20

// memoEntryOverhead approximates what an entry costs beyond its body (the entry, its map slot and slice):
// counting bodies alone, a memo of short requests (~70 bytes) held five times its budget.
const memoEntryOverhead = 256

func newKeyMemo() *keyMemo {
	m := &keyMemo{seed: maphash.MakeSeed()}
	for i := range m.shards {
		m.shards[i].bySum = make(map[uint64][]*memoEntry)
	}
	return m
}

func memoable(k Kind) bool { return k == KindChat || k == KindCompletion }

// sum hashes what the memo is looked up by; the entry found must still be compared whole.
func (m *keyMemo) sum(r *Request) uint64 {
	return maphash.Bytes(m.seed, r.Body) ^ uint64(r.Kind)<<56
}

// lookup sets r's keyed fields from a memo entry for exactly this request, and reports whether there was one.
func (m *keyMemo) lookup(r *Request, sum uint64) bool {
	s := &m.shards[sum%uint64(len(m.shards))]
	s.mu.Lock()
	var e *memoEntry
	for _, c := range s.bySum[sum] {
		if c.kind == r.Kind && c.tenant == r.Tenant && c.headers == r.Controls && bytes.Equal(c.body, r.Body) {
			e = c
			break
		}
	}
	s.mu.Unlock()
	if e == nil {
		return false
	}
	r.Key, r.Controls, r.Thinking, r.Stream, r.includeUsage = e.key, e.controls, e.thinking, e.stream, e.includeUsage
	r.modelStart, r.modelEnd = e.modelStart, e.modelEnd
	return true
}

// remember records what keying r gave; headers are its controls as they were before keying.
func (m *keyMemo) remember(r *Request, sum uint64, headers Controls) {
	e := &memoEntry{kind: r.Kind, tenant: r.Tenant, headers: headers, body: bytes.Clone(r.Body),
		key: r.Key, controls: r.Controls, thinking: r.Thinking, stream: r.Stream, includeUsage: r.includeUsage,
		modelStart: r.modelStart, modelEnd: r.modelEnd}
	s := &m.shards[sum%uint64(len(m.shards))]
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.bySum[sum] {
		if c.kind == e.kind && c.tenant == e.tenant && c.headers == e.headers && bytes.Equal(c.body, e.body) {
			return // another request with these bytes was keyed at the same time
		}
	}
	size := len(e.body) + memoEntryOverhead
	if s.bytes+size > memoShardBytes {
		clear(s.bySum)
		s.bytes = 0
	}
	s.bySum[sum] = append(s.bySum[sum], e)
	s.bytes += size
}
