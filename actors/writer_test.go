package actors

import (
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"llmcache/db"
)

// failingStore is the real SQLite store with a switch that makes writes fail, as a full disk does.
type failingStore struct {
	*db.SQLite
	fail atomic.Bool
}

func (s *failingStore) WriteBatch(b *db.Batch) error {
	if s.fail.Load() {
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
	w.Stop()
	if n := onDisk(t, s, 300); n != 300 {
		t.Fatalf("after Stop %d of 300 answers are on disk, want all", n)
	}
	if st := w.Stats(); st.Pending != 0 || st.Written != 300 {
		t.Errorf("stats after Stop: %+v, want 0 pending and 300 written", st)
	}
}

func TestWriterKeepsAnswersWhileWritesFailThenBoundsThem(t *testing.T) {
	s := openStore(t)
	s.fail.Store(true)
	w := NewWriter(s, WriterConfig{BatchSize: 1, FlushInterval: time.Hour, RetryInterval: 10 * time.Millisecond, MaxPending: 10}, quiet())
	defer w.Stop()
	for i := range 25 {
		w.Put(entry(i))
	}
	if err := w.Flush(); err == nil {
		t.Fatal("Flush on a failing store returned no error")
	}
	st := w.Stats()
	if st.Dropped != 15 || st.Pending != 10 || st.LastError == "" {
		t.Fatalf("while failing: %+v, want 15 dropped, 10 pending and the last error", st)
	}
	s.fail.Store(false)
	waitUntil(t, "the retry to write what was kept", func() bool { return w.Stats().Written == 10 })
	if n := onDisk(t, s, 25); n != 10 {
		t.Errorf("%d rows on disk after recovery, want the 10 newest", n)
	}
	if st := w.Stats(); st.LastError != "" {
		t.Errorf("LastError %q after a successful write, want empty", st.LastError)
	}
}
