package actors

import (
	"bytes"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"llmcache/db"
)

// TestWriterSizeTriggerWorksAgainAfterARecoveredWrite: once a write has succeeded after a failed one, writes
// work again, and a full batch is written at once: it does not wait out the retry pause of the failure
// before (an hour here, as the flush interval is, so that only the size trigger can write it).
func TestWriterSizeTriggerWorksAgainAfterARecoveredWrite(t *testing.T) {
	s := openStore(t)
	s.fail.Store(true)
	w := NewWriter(s, WriterConfig{BatchSize: 2, FlushInterval: time.Hour, RetryInterval: time.Hour}, quiet())
	defer w.Stop()
	w.Put(entry(0))
	w.Put(entry(1))
	waitUntil(t, "the first write to fail", func() bool { return w.Stats().Failures == 1 })
	s.fail.Store(false)
	if err := w.Flush(); err != nil { // an admin delete or the idle flush: its write succeeds
		t.Fatal(err)
	}
	w.Put(entry(2))
	w.Put(entry(3))
	waitUntil(t, "a full batch to be written once writes work", func() bool { return w.Stats().Written == 4 })
	if n := onDisk(t, s, 4); n != 4 {
		t.Fatalf("%d of 4 answers on disk", n)
	}
}

// TestWriterBytesTriggerWorksAgainAfterARecoveredWrite: the same for half of max_pending_bytes, which also
// keeps memory bounded while writes work (nothing is shed then).
func TestWriterBytesTriggerWorksAgainAfterARecoveredWrite(t *testing.T) {
	s := openStore(t)
	s.fail.Store(true)
	w := NewWriter(s, WriterConfig{BatchSize: 1000, FlushInterval: time.Hour, RetryInterval: time.Hour, MaxPendingBytes: 1000}, quiet())
	defer w.Stop()
	for i := range 5 {
		w.Put(sized(i, 100))
	}
	waitUntil(t, "the first write to fail", func() bool { return w.Stats().Failures == 1 })
	s.fail.Store(false)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := 5; i < 10; i++ {
		w.Put(sized(i, 100))
	}
	waitUntil(t, "half of max_pending_bytes to be written once writes work", func() bool { return w.Stats().Written == 10 })
	if st := w.Stats(); st.Dropped != 0 || st.PendingBytes != 0 {
		t.Fatalf("%+v: want nothing dropped or pending", st)
	}
}

// TestWriterFailedStopLeavesNothingPending: a stop that gives up answers counts them dropped and no longer
// pending, in answers and in bytes.
func TestWriterFailedStopLeavesNothingPending(t *testing.T) {
	s := openStore(t)
	s.fail.Store(true)
	w := NewWriter(s, WriterConfig{BatchSize: 1000, FlushInterval: time.Hour}, quiet())
	for i := range 3 {
		w.Put(sized(i, 100))
	}
	if err := w.Stop(); err == nil {
		t.Fatal("Stop on a failing store returned no error")
	}
	if st := w.Stats(); st.Dropped != 3 || st.DroppedBytes != 300 || st.Pending != 0 || st.PendingBytes != 0 || st.QueueDepth != 0 {
		t.Fatalf("%+v: want 3 answers (300 bytes) dropped and nothing pending", st)
	}
}

// trainedWriter is a writer over a compressing store that has a dictionary: 100 answers of prose are
// written and a dictionary trained from them, so that the preparers compress what comes next.
func trainedWriter(t *testing.T, cfg WriterConfig) (*failingStore, *Writer) {
	t.Helper()
	s := untrainedStore(t)
	return s, trainWriter(t, s, cfg)
}

// untrainedStore is a compressing store that trains a dictionary only when told.
func untrainedStore(t *testing.T) *failingStore {
	t.Helper()
	sq, err := db.Open(filepath.Join(t.TempDir(), "cache.db"), db.Options{TrainAfter: 1 << 40})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sq.Close() })
	return &failingStore{SQLite: sq}
}

// trainWriter starts a writer over s and has a dictionary trained from its first 100 answers.
func trainWriter(t *testing.T, s *failingStore, cfg WriterConfig) *Writer {
	t.Helper()
	w := NewWriter(s, cfg, quiet())
	for i := range 100 {
		w.Put(proseEntry(1_000_000 + i))
	}
	if _, err := w.Do(func(db.Store) (int64, error) { return 0, s.TrainNow() }); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Stats(); st.Dictionary == 0 {
		t.Fatal("no dictionary after TrainNow")
	}
	return w
}

// readsBack tells whether answer i is on disk with its exact bytes, and fails the test on a wrong body.
func readsBack(t *testing.T, r db.Reader, i int) bool {
	t.Helper()
	k := entry(i).Key
	var got db.Entry
	ok, err := r.Get(&k, &got)
	if err != nil {
		t.Fatal(err)
	}
	if ok && !bytes.Equal(got.Body, proseAnswer(i)) {
		t.Fatalf("answer %d reads back different bytes", i)
	}
	return ok
}

// TestWriterDoRunsAfterEverythingPutBeforeIt: Do runs its function after every answer put before it is
// written, whoever put them and whatever the batch size and interval say (neither would write them for an
// hour); a delete through Do is ordered with the puts around it, as the storer's deletes rely on.
func TestWriterDoRunsAfterEverythingPutBeforeIt(t *testing.T) {
	s, w := trainedWriter(t, WriterConfig{BatchSize: 1000, FlushInterval: time.Hour})
	defer w.Stop()
	r, err := s.OpenReader()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	const putters, each = 4, 60
	var wg sync.WaitGroup
	for g := range putters {
		wg.Go(func() {
			for j := range each {
				i := g*each + j
				w.Put(proseEntry(i))
				if j%3 != 0 {
					continue
				}
				var found bool
				if _, err := w.Do(func(db.Store) (int64, error) { found = readsBack(t, r, i); return 0, nil }); err != nil {
					t.Error(err)
					return
				}
				if !found {
					t.Errorf("answer %d, put before Do, is not on disk when Do's function runs", i)
					return
				}
				// Deleted, then put again: the put after the delete must stay, the delete must not be
				// applied before the put it follows.
				k := entry(i).Key
				if n, err := w.Do(func(st db.Store) (int64, error) { return st.Delete(db.Filter{Keys: []db.Key{k}}) }); err != nil || n != 1 {
					t.Errorf("deleting answer %d: %d rows, %v", i, n, err)
					return
				}
				w.Put(proseEntry(i))
			}
		})
	}
	wg.Wait()
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := range putters * each {
		if !readsBack(t, r, i) {
			t.Fatalf("answer %d is not on disk after Flush", i)
		}
	}
}

// TestWriterSizeTriggerNeverSleepsThrough: rounds of batch_write_size answers put from several goroutines
// at once, with an hour's flush interval: each round must be written by the size trigger alone, whichever
// state the writer was in when the last answer came (idle, taking, preparing, writing).
func TestWriterSizeTriggerNeverSleepsThrough(t *testing.T) {
	s, w := trainedWriter(t, WriterConfig{BatchSize: 4, FlushInterval: time.Hour})
	defer w.Stop()
	base := w.Stats().Written
	for round := range 60 {
		var wg sync.WaitGroup
		for g := range 4 {
			wg.Go(func() { w.Put(proseEntry(round*4 + g)) })
		}
		wg.Wait()
		waitUntil(t, fmt.Sprintf("round %d to be written by the size trigger", round), func() bool {
			return w.Stats().Written == base+int64(round+1)*4
		})
	}
	if n := onDisk(t, s, 240); n != 240 {
		t.Fatalf("%d of 240 answers on disk", n)
	}
}

// TestWriterIntervalTriggerNeverSleepsThrough: answers put one at a time, alone or in twos, each waiting for
// the one before to be written, with a batch size never reached: the interval alone writes each.
func TestWriterIntervalTriggerNeverSleepsThrough(t *testing.T) {
	_, w := trainedWriter(t, WriterConfig{BatchSize: 1000, FlushInterval: time.Millisecond})
	defer w.Stop()
	base := w.Stats().Written
	want := base
	for i := range 150 {
		w.Put(proseEntry(i))
		want++
		if i%3 == 0 {
			w.TryTouch([]db.Touch{{Key: entry(i).Key, Hits: 1, At: time.Now().UnixMilli()}})
			w.Put(proseEntry(10_000 + i))
			want++
		}
		waitUntil(t, fmt.Sprintf("answer %d to be written by the interval", i), func() bool { return w.Stats().Written == want })
	}
}

// TestWriterQueueSizeIsBackPressure: while a write is stuck (a lock held elsewhere), a queue of QueueSize
// jobs makes Put and Do wait, hit counts and FlushSoon return at once, and nothing is dropped; once the
// write goes on, everything is written.
func TestWriterQueueSizeIsBackPressure(t *testing.T) {
	s := openStore(t)
	s.entered = make(chan struct{}, 1)
	s.gate = make(chan struct{})
	w := NewWriter(s, WriterConfig{BatchSize: 1, FlushInterval: time.Hour, QueueSize: 4}, quiet())
	defer w.Stop()
	w.Put(entry(0))
	<-s.entered
	for i := 1; i <= 4; i++ {
		w.Put(entry(i))
	}
	var blocked sync.WaitGroup
	var returned atomic.Int64
	for i := 5; i < 8; i++ {
		blocked.Go(func() { w.Put(entry(i)); returned.Add(1) })
	}
	blocked.Go(func() {
		if err := w.Flush(); err != nil {
			t.Error(err)
		}
		returned.Add(1)
	})
	waitUntil(t, "three Puts and a Flush to wait for room", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.putsWaiting == 4
	})
	if w.TryTouch([]db.Touch{{Key: entry(0).Key, Hits: 1}}) {
		t.Error("TryTouch took hit counts into a full queue")
	}
	w.FlushSoon() // must not wait
	if n := returned.Load(); n != 0 {
		t.Fatalf("%d calls returned while the queue was full behind a stuck write", n)
	}
	if st := w.Stats(); st.QueueDepth != 4 || st.Dropped != 0 || st.Pending != 5 {
		t.Fatalf("%+v: want 4 jobs queued, 5 answers pending, none dropped", st)
	}
	close(s.gate)
	blocked.Wait()
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.Written != 8 || st.Dropped != 0 || st.Pending != 0 || st.PendingBytes != 0 {
		t.Fatalf("%+v: want 8 written, none dropped or pending", st)
	}
	if n := onDisk(t, s, 8); n != 8 {
		t.Fatalf("%d of 8 answers on disk", n)
	}
}

// TestWriterShedsCompressedAnswersWhileFailing: with a dictionary, so that the preparers compress every
// answer, writes fail and recover at random while max_pending_bytes forces drops: every answer ends written
// (and reads back byte for byte) or counted dropped, never both, never neither. Run under -race: shed and
// the writes must never touch an answer a preparer is compressing.
func TestWriterShedsCompressedAnswersWhileFailing(t *testing.T) {
	s, w := trainedWriter(t, WriterConfig{BatchSize: 5, FlushInterval: time.Millisecond, RetryInterval: time.Millisecond,
		MaxPendingBytes: 20 * 1300, QueueSize: 32})
	defer w.Stop()
	base := w.Stats().Written
	const putters, each = 4, 150
	stopFlapping := s.flap(2, 2)
	var wg sync.WaitGroup
	for g := range putters {
		wg.Go(func() {
			for i := g * each; i < (g+1)*each; i++ {
				w.Put(proseEntry(i))
				if i%17 == 0 {
					w.FlushSoon()
				}
				if i%41 == 0 {
					w.Flush()
				}
			}
		})
	}
	wg.Wait()
	stopFlapping()
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	st := w.Stats()
	if st.Written-base+st.Dropped != putters*each || st.Pending != 0 || st.PendingBytes != 0 {
		t.Fatalf("%+v: want %d answers written or dropped, none pending", st, putters*each)
	}
	r, err := s.OpenReader()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	found := 0
	for i := range putters * each {
		if readsBack(t, r, i) {
			found++
		}
	}
	if int64(found) != st.Written-base {
		t.Fatalf("%d answers on disk, %d counted written", found, st.Written-base)
	}
	t.Logf("written %d, dropped %d, failed writes %d", st.Written-base, st.Dropped, st.Failures)
}

// TestWriterStopRacingEverything: Put, Do, TryTouch and FlushSoon from many goroutines while Stop is
// called: nothing hangs, every answer handed to Put ends written or counted dropped (those put after the
// stop), the rows on disk are those counted written, and the writer's goroutines (its preparers too) end.
func TestWriterStopRacingEverything(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4)) // several preparers
	s := untrainedStore(t)
	before := runtime.NumGoroutine()
	w := trainWriter(t, s, WriterConfig{BatchSize: 3, FlushInterval: time.Millisecond, QueueSize: 8})
	base := w.Stats().Written
	const putters, each = 6, 80
	var wg sync.WaitGroup
	for g := range putters {
		wg.Go(func() {
			for i := g * each; i < (g+1)*each; i++ {
				w.Put(proseEntry(i))
				switch i % 4 {
				case 0:
					w.TryTouch([]db.Touch{{Key: entry(i).Key, Hits: 1, At: time.Now().UnixMilli()}})
				case 1:
					w.FlushSoon()
				case 2:
					if _, err := w.Do(func(db.Store) (int64, error) { return 0, nil }); err != nil && !errors.Is(err, errStopped) {
						t.Error(err)
					}
				}
			}
		})
	}
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for !t.Failed() {
			st := w.Stats()
			if st.Pending < 0 || st.PendingBytes < 0 || st.Written-base+st.Dropped+st.Pending > putters*each {
				t.Errorf("inconsistent figures: %+v", st)
			}
			if st.Written-base+st.Dropped == putters*each {
				return
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()
	waitUntil(t, "a third of the answers to be written", func() bool { return w.Stats().Written > base+putters*each/3 })
	stopped := make(chan error, 2)
	go func() { stopped <- w.Stop() }()
	go func() { stopped <- w.Stop() }()
	for range 2 {
		if err := <-stopped; err != nil {
			t.Fatalf("Stop: %v", err)
		}
	}
	wg.Wait()
	<-sampled
	st := w.Stats()
	if st.Written-base+st.Dropped != putters*each || st.Pending != 0 || st.PendingBytes != 0 || st.QueueDepth != 0 {
		t.Fatalf("%+v: want %d answers written or dropped, none pending", st, putters*each)
	}
	if n := int64(onDisk(t, s, putters*each)); n != st.Written-base {
		t.Fatalf("%d answers on disk, %d counted written", n, st.Written-base)
	}
	waitUntil(t, fmt.Sprintf("the goroutines back to the %d before NewWriter", before), func() bool { return runtime.NumGoroutine() <= before })
	t.Logf("written %d, dropped after the stop %d", st.Written-base, st.Dropped)
}
