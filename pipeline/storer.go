package pipeline

import (
	"sync"
	"sync/atomic"

	"llmcache/db"
)

// Writer is what the pipeline needs of the writer actor (actors.Writer), which alone writes to the store.
type Writer interface {
	// Put queues e for storage, waiting while the writer's queue is full (back-pressure, never a drop).
	Put(e *db.Entry)
	// TryTouch queues hit counts without waiting; false means the queue was full.
	TryTouch(t []db.Touch) bool
	// Do runs fn on the store in the writer's goroutine after writing everything queued before it.
	Do(fn func(db.Store) (int64, error)) (int64, error)
}

// storer is the stage that keeps answers: it hands an answer to the writer and the memory stage together,
// and carries out deletes. Both go through its lock so that a delete is ordered with every store: an
// answer is either stored wholly before a delete (and deleted by it) or wholly after it (a new answer).
// Without that, an answer put to the writer just before a delete and into memory just after it stayed
// servable from memory although it was deleted on disk.
//
// epoch counts deletes. What holds answers outside the store and memory (the scheduler's recent answers,
// an entry read from SQLite on its way into memory) records the epoch it saw and is dropped when a delete
// has happened since.
type storer struct {
	mu     sync.RWMutex // stores share it; a delete takes it alone
	epoch  atomic.Int64 // written under mu held exclusively
	writer Writer
	mem    *memory
	absent *absentKeys // told of every key stored; nil when off
}

func newStorer(w Writer, mem *memory, absent *absentKeys) *storer {
	return &storer{writer: w, mem: mem, absent: absent}
}

// store hands e to the writer and m to the memory stage (m may be nil), and returns the epoch they were
// stored in. When store returns, the answer is the writer's: nothing acknowledged to a client after this
// is lost.
func (s *storer) store(e *db.Entry, m *memEntry) int64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if s.writer != nil {
		// Told before the Put, so that no moment passes with the entry on disk and unknown to the filter,
		// and after it: see absentKeys.add.
		s.absent.add(&e.Key)
		s.writer.Put(e)
		s.absent.add(&e.Key)
	}
	if m != nil {
		s.mem.put(m)
	}
	return s.epoch.Load()
}

// remember offers m, an entry read from SQLite, to memory (memory.promote) unless a delete happened since
// epoch (when the read began): the entry read may be the one deleted.
func (s *storer) remember(m *memEntry, epoch int64) {
	s.mu.RLock()
	if s.epoch.Load() == epoch {
		s.mem.promote(m)
	}
	s.mu.RUnlock()
}

// current is the epoch now: answers kept from an earlier one may have been deleted.
func (s *storer) current() int64 { return s.epoch.Load() }

// forget drops keys (all: everything) from memory and moves the epoch on, like a delete, without touching
// the store: another instance deleted them there.
func (s *storer) forget(keys []Key, all bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.epoch.Add(1)
	s.mem.drop(keys, all)
}

// delete removes what f selects from the store (after everything queued before it is written) and from
// memory: the keys named, or everything when f filters by anything else, which memory entries do not
// record (they come back from SQLite on demand).
func (s *storer) delete(f db.Filter) (int64, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.epoch.Add(1)
	var n int64
	var err error
	if s.writer != nil {
		n, err = s.writer.Do(func(st db.Store) (int64, error) { return st.Delete(f) })
		if err == nil && f.Everything() {
			s.absent.emptied()
		}
	}
	s.mem.drop(f.Keys, f.All || len(f.Keys) == 0)
	return n, err
}
