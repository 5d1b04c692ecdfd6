package db

import (
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/ncruces/go-sqlite3"
)

// The driver panics on SQLITE_NOMEM. hard_heap_limit caps one connection's SQLite heap (each connection is
// a Wasm instance of its own), so these tests make the real driver run out of memory on purpose. The
// pragma can only lower the limit: a test lifts it by opening a new connection.

func mediumEntry(i int) *Entry {
	e := entryOf(i)
	e.Body = bodyOf(i, largeBody-1) // bound whole, not in chunks
	return e
}

func driverPanics(t *testing.T, s *SQLite) int64 {
	t.Helper()
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	return st.DriverPanics
}

// TestWriterOutOfMemoryIsAnError: an out-of-memory panic of the driver during a batch becomes the batch's
// error; nothing of the batch is written, the connection is kept and takes smaller batches, and the same
// batch goes through once there is memory.
func TestWriterOutOfMemoryIsAnError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { s.Close() }()
	mustWrite(t, s, &Batch{Puts: []*Entry{entryOf(0)}})
	if err := s.execWriter(`PRAGMA hard_heap_limit = 1000000`); err != nil {
		t.Fatal(err)
	}
	batch := &Batch{Puts: []*Entry{entryOf(1), mediumEntry(2)}, Touches: []Touch{{Key: keyOf(0), Hits: 1, At: 1}}}
	err = s.WriteBatch(batch)
	if !errors.Is(err, ErrDriverPanic) {
		t.Fatalf("WriteBatch under a 1 MB heap: %v, want an ErrDriverPanic", err)
	}
	if n := queryInt(t, s, `SELECT count(*) FROM entries`); n != 1 {
		t.Fatalf("%d rows after the failed batch, want 1", n)
	}
	if n := queryInt(t, s, `SELECT count(*) FROM hits`); n != 0 {
		t.Fatalf("the failed batch left %d hits rows", n)
	}
	mustWrite(t, s, &Batch{Puts: []*Entry{entryOf(1)}, Touches: batch.Touches})
	if n := driverPanics(t, s); n != 1 {
		t.Fatalf("Stats.DriverPanics = %d, want 1", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if s, err = Open(path, Options{}); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s, batch)
	if n := queryInt(t, s, `SELECT count(*) FROM entries`); n != 3 {
		t.Fatalf("%d rows after the retry, want 3", n)
	}
}

// TestReaderOutOfMemoryIsAnError: an out-of-memory panic while reading an entry is Get's error (the
// pipeline serves a miss); the reader keeps working.
func TestReaderOutOfMemoryIsAnError(t *testing.T) {
	s := openTest(t)
	mustWrite(t, s, &Batch{Puts: []*Entry{mediumEntry(1), entryOf(2)}})
	r := mustReader(t, s)
	if err := r.(*sqliteReader).c.Exec(`PRAGMA hard_heap_limit = 300000`); err != nil {
		t.Fatal(err)
	}
	var e Entry
	k := keyOf(1)
	ok, err := r.Get(&k, &e)
	if ok || !errors.Is(err, ErrDriverPanic) {
		t.Fatalf("Get of a 1 MB body under a 300 KB heap: ok=%v err=%v, want an ErrDriverPanic", ok, err)
	}
	if _, ok := mustGet(t, r, keyOf(2)); !ok {
		t.Fatal("small entry not found after the failed read")
	}
	if got, ok := mustGet(t, mustReader(t, s), k); !ok || len(got.Body) != largeBody-1 {
		t.Fatalf("after the limit is lifted: ok=%v, %d bytes", ok, len(got.Body))
	}
	if n := driverPanics(t, s); n != 1 {
		t.Fatalf("Stats.DriverPanics = %d, want 1", n)
	}
}

// TestWriterReopensAfterAPanicInsideSQLite: a panic that unwinds through SQLite itself (here from a Go
// function a trigger calls in the middle of a batch) fails the batch without committing any of it; the
// connection is dropped and the next call opens a new one (which has no such trigger).
func TestWriterReopensAfterAPanicInsideSQLite(t *testing.T) {
	s := openTest(t)
	if err := s.w.CreateFunction("boom", 0, 0, func(sqlite3.Context, ...sqlite3.Value) { panic("boom") }); err != nil {
		t.Fatal(err)
	}
	if err := s.execWriter(`CREATE TEMP TRIGGER boom AFTER INSERT ON main.entries WHEN new.created_at = 1700000000002 BEGIN SELECT boom(); END`); err != nil {
		t.Fatal(err)
	}
	batch := &Batch{Puts: []*Entry{entryOf(1), entryOf(2), entryOf(3)}}
	err := s.WriteBatch(batch)
	if !errors.Is(err, ErrDriverPanic) {
		t.Fatalf("WriteBatch with a panicking trigger: %v, want an ErrDriverPanic", err)
	}
	r := mustReader(t, s)
	if _, ok := mustGet(t, r, keyOf(1)); ok {
		t.Fatal("the batch that panicked was partly committed")
	}
	mustWrite(t, s, batch)
	for i := 1; i <= 3; i++ {
		if _, ok := mustGet(t, r, keyOf(i)); !ok {
			t.Fatalf("entry %d missing after the retry on a new connection", i)
		}
	}
	if _, err := s.Delete(Filter{Keys: []Key{keyOf(3)}}); err != nil {
		t.Fatal(err)
	}
	if n := driverPanics(t, s); n != 1 {
		t.Fatalf("Stats.DriverPanics = %d, want 1", n)
	}
}

// TestReaderReopensAfterAPanicInsideSQLite: a panic that unwinds through SQLite during Get (from a trace
// callback) is Get's error; the next Get opens a new connection.
func TestReaderReopensAfterAPanicInsideSQLite(t *testing.T) {
	s := openTest(t)
	mustWrite(t, s, &Batch{Puts: []*Entry{entryOf(1)}})
	r := mustReader(t, s)
	if err := r.(*sqliteReader).c.Trace(sqlite3.TRACE_STMT, func(sqlite3.TraceEvent, any, any) error { panic("boom") }); err != nil {
		t.Fatal(err)
	}
	var e Entry
	k := keyOf(1)
	if ok, err := r.Get(&k, &e); ok || !errors.Is(err, ErrDriverPanic) {
		t.Fatalf("Get with a panicking trace: ok=%v err=%v, want an ErrDriverPanic", ok, err)
	}
	if _, ok := mustGet(t, r, k); !ok {
		t.Fatal("entry not found on the new connection")
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Get(&k, &e); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get after Close: %v", err)
	}
	if n := driverPanics(t, s); n != 1 {
		t.Fatalf("Stats.DriverPanics = %d, want 1", n)
	}
}

// TestClosedStoreDoesNotReopen: after Close, writer calls say ErrClosed, even after a panic dropped the
// writer connection.
func TestClosedStoreDoesNotReopen(t *testing.T) {
	s := openTest(t)
	if err := s.w.CreateFunction("boom", 0, 0, func(sqlite3.Context, ...sqlite3.Value) { panic("boom") }); err != nil {
		t.Fatal(err)
	}
	if err := s.execWriter(`SELECT boom()`); !errors.Is(err, ErrDriverPanic) {
		t.Fatalf("exec of a panicking function: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteBatch(&Batch{Puts: []*Entry{entryOf(1)}}); !errors.Is(err, ErrClosed) {
		t.Fatal(fmt.Sprint("WriteBatch after Close: ", err))
	}
}
