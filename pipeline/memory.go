package pipeline

import (
	"llmcache/db"
	"sync/atomic"
)

// memEntry is one answer held in memory. Its fields never change after it is inserted: a hit pool worker
// may read it (and the front end send its body) after the shard has evicted it.
type memEntry struct {
	key         db.Key
	body        []byte
	contentType string
	endpoint    string
	createdAt   int64 // unix ms
	expiresAt   int64 // unix ms, 0 = never
	version     int64
	size        int64 // what it counts against the byte budget
	tokens      int64 // the upstream's usage.total_tokens for this answer: what a hit saves
}

// lruNode links a memEntry into its shard's recency list; only the shard goroutine touches it.
type lruNode struct {
	e          *memEntry
	prev, next *lruNode
}

// memShard is one actor of the memory stage: it alone owns its map and recency list, so lookups need no lock.
type memShard struct {
	lookups  chan *Request
	inserts  chan *memEntry
	items    chan *itemQuery // embeddings: several item keys looked up at once
	purges   chan memPurge   // admin deletes
	entries  map[db.Key]*lruNode
	head     lruNode // head.next is the most recently used, head.prev the least
	bytes    int64
	maxItems int
	maxBytes int64

	published, publishedBytes atomic.Int64 // len(entries) and bytes, for /stats; written by the shard only
}

// publish mirrors the shard's size for readers on other goroutines.
func (s *memShard) publish() {
	s.published.Store(int64(len(s.entries)))
	s.publishedBytes.Store(s.bytes)
}

// entryOverhead approximates what an entry costs beyond its body: map slot, node, entry, strings.
const entryOverhead = 256

func newMemShard(maxItems int, maxBytes int64, queue int) *memShard {
	s := &memShard{
		lookups:  make(chan *Request, queue),
		inserts:  make(chan *memEntry, queue),
		items:    make(chan *itemQuery, queue),
		purges:   make(chan memPurge),
		entries:  make(map[db.Key]*lruNode, min(maxItems, 1<<16)),
		maxItems: max(maxItems, 1),
		maxBytes: max(maxBytes, 1),
	}
	s.head.next, s.head.prev = &s.head, &s.head
	return s
}

// run serves the shard until quit closes. When the lookups channel closes, lookupsDone is called once and
// the shard goes on serving inserts, which may still come from upstream calls finishing.
func (p *Pipeline) runMemShard(s *memShard, lookupsDone func()) {
	lookups := s.lookups
	for {
		select {
		case r, ok := <-lookups:
			if !ok {
				lookups = nil
				lookupsDone()
				continue
			}
			// Inserts already queued go first: an answer is inserted before its client is answered, so
			// an identical request sent after that answer must find it. Left to select's random choice,
			// a busy shard could take the lookup first and send it upstream again.
			s.drainInserts()
			p.memLookup(s, r)
		case e := <-s.inserts:
			s.insert(e)
		case q := <-s.items:
			s.drainInserts()
			s.answerItems(q)
		case d := <-s.purges:
			s.drainInserts()
			s.purge(d)
			d.done()
		case <-p.memQuit:
			return
		}
	}
}

func (p *Pipeline) memLookup(s *memShard, r *Request) {
	n := s.entries[r.Key]
	if n == nil {
		p.toMissPool(r)
		return
	}
	e := n.e
	now := nowMillis()
	if e.expiresAt != 0 && now >= e.expiresAt {
		s.unlink(n)
		s.publish()
		p.toMissPool(r)
		return
	}
	if !p.usable(&r.Controls, e.createdAt, e.version, e.endpoint, now) {
		p.toMissPool(r) // stale for this request; a fresh answer will replace it
		return
	}
	s.moveToFront(n)
	r.entry = e
	p.toHitPool(r)
}

// drainInserts applies every insert waiting in the queue, without blocking.
func (s *memShard) drainInserts() {
	for {
		select {
		case e := <-s.inserts:
			s.insert(e)
		default:
			return
		}
	}
}

// itemQuery asks one shard for several keys; the shard fills found (nil where absent or expired) and
// calls done. Only that shard touches the query until then.
type itemQuery struct {
	keys  []db.Key
	found []*memEntry
	done  func()
}

func (s *memShard) answerItems(q *itemQuery) {
	now := nowMillis()
	q.found = make([]*memEntry, len(q.keys))
	for i, k := range q.keys {
		n := s.entries[k]
		if n == nil {
			continue
		}
		if n.e.expiresAt != 0 && now >= n.e.expiresAt {
			s.unlink(n)
			s.publish()
			continue
		}
		s.moveToFront(n)
		q.found[i] = n.e
	}
	q.done()
}

// memPurge removes keys from a shard, or everything when all.
type memPurge struct {
	keys []db.Key
	all  bool
	done func()
}

func (s *memShard) purge(d memPurge) {
	if d.all {
		clear(s.entries)
		s.head.next, s.head.prev = &s.head, &s.head
		s.bytes = 0
		s.publish()
		return
	}
	for _, k := range d.keys {
		if n := s.entries[k]; n != nil {
			s.unlink(n)
		}
	}
	s.publish()
}

func (s *memShard) insert(e *memEntry) {
	if n := s.entries[e.key]; n != nil {
		s.bytes += e.size - n.e.size
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
	for (len(s.entries) > s.maxItems || s.bytes > s.maxBytes) && s.head.prev != &s.head {
		s.unlink(s.head.prev)
	}
	s.publish()
}

func (s *memShard) unlink(n *lruNode) {
	n.prev.next = n.next
	n.next.prev = n.prev
	n.prev, n.next = nil, nil
	delete(s.entries, n.e.key)
	s.bytes -= n.e.size
}

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

// shardFor spreads keys over shards by their first bytes (they are SHA-256 output, so uniform).
func (p *Pipeline) shardFor(k *db.Key) *memShard {
	return p.shards[int(uint32(k[0])|uint32(k[1])<<8)%len(p.shards)]
}

// memInsert offers e to its shard without waiting: a full queue drops the insert, which only costs a later
// SQLite read. Waiting could deadlock a shard blocked on the miss pool against a miss worker blocked here.
func (p *Pipeline) memInsert(e *memEntry) {
	if !p.cfg.MemoryEnabled {
		return
	}
	select {
	case p.shardFor(&e.key).inserts <- e:
	default:
		p.stats.memInsertDrops.Add(1)
	}
}
