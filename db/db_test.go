package db

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/ncruces/go-sqlite3"
)

func keyOf(i int) Key {
	var b [8]byte
	binary.LittleEndian.PutUint64(b[:], uint64(i))
	return sha256.Sum256(b[:])
}

func bodyOf(i, size int) []byte {
	b := bytes.Repeat([]byte{byte('a' + i%26)}, size)
	copy(b, fmt.Sprintf("{%d}", i))
	return b
}

func entryOf(i int) *Entry {
	return &Entry{
		Key:           keyOf(i),
		Body:          bodyOf(i, 100+i%50),
		ContentType:   "application/json",
		Kind:          "chat",
		Namespace:     "ns",
		Model:         "gpt-4o",
		Endpoint:      "openai",
		UpstreamModel: "gpt-4o-2024-08-06",
		Version:       1,
		CreatedAt:     1_700_000_000_000 + int64(i),
	}
}

func openTest(t testing.TB) *SQLite {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "cache.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// queryInt runs a one-value query on the writer connection.
func queryInt(t testing.TB, s *SQLite, sql string) int64 {
	t.Helper()
	st, _, err := s.w.Prepare(sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	defer st.Close()
	if !st.Step() {
		t.Fatalf("%s: no row (%v)", sql, st.Err())
	}
	return st.ColumnInt64(0)
}

func queryText(t testing.TB, c *sqlite3.Conn, sql string) string {
	t.Helper()
	v, err := pragmaText(c, sql)
	if err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return v
}

func mustWrite(t testing.TB, s *SQLite, b *Batch) {
	t.Helper()
	if err := s.WriteBatch(b); err != nil {
		t.Fatal(err)
	}
}

func mustReader(t testing.TB, s *SQLite) Reader {
	t.Helper()
	r, err := s.OpenReader()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close() })
	return r
}

func mustGet(t testing.TB, r Reader, k Key) (*Entry, bool) {
	t.Helper()
	var e Entry
	ok, err := r.Get(&k, &e)
	if err != nil {
		t.Fatal(err)
	}
	if e.HitCount != 0 || e.LastHitAt != 0 {
		t.Fatalf("Get read hit figures (%d at %d): it leaves them to the hits table", e.HitCount, e.LastHitAt)
	}
	if ok {
		e.HitCount, e.LastHitAt = hitsOf(t, r.(*sqliteReader), k)
	}
	return &e, ok
}

// hitsOf reads k's hit figures from the hits table, which Get leaves alone, on r's connection.
func hitsOf(t testing.TB, r *sqliteReader, k Key) (count, lastAt int64) {
	t.Helper()
	st, _, err := r.c.Prepare(`SELECT hit_count, last_hit_at FROM hits WHERE key = ?1`)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.BindBlob(1, k[:]); err != nil {
		t.Fatal(err)
	}
	if st.Step() {
		count, lastAt = st.ColumnInt64(0), st.ColumnInt64(1)
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	return count, lastAt
}

// commits counts the writer's commits from now on.
func commits(s *SQLite) *atomic.Int64 {
	var n atomic.Int64
	s.w.CommitHook(func() bool { n.Add(1); return true })
	return &n
}

func TestPutGetRoundtrip(t *testing.T) {
	s := openTest(t)
	want := &Entry{
		Key:           keyOf(1),
		Body:          []byte(`{"choices":[{"message":{"content":"hi"}}]}`),
		ContentType:   "application/json; charset=utf-8",
		Kind:          "embedding",
		Namespace:     "team-a",
		Model:         "text-embedding-3-small",
		Endpoint:      "azure-east",
		UpstreamModel: "text-embedding-3-small-v2",
		Version:       7,
		CreatedAt:     1_700_000_000_123,
		LastHitAt:     1_700_000_000_456,
		HitCount:      3,
		ExpiresAt:     1_800_000_000_789,
	}
	mustWrite(t, s, &Batch{Puts: []*Entry{want, {Key: keyOf(2), Kind: "chat", CreatedAt: 5}}})

	r := mustReader(t, s)
	got, ok := mustGet(t, r, want.Key)
	if !ok {
		t.Fatal("entry not found")
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("roundtrip:\n got %+v\nwant %+v", got, want)
	}

	// A nil body is stored as an empty blob; zero strings round-trip.
	got, ok = mustGet(t, r, keyOf(2))
	if !ok || len(got.Body) != 0 || got.Kind != "chat" || got.Namespace != "" || got.CreatedAt != 5 {
		t.Fatalf("sparse entry: ok=%v %+v", ok, got)
	}

	// Absent key.
	if _, ok := mustGet(t, r, keyOf(3)); ok {
		t.Fatal("absent key found")
	}

	// The body buffer is reused: overwritten from e.Body[:0].
	e := Entry{Body: make([]byte, 0, 4096)}
	e.Body = append(e.Body, "garbage that is longer than the body, garbage garbage garbage"...)
	k := want.Key
	if ok, err := r.Get(&k, &e); !ok || err != nil {
		t.Fatal(ok, err)
	}
	if !bytes.Equal(e.Body, want.Body) || cap(e.Body) != 4096 {
		t.Fatalf("body %q cap %d", e.Body, cap(e.Body))
	}
}

func TestBatchOfThousandIsOneTransaction(t *testing.T) {
	s := openTest(t)
	n := commits(s)
	b := &Batch{}
	for i := range 1000 {
		b.Puts = append(b.Puts, entryOf(i))
	}
	mustWrite(t, s, b)
	if got := n.Load(); got != 1 {
		t.Fatalf("commits = %d, want 1", got)
	}
	if got := queryInt(t, s, `SELECT count(*) FROM entries`); got != 1000 {
		t.Fatalf("count = %d", got)
	}
	r := mustReader(t, s)
	var e Entry
	for i := range 1000 {
		k := keyOf(i)
		ok, err := r.Get(&k, &e)
		if err != nil || !ok {
			t.Fatalf("entry %d: ok=%v err=%v", i, ok, err)
		}
		if !bytes.Equal(e.Body, entryOf(i).Body) || e.CreatedAt != entryOf(i).CreatedAt {
			t.Fatalf("entry %d mismatch", i)
		}
	}
	// An empty batch writes nothing.
	mustWrite(t, s, &Batch{})
	mustWrite(t, s, nil)
	if got := n.Load(); got != 1 {
		t.Fatalf("commits = %d after empty batches, want 1", got)
	}
}

func TestUpsertReplacesAndResetsHits(t *testing.T) {
	s := openTest(t)
	e := entryOf(1)
	mustWrite(t, s, &Batch{Puts: []*Entry{e}, Touches: []Touch{{Key: e.Key, Hits: 5, At: 2_000}}})

	r := mustReader(t, s)
	got, _ := mustGet(t, r, e.Key)
	if got.HitCount != 5 || got.LastHitAt != 2_000 {
		t.Fatalf("before upsert: hits %d at %d", got.HitCount, got.LastHitAt)
	}

	fresh := entryOf(1)
	fresh.Body = []byte("new body")
	fresh.Endpoint = "other"
	fresh.CreatedAt = 9_000
	fresh.ExpiresAt = 10_000
	mustWrite(t, s, &Batch{Puts: []*Entry{fresh}})
	got, _ = mustGet(t, r, e.Key)
	if string(got.Body) != "new body" || got.Endpoint != "other" || got.CreatedAt != 9_000 || got.ExpiresAt != 10_000 {
		t.Fatalf("after upsert: %+v", got)
	}
	if got.HitCount != 0 || got.LastHitAt != 0 {
		t.Fatalf("after upsert: hits %d at %d, want 0 0", got.HitCount, got.LastHitAt)
	}
	if n := queryInt(t, s, `SELECT count(*) FROM entries`); n != 1 {
		t.Fatalf("count = %d", n)
	}
}

func TestTouches(t *testing.T) {
	s := openTest(t)
	a, b := entryOf(1), entryOf(2)
	mustWrite(t, s, &Batch{Puts: []*Entry{a, b}})
	mustWrite(t, s, &Batch{Touches: []Touch{
		{Key: a.Key, Hits: 2, At: 5_000},
		{Key: a.Key, Hits: 1, At: 4_000}, // older hit: last_hit_at stays
		{Key: b.Key, Hits: 1, At: 7_000},
		{Key: keyOf(99), Hits: 1, At: 8_000}, // not on disk: no-op
	}})
	mustWrite(t, s, &Batch{Touches: []Touch{{Key: a.Key, Hits: 10, At: 6_000}}})

	r := mustReader(t, s)
	got, _ := mustGet(t, r, a.Key)
	if got.HitCount != 13 || got.LastHitAt != 6_000 {
		t.Fatalf("a: hits %d at %d", got.HitCount, got.LastHitAt)
	}
	got, _ = mustGet(t, r, b.Key)
	if got.HitCount != 1 || got.LastHitAt != 7_000 {
		t.Fatalf("b: hits %d at %d", got.HitCount, got.LastHitAt)
	}
	if _, ok := mustGet(t, r, keyOf(99)); ok {
		t.Fatal("touch created an entry")
	}
	if n := queryInt(t, s, `SELECT count(*) FROM entries`); n != 2 {
		t.Fatalf("count = %d", n)
	}
}

func TestReopenPersists(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := entryOf(42)
	mustWrite(t, s, &Batch{Puts: []*Entry{e}, Touches: []Touch{{Key: e.Key, Hits: 1, At: 77}}})
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil { // idempotent
		t.Fatal(err)
	}

	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	got, ok := mustGet(t, mustReader(t, s), e.Key)
	if !ok || !bytes.Equal(got.Body, e.Body) || got.HitCount != 1 || got.LastHitAt != 77 {
		t.Fatalf("after reopen: ok=%v %+v", ok, got)
	}
	if v := queryInt(t, s, `SELECT value FROM meta WHERE key = 'schema_version'`); v != LatestSchemaVersion() {
		t.Fatalf("schema_version = %d", v)
	}
}

func TestPragmasOnFreshFile(t *testing.T) {
	s := openTest(t)
	if m := queryText(t, s.w, `PRAGMA journal_mode`); m != "wal" {
		t.Fatalf("journal_mode = %q", m)
	}
	if v := queryInt(t, s, `PRAGMA auto_vacuum`); v != 2 {
		t.Fatalf("auto_vacuum = %d, want 2 (incremental)", v)
	}
	if v := queryInt(t, s, `PRAGMA synchronous`); v != 1 {
		t.Fatalf("synchronous = %d, want 1 (NORMAL)", v)
	}
	if v := queryInt(t, s, `PRAGMA busy_timeout`); v != 5000 {
		t.Fatalf("busy_timeout = %d", v)
	}
	// A reader sees the persistent settings too.
	c, err := openRead(s.path, DefaultBusyTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if m := queryText(t, c, `PRAGMA journal_mode`); m != "wal" {
		t.Fatalf("reader journal_mode = %q", m)
	}
	if v := queryText(t, c, `PRAGMA auto_vacuum`); v != "2" {
		t.Fatalf("reader auto_vacuum = %q", v)
	}
	// The indexes exist.
	for _, name := range []string{"entries_expires_at", "hits_last_hit_at", "entries_label", "entries_created_at"} {
		if n := queryInt(t, s, `SELECT count(*) FROM sqlite_schema WHERE type = 'index' AND name = '`+name+`'`); n != 1 {
			t.Fatalf("index %s missing", name)
		}
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	newer := LatestSchemaVersion() + 1
	if err := s.execWriter(fmt.Sprintf(`UPDATE meta SET value = %d WHERE key = 'schema_version'`, newer)); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	_, err = Open(path, Options{})
	if err == nil {
		t.Fatal("Open accepted a newer schema")
	}
	want := fmt.Sprintf(`cannot open cache db %q: schema version %d is newer than this llmcache supports (%d); upgrade llmcache`,
		path, newer, LatestSchemaVersion())
	if err.Error() != want {
		t.Fatalf("error:\n got %s\nwant %s", err, want)
	}
	if !errors.Is(err, ErrSchemaTooNew) {
		t.Fatal("error does not match ErrSchemaTooNew")
	}
}

func TestMigrationsFromEmptyAndIdempotent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	for range 3 {
		s, err := Open(path, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if v := queryInt(t, s, `SELECT value FROM meta WHERE key = 'schema_version'`); v != LatestSchemaVersion() {
			t.Fatalf("schema_version = %d", v)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestOpenRejectsNonDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	if err := os.WriteFile(path, bytes.Repeat([]byte("not a database "), 512), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := Open(path, Options{})
	if err == nil {
		t.Fatal("Open accepted a non-database file")
	}
	if want := fmt.Sprintf("cannot open cache db %q: ", path); len(err.Error()) < len(want) || err.Error()[:len(want)] != want {
		t.Fatalf("error = %v", err)
	}
}

func TestDelete(t *testing.T) {
	s := openTest(t)
	// 60 entries: namespaces a/b/"" (i%3), models m0/m1 (i%2),
	// created_at = i, expires_at = 1000+i for odd i, 0 otherwise.
	b := &Batch{}
	for i := range 60 {
		e := entryOf(i)
		e.Namespace = []string{"a", "b", ""}[i%3]
		e.Model = fmt.Sprintf("m%d", i%2)
		e.CreatedAt = int64(i)
		if i%2 == 1 {
			e.ExpiresAt = 1000 + int64(i)
		}
		b.Puts = append(b.Puts, e)
	}
	mustWrite(t, s, b)
	count := func(where string) int64 {
		t.Helper()
		return queryInt(t, s, `SELECT count(*) FROM entries JOIN labels ON labels.id = entries.label WHERE `+where)
	}
	del := func(f Filter, want int64) {
		t.Helper()
		n, err := s.Delete(f)
		if err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Fatalf("Delete(%+v) = %d, want %d", f, n, want)
		}
	}
	if _, err := s.Delete(Filter{}); err == nil {
		t.Fatal("empty filter accepted")
	}
	if _, err := s.Delete(Filter{Keys: []Key{}}); err == nil {
		t.Fatal("empty key list accepted")
	}

	// Keys: 0 and 1 exist, 1000 does not; 0 listed twice.
	del(Filter{Keys: []Key{keyOf(0), keyOf(1), keyOf(1000), keyOf(0)}}, 2)
	if n := count(`1`); n != 58 {
		t.Fatalf("after keys: %d", n)
	}
	// Keys narrowed by namespace: 2 is in "" (2%3=2), 3 in "a".
	del(Filter{Keys: []Key{keyOf(2), keyOf(3)}, Namespace: new("a")}, 1)
	if count(`created_at = 2`) != 1 || count(`created_at = 3`) != 0 {
		t.Fatal("keys+namespace deleted the wrong rows")
	}

	want := count(`namespace = ''`)
	del(Filter{Namespace: new("")}, want)
	if count(`namespace = ''`) != 0 {
		t.Fatal("namespace '' left rows")
	}

	want = count(`model = 'm1' AND namespace = 'b'`)
	del(Filter{Model: "m1", Namespace: new("b")}, want)
	if count(`model = 'm1' AND namespace = 'b'`) != 0 || count(`model = 'm1'`) == 0 {
		t.Fatal("model+namespace deleted the wrong rows")
	}

	want = count(`created_at < 30`)
	del(Filter{OlderThan: 30}, want)
	if count(`created_at < 30`) != 0 || count(`created_at >= 30`) == 0 {
		t.Fatal("older-than deleted the wrong rows")
	}

	want = count(`expires_at > 0 AND expires_at <= 1045`)
	if want == 0 {
		t.Fatal("bad fixture")
	}
	del(Filter{ExpiredBy: 1045}, want)
	if count(`expires_at > 0 AND expires_at <= 1045`) != 0 || count(`expires_at = 0`) == 0 {
		t.Fatal("expired-by deleted the wrong rows")
	}

	del(Filter{Model: "nope"}, 0)

	want = count(`1`)
	del(Filter{All: true}, want)
	if count(`1`) != 0 {
		t.Fatal("All left rows")
	}
	del(Filter{All: true}, 0)
}

func TestDeleteInChunks(t *testing.T) {
	s := openTest(t)
	const total = 2500
	b := &Batch{}
	for i := range total {
		e := entryOf(i)
		if i >= 2300 {
			e.Namespace = "keep"
		}
		b.Puts = append(b.Puts, e)
	}
	mustWrite(t, s, b)

	n := commits(s)
	got, err := s.Delete(Filter{Namespace: new("ns")})
	if err != nil {
		t.Fatal(err)
	}
	if got != 2300 {
		t.Fatalf("deleted %d, want 2300", got)
	}
	if c := n.Load(); c != 3 { // 1000 + 1000 + 300
		t.Fatalf("commits = %d, want 3", c)
	}
	if c := queryInt(t, s, `SELECT count(*) FROM entries`); c != 200 {
		t.Fatalf("left %d rows", c)
	}

	// Key lists are chunked too.
	mustWrite(t, s, b)
	keys := make([]Key, 0, total)
	for i := range total {
		keys = append(keys, keyOf(i))
	}
	n.Store(0)
	got, err = s.Delete(Filter{Keys: keys})
	if err != nil {
		t.Fatal(err)
	}
	if got != total || n.Load() != 3 {
		t.Fatalf("deleted %d in %d commits", got, n.Load())
	}
}

func TestCheckpointTruncatesWAL(t *testing.T) {
	s := openTest(t)
	b := &Batch{}
	for i := range 200 {
		b.Puts = append(b.Puts, entryOf(i))
	}
	mustWrite(t, s, b)
	r := mustReader(t, s) // an idle reader must not block the checkpoint
	if _, ok := mustGet(t, r, keyOf(1)); !ok {
		t.Fatal("missing")
	}
	fi, err := os.Stat(s.path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() == 0 {
		t.Fatal("WAL empty before checkpoint")
	}
	if err := s.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	fi, err = os.Stat(s.path + "-wal")
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != 0 {
		t.Fatalf("WAL is %d bytes after checkpoint", fi.Size())
	}
	if _, ok := mustGet(t, r, keyOf(199)); !ok {
		t.Fatal("missing after checkpoint")
	}
	if err := s.Optimize(); err != nil {
		t.Fatal(err)
	}
}

func TestStatsAndVacuum(t *testing.T) {
	s := openTest(t)
	b := &Batch{}
	for i := range 300 {
		e := entryOf(i)
		e.Body = bodyOf(i, 8<<10)
		b.Puts = append(b.Puts, e)
	}
	mustWrite(t, s, b)
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Entries != 300 || st.PageSize != 8192 || st.WALBytes == 0 {
		t.Fatalf("stats %+v", st)
	}
	if _, err := s.Delete(Filter{All: true}); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	st, err = s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.Entries != 0 || st.FreePages < 300 || st.WALBytes != 0 || st.FileBytes < 300*8<<10 {
		t.Fatalf("stats after delete %+v", st)
	}
	before := st.FileBytes
	if err := s.IncrementalVacuum(0); err != nil {
		t.Fatal(err)
	}
	if err := s.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	st, err = s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.FreePages != 0 || st.FileBytes >= before {
		t.Fatalf("stats after vacuum %+v (file was %d)", st, before)
	}

	// Stats from many goroutines at once.
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if _, err := s.Stats(); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}

func TestConcurrentReadWhileWriting(t *testing.T) {
	s := openTest(t)
	mustWrite(t, s, &Batch{Puts: []*Entry{entryOf(0)}})

	const batches, per = 40, 50
	var (
		wg      sync.WaitGroup
		done    atomic.Bool
		written atomic.Int64 // entries 0..written-1 are committed
		reads   atomic.Int64
	)
	written.Store(1)
	for w := range 3 {
		r, err := s.OpenReader()
		if err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			defer r.Close()
			var e Entry
			for i := w; !done.Load(); i++ {
				n := written.Load()
				j := i % int(n)
				k := keyOf(j)
				ok, err := r.Get(&k, &e)
				if err != nil {
					t.Error(err)
					return
				}
				if !ok {
					t.Errorf("entry %d (of %d committed) not found", j, n)
					return
				}
				if !bytes.Equal(e.Body, bodyOf(j, len(e.Body))) || e.Key != k {
					t.Errorf("entry %d: wrong body", j)
					return
				}
				reads.Add(1)
			}
		})
	}
	for b := range batches {
		batch := &Batch{}
		for i := range per {
			batch.Puts = append(batch.Puts, entryOf(1+b*per+i))
		}
		batch.Touches = []Touch{{Key: keyOf(0), Hits: 1, At: int64(b)}}
		if err := s.WriteBatch(batch); err != nil {
			t.Fatal(err)
		}
		written.Store(int64(1 + (b+1)*per))
		if b == batches/2 {
			if err := s.Checkpoint(); err != nil {
				t.Error(err)
			}
		}
	}
	done.Store(true)
	wg.Wait()
	if reads.Load() == 0 {
		t.Fatal("no reads")
	}
	if n := queryInt(t, s, `SELECT hit_count FROM hits WHERE key = x'`+fmt.Sprintf("%x", keyOf(0))+`'`); n != batches {
		t.Fatalf("hit_count = %d", n)
	}
}

func TestWriteBatchErrorsDoNotPanic(t *testing.T) {
	s := openTest(t)
	mustWrite(t, s, &Batch{Puts: []*Entry{entryOf(0)}})
	batch := &Batch{Puts: []*Entry{entryOf(1), entryOf(2)}, Touches: []Touch{{Key: keyOf(0), Hits: 1, At: 1}}}

	// Read-only: tests run as root, where chmod does not stop writes, so
	// make the writer connection query-only instead.
	if err := s.execWriter(`PRAGMA query_only = ON`); err != nil {
		t.Fatal(err)
	}
	err := s.WriteBatch(batch)
	if err == nil {
		t.Fatal("WriteBatch succeeded on a read-only connection")
	}
	if !errors.Is(err, sqlite3.READONLY) {
		t.Fatalf("error %v, want SQLITE_READONLY", err)
	}
	if _, err := s.Delete(Filter{All: true}); err == nil {
		t.Fatal("Delete succeeded on a read-only connection")
	}
	if err := s.execWriter(`PRAGMA query_only = OFF`); err != nil {
		t.Fatal(err)
	}

	// Disk full: cap the file at its current size.
	pages := queryInt(t, s, `PRAGMA page_count`)
	if err := s.execWriter(fmt.Sprintf(`PRAGMA max_page_count = %d`, pages)); err != nil {
		t.Fatal(err)
	}
	big := &Batch{Touches: batch.Touches}
	for i := range 100 {
		e := entryOf(10 + i)
		e.Body = bodyOf(i, 16<<10)
		big.Puts = append(big.Puts, e)
	}
	err = s.WriteBatch(big)
	if err == nil {
		t.Fatal("WriteBatch succeeded on a full database")
	}
	if !errors.Is(err, sqlite3.FULL) {
		t.Fatalf("error %v, want SQLITE_FULL", err)
	}
	if n := queryInt(t, s, `SELECT count(*) FROM entries`); n != 1 {
		t.Fatalf("failed batch left %d rows, want 1", n)
	}
	if n := queryInt(t, s, `SELECT count(*) FROM hits`); n != 0 {
		t.Fatalf("failed batch applied touches: %d hits rows", n)
	}

	// The caller retries the same batches once the disk has room.
	if err := s.execWriter(`PRAGMA max_page_count = 1073741823`); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, s, batch)
	mustWrite(t, s, big)
	if n := queryInt(t, s, `SELECT count(*) FROM entries`); n != 103 {
		t.Fatalf("after retry: %d rows", n)
	}
	if n := queryInt(t, s, `SELECT hit_count FROM hits WHERE key = x'`+fmt.Sprintf("%x", keyOf(0))+`'`); n != 2 {
		t.Fatalf("after retry: hit_count %d", n)
	}
}

func TestNonIdentityEncodingRefused(t *testing.T) {
	s := openTest(t)
	mustWrite(t, s, &Batch{Puts: []*Entry{entryOf(1)}})
	if err := s.execWriter(`UPDATE entries SET encoding = 1`); err != nil {
		t.Fatal(err)
	}
	r := mustReader(t, s)
	k := keyOf(1)
	var e Entry
	if ok, err := r.Get(&k, &e); err == nil || ok {
		t.Fatalf("Get of an encoded body: ok=%v err=%v", ok, err)
	}
	// The reader is still usable.
	mustWrite(t, s, &Batch{Puts: []*Entry{entryOf(2)}})
	if _, ok := mustGet(t, r, keyOf(2)); !ok {
		t.Fatal("reader broken after error")
	}
}

func TestGetAllocatesNothing(t *testing.T) {
	s := openTest(t)
	mustWrite(t, s, &Batch{Puts: []*Entry{entryOf(1), entryOf(2)}})
	r := mustReader(t, s)
	k1, k2, miss := keyOf(1), keyOf(2), keyOf(3)
	var e Entry
	e.Body = make([]byte, 0, 1024)
	if ok, err := r.Get(&k1, &e); !ok || err != nil {
		t.Fatal(ok, err)
	}
	allocs := testing.AllocsPerRun(200, func() {
		_, _ = r.Get(&k1, &e)
		_, _ = r.Get(&k2, &e)
		_, _ = r.Get(&miss, &e)
	})
	if allocs != 0 {
		t.Fatalf("Get allocates %.1f times per run", allocs)
	}
}

func TestClosed(t *testing.T) {
	s := openTest(t)
	r := mustReader(t, s)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	k := keyOf(1)
	if _, err := r.Get(&k, &Entry{}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Get on closed reader: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.WriteBatch(&Batch{Puts: []*Entry{entryOf(1)}}); !errors.Is(err, ErrClosed) {
		t.Fatalf("WriteBatch: %v", err)
	}
	if _, err := s.Delete(Filter{All: true}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Delete: %v", err)
	}
	if err := s.Checkpoint(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Checkpoint: %v", err)
	}
	if _, err := s.Stats(); !errors.Is(err, ErrClosed) {
		t.Fatalf("Stats: %v", err)
	}
	if _, err := s.OpenReader(); !errors.Is(err, ErrClosed) {
		t.Fatalf("OpenReader: %v", err)
	}
	// Closing the last connection removes the WAL.
	if _, err := os.Stat(s.path + "-wal"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("-wal after close: %v", err)
	}
}

func TestOpenPathForms(t *testing.T) {
	dir := t.TempDir()
	for _, url := range []string{
		"sqlite://" + filepath.Join(dir, "a", "b", "cache.db"),
		"sqlite:" + filepath.Join(dir, "c", "cache.db") + "?mode=rwc",
		filepath.Join(dir, "d", "e", "cache.db"),
	} {
		s, err := Open(url, Options{})
		if err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		if _, err := os.Stat(s.Path()); err != nil {
			t.Fatalf("%s: %v", url, err)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	// Relative paths resolve against the working directory.
	t.Chdir(dir)
	s, err := Open("sqlite://rel/cache.db", Options{})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := os.Stat(filepath.Join(dir, "rel", "cache.db")); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"", "sqlite://", "sqlite::memory:", ":memory:"} {
		if s, err := Open(bad, Options{}); err == nil {
			s.Close()
			t.Fatalf("Open(%q) succeeded", bad)
		}
	}
}

func TestPathFromURL(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"cache.db", "cache.db"},
		{"/tmp/x/cache.db", "/tmp/x/cache.db"},
		{"./data/cache.db", "./data/cache.db"},
		{"sqlite://cache.db", "cache.db"},
		{"sqlite:cache.db", "cache.db"},
		{"sqlite:///tmp/x/cache.db", "/tmp/x/cache.db"},
		{"sqlite://./data/cache.db", "./data/cache.db"},
		{"sqlite://cache.db?mode=rwc", "cache.db"},
		{"sqlite:cache.db?mode=rwc", "cache.db"},
		{"SQLITE://cache.db", "cache.db"},
		{"sqlite::memory:", ":memory:"},
		{"dir/we?ird.db", "dir/we?ird.db"}, // plain paths are untouched
		{"sqlite", "sqlite"},
		{"", ""},
	} {
		if got := PathFromURL(c.in); got != c.want {
			t.Errorf("PathFromURL(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// The filters and the lookup must be served by indexes, never a table scan.
func TestQueryPlansUseIndexes(t *testing.T) {
	s := openTest(t)
	plan := func(sql string) string {
		t.Helper()
		st, _, err := s.w.Prepare(`EXPLAIN QUERY PLAN ` + sql)
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		defer st.Close()
		var p []string
		for st.Step() {
			p = append(p, st.ColumnText(3))
		}
		return fmt.Sprint(p)
	}
	for _, c := range []struct {
		sql, index string
	}{
		{sqlGet, "sqlite_autoindex_entries_1"},
		{sqlTouch, "sqlite_autoindex_entries_1"},
		{sqlDelKey, "sqlite_autoindex_entries_1"},
		{`DELETE FROM hits WHERE key = x'00'`, "PRIMARY KEY"}, // the trigger's delete
		{`DELETE FROM entries WHERE ` + whereSQL(&Filter{Keys: []Key{{}}}, true), "sqlite_autoindex_entries_1"},
		{`SELECT rowid FROM entries WHERE ` + whereSQL(&Filter{Namespace: new("x")}, false), "entries_label"},
		{`SELECT rowid FROM entries WHERE ` + whereSQL(&Filter{Model: "m"}, false), "entries_label"},
		{`SELECT rowid FROM entries WHERE ` + whereSQL(&Filter{Namespace: new("x"), Model: "m"}, false), "entries_label"},
		{`SELECT rowid FROM entries WHERE ` + whereSQL(&Filter{OlderThan: 1}, false), "entries_created_at"},
		{`SELECT rowid FROM entries WHERE ` + whereSQL(&Filter{ExpiredBy: 1}, false), "entries_expires_at"},
		{`SELECT key FROM hits ORDER BY last_hit_at LIMIT 10`, "hits_last_hit_at"},
		{`SELECT rowid FROM entries WHERE NOT EXISTS (SELECT 1 FROM hits h WHERE h.key = entries.key) ORDER BY created_at LIMIT 10`, "entries_created_at"},
		{`SELECT rowid FROM entries WHERE ` + whereSQL(&Filter{UnusedBefore: 1, HitsBelow: 1}, false), "entries_created_at"},
	} {
		if p := plan(c.sql); !strings.Contains(p, c.index) {
			t.Errorf("%s\nplan %s does not use %s", c.sql, p, c.index)
		}
	}
}
