package actors

import (
	"errors"
	"io"
	"log/slog"
	"math/rand"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"llmcache/db"
)

// failingStore is the real SQLite store with a switch that makes writes fail, as a full disk does, and
// an optional gate that holds writes, as a lock held by another process does.
type failingStore struct {
	*db.SQLite
	fail    atomic.Bool
	gate    chan struct{} // when set, WriteBatch waits until it is closed
	entered chan struct{} // when set, told (without waiting) that WriteBatch was called

	// While flaky, each write fails with odds 1 in flakyOdds, drawn from flakyRand: writes that fail and
	// recover by the count of the writer's own calls, not by a clock. Set by flap.
	flaky     atomic.Bool
	flakyOdds int
	flakyRand *rand.Rand // the writer goroutine's only, once flaky is set
}

// flap makes writes fail at random (1 in odds, seeded) until the returned func is called.
func (s *failingStore) flap(seed int64, odds int) (stop func()) {
	s.flakyRand, s.flakyOdds = rand.New(rand.NewSource(seed)), odds
	s.flaky.Store(true)
	return func() { s.flaky.Store(false) }
}

func (s *failingStore) WriteBatch(b *db.Batch) error {
	if s.entered != nil {
		select {
		case s.entered <- struct{}{}:
		default:
		}
	}
	if s.gate != nil {
		<-s.gate
	}
	if s.fail.Load() || s.flaky.Load() && s.flakyRand.Intn(s.flakyOdds) == 0 {
		return errors.New("disk full (injected)")
	}
	return s.SQLite.WriteBatch(b)
}

func openStore(t *testing.T) *failingStore {
	t.Helper()
	s, err := db.Open(filepath.Join(t.TempDir(), "cache.db"), db.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &failingStore{SQLite: s}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func entry(i int) *db.Entry {
	e := &db.Entry{Body: []byte(`{"n":` + string(rune('0'+i%10)) + `}`), ContentType: "application/json", Kind: "chat", CreatedAt: time.Now().UnixMilli()}
	e.Key[0], e.Key[1] = byte(i), byte(i>>8)
	return e
}

// onDisk counts which of entries 0..n-1 a separate read connection finds.
func onDisk(t *testing.T, s db.Store, n int) int {
	t.Helper()
	r, err := s.OpenReader()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	found := 0
	var e db.Entry
	for i := range n {
		k := entry(i).Key
		ok, err := r.Get(&k, &e)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			found++
		}
	}
	return found
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWriterFlushesOnBatchSize(t *testing.T) {
	s := openStore(t)
	w := NewWriter(s, WriterConfig{BatchSize: 5, FlushInterval: time.Hour}, quiet())
	defer w.Stop()
	for i := range 5 {
		w.Put(entry(i))
	}
	waitUntil(t, "5 rows written by the size trigger", func() bool { return onDisk(t, s, 5) == 5 })
}

func TestWriterFlushesOnInterval(t *testing.T) {
	s := openStore(t)
	w := NewWriter(s, WriterConfig{BatchSize: 1000, FlushInterval: 20 * time.Millisecond}, quiet())
	defer w.Stop()
	w.Put(entry(1))
	waitUntil(t, "1 row written by the interval trigger", func() bool { return onDisk(t, s, 2) == 1 })
}

func TestWriterStopDrainsEverything(t *testing.T) {
	s := openStore(t)
	w := NewWriter(s, WriterConfig{BatchSize: 100000, FlushInterval: time.Hour}, quiet())
	for i := range 300 {
		w.Put(entry(i))
	}
	if err := w.Stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if n := onDisk(t, s, 300); n != 300 {
		t.Fatalf("after Stop %d of 300 answers are on disk, want all", n)
	}
	if st := w.Stats(); st.Pending != 0 || st.Written != 300 {
		t.Errorf("stats after Stop: %+v, want 0 pending and 300 written", st)
	}
}

// TestWriterKeepsAnswersWhileWritesFailThenBoundsThem: while writes fail, answers wait for a retry up to
// max_pending_bytes; past it the oldest are dropped and counted, and once writes work the rest is written.
func TestWriterKeepsAnswersWhileWritesFailThenBoundsThem(t *testing.T) {
	s := openStore(t)
	s.fail.Store(true)
	// Answers of 100 bytes, room for 10 of them.
	w := NewWriter(s, WriterConfig{BatchSize: 1, FlushInterval: time.Hour, RetryInterval: 10 * time.Millisecond, MaxPendingBytes: 1000}, quiet())
	defer w.Stop()
	for i := range 25 {
		w.Put(sized(i, 100))
	}
	if err := w.Flush(); err == nil {
		t.Fatal("Flush on a failing store returned no error")
	}
	st := w.Stats()
	if st.Dropped != 15 || st.DroppedBytes != 1500 || st.Pending != 10 || st.PendingBytes != 1000 || st.LastError == "" {
		t.Fatalf("while failing: %+v, want 15 (1500 bytes) dropped, 10 (1000 bytes) pending and the last error", st)
	}
	s.fail.Store(false)
	waitUntil(t, "the retry to write what was kept", func() bool { return w.Stats().Written == 10 })
	for i := range 25 {
		if got, want := onDiskKey(t, s, sized(i, 100).Key), i >= 15; got != want {
			t.Errorf("answer %d on disk %v, want %v (the 10 newest are kept)", i, got, want)
		}
	}
	if st := w.Stats(); st.LastError != "" || st.PendingBytes != 0 {
		t.Errorf("after a successful write: %+v, want no error and 0 pending bytes", st)
	}
}

// sized is entry i with a body of n bytes.
func sized(i, n int) *db.Entry {
	e := entry(i)
	e.Body = make([]byte, n)
	return e
}

func onDiskKey(t *testing.T, s db.Store, k db.Key) bool {
	t.Helper()
	r, err := s.OpenReader()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var e db.Entry
	ok, err := r.Get(&k, &e)
	if err != nil {
		t.Fatal(err)
	}
	return ok
}

// TestWriterFlushesOnPendingBytes: while writes work, a batch holding half of max_pending_bytes is written
// at once, whatever batch_write_size and flush_interval_ms say.
func TestWriterFlushesOnPendingBytes(t *testing.T) {
	s := openStore(t)
	w := NewWriter(s, WriterConfig{BatchSize: 1000, FlushInterval: time.Hour, MaxPendingBytes: 1000}, quiet())
	defer w.Stop()
	for i := range 5 {
		w.Put(sized(i, 100))
	}
	waitUntil(t, "500 of 1000 pending bytes to be written", func() bool { return w.Stats().Written == 5 })
	if st := w.Stats(); st.Dropped != 0 || st.PendingBytes != 0 {
		t.Fatalf("%+v: want nothing dropped or pending", st)
	}
}

// TestWriterPutWaitsWhileTheQueueHoldsMaxPendingBytes: while a write is stuck (a lock held elsewhere, a
// slow disk), the answers queued behind it are bounded in bytes too: Put waits, and nothing is dropped.
func TestWriterPutWaitsWhileTheQueueHoldsMaxPendingBytes(t *testing.T) {
	s := openStore(t)
	s.gate = make(chan struct{})
	s.entered = make(chan struct{}, 1)
	w := NewWriter(s, WriterConfig{BatchSize: 1, FlushInterval: time.Hour, MaxPendingBytes: 1000}, quiet())
	defer w.Stop()
	w.Put(sized(0, 100))
	<-s.entered // the writer is inside WriteBatch, and stays there until the gate opens
	for i := 1; i <= 10; i++ {
		w.Put(sized(i, 100)) // 1000 bytes queued
	}
	done := make(chan struct{})
	go func() {
		w.Put(sized(11, 100))
		close(done)
	}()
	waitUntil(t, "the 12th Put to wait", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return w.putsWaiting == 1
	})
	select {
	case <-done:
		t.Fatal("Put returned with max_pending_bytes already queued behind a stuck write")
	default:
	}
	close(s.gate)
	<-done
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	if st := w.Stats(); st.Written != 12 || st.Dropped != 0 || st.PendingBytes != 0 {
		t.Fatalf("%+v: want 12 written, none dropped or pending", st)
	}
}

// TestWriterStopReportsLostAnswers: a stop that cannot write the answers waiting (the disk still full
// after the retries) says how many were lost, and counts them as dropped.
func TestWriterStopReportsLostAnswers(t *testing.T) {
	s := openStore(t)
	s.fail.Store(true)
	w := NewWriter(s, WriterConfig{BatchSize: 1000, FlushInterval: time.Hour}, quiet())
	for i := range 3 {
		w.Put(sized(i, 100))
	}
	err := w.Stop()
	if err == nil || !strings.Contains(err.Error(), "cannot write 3 cached answers (300 bytes) at shutdown") {
		t.Fatalf("Stop on a failing store: %v, want the 3 answers lost", err)
	}
	if st := w.Stats(); st.Dropped != 3 || st.DroppedBytes != 300 {
		t.Fatalf("%+v: want 3 answers (300 bytes) dropped", st)
	}
	if err2 := w.Stop(); err2 != err {
		t.Fatalf("a second Stop returned %v", err2)
	}
}
