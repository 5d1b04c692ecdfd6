package pipeline

import (
	"encoding/binary"
	"log/slog"
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// absentKeys knows which keys are certainly not on disk, so that a miss skips its SQLite read. A read that
// finds nothing cost a miss ~20 µs of CPU (a read transaction, the WAL index, pages read again after every
// commit of the writer), the largest part of the miss path's own work (bench/README.md).
//
// It is a Bloom filter of every key on disk: filled by one scan of the key index in the background after
// start, and by the storer with every answer it hands to the writer. A key the filter does not hold was
// never stored, so "absent" is exact; "maybe present" is wrong for ~1% of keys (and for deleted ones), which
// are then read as before. Until the first scan has finished every miss reads SQLite.
//
// The filter is right only while this process is the only one that adds entries to the database: the
// store offers it (db.KeyScanner) only then, which the shared store, written by every instance, does not.
// A full filter (more keys than it was sized for) keeps working with more false positives while a larger one
// is loaded beside it.
type absentKeys struct {
	scan    func(fn func(*Key) bool) error // the store's key scan
	barrier func() error                   // returns nil once everything handed to the writer before it is on disk
	log     *slog.Logger
	minimum int64         // the smallest capacity a filter gets (initialKeyCapacity)
	maximum int64         // the largest (maxKeyCapacity): past it the filter stays, with more false positives
	retry   time.Duration // the first pause before a failed load tries again (doubling up to a minute)

	mu      sync.RWMutex              // adds share it; installing or swapping a filter takes it alone
	cur     atomic.Pointer[keyFilter] // what lookups consult; nil until the first scan has finished
	next    *keyFilter                // being loaded: every add goes to it too; guarded by mu
	skipped atomic.Int64              // reads skipped
	stopped atomic.Bool               // a scan under way gives up
	quit    chan struct{}             // closed by stop: a load waiting to try again gives up
	loads   sync.WaitGroup            // loads under way
}

// initialKeyCapacity sizes the first filter: 4 MiB (bits are rounded up to a power of two), well under 1%
// false positives up to two million keys. maxKeyCapacity bounds what a filter grows to: 32 MiB, for about
// sixteen million keys; a store holding more keeps that filter, whose false positives (reads as before)
// grow with the keys past it.
const (
	initialKeyCapacity = 1 << 21
	maxKeyCapacity     = 1 << 24
)

func newAbsentKeys(scan func(fn func(*Key) bool) error, barrier func() error, log *slog.Logger) *absentKeys {
	return &absentKeys{scan: scan, barrier: barrier, log: log, minimum: initialKeyCapacity, maximum: maxKeyCapacity, retry: time.Second,
		quit: make(chan struct{})}
}

// start loads the first filter in the background.
func (a *absentKeys) start() {
	if a != nil {
		a.load(a.minimum)
	}
}

// absent reports whether key is certainly not on disk (and counts the read it spares).
func (a *absentKeys) absent(key *Key) bool {
	if a == nil {
		return false
	}
	f := a.cur.Load()
	if f == nil || f.has(key) {
		return false
	}
	a.skipped.Add(1)
	return true
}

// add records that key is being stored. The storer calls it after handing the entry to the writer (and
// before, see storer.store): a load installs its filter first and then waits for the writer before it
// scans, so an entry handed over before the install is on disk when the scan reads, and one handed over
// after it is added to the filter being loaded.
func (a *absentKeys) add(key *Key) {
	if a == nil {
		return
	}
	a.mu.RLock()
	cur, next := a.cur.Load(), a.next
	if cur != nil {
		cur.add(key)
	}
	if next != nil {
		next.add(key)
	}
	full := cur != nil && next == nil && a.outgrown(cur)
	a.mu.RUnlock()
	if full {
		a.load(4 * cur.added.Load())
	}
}

// emptied is told that every entry was deleted: a new, empty filter is exact. The caller holds what orders
// it with every add (the storer's lock, held alone).
func (a *absentKeys) emptied() {
	if a == nil {
		return
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.cur.Load() != nil {
		a.cur.Store(newKeyFilter(a.minimum))
	}
}

// load fills a new filter for capacity keys in the background and then puts it in place, unless one is
// being loaded already.
func (a *absentKeys) load(capacity int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.loadLocked(capacity)
}

func (a *absentKeys) loadLocked(capacity int64) {
	if a.next != nil || a.stopped.Load() {
		return
	}
	n := newKeyFilter(min(max(capacity, a.minimum), a.maximum))
	a.next = n
	a.loads.Add(1)
	go a.fill(n)
}

// fill waits for the writer, scans the keys on disk into n and puts n in place. When either fails (a write
// failing keeps its answers in the writer for a retry; they may reach the disk after the scan) it tries
// again after a pause, with n still told of every store: until then lookups use the filter before, or
// read SQLite for every miss.
func (a *absentKeys) fill(n *keyFilter) {
	defer a.loads.Done()
	began := time.Now()
	pause := a.retry
	for {
		err := a.barrier()
		if err == nil {
			err = a.scan(func(k *Key) bool {
				n.add(k)
				return !a.stopped.Load()
			})
		}
		if err == nil && !a.stopped.Load() {
			break
		}
		if !a.stopped.Load() {
			a.log.Warn("cannot load the filter of the keys on disk yet; misses read SQLite until it is", "err", err, "retry_in", pause)
			select {
			case <-time.After(pause):
				pause = min(2*pause, time.Minute)
				continue
			case <-a.quit:
			}
		}
		a.mu.Lock()
		a.next = nil
		a.mu.Unlock()
		return
	}
	a.mu.Lock()
	a.next = nil
	a.cur.Store(n)
	if a.outgrown(n) {
		a.loadLocked(4 * n.added.Load()) // more keys on disk than it was sized for: a larger one at once
	}
	a.mu.Unlock()
	a.log.Debug("filter of the keys on disk loaded", "keys", n.added.Load(), "took", time.Since(began).Round(time.Millisecond))
}

// skippedReads is how many reads the filter spared.
func (a *absentKeys) skippedReads() int64 {
	if a == nil {
		return 0
	}
	return a.skipped.Load()
}

// stop ends a scan under way and waits for it; no other starts. The writer must still be running (a scan
// first waits for it).
func (a *absentKeys) stop() {
	if a == nil {
		return
	}
	a.mu.Lock()
	if !a.stopped.Swap(true) {
		close(a.quit)
	}
	a.mu.Unlock()
	a.loads.Wait()
}

// state names the filter's state for /stats: "loading" until the first scan has finished, then "ready".
func (a *absentKeys) state() string {
	switch {
	case a == nil:
		return "off"
	case a.cur.Load() == nil:
		return "loading"
	}
	return "ready"
}

// keyFilter is a Bloom filter of keys, safe for concurrent adds and lookups (atomic words). Keys are SHA-256
// digests, uniformly spread already: the probe positions come from their bytes (double hashing) rather than
// from another hash function, and no library filter takes its hashes that way without hashing again.
type keyFilter struct {
	words    []atomic.Uint64
	mask     uint64 // bits - 1, bits a power of two
	capacity int64
	added    atomic.Int64
}

const (
	bitsPerKey = 10 // with keyProbes, ~1% false positives at capacity
	keyProbes  = 7
)

func newKeyFilter(capacity int64) *keyFilter {
	n := uint64(capacity) * bitsPerKey
	size := uint64(1) << bits.Len64(n-1) // a power of two, at least n
	size = max(size, 64)
	return &keyFilter{words: make([]atomic.Uint64, size/64), mask: size - 1, capacity: capacity}
}

func probes(key *Key) (h1, h2 uint64) {
	return binary.LittleEndian.Uint64(key[0:8]), binary.LittleEndian.Uint64(key[8:16]) | 1
}

func (f *keyFilter) add(key *Key) {
	h1, h2 := probes(key)
	for i := range uint64(keyProbes) {
		bit := (h1 + i*h2) & f.mask
		f.words[bit/64].Or(1 << (bit % 64))
	}
	f.added.Add(1)
}

func (f *keyFilter) has(key *Key) bool {
	h1, h2 := probes(key)
	for i := range uint64(keyProbes) {
		bit := (h1 + i*h2) & f.mask
		if f.words[bit/64].Load()&(1<<(bit%64)) == 0 {
			return false
		}
	}
	return true
}

// outgrown reports whether f holds more keys than it was sized for and a larger one may be made.
func (a *absentKeys) outgrown(f *keyFilter) bool { return f.full() && f.capacity < a.maximum }

// full reports whether more keys were added than the filter was sized for.
func (f *keyFilter) full() bool { return f.added.Load() > f.capacity }
