package db

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ncruces/go-sqlite3"
)

// SQLite is the SQLite implementation of Store.
//
// It owns one writer connection. WriteBatch, Delete, Checkpoint, Optimize and
// IncrementalVacuum use it and are not safe for concurrent use: they are
// called only by the writer actor. Reads go through Readers (OpenReader), one
// per miss-pool worker; they run concurrently with writes (WAL). Stats uses a
// connection of its own, guarded by a mutex.
type SQLite struct {
	path        string
	busyTimeout time.Duration
	log         *slog.Logger
	closed      atomic.Bool
	panics      atomic.Int64 // driver panics recovered into errors, on every connection

	// broken: a driver panic dropped the writer connection (w is nil); the next writer call opens a new
	// one. Writer actor only.
	broken bool

	// Writer connection and its prepared statements: writer actor only.
	w        *sqlite3.Conn
	begin    *sqlite3.Stmt
	commit   *sqlite3.Stmt
	rollback *sqlite3.Stmt
	delKey   *sqlite3.Stmt
	put      *sqlite3.Stmt
	label    *sqlite3.Stmt
	setHits  *sqlite3.Stmt
	touch    *sqlite3.Stmt
	putID    *sqlite3.Stmt
	deletes  map[string]*sqlite3.Stmt // DELETE statements by SQL text
	// labels caches the ids of labels rows: a put looks its row up here, and asks SQLite only for a set it
	// has not seen. Emptied when a transaction rolls back (it may have added rows that are gone).
	labels map[labelKey]int64

	statsMu sync.Mutex
	stats   *statsConn // opened on first Stats call

	comp *compression  // the codec, its dictionaries and their training (compress.go)
	ckpt *checkpointer // checkpoints beside the writer (checkpoint.go); nil on a read-only store
}

var _ Store = (*SQLite)(nil)

const (
	// deleteChunk is the most rows (or keys) one Delete transaction touches.
	deleteChunk = 1000
	// walSizeLimit caps the -wal file left behind after a checkpoint.
	walSizeLimit = 64 << 20
	// writerCacheKiB is the writer's page cache (readers keep the default).
	writerCacheKiB = 8 << 10
	// walAutoCheckpointPages is how many WAL pages (32 MB of 8 KiB pages; 16 MB in a database made with
	// 4 KiB pages) wait before the writer finishes a checkpoint itself (see checkpoint.go). SQLite's
	// default of 1,000 4 KiB pages checkpointed after nearly every batch under load; waiting longer copies
	// each hot page (index interiors, the table's last leaves) once instead of once per batch:
	// BenchmarkWriter 22,100-22,500 -> 23,500-27,100 answers/s in alternating runs (with 8,000 4 KiB
	// pages). It stays under walSizeLimit, so the file still shrinks back after a checkpoint.
	walAutoCheckpointPages = 4000
)

const (
	// A put deletes the entry it replaces (sqlDelKey; its hits row goes with it, by trigger) and inserts
	// the new one. An upsert (ON CONFLICT DO UPDATE) would keep the row but holds the old and the new
	// record and the excluded values in memory at once: a refresh of a 100 MB answer ran out of memory.
	sqlDelKey = `DELETE FROM entries WHERE key = ?1`
	sqlPut    = `INSERT INTO entries (key, label, version, created_at, expires_at, encoding, body) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)`
	// sqlLabel returns the id of a set of descriptive columns, adding it when it is new (the no-op update
	// makes RETURNING give the existing row's id too).
	sqlLabel = `INSERT INTO labels (kind, namespace, model, endpoint, upstream_model, content_type) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
ON CONFLICT (namespace, model, kind, endpoint, upstream_model, content_type) DO UPDATE SET kind = excluded.kind RETURNING id`
	// sqlSetHits gives a put entry the hit figures it carries (an imported one); a fetched answer carries
	// none, and an entry never hit has no hits row.
	sqlSetHits = `INSERT INTO hits (key, hit_count, last_hit_at) VALUES (?1, ?2, ?3)
ON CONFLICT (key) DO UPDATE SET hit_count = excluded.hit_count, last_hit_at = excluded.last_hit_at`
	// sqlTouch adds hits to an entry on disk and does nothing for a key that is not: the SELECT reads
	// the key from the key index, never the entry's row.
	sqlTouch = `INSERT INTO hits (key, hit_count, last_hit_at) SELECT key, ?1, ?2 FROM entries WHERE key = ?3
ON CONFLICT (key) DO UPDATE SET hit_count = hit_count + excluded.hit_count, last_hit_at = max(last_hit_at, excluded.last_hit_at)`
	// sqlPutID indexes a put entry by the id of the response it holds.
	sqlPutID = `INSERT INTO response_ids (key, id) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET id = excluded.id`
)

// WriterPragmas are the settings of the writer's connection (after WAL mode, which is kept in the file).
// Exported for the benchmarks' bare insert, which must run with the same.
//
// temp_store = MEMORY keeps statement journals in memory. A statement that may change several rows (a hit
// count's INSERT ... SELECT, a delete whose triggers delete more) saves each page it changes in its
// statement's journal first; with a temporary file behind it, which SQLite spills to past 64 KiB (eight
// 8 KiB pages), each saved page cost two pwrite calls: 17% of the whole proxy's CPU while it replayed
// 40,000 distinct cached prompts.
var WriterPragmas = fmt.Sprintf(`PRAGMA synchronous = NORMAL; PRAGMA temp_store = MEMORY; PRAGMA journal_size_limit = %d; PRAGMA cache_size = -%d; PRAGMA wal_autocheckpoint = %d`,
	walSizeLimit, writerCacheKiB, walAutoCheckpointPages)

// sqlGet reads an entry, without its hit figures: nothing that serves an entry needs them, and the hits
// row is one more random page of its own table per read (~9 µs a hit, a tenth of a SQLite hit's CPU, while
// 40,000 distinct prompts were replayed). A body above largeBody comes back NULL and is read in chunks
// (readLargeBody); length() reads a blob's size from the record header, without loading it.
var sqlGet = fmt.Sprintf(`SELECT CASE WHEN length(e.body) <= %d THEN e.body END, length(e.body), e.id,
	l.content_type, l.kind, l.namespace, l.model, l.endpoint, l.upstream_model,
	e.version, e.created_at, e.expires_at, e.encoding
FROM entries e JOIN labels l ON l.id = e.label WHERE e.key = ?1`, largeBody)

// Open opens (creating it if needed) the cache database at path, which may
// also be a database_url (see PathFromURL), creates the parent directory if
// missing, applies the pragmas and migrates the schema. It does no full scans.
func Open(path string, opts Options) (*SQLite, error) {
	path = PathFromURL(path)
	if path == "" {
		return nil, errors.New(`cannot open cache db "": empty path`)
	}
	if path == ":memory:" {
		return nil, fmt.Errorf("cannot open cache db %q: in-memory databases are not supported (readers need a shared file)", path)
	}
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = DefaultBusyTimeout
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if err := refuseNewer(path); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("cannot open cache db %q: %w", path, err)
	}

	c, err := sqlite3.OpenFlags(path, sqlite3.OPEN_READWRITE|sqlite3.OPEN_CREATE)
	if err != nil {
		return nil, fmt.Errorf("cannot open cache db %q: %w", path, err)
	}
	s := &SQLite{path: path, busyTimeout: opts.BusyTimeout, log: opts.Log, w: c, deletes: map[string]*sqlite3.Stmt{}, comp: newCompression(&opts)}
	err = func() (err error) {
		defer catch(&err, path, "open")
		return s.init(opts.Log)
	}()
	if err == nil {
		err = s.startCheckpointer()
	}
	if err != nil {
		quietly(func() { _ = s.closeWriter() })
		return nil, err
	}
	return s, nil
}

func (s *SQLite) init(log *slog.Logger) error {
	c := s.w
	if err := c.BusyTimeout(s.busyTimeout); err != nil {
		return fmt.Errorf("cannot open cache db %q: %w", s.path, err)
	}
	// page_size and auto_vacuum only take effect before the first table is
	// created (no-ops on an existing database), so they go before anything
	// writes. 8 KiB pages rather than SQLite's 4 KiB: a ~1.3 KB answer stored as
	// it is fits twice in 4 KiB (30% of the page unused) and five times in 8 KiB;
	// with 8 KiB, BenchmarkStorage's answers take 1,594 bytes each on disk as
	// they are (1,937 with 4 KiB) and 540 compressed (554), and BenchmarkWriter
	// wrote 60,000-76,000 answers/s against 39,000-59,000 in alternating runs
	// (fewer, fuller pages to write and checkpoint). Hits showed no difference
	// through the noise. An existing database keeps its page size (WAL mode
	// cannot change it).
	if err := c.Exec(`PRAGMA page_size = 8192; PRAGMA auto_vacuum = INCREMENTAL`); err != nil {
		return fmt.Errorf("cannot open cache db %q: %w", s.path, err)
	}
	mode, err := pragmaText(c, `PRAGMA journal_mode = WAL`)
	if err != nil {
		return fmt.Errorf("cannot open cache db %q: %w", s.path, err)
	}
	if !strings.EqualFold(mode, "wal") {
		return fmt.Errorf("cannot open cache db %q: cannot enable WAL mode (journal_mode is %q)", s.path, mode)
	}
	if err := c.Exec(WriterPragmas); err != nil {
		return fmt.Errorf("cannot open cache db %q: %w", s.path, err)
	}
	if err := migrate(c, s.path, log); err != nil {
		return err
	}
	// Replaces wal_autocheckpoint (WriterPragmas), which only the bare baseline of the benchmarks keeps.
	c.WALHook(s.walHook)
	for _, p := range []struct {
		st  **sqlite3.Stmt
		sql string
	}{
		{&s.begin, `BEGIN IMMEDIATE`},
		{&s.commit, `COMMIT`},
		{&s.rollback, `ROLLBACK`},
		{&s.delKey, sqlDelKey},
		{&s.put, sqlPut},
		{&s.label, sqlLabel},
		{&s.setHits, sqlSetHits},
		{&s.touch, sqlTouch},
		{&s.putID, sqlPutID},
	} {
		st, _, err := c.Prepare(p.sql)
		if err != nil {
			return fmt.Errorf("cannot open cache db %q: cannot prepare %q: %w", s.path, p.sql, err)
		}
		*p.st = st
	}
	return s.initCompression()
}

// pragmaText runs a statement returning one text value.
func pragmaText(c *sqlite3.Conn, sql string) (string, error) {
	st, _, err := c.Prepare(sql)
	if err != nil {
		return "", err
	}
	var v string
	if st.Step() {
		v = st.ColumnText(0)
	}
	err = st.Err()
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	return v, err
}

// Path is the database file path.
func (s *SQLite) Path() string { return s.path }

// execWriter runs sql on the writer connection (tests and maintenance).
// Writer actor only.
func (s *SQLite) execWriter(sql string) (err error) {
	defer s.guard(&err, "write to")
	if err := s.writer(); err != nil {
		return err
	}
	return s.w.Exec(sql)
}

// beginTx starts an IMMEDIATE transaction on the writer, first rolling back
// any transaction a previous failure left open.
func (s *SQLite) beginTx() error {
	if !s.w.GetAutocommit() {
		_ = s.rollback.Exec()
	}
	return s.begin.Exec()
}

// endTx commits when *errp is nil, and rolls back otherwise (or when the
// commit fails). SQLite may already have rolled back after errors such as
// SQLITE_FULL, hence the autocommit check. Deferred right after beginTx, it
// also catches a driver panic in the transaction (caught): a transaction cut
// short by a panic must never be committed.
func (s *SQLite) endTx(errp *error) {
	if p := recover(); p != nil {
		*errp = s.caught(p, "transaction")
	}
	if *errp == nil {
		*errp = s.commit.Exec()
	}
	if *errp != nil && s.w != nil && !s.w.GetAutocommit() {
		_ = s.rollback.Exec()
	}
	if *errp != nil {
		clear(s.labels) // rows this transaction added are gone
	}
}

// WriteBatch writes b in one IMMEDIATE transaction: puts first (upserts: a
// fresh answer replaces the whole entry and its hit figures, which become
// the entry's HitCount and LastHitAt, 0 for an answer just fetched), then
// touches (hit_count += Hits, last_hit_at = max(last_hit_at, At); a touch for
// a key not on disk is a no-op). A touch writes only the entry's hits row,
// never the entry itself. Nil puts are skipped. On error the transaction is
// rolled back, nothing is written, and the error is returned: the caller
// keeps the batch and retries later.
//
// Not safe for concurrent use; called only by the writer actor.
func (s *SQLite) WriteBatch(b *Batch) (err error) {
	defer s.guard(&err, "write batch to")
	if err := s.writer(); err != nil {
		return fmt.Errorf("cannot write batch to cache db %q: %w", s.path, err)
	}
	if b == nil || b.Len() == 0 {
		return nil
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("cannot write batch to cache db %q: %w", s.path, err)
		}
	}()
	if err := s.beginTx(); err != nil {
		return err
	}
	// A dictionary trained meanwhile is written in this transaction and used once it has committed. Deferred
	// before endTx, so that it runs after the commit (or the rollback).
	var trained *trainResult
	defer func() {
		switch {
		case err == nil:
			s.afterCommit(trained, s.w.LastInsertRowID())
		case trained != nil:
			s.comp.trained <- *trained // room: it was taken from there; the next batch writes it
		}
	}()
	defer s.endTx(&err)
	if trained, err = s.adoptTrained(); err != nil {
		return err
	}

	for _, e := range b.Puts {
		if e == nil {
			continue
		}
		if err := s.putEntry(e); err != nil {
			return err
		}
	}
	st := s.touch
	for i := range b.Touches {
		t := &b.Touches[i]
		if err := st.BindInt64(1, t.Hits); err != nil {
			return err
		}
		if err := st.BindInt64(2, t.At); err != nil {
			return err
		}
		if err := st.BindBlob(3, t.Key[:]); err != nil {
			return err
		}
		if err := st.Exec(); err != nil {
			return err
		}
	}
	return nil
}

// putEntry replaces the entry with e.Key by e (its body compressed unless it is small, large or compression
// is off) and gives it e's hit figures. It runs inside the caller's transaction. Writer connection only.
func (s *SQLite) putEntry(e *Entry) error {
	encoding, body := s.encode(e)
	label, err := s.labelID(e)
	if err != nil {
		return err
	}
	b := binder{st: s.put}
	b.blob(1, e.Key[:])
	b.int64(2, label)
	b.int64(3, e.Version)
	b.int64(4, e.CreatedAt)
	b.int64(5, e.ExpiresAt)
	b.int64(6, encoding)
	if len(body) == 0 || len(body) > largeBody {
		// NOT NULL: an absent body is an empty blob. A large one is written after the insert, in chunks.
		if b.err == nil {
			b.err = s.put.BindZeroBlob(7, int64(len(body)))
		}
	} else {
		b.blob(7, body)
	}
	if b.err != nil {
		return b.err
	}
	err = s.put.Exec()
	if errors.Is(err, sqlite3.CONSTRAINT_UNIQUE) {
		// A fresh answer for a key on disk: the insert, undone by SQLite, is made again after the old entry
		// (and its hits row, by trigger) is deleted. Trying the insert first spares every new key a descent
		// of the key index, which was a fifth of the writer's CPU (the lookup, then the insert's own).
		err = s.delKey.BindBlob(1, e.Key[:])
		if err == nil {
			err = s.delKey.Exec()
		}
		if err == nil {
			err = s.put.Exec()
		}
	}
	// Do not keep the body alive in SQLite's memory until the next put.
	if cerr := s.put.ClearBindings(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if len(body) > largeBody {
		if err := writeLargeBody(s.w, s.w.LastInsertRowID(), body); err != nil {
			return err
		}
	}
	if e.ResponseID != "" {
		b = binder{st: s.putID}
		b.blob(1, e.Key[:])
		b.text(2, e.ResponseID)
		if b.err != nil {
			return b.err
		}
		if err := s.putID.Exec(); err != nil {
			return err
		}
	}
	if e.HitCount == 0 && e.LastHitAt == 0 {
		return nil
	}
	b = binder{st: s.setHits}
	b.blob(1, e.Key[:])
	b.int64(2, e.HitCount)
	b.int64(3, e.LastHitAt)
	if b.err != nil {
		return b.err
	}
	return s.setHits.Exec()
}

// labelKey is a labels row's columns.
type labelKey struct{ kind, namespace, model, endpoint, upstreamModel, contentType string }

// labelID is the id of e's labels row, added when it is new, inside the caller's transaction. Writer
// connection only.
func (s *SQLite) labelID(e *Entry) (int64, error) {
	k := labelKey{e.Kind, e.Namespace, e.Model, e.Endpoint, e.UpstreamModel, e.ContentType}
	if id, ok := s.labels[k]; ok {
		return id, nil
	}
	b := binder{st: s.label}
	b.text(1, k.kind)
	b.text(2, k.namespace)
	b.text(3, k.model)
	b.text(4, k.endpoint)
	b.text(5, k.upstreamModel)
	b.text(6, k.contentType)
	if b.err != nil {
		return 0, b.err
	}
	id, err := queryInt64(s.label)
	if err != nil {
		return 0, err
	}
	if s.labels == nil {
		s.labels = map[labelKey]int64{}
	}
	s.labels[k] = id
	return id, nil
}

// binder binds parameters, keeping the first error.
type binder struct {
	st  *sqlite3.Stmt
	err error
}

func (b *binder) blob(i int, v []byte) {
	if b.err == nil {
		b.err = b.st.BindBlob(i, v)
	}
}

func (b *binder) text(i int, v string) {
	if b.err == nil {
		b.err = b.st.BindText(i, v)
	}
}

func (b *binder) int64(i int, v int64) {
	if b.err == nil {
		b.err = b.st.BindInt64(i, v)
	}
}

// Delete deletes the entries selected by f and returns the number of rows
// deleted. Key lists are deleted with a prepared single-key DELETE, up to
// 1000 keys per transaction; other filters delete at most 1000 rows per
// transaction, looping until no row matches, so a delete never holds the
// write lock for long. On error, the count covers the committed chunks.
//
// Not safe for concurrent use; called only by the writer actor.
func (s *SQLite) Delete(f Filter) (n int64, err error) {
	defer s.guard(&err, "delete from")
	if err := s.writer(); err != nil {
		return 0, fmt.Errorf("cannot delete from cache db %q: %w", s.path, err)
	}
	if f.empty() && !f.All {
		return 0, fmt.Errorf("cannot delete from cache db %q: empty filter (set a field, or All)", s.path)
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("cannot delete from cache db %q: %w", s.path, err)
		}
	}()
	if len(f.Keys) > 0 {
		st, err := s.deleteStmt(`DELETE FROM entries WHERE ` + whereSQL(&f, true))
		if err != nil {
			return 0, err
		}
		for keys := f.Keys; len(keys) > 0; {
			chunk := keys[:min(len(keys), deleteChunk)]
			keys = keys[len(chunk):]
			c, err := s.deleteKeys(st, &f, chunk)
			if err != nil {
				return n, err
			}
			n += c
		}
		return n, nil
	}

	sql := `DELETE FROM entries WHERE rowid IN (SELECT rowid FROM entries`
	if w := whereSQL(&f, false); w != "" {
		sql += ` WHERE ` + w
	}
	chunk := deleteChunk
	if f.Limit > 0 {
		chunk = f.Limit
	}
	sql += fmt.Sprintf(` LIMIT %d)`, chunk)
	st, err := s.deleteStmt(sql)
	if err != nil {
		return 0, err
	}
	if f.Limit > 0 {
		return s.deleteChunk(st, &f)
	}
	for {
		c, err := s.deleteChunk(st, &f)
		if err != nil {
			return n, err
		}
		n += c
		if c < deleteChunk {
			return n, nil
		}
	}
}

func (s *SQLite) deleteKeys(st *sqlite3.Stmt, f *Filter, keys []Key) (n int64, err error) {
	if err := s.beginTx(); err != nil {
		return 0, err
	}
	defer s.endTx(&err)
	if err := bindFilter(st, f); err != nil {
		return 0, err
	}
	for i := range keys {
		if err := st.BindBlob(1, keys[i][:]); err != nil {
			return 0, err
		}
		if err := st.Exec(); err != nil {
			return 0, err
		}
		n += s.w.Changes()
	}
	return n, nil
}

func (s *SQLite) deleteChunk(st *sqlite3.Stmt, f *Filter) (n int64, err error) {
	if err := s.beginTx(); err != nil {
		return 0, err
	}
	defer s.endTx(&err)
	if err := bindFilter(st, f); err != nil {
		return 0, err
	}
	if err := st.Exec(); err != nil {
		return 0, err
	}
	return s.w.Changes(), nil
}

// deleteStmt returns the cached prepared statement for sql. There are few
// distinct filter shapes, so the cache stays small.
func (s *SQLite) deleteStmt(sql string) (*sqlite3.Stmt, error) {
	if st := s.deletes[sql]; st != nil {
		return st, nil
	}
	st, _, err := s.w.Prepare(sql)
	if err != nil {
		return nil, err
	}
	s.deletes[sql] = st
	return st, nil
}

// Filter parameters have fixed numbers so that one binder serves every shape.
const (
	paramKey       = 1
	paramNamespace = 2
	paramModel     = 3
	paramOlderThan = 4
	paramExpiredBy = 5
	paramUnused    = 6
	paramHitsBelow = 7
)

// whereSQL is the condition for f (without Keys unless withKey), or "".
func whereSQL(f *Filter, withKey bool) string {
	var conds []string
	if withKey {
		conds = append(conds, `key = ?1`)
	}
	// The labels of a namespace or a model first, then their entries through entries_label.
	switch {
	case f.Namespace != nil && f.Model != "":
		conds = append(conds, `label IN (SELECT id FROM labels WHERE namespace = ?2 AND model = ?3)`)
	case f.Namespace != nil:
		conds = append(conds, `label IN (SELECT id FROM labels WHERE namespace = ?2)`)
	case f.Model != "":
		conds = append(conds, `label IN (SELECT id FROM labels WHERE model = ?3)`)
	}
	if f.OlderThan != 0 {
		conds = append(conds, `created_at < ?4`)
	}
	if f.ExpiredBy != 0 {
		// expires_at > 0 lets the partial index serve the query.
		conds = append(conds, `expires_at > 0 AND expires_at <= ?5`)
	}
	if f.UnusedBefore != 0 {
		// The created_at index finds the candidates; each one's hits row (none: never hit, 0 hits) decides.
		conds = append(conds, `created_at < ?6 AND ifnull((SELECT h.last_hit_at < ?6 AND h.hit_count < ?7 FROM hits h WHERE h.key = entries.key), 0 < ?7)`)
	}
	return strings.Join(conds, ` AND `)
}

// bindFilter binds the non-key parameters whereSQL used.
func bindFilter(st *sqlite3.Stmt, f *Filter) error {
	b := binder{st: st}
	if f.Namespace != nil {
		b.text(paramNamespace, *f.Namespace)
	}
	if f.Model != "" {
		b.text(paramModel, f.Model)
	}
	if f.OlderThan != 0 {
		b.int64(paramOlderThan, f.OlderThan)
	}
	if f.ExpiredBy != 0 {
		b.int64(paramExpiredBy, f.ExpiredBy)
	}
	if f.UnusedBefore != 0 {
		b.int64(paramUnused, f.UnusedBefore)
		b.int64(paramHitsBelow, f.HitsBelow)
	}
	return b.err
}

// Checkpoint copies the whole WAL into the database file and truncates the
// WAL to 0 bytes (PRAGMA wal_checkpoint(TRUNCATE)). It waits up to the busy
// timeout for readers; if it still cannot finish it returns an error
// matching sqlite3.BUSY.
//
// Not safe for concurrent use; called only by the writer actor.
func (s *SQLite) Checkpoint() (err error) {
	defer s.guard(&err, "checkpoint")
	if err := s.writer(); err != nil {
		return fmt.Errorf("cannot checkpoint cache db %q: %w", s.path, err)
	}
	if s.ckpt != nil { // wait for a background checkpoint under way (checkpoint.go)
		s.ckpt.mu.Lock()
		defer s.ckpt.mu.Unlock()
	}
	if _, _, err := s.w.WALCheckpoint("main", sqlite3.CHECKPOINT_TRUNCATE); err != nil {
		return fmt.Errorf("cannot checkpoint cache db %q: %w", s.path, err)
	}
	return nil
}

// Optimize runs PRAGMA optimize (refreshes query planner statistics when
// they are stale; usually cheap).
//
// Not safe for concurrent use; called only by the writer actor.
func (s *SQLite) Optimize() (err error) {
	defer s.guard(&err, "optimize")
	if err := s.writer(); err != nil {
		return fmt.Errorf("cannot optimize cache db %q: %w", s.path, err)
	}
	if err := s.w.Exec(`PRAGMA optimize`); err != nil {
		return fmt.Errorf("cannot optimize cache db %q: %w", s.path, err)
	}
	return nil
}

// IncrementalVacuum returns up to pages free pages to the file system
// (all of them if pages <= 0). The database is in auto_vacuum=INCREMENTAL
// mode, so space freed by deletes stays in the file until this runs.
//
// Not safe for concurrent use; called only by the writer actor.
func (s *SQLite) IncrementalVacuum(pages int64) (err error) {
	defer s.guard(&err, "vacuum")
	if err := s.writer(); err != nil {
		return fmt.Errorf("cannot vacuum cache db %q: %w", s.path, err)
	}
	if pages < 0 {
		pages = 0
	}
	if err := s.w.Exec(fmt.Sprintf(`PRAGMA incremental_vacuum(%d)`, pages)); err != nil {
		return fmt.Errorf("cannot vacuum cache db %q: %w", s.path, err)
	}
	return nil
}

// DeleteLRU deletes the n least recently used entries (never-hit entries first, oldest first, then by their
// last hit) in one transaction and returns how many went. It serves max_db_bytes.
//
// Not safe for concurrent use; called only by the writer actor.
func (s *SQLite) DeleteLRU(n int) (deleted int64, err error) {
	defer s.guard(&err, "evict from")
	if err := s.writer(); err != nil {
		return 0, fmt.Errorf("cannot evict from cache db %q: %w", s.path, err)
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("cannot evict from cache db %q: %w", s.path, err)
		}
	}()
	// Two statements, each served by an index (created_at, then hits.last_hit_at), rather than one ORDER BY
	// over a join, which would sort the whole table.
	never, err := s.deleteStmt(`DELETE FROM entries WHERE rowid IN (SELECT rowid FROM entries
WHERE NOT EXISTS (SELECT 1 FROM hits h WHERE h.key = entries.key) ORDER BY created_at LIMIT ?1)`)
	if err != nil {
		return 0, err
	}
	hit, err := s.deleteStmt(`DELETE FROM entries WHERE key IN (SELECT key FROM hits ORDER BY last_hit_at LIMIT ?1)`)
	if err != nil {
		return 0, err
	}
	if err := s.beginTx(); err != nil {
		return 0, err
	}
	defer s.endTx(&err)
	for _, st := range []*sqlite3.Stmt{never, hit} {
		if deleted >= int64(n) {
			break
		}
		if err := st.BindInt64(1, int64(n)-deleted); err != nil {
			return 0, err
		}
		if err := st.Exec(); err != nil {
			return 0, err
		}
		deleted += s.w.Changes()
	}
	return deleted, nil
}

// statsConn is a read connection of its own for Stats.
type statsConn struct {
	c         *sqlite3.Conn
	count     *sqlite3.Stmt
	hitCount  *sqlite3.Stmt
	pageSize  *sqlite3.Stmt
	freePages *sqlite3.Stmt
	pageCount *sqlite3.Stmt
}

func (sc *statsConn) close() error {
	if sc == nil {
		return nil
	}
	return errors.Join(sc.count.Close(), sc.hitCount.Close(), sc.pageSize.Close(), sc.freePages.Close(), sc.pageCount.Close(), sc.c.Close())
}

func (s *SQLite) openStats() (*statsConn, error) {
	c, err := openRead(s.path, s.busyTimeout)
	if err != nil {
		return nil, err
	}
	sc := &statsConn{c: c}
	for _, p := range []struct {
		st  **sqlite3.Stmt
		sql string
	}{
		{&sc.count, `SELECT count(*) FROM entries`},
		{&sc.hitCount, `SELECT count(*) FROM hits`},
		{&sc.pageSize, `PRAGMA page_size`},
		{&sc.freePages, `PRAGMA freelist_count`},
		{&sc.pageCount, `PRAGMA page_count`},
	} {
		if *p.st, _, err = c.Prepare(p.sql); err != nil {
			_ = sc.close()
			return nil, err
		}
	}
	return sc, nil
}

func queryInt64(st *sqlite3.Stmt) (int64, error) {
	var v int64
	if st.Step() {
		v = st.ColumnInt64(0)
	}
	err := st.Err()
	if rerr := st.Reset(); err == nil {
		err = rerr
	}
	return v, err
}

// Stats counts the entries (a COUNT(*): call it on demand only) and reports
// file sizes. Safe to call from any goroutine: it uses a read connection of
// its own, opened on the first call and guarded by a mutex.
func (s *SQLite) Stats() (st Stats, err error) {
	defer func() {
		if err != nil {
			err = fmt.Errorf("cannot read stats of cache db %q: %w", s.path, err)
		}
	}()
	s.statsMu.Lock()
	defer s.statsMu.Unlock()
	defer func() {
		if p := recover(); p != nil {
			// Drop the connection: the next call opens a new one.
			s.panics.Add(1)
			err = driverPanic(p)
			s.log.Error("the SQLite driver panicked; the stats call failed", "db", s.path, "err", err)
			quietly(func() { _ = s.stats.close() })
			s.stats = nil
		}
	}()
	st.DriverPanics = s.panics.Load()
	st.Dictionaries, st.Dictionary = int64(s.comp.codec.Len()), int64(s.comp.codec.Current())
	st.CorruptBodies = s.comp.corrupt.Load()
	if s.closed.Load() {
		return st, ErrClosed
	}
	if s.stats == nil {
		sc, err := s.openStats()
		if err != nil {
			return st, err
		}
		s.stats = sc
	}
	sc := s.stats
	if st.Entries, err = queryInt64(sc.count); err != nil {
		return st, err
	}
	if st.HitEntries, err = queryInt64(sc.hitCount); err != nil {
		return st, err
	}
	if st.PageSize, err = queryInt64(sc.pageSize); err != nil {
		return st, err
	}
	if st.PageCount, err = queryInt64(sc.pageCount); err != nil {
		return st, err
	}
	if st.FreePages, err = queryInt64(sc.freePages); err != nil {
		return st, err
	}
	fi, err := os.Stat(s.path)
	if err != nil {
		return st, err
	}
	st.FileBytes = fi.Size()
	switch fi, err := os.Stat(s.path + "-wal"); {
	case err == nil:
		st.WALBytes = fi.Size()
	case !errors.Is(err, fs.ErrNotExist):
		return st, err
	}
	return st, nil
}

// Close closes the store's connections. Close the Readers first; do not call
// Close while the writer actor may still call writer methods. Closing the
// last connection checkpoints the WAL and removes the -wal and -shm files.
func (s *SQLite) Close() error {
	if !s.closed.CompareAndSwap(false, true) {
		return nil
	}
	s.comp.wg.Wait() // a training in progress: it reads through a connection of its own
	cerr := s.stopCheckpointer()
	s.statsMu.Lock()
	serr := s.stats.close()
	s.stats = nil
	s.statsMu.Unlock()
	werr := s.closeWriter()
	if err := errors.Join(cerr, serr, werr); err != nil {
		return fmt.Errorf("cannot close cache db %q: %w", s.path, err)
	}
	return nil
}

func (s *SQLite) closeWriter() error {
	if s.w == nil {
		return nil
	}
	var errs []error
	if !s.w.GetAutocommit() && s.rollback != nil {
		_ = s.rollback.Exec()
	}
	for _, st := range []*sqlite3.Stmt{s.begin, s.commit, s.rollback, s.delKey, s.put, s.label, s.setHits, s.touch, s.putID} {
		errs = append(errs, st.Close())
	}
	for _, st := range s.deletes {
		errs = append(errs, st.Close())
	}
	errs = append(errs, s.w.Close())
	s.forgetWriter()
	return errors.Join(errs...)
}
