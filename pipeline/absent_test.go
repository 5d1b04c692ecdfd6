package pipeline

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"
)

func keyN(n int) Key {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(n))
	return sha256.Sum256(b[:])
}

// fakeDisk is the keys a store holds, with a writer queue in front: what is put lands on disk only when the
// barrier (the writer's "everything before this is written") runs, as with the writer actor's batches.
type fakeDisk struct {
	mu       sync.Mutex
	queued   []Key
	onDisk   map[Key]bool
	scanned  chan struct{} // closed when a scan has begun; nil: not watched
	hold     chan struct{} // a scan waits on it before reading, when set
	failures int           // barriers still to fail (a write failing: what is queued stays queued)
	barriers int           // barriers asked for
}

func newFakeDisk() *fakeDisk { return &fakeDisk{onDisk: map[Key]bool{}} }

func (d *fakeDisk) put(k Key) {
	d.mu.Lock()
	d.queued = append(d.queued, k)
	d.mu.Unlock()
}

func (d *fakeDisk) flush() {
	d.mu.Lock()
	for _, k := range d.queued {
		d.onDisk[k] = true
	}
	d.queued = nil
	d.mu.Unlock()
}

// barrier writes what is queued, or fails leaving it queued while failures remain.
func (d *fakeDisk) barrier() error {
	d.mu.Lock()
	d.barriers++
	if d.failures > 0 {
		d.failures--
		d.mu.Unlock()
		return errors.New("database is locked (fake)")
	}
	d.mu.Unlock()
	d.flush()
	return nil
}

func (d *fakeDisk) setHold(hold, scanned chan struct{}) {
	d.mu.Lock()
	d.hold, d.scanned = hold, scanned
	d.mu.Unlock()
}

// scan reads a snapshot of what is on disk when it begins, as one read transaction does.
func (d *fakeDisk) scan(fn func(*Key) bool) error {
	d.mu.Lock()
	snap := make([]Key, 0, len(d.onDisk))
	for k := range d.onDisk {
		snap = append(snap, k)
	}
	scanned, hold := d.scanned, d.hold
	d.scanned = nil
	d.mu.Unlock()
	if scanned != nil {
		close(scanned)
	}
	if hold != nil {
		<-hold
	}
	for i := range snap {
		if !fn(&snap[i]) {
			break
		}
	}
	return nil
}

// settled waits until no load is under way and the filter in use is not overfull.
func settled(t *testing.T, a *absentKeys) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		a.mu.RLock()
		cur, loading := a.cur.Load(), a.next != nil
		a.mu.RUnlock()
		if cur != nil && !loading && !cur.full() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the filter never settled")
		}
		time.Sleep(time.Millisecond)
	}
}

func waitReady(t *testing.T, a *absentKeys) {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for a.state() != "ready" {
		if time.Now().After(deadline) {
			t.Fatal("the filter never became ready")
		}
		time.Sleep(time.Millisecond)
	}
}

// store is the storer's order: the writer gets the entry, then the filter is told.
func store(d *fakeDisk, a *absentKeys, k Key) {
	d.put(k)
	a.add(&k)
}

// No key that is on disk, or handed to the writer at any moment around a load, is ever called absent; keys
// never stored mostly are.
func TestAbsentKeysNeverHideAStoredKey(t *testing.T) {
	d := newFakeDisk()
	for i := range 5000 {
		d.onDisk[keyN(i)] = true // stored before the start
	}
	a := newAbsentKeys(d.scan, d.barrier, slog.New(slog.DiscardHandler))
	a.minimum = 4096 // the 5,000 keys on disk overfill it: a larger filter is loaded while keys keep coming
	hold := make(chan struct{})
	d.setHold(hold, nil)
	a.start()
	if k := keyN(1); a.absent(&k) {
		t.Fatal("a key on disk is absent before the filter has loaded")
	}
	// Stores go on while the scan is held: from several goroutines, some before the barrier, some after.
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				store(d, a, keyN(100000+g*10000+i))
				if i%100 == 0 {
					d.flush()
				}
			}
		}()
	}
	close(hold)
	wg.Wait()
	d.setHold(nil, nil)
	settled(t, a) // the first filter was overfilled: a larger one is in place
	var wrong int
	check := func(k Key) {
		if a.absent(&k) {
			wrong++
		}
	}
	for i := range 5000 {
		check(keyN(i))
	}
	for g := range 4 {
		for i := range 2000 {
			check(keyN(100000 + g*10000 + i))
		}
	}
	if wrong > 0 {
		t.Fatalf("%d stored keys were called absent", wrong)
	}
	var absent int
	for i := range 10000 {
		k := keyN(900000 + i)
		if a.absent(&k) {
			absent++
		}
	}
	if absent < 9500 {
		t.Errorf("only %d of 10,000 keys never stored were known absent, want at least 95%%", absent)
	}
	if a.skippedReads() != int64(absent) {
		t.Errorf("%d skipped reads counted, want %d", a.skippedReads(), absent)
	}
	a.stop()
}

// A key stored just before a load begins is on disk when the scan reads (the load waits for the writer
// first), although its add reached no filter being loaded.
func TestAbsentKeysLoadWaitsForTheWriter(t *testing.T) {
	d := newFakeDisk()
	a := newAbsentKeys(d.scan, d.barrier, slog.New(slog.DiscardHandler))
	k := keyN(7)
	store(d, a, k) // handed to the writer, not yet written; no filter yet to tell
	a.start()
	waitReady(t, a)
	if a.absent(&k) {
		t.Fatal("a key handed to the writer before the load is absent")
	}
	a.stop()
}

// After every entry was deleted the filter starts empty: old keys are absent, new stores present.
func TestAbsentKeysEmptied(t *testing.T) {
	d := newFakeDisk()
	d.onDisk[keyN(1)] = true
	a := newAbsentKeys(d.scan, d.barrier, slog.New(slog.DiscardHandler))
	a.start()
	waitReady(t, a)
	old := keyN(1)
	if a.absent(&old) {
		t.Fatal("a key on disk is absent")
	}
	a.emptied()
	if !a.absent(&old) {
		t.Error("a deleted key is still maybe present after everything was deleted")
	}
	k := keyN(2)
	store(d, a, k)
	if a.absent(&k) {
		t.Error("a key stored after the delete is absent")
	}
	a.stop()
}

// Stop ends a scan under way: the filter it was loading is never used.
func TestAbsentKeysStopEndsAScan(t *testing.T) {
	d := newFakeDisk()
	for i := range 100 {
		d.onDisk[keyN(i)] = true
	}
	hold := make(chan struct{})
	scanned := make(chan struct{})
	d.setHold(hold, scanned)
	a := newAbsentKeys(d.scan, d.barrier, slog.New(slog.DiscardHandler))
	a.start()
	<-scanned
	done := make(chan struct{})
	go func() { a.stop(); close(done) }()
	for !a.stopped.Load() {
		time.Sleep(time.Millisecond)
	}
	close(hold)
	<-done
	if s := a.state(); s != "loading" {
		t.Errorf("state %q after a stop during the first scan, want loading (no filter in use)", s)
	}
}

// A reload whose wait for the writer fails (a write failing keeps its answers queued for a retry, so they
// may reach the disk after the scan) does not put in place a filter without them: it tries again, and the
// filter before keeps answering meanwhile.
func TestAbsentKeysReloadWaitsForAWriterThatFails(t *testing.T) {
	d := newFakeDisk()
	for i := range 5 {
		d.onDisk[keyN(i)] = true
	}
	a := newAbsentKeys(d.scan, d.barrier, slog.New(slog.DiscardHandler))
	a.minimum = 4 // five keys overfill it: the first filter is replaced at once
	a.retry = time.Millisecond
	a.start()
	settled(t, a)
	first := a.cur.Load()
	d.mu.Lock()
	d.failures = 1 // the next reload's first wait for the writer fails
	d.mu.Unlock()
	k := keyN(1000)
	for i := 2000; first.added.Load() < first.capacity; i++ {
		store(d, a, keyN(i))
	}
	store(d, a, k) // queued, and in the full filter only: the reload it starts finds the writer failing
	settled(t, a)
	if a.cur.Load() == first {
		t.Fatal("no larger filter was put in place")
	}
	if a.absent(&k) {
		t.Fatal("a key queued while the writer failed is absent from the filter put in place after")
	}
	if d.barriers < 2 {
		t.Errorf("%d waits for the writer, want a second after the failed one", d.barriers)
	}
	a.stop()
}

func TestKeyFilterFalsePositives(t *testing.T) {
	f := newKeyFilter(100000)
	for i := range 100000 {
		k := keyN(i)
		f.add(&k)
	}
	for i := range 100000 {
		if k := keyN(i); !f.has(&k) {
			t.Fatalf("key %d added and not held", i)
		}
	}
	var fp int
	for i := range 100000 {
		if k := keyN(1000000 + i); f.has(&k) {
			fp++
		}
	}
	if fp > 2000 {
		t.Errorf("%d false positives in 100,000 at capacity, want under 2%%", fp)
	}
	t.Logf("false positives at capacity: %.2f%%", float64(fp)/1000)
}

// A filter at the largest capacity is kept however many keys come: no reload after reload.
func TestAbsentKeysStopGrowingAtTheMaximum(t *testing.T) {
	d := newFakeDisk()
	a := newAbsentKeys(d.scan, d.barrier, slog.New(slog.DiscardHandler))
	a.minimum, a.maximum = 4, 16
	a.start()
	waitReady(t, a)
	for i := range 200 {
		store(d, a, keyN(i))
	}
	deadline := time.Now().Add(time.Minute)
	for {
		a.mu.RLock()
		cur, loading := a.cur.Load(), a.next != nil
		a.mu.RUnlock()
		if !loading && cur.capacity == 16 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the filter never reached its largest capacity")
		}
		time.Sleep(time.Millisecond)
	}
	d.mu.Lock()
	before := d.barriers
	d.mu.Unlock()
	for i := range 200 {
		store(d, a, keyN(1000+i))
	}
	a.mu.RLock()
	loading := a.next != nil
	a.mu.RUnlock()
	d.mu.Lock()
	after := d.barriers
	d.mu.Unlock()
	if loading || after != before {
		t.Errorf("stores into a full filter at the largest capacity started loads (%d waits for the writer, loading %v)", after-before, loading)
	}
	for i := range 200 {
		if k := keyN(1000 + i); a.absent(&k) {
			t.Fatal("a stored key is absent from a full filter")
		}
	}
	a.stop()
}
