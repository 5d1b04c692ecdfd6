package pipeline

import (
	"fmt"
	"slices"
	"time"

	"llmcache/db"
	"llmcache/pipeline/canon"
)

// hitPool bounds how many hits are answered at once (cache_hit_pool_size). Hits run in the request's own
// goroutine, holding one of the pool's slots: handing each hit to a worker goroutine cost two goroutine
// wake-ups per request, which on two cores was most of a memory hit's time. A hit never waits on disk or
// upstream work, so a slot is held for microseconds.
type hitPool struct{ slots chan struct{} }

func newHitPool(size int) *hitPool { return &hitPool{slots: make(chan struct{}, size)} }

// acquire takes a slot, waiting for one until deadline.
func (h *hitPool) acquire(deadline time.Time) bool { return enqueue(h.slots, struct{}{}, deadline) }

func (h *hitPool) release() { <-h.slots }

// missPool bounds the miss work done at once (cache_miss_pool_size): SQLite reads and preparing upstream
// requests. It owns one read connection per slot; a request borrows one in its own goroutine and gives it
// back before any upstream wait, so an upstream call never holds a slot.
type missPool struct {
	readers chan *missWorker
	absent  *absentKeys // nil when the store offers no key scan
}

// missWorker is one slot of the miss pool: a read connection and the buffer its reads fill.
type missWorker struct {
	rd          db.Reader
	absent      *absentKeys
	entry       db.Entry     // reused: Get appends into entry.Body[:0]
	parser, sub canon.Parser // for preparing upstream bodies
}

func newMissPool(store db.Store, size int, absent *absentKeys) (*missPool, error) {
	m := &missPool{readers: make(chan *missWorker, size), absent: absent}
	for i := range size {
		rd, err := store.OpenReader()
		if err != nil {
			m.close()
			return nil, fmt.Errorf("cannot open read connection %d for the miss pool: %w", i, err)
		}
		m.readers <- &missWorker{rd: rd, absent: absent}
	}
	return m, nil
}

// acquire borrows a worker, waiting for one until deadline; nil when none came free.
func (m *missPool) acquire(deadline time.Time) *missWorker {
	select {
	case w := <-m.readers:
		return w
	default:
	}
	t := time.NewTimer(time.Until(deadline))
	defer t.Stop()
	select {
	case w := <-m.readers:
		return w
	case <-t.C:
		return nil
	}
}

func (m *missPool) release(w *missWorker) { m.readers <- w }

// close closes every read connection; no request may be using the pool.
func (m *missPool) close() {
	for {
		select {
		case w := <-m.readers:
			w.rd.Close()
		default:
			return
		}
	}
}

// get reads key's entry into the worker's buffer; found is false when it is absent or the read failed
// (counted: a broken read is served as a miss, since the upstream can still answer). A key the filter of
// the keys on disk does not hold is not read.
func (w *missWorker) get(key *Key, stats *counters) (e *db.Entry, found bool) {
	if w.absent.absent(key) {
		return nil, false
	}
	ok, err := w.rd.Get(key, &w.entry)
	if err != nil {
		stats.dbReadErrors.Add(1)
		return nil, false
	}
	return &w.entry, ok
}

// memEntryOf copies a read entry into a memory entry: the worker's buffer is reused by its next read.
func memEntryOf(key Key, e *db.Entry) *memEntry {
	body := slices.Clone(e.Body)
	return &memEntry{key: key, body: body, contentType: e.ContentType, endpoint: e.Endpoint, createdAt: e.CreatedAt,
		expiresAt: e.ExpiresAt, version: e.Version, size: int64(len(body)) + entryOverhead}
}
