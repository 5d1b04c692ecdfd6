package db

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ncruces/go-sqlite3"
)

// walBytes is the size of the -wal file (0 when absent).
func walBytes(t *testing.T, s *SQLite) int64 {
	t.Helper()
	fi, err := os.Stat(s.path + "-wal")
	if os.IsNotExist(err) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// TestTouchDoesNotRewriteBody: recording hits on an entry writes a few pages, not the entry's body again
// (issue: a hit on a ~100 MB answer rewrote the whole row and ran SQLite out of memory).
func TestTouchDoesNotRewriteBody(t *testing.T) {
	s := openTest(t)
	e := entryOf(1)
	e.Body = bodyOf(1, 8<<20)
	mustWrite(t, s, &Batch{Puts: []*Entry{e}})
	if err := s.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if n := walBytes(t, s); n != 0 {
		t.Fatalf("WAL is %d bytes after a checkpoint", n)
	}
	for i := range 5 {
		mustWrite(t, s, &Batch{Touches: []Touch{{Key: e.Key, Hits: 1, At: int64(1000 + i)}}})
	}
	// Each commit appends the pages it changed to the WAL: a hits row and its index, a few 4 KiB pages.
	if n := walBytes(t, s); n > 256<<10 {
		t.Fatalf("5 touches of an 8 MiB entry wrote %d bytes to the WAL: the body was rewritten", n)
	}
	got, ok := mustGet(t, mustReader(t, s), e.Key)
	if !ok || got.HitCount != 5 || got.LastHitAt != 1004 || !bytes.Equal(got.Body, e.Body) {
		t.Fatalf("after touches: ok=%v hits %d at %d, body equal %v", ok, got.HitCount, got.LastHitAt, bytes.Equal(got.Body, e.Body))
	}
}

// TestLargeAnswerHitManyTimes: an answer of 100 MB (more than the answers the proxy stores, less than the
// transports' ceiling) is stored, hit many times, read back, refreshed, exported and deleted without error
// and without a panic.
func TestLargeAnswerHitManyTimes(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 100 MB row")
	}
	s := openTest(t)
	e := entryOf(1)
	e.Body = bodyOf(1, 100<<20)
	mustWrite(t, s, &Batch{Puts: []*Entry{e, entryOf(2)}})
	for i := range 50 {
		mustWrite(t, s, &Batch{Touches: []Touch{{Key: e.Key, Hits: 2, At: int64(i + 1)}, {Key: keyOf(2), Hits: 1, At: 1}}})
	}
	r := mustReader(t, s)
	got, ok := mustGet(t, r, e.Key)
	if !ok || !bytes.Equal(got.Body, e.Body) || got.HitCount != 100 || got.LastHitAt != 50 {
		t.Fatalf("large entry: ok=%v body equal %v, hits %d at %d", ok, bytes.Equal(got.Body, e.Body), got.HitCount, got.LastHitAt)
	}
	// A refresh replaces the body and starts the hits again, in the same batch as a hit on it.
	fresh := entryOf(1)
	fresh.Body = bodyOf(2, 100<<20)
	mustWrite(t, s, &Batch{Puts: []*Entry{fresh}, Touches: []Touch{{Key: e.Key, Hits: 1, At: 99}}})
	got, ok = mustGet(t, r, e.Key)
	if !ok || !bytes.Equal(got.Body, fresh.Body) || got.HitCount != 1 || got.LastHitAt != 99 {
		t.Fatalf("refreshed entry: ok=%v body equal %v, hits %d at %d", ok, bytes.Equal(got.Body, fresh.Body), got.HitCount, got.LastHitAt)
	}
	n := 0
	if err := s.Export(nil, func(x *ExportedEntry) error {
		n++
		if x.Key == fmt.Sprintf("%x", e.Key) && (len(x.Body) != len(fresh.Body) || x.HitCount != 1) {
			t.Errorf("exported large entry: %d bytes, %d hits", len(x.Body), x.HitCount)
		}
		return nil
	}); err != nil || n != 2 {
		t.Fatalf("export: %d entries, %v", n, err)
	}
	if d, err := s.Delete(Filter{Keys: []Key{e.Key}}); err != nil || d != 1 {
		t.Fatalf("delete: %d, %v", d, err)
	}
}

// TestPutResetsAndImportsHits: a fresh answer starts at the hits it carries (0 for a fetched answer), and
// deleting an entry deletes its hits, whichever way it is deleted.
func TestPutResetsAndDeleteDropsHits(t *testing.T) {
	s := openTest(t)
	a, b, c := entryOf(1), entryOf(2), entryOf(3)
	b.HitCount, b.LastHitAt = 4, 40
	mustWrite(t, s, &Batch{Puts: []*Entry{a, b, c}, Touches: []Touch{{Key: a.Key, Hits: 3, At: 30}, {Key: c.Key, Hits: 1, At: 10}}})
	if n := queryInt(t, s, `SELECT count(*) FROM hits`); n != 3 {
		t.Fatalf("%d hits rows, want 3", n)
	}
	st, err := s.Stats()
	if err != nil || st.HitEntries != 3 || st.Entries != 3 {
		t.Fatalf("stats %+v, %v: want 3 entries, 3 hit", st, err)
	}
	mustWrite(t, s, &Batch{Puts: []*Entry{entryOf(1)}})
	got, _ := mustGet(t, mustReader(t, s), a.Key)
	if got.HitCount != 0 || got.LastHitAt != 0 {
		t.Fatalf("fresh answer kept the old hits: %d at %d", got.HitCount, got.LastHitAt)
	}
	if n := queryInt(t, s, `SELECT count(*) FROM hits`); n != 2 {
		t.Fatalf("%d hits rows after a reset, want 2 (an entry never hit has none)", n)
	}
	if _, err := s.Delete(Filter{Keys: []Key{b.Key}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteLRU(10); err != nil {
		t.Fatal(err)
	}
	if n := queryInt(t, s, `SELECT count(*) FROM hits`); n != 0 {
		t.Fatalf("%d hits rows left after their entries were deleted", n)
	}
	// A touch of a deleted key creates nothing.
	mustWrite(t, s, &Batch{Touches: []Touch{{Key: b.Key, Hits: 1, At: 1}}})
	if n := queryInt(t, s, `SELECT count(*) FROM hits`); n != 0 {
		t.Fatalf("a touch of a deleted entry made a hits row")
	}
}

// TestRetentionRule: maintenance's filter deletes entries neither created nor hit since the cut-off whose
// hit count is below the minimum, and nothing else.
func TestRetentionRule(t *testing.T) {
	s := openTest(t)
	const cut = 10_000
	cases := []struct {
		name      string
		created   int64
		hits      int64
		lastHitAt int64
		deleted   bool
	}{
		{"old, never hit", 1_000, 0, 0, true},
		{"old, hit once long ago", 1_000, 1, 2_000, true},
		{"old, hit often long ago", 1_000, 2, 2_000, false},
		{"old, hit once lately", 1_000, 1, 20_000, false},
		{"new, never hit", 20_000, 0, 0, false},
		{"created at the cut-off", cut, 0, 0, false},
	}
	var b Batch
	for i, c := range cases {
		e := entryOf(i)
		e.CreatedAt, e.HitCount, e.LastHitAt = c.created, c.hits, c.lastHitAt
		b.Puts = append(b.Puts, e)
	}
	mustWrite(t, s, &b)
	n, err := s.Delete(Filter{UnusedBefore: cut, HitsBelow: 2})
	if err != nil {
		t.Fatal(err)
	}
	r := mustReader(t, s)
	want := 0
	for i, c := range cases {
		_, ok := mustGet(t, r, keyOf(i))
		if ok == c.deleted {
			t.Errorf("%s: on disk %v, want %v", c.name, ok, !c.deleted)
		}
		if c.deleted {
			want++
		}
	}
	if n != int64(want) {
		t.Errorf("Delete reported %d, want %d", n, want)
	}
	// A minimum of 0 hits spares everything: nothing is hit fewer than 0 times.
	if n, err := s.Delete(Filter{UnusedBefore: 1 << 60, HitsBelow: 0}); err != nil || n != 0 {
		t.Fatalf("HitsBelow 0 deleted %d (%v)", n, err)
	}
}

// TestDeleteLRUOrder: never-hit entries go first, oldest first, then hit entries by their last hit.
func TestDeleteLRUOrder(t *testing.T) {
	s := openTest(t)
	var b Batch
	for i, v := range []struct{ created, lastHit int64 }{{5, 0}, {1, 0}, {2, 300}, {3, 100}, {4, 200}} {
		e := entryOf(i)
		e.CreatedAt, e.LastHitAt = v.created, v.lastHit
		if v.lastHit > 0 {
			e.HitCount = 1
		}
		b.Puts = append(b.Puts, e)
	}
	mustWrite(t, s, &b)
	r := mustReader(t, s)
	for _, step := range []struct {
		n    int
		gone []int
	}{{1, []int{1}}, {2, []int{0, 3}}, {1, []int{4}}} {
		if d, err := s.DeleteLRU(step.n); err != nil || d != int64(step.n) {
			t.Fatalf("DeleteLRU(%d) = %d, %v", step.n, d, err)
		}
		for _, i := range step.gone {
			if _, ok := mustGet(t, r, keyOf(i)); ok {
				t.Fatalf("DeleteLRU(%d) kept entry %d", step.n, i)
			}
		}
	}
	if _, ok := mustGet(t, r, keyOf(2)); !ok {
		t.Fatal("the most recently hit entry was evicted")
	}
}

// makeSchema1 writes a database as llmcache wrote it at schema 1, hit counts in the entries rows.
func makeSchema1(t *testing.T, path string, rows int) {
	t.Helper()
	c, err := sqlite3.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Exec(`PRAGMA auto_vacuum = INCREMENTAL; PRAGMA journal_mode = WAL; ` + sqlCreateMeta + `;` + migrations[0] +
		`; INSERT INTO meta (key, value) VALUES ('schema_version', 1)`); err != nil {
		t.Fatal(err)
	}
	st, _, err := c.Prepare(`INSERT INTO entries (key, kind, namespace, model, endpoint, upstream_model, content_type, created_at, last_hit_at, hit_count, body)
VALUES (?1, 'chat', '', 'm', 'e', 'm', 'application/json', ?2, ?3, ?4, ?5)`)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for i := range rows {
		k := keyOf(i)
		st.BindBlob(1, k[:])
		st.BindInt64(2, int64(i))
		st.BindInt64(3, int64(i%3)*100) // every third entry never hit
		st.BindInt64(4, int64(i%3))
		st.BindBlob(5, bodyOf(i, 200))
		if err := st.Exec(); err != nil {
			t.Fatal(err)
		}
	}
}

// TestMigrationCarriesHitCounts: a schema 1 database is migrated once, at open, with a log line; every
// entry keeps its hit count and last hit, and the bookkeeping works on the migrated file.
func TestMigrationCarriesHitCounts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cache.db")
	const rows = 300
	makeSchema1(t, path, rows)

	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	s, err := Open(path, Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(logs.String(), `msg="migrating cache db schema"`) || !strings.Contains(logs.String(), fmt.Sprintf("from=1 to=%d", LatestSchemaVersion())) ||
		!strings.Contains(logs.String(), `msg="cache db schema migrated"`) {
		t.Errorf("migration log:\n%s", logs.String())
	}
	if v := queryInt(t, s, `SELECT value FROM meta WHERE key = 'schema_version'`); v != LatestSchemaVersion() {
		t.Fatalf("schema_version = %d", v)
	}
	r := mustReader(t, s)
	for i := range rows {
		got, ok := mustGet(t, r, keyOf(i))
		if !ok || got.HitCount != int64(i%3) || got.LastHitAt != int64(i%3)*100 || !bytes.Equal(got.Body, bodyOf(i, 200)) {
			t.Fatalf("entry %d after migration: ok=%v hits %d at %d", i, ok, got.HitCount, got.LastHitAt)
		}
	}
	if n := queryInt(t, s, `SELECT count(*) FROM hits`); n != rows*2/3 {
		t.Errorf("%d hits rows, want %d (one per entry ever hit)", n, rows*2/3)
	}
	if n := queryInt(t, s, `SELECT count(*) FROM sqlite_schema WHERE name = 'entries_last_hit_at'`); n != 0 {
		t.Error("the index of the retired entries.last_hit_at is still there")
	}
	mustWrite(t, s, &Batch{Touches: []Touch{{Key: keyOf(1), Hits: 5, At: 500}}})
	if got, _ := mustGet(t, r, keyOf(1)); got.HitCount != 6 || got.LastHitAt != 500 {
		t.Errorf("touch after migration: hits %d at %d, want 6 at 500", got.HitCount, got.LastHitAt)
	}
	r.Close()
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// Once: the next open migrates nothing and says nothing.
	logs.Reset()
	s, err = Open(path, Options{Log: log})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if logs.Len() != 0 {
		t.Errorf("reopening an up-to-date database logged:\n%s", logs.String())
	}
	if got, _ := mustGet(t, mustReader(t, s), keyOf(1)); got.HitCount != 6 {
		t.Errorf("after reopen: %d hits", got.HitCount)
	}
}

// TestLargeBodiesInChunks: bodies around and far above the chunked size survive put, get, export and
// import byte for byte, and a 24 MB one needs little of a connection's memory: the writer and a reader
// capped at 16 MB (hard_heap_limit) still store and read it.
func TestLargeBodiesInChunks(t *testing.T) {
	s := openTest(t)
	sizes := []int{largeBody - 1, largeBody, largeBody + 1, 3*bodyChunk + 17}
	var b Batch
	for i, n := range sizes {
		e := entryOf(i)
		e.Body = bodyOf(i, n)
		e.Body[n-1] = '!'
		b.Puts = append(b.Puts, e)
	}
	mustWrite(t, s, &b)
	r := mustReader(t, s)
	for i, e := range b.Puts {
		got, ok := mustGet(t, r, e.Key)
		if !ok || !bytes.Equal(got.Body, e.Body) {
			t.Fatalf("body of %d bytes: ok=%v, got %d bytes, equal %v", sizes[i], ok, len(got.Body), bytes.Equal(got.Body, e.Body))
		}
	}
	exported := exportAll(t, s, nil)
	dst := openTest(t)
	if err := dst.Import(exported); err != nil {
		t.Fatal(err)
	}
	for i, e := range exportAll(t, dst, nil) {
		if !bytes.Equal(e.Body, b.Puts[i].Body) {
			t.Fatalf("body of %d bytes changed through export and import", sizes[i])
		}
	}

	const limit = 16 << 20
	if err := s.execWriter(fmt.Sprintf(`PRAGMA hard_heap_limit = %d`, limit)); err != nil {
		t.Fatal(err)
	}
	if err := r.(*sqliteReader).c.Exec(fmt.Sprintf(`PRAGMA hard_heap_limit = %d`, limit)); err != nil {
		t.Fatal(err)
	}
	big := entryOf(99)
	big.Body = bodyOf(99, 24<<20)
	mustWrite(t, s, &Batch{Puts: []*Entry{big}, Touches: []Touch{{Key: big.Key, Hits: 1, At: 1}}})
	mustWrite(t, s, &Batch{Puts: []*Entry{big}}) // a refresh
	got, ok := mustGet(t, r, big.Key)
	if !ok || !bytes.Equal(got.Body, big.Body) {
		t.Fatalf("24 MB body under a 16 MB cap: ok=%v, %d bytes", ok, len(got.Body))
	}
}
