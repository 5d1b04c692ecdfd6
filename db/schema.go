package db

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ncruces/go-sqlite3"

	"llmcache/db/codec"
)

// Schema.
//
// All times are unix MILLISECONDS (created_at, last_hit_at, expires_at);
// 0 means "never" for last_hit_at and expires_at.
//
// entries is a rowid table (not WITHOUT ROWID: bodies are large, and a rowid
// table keeps them out of the key index). The small columns come first and
// body last, so metadata reads stay on the table's leaf page and do not walk
// the body's overflow pages.
//
//	id             rowid alias (stable across VACUUM)
//	key            32-byte SHA-256 of the canonical request, unique
//	label          the labels row of the entry's descriptive columns
//	version        entry format version
//	created_at     unix ms when the answer was stored
//	expires_at     unix ms after which the entry is stale, 0 = never
//	encoding       how body is stored: 0 = as it is (identity); n > 0 = a zstd
//	               frame made with dictionary n of the dicts table
//	body           the response body, in that encoding
//
// labels holds each distinct set of an entry's descriptive columns once; an
// entry names its set by id. A cache has few (one per namespace, model asked,
// endpoint and kind), and repeating them in every row cost ~65 bytes an
// answer, a sixth of a compressed ~1.3 KB answer, besides the indexes on
// namespace and model (~29 bytes), which entries_label replaces (~8 bytes):
// the namespace and model filters select the labels first, then the entries
// by label (whereSQL). Rows are only added, by the writer (labelID).
//
//	kind           "chat", "completion", "embedding", ...
//	namespace      cache namespace ("" is the default namespace)
//	model          the model the client asked for
//	endpoint       name of the endpoint that answered
//	upstream_model the model name sent upstream
//	content_type   Content-Type of the body
//
// hits holds the mutable hit bookkeeping of entries, keyed by the entry's
// key; an entry never hit has no row (0 hits, last hit 0). It is a table of
// its own because updating a column of an entries row rewrites the whole
// record, body included: recording a hit on a 100 MB answer needed twice its
// size in SQLite's memory and ran the writer out of memory. A hit now writes
// a ~50-byte row. Keyed by key rather than by rowid, so that entries can be
// rebuilt (schema 5) without touching hits.
//
//	key            the entry's key
//	hit_count      number of hits
//	last_hit_at    unix ms of the latest hit
//
// A trigger deletes an entry's hits row with the entry, whichever statement
// deletes it. A fresh answer that replaces an entry (an upsert keeps the row)
// resets its hits explicitly (WriteBatch).
//
// dicts holds the zstd dictionaries bodies are compressed with, trained from
// the store's own answers (db/codec, compress.go). Rows are only added: an old
// dictionary stays for the bodies that use it.
//
//	id             the dictionary's id: the encoding of its bodies, and the id
//	               written in each of their zstd frames
//	created_at     unix ms when it was trained
//	samples        answers it was built from
//	last_entry     entries' largest id when it was trained: the next training
//	               waits for ten times as many answers
//	data           the dictionary, in zstd's format
//
// Schema 5 rebuilt entries (once, at the first start after the upgrade; it
// copies every body, so it is logged and takes a while on a large cache),
// dropping the columns schema 2 retired (hit_count, last_hit_at) and moving
// the descriptive ones to labels. It kept entries a rowid table with a unique
// key index rather than WITHOUT ROWID with the key as primary key: measured
// with 460-byte bodies (a compressed ~1.3 KB answer), 200,000 inserts of
// random keys into such a table ran at 2,800-4,000 rows/s against
// 14,000-29,000 for a rowid table, and took 844 bytes a row on disk against
// 683: each insert lands on a random leaf of the big table (a page written per
// row), where here rows are appended and only the small key index takes random
// inserts; and every secondary index would carry the 32-byte key instead of a
// rowid.
//
// response_ids indexes the Responses API's answers by the id of the response
// they hold, so that GET /v1/responses/{id} finds the entry (schema 3). One
// row per entry that holds a response, keyed by the entry's key: an answer
// that replaces an entry replaces its id too. A trigger deletes the row with
// its entry, whichever statement deletes it.
//
//	key            the entry's key
//	id             the response's "id"
//
// meta holds key/value pairs; meta.schema_version is the number of
// migrations applied.
//
// Migrations are an ordered list: migrations[i] takes the schema from version
// i to i+1 and is applied in its own transaction, together with the update of
// schema_version. Append new steps; never edit released ones.
var migrations = []string{
	// 1: initial schema.
	`
CREATE TABLE entries (
	id             INTEGER PRIMARY KEY,
	key            BLOB    NOT NULL UNIQUE CHECK (length(key) = 32),
	kind           TEXT    NOT NULL,
	namespace      TEXT    NOT NULL,
	model          TEXT    NOT NULL,
	endpoint       TEXT    NOT NULL,
	upstream_model TEXT    NOT NULL,
	content_type   TEXT    NOT NULL,
	version        INTEGER NOT NULL DEFAULT 0,
	created_at     INTEGER NOT NULL,
	last_hit_at    INTEGER NOT NULL DEFAULT 0,
	hit_count      INTEGER NOT NULL DEFAULT 0,
	expires_at     INTEGER NOT NULL DEFAULT 0,
	encoding       INTEGER NOT NULL DEFAULT 0,
	body           BLOB    NOT NULL
) STRICT;
CREATE INDEX entries_expires_at  ON entries (expires_at) WHERE expires_at > 0;
CREATE INDEX entries_last_hit_at ON entries (last_hit_at);
CREATE INDEX entries_namespace   ON entries (namespace);
CREATE INDEX entries_model       ON entries (model);
CREATE INDEX entries_created_at  ON entries (created_at);
`,
	// 2: hit bookkeeping moves to hits. Copying the counts reads only the small
	// columns at the front of each record, never a body's overflow pages.
	`
CREATE TABLE hits (
	key         BLOB    PRIMARY KEY CHECK (length(key) = 32),
	hit_count   INTEGER NOT NULL DEFAULT 0,
	last_hit_at INTEGER NOT NULL DEFAULT 0
) STRICT, WITHOUT ROWID;
INSERT INTO hits (key, hit_count, last_hit_at)
	SELECT key, hit_count, last_hit_at FROM entries WHERE hit_count <> 0 OR last_hit_at <> 0;
CREATE INDEX hits_last_hit_at ON hits (last_hit_at);
DROP INDEX entries_last_hit_at;
CREATE TRIGGER entries_delete_hits AFTER DELETE ON entries BEGIN
	DELETE FROM hits WHERE key = old.key;
END;
`,
	// 3: the Responses API's id -> key index.
	`
CREATE TABLE response_ids (
	key BLOB PRIMARY KEY CHECK (length(key) = 32),
	id  TEXT NOT NULL
) STRICT, WITHOUT ROWID;
CREATE INDEX response_ids_id ON response_ids (id);
CREATE TRIGGER entries_delete_response_ids AFTER DELETE ON entries BEGIN
	DELETE FROM response_ids WHERE key = old.key;
END;
`,
	// 4: the Batch API's files and batches (see batches.go). Nothing here refers to another step's tables,
	// and every statement tolerates a table that exists, so that steps added beside it merge in any order.
	sqlBatchSchema,
	// 5: compressed bodies, and descriptive columns in labels. The copy reads each row's small columns and
	// body once, in rowid order, so the new table is written by appends. Dropping the old table drops its
	// indexes and triggers (without firing them: hits and response_ids keep their rows, keyed by key), so
	// every trigger the steps before made on entries is made again here; this step therefore comes after
	// response_ids (3).
	`
CREATE TABLE labels (
	id             INTEGER PRIMARY KEY,
	kind           TEXT NOT NULL,
	namespace      TEXT NOT NULL,
	model          TEXT NOT NULL,
	endpoint       TEXT NOT NULL,
	upstream_model TEXT NOT NULL,
	content_type   TEXT NOT NULL,
	UNIQUE (namespace, model, kind, endpoint, upstream_model, content_type)
) STRICT;
INSERT INTO labels (kind, namespace, model, endpoint, upstream_model, content_type)
	SELECT DISTINCT kind, namespace, model, endpoint, upstream_model, content_type FROM entries;
CREATE TABLE entries3 (
	id         INTEGER PRIMARY KEY,
	key        BLOB    NOT NULL UNIQUE CHECK (length(key) = 32),
	label      INTEGER NOT NULL,
	version    INTEGER NOT NULL DEFAULT 0,
	created_at INTEGER NOT NULL,
	expires_at INTEGER NOT NULL DEFAULT 0,
	encoding   INTEGER NOT NULL DEFAULT 0,
	body       BLOB    NOT NULL
) STRICT;
INSERT INTO entries3 (id, key, label, version, created_at, expires_at, encoding, body)
	SELECT e.id, e.key, l.id, e.version, e.created_at, e.expires_at, e.encoding, e.body
	FROM entries e JOIN labels l ON l.namespace = e.namespace AND l.model = e.model AND l.kind = e.kind
		AND l.endpoint = e.endpoint AND l.upstream_model = e.upstream_model AND l.content_type = e.content_type
	ORDER BY e.id;
DROP TABLE entries;
ALTER TABLE entries3 RENAME TO entries;
CREATE INDEX entries_label      ON entries (label);
CREATE INDEX entries_created_at ON entries (created_at);
CREATE INDEX entries_expires_at ON entries (expires_at) WHERE expires_at > 0;
CREATE TRIGGER entries_delete_hits AFTER DELETE ON entries BEGIN
	DELETE FROM hits WHERE key = old.key;
END;
CREATE TRIGGER entries_delete_response_ids AFTER DELETE ON entries BEGIN
	DELETE FROM response_ids WHERE key = old.key;
END;
CREATE TABLE dicts (
	id         INTEGER PRIMARY KEY CHECK (id > 0),
	created_at INTEGER NOT NULL,
	samples    INTEGER NOT NULL,
	last_entry INTEGER NOT NULL,
	data       BLOB    NOT NULL
) STRICT;
`,
}

// compressionSchema is the version that rebuilt entries with labels and added dicts (5, after the Responses
// API's id index and the Batch API's tables). It is found by its content rather than written as a number,
// so that the code that depends on it (the compaction after the rebuild, tests) follows the list.
var compressionSchema = func() int64 {
	for i, m := range migrations {
		if strings.Contains(m, "CREATE TABLE dicts") {
			return int64(i + 1)
		}
	}
	panic("db: no migration creates the dicts table")
}()

// latestSchema is the newest schema version this package knows.
var latestSchema = int64(len(migrations))

// LatestSchemaVersion is the newest schema version this package knows: a
// database at a newer version is refused by Open.
func LatestSchemaVersion() int64 { return latestSchema }

const (
	sqlCreateMeta    = `CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value ANY) STRICT, WITHOUT ROWID`
	sqlHasMeta       = `SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'meta'`
	sqlGetVersion    = `SELECT value FROM meta WHERE key = 'schema_version'`
	sqlSetVersion    = `INSERT INTO meta (key, value) VALUES ('schema_version', ?1) ON CONFLICT (key) DO UPDATE SET value = excluded.value`
	encodingIdentity = codec.Identity
)

// schemaVersion reads meta.schema_version; 0 when there is no meta table.
func schemaVersion(c *sqlite3.Conn) (int64, error) {
	st, _, err := c.Prepare(sqlHasMeta)
	if err != nil {
		return 0, err
	}
	has := st.Step()
	if err := st.Close(); err != nil {
		return 0, err
	}
	if !has {
		return 0, nil
	}
	st, _, err = c.Prepare(sqlGetVersion)
	if err != nil {
		return 0, err
	}
	var v int64
	if st.Step() {
		v = st.ColumnInt64(0)
	}
	if err := st.Close(); err != nil {
		return 0, err
	}
	return v, nil
}

// migrate brings the schema up to latestSchema, one transaction per step,
// and refuses a database made by a newer schema. Each step of an existing
// database is logged: a step may copy data (schema 2 copies the hit counts)
// and take a while on a large cache; a new database is created silently.
func migrate(c *sqlite3.Conn, path string, log *slog.Logger) error {
	v, err := schemaVersion(c)
	if err != nil {
		return fmt.Errorf("cannot open cache db %q: cannot read schema version: %w", path, err)
	}
	if v > latestSchema {
		return &SchemaTooNewError{Path: path, Version: v, Supported: latestSchema}
	}
	existing := v > 0
	rebuilt := existing && v < compressionSchema
	if existing && v < latestSchema {
		log.Info("migrating cache db schema", "db", path, "from", v, "to", latestSchema)
		if rebuilt {
			log.Info("this migration copies every cached answer once, then compacts the file (minutes for a million answers); it needs free space for a copy until it is done",
				"db", path, "schema_version", compressionSchema)
		}
	}
	for v < latestSchema {
		start := time.Now()
		if err := migrateStep(c, path); err != nil {
			return err
		}
		v++
		if existing {
			log.Info("cache db schema migrated", "db", path, "schema_version", v, "took", time.Since(start).Round(time.Millisecond))
		}
	}
	if rebuilt {
		// The rebuild left the old table's pages free: as many as the cache holds. Left to the incremental
		// vacuum of maintenance, they would be returned in one writer job of minutes; a VACUUM now, once,
		// returns them before the proxy serves.
		// Measured on a million ~1.3 KB answers (2.15 GB) on a loaded 2-core machine: the copy 2 min 27 s, this
		// 31 s; the file 2.12 GB after, 4.25 GB without it. The WAL that holds the rewritten file is copied
		// back at once rather than left to the first writes.
		start := time.Now()
		err := c.Exec(`VACUUM`)
		if err == nil {
			_, _, err = c.WALCheckpoint("main", sqlite3.CHECKPOINT_TRUNCATE)
		}
		if err != nil {
			return fmt.Errorf("cannot compact cache db %q after its migration to schema %d: %w", path, compressionSchema, err)
		}
		log.Info("cache db compacted after the migration", "db", path, "took", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// refuseNewer refuses a database written by a newer llmcache before anything
// writes to it: Open sets pragmas (journal_mode = WAL writes the file header)
// before migrate can check the version under the write lock. Without a -wal
// file the whole database is in the main file, which is then read as
// immutable: no lock, no -wal or -shm created, not a byte changed. With a
// -wal file (a proxy running, or one that crashed) an ordinary read-only
// connection reads through it. A missing or empty file is a new database.
func refuseNewer(path string) (err error) {
	defer catch(&err, path, "open")
	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("cannot open cache db %q: %w", path, err)
	}
	if fi.Size() == 0 {
		return nil
	}
	name, flags := path, sqlite3.OPEN_READONLY
	if _, err := os.Stat(path + "-wal"); errors.Is(err, fs.ErrNotExist) {
		abs, err := filepath.Abs(path)
		if err != nil {
			return fmt.Errorf("cannot open cache db %q: %w", path, err)
		}
		// A URI, because immutable is a URI parameter: the path is escaped (?, #, %).
		name, flags = "file:"+(&url.URL{Path: abs}).EscapedPath()+"?mode=ro&immutable=1", flags|sqlite3.OPEN_URI
	}
	c, err := sqlite3.OpenFlags(name, flags)
	if err != nil {
		return fmt.Errorf("cannot open cache db %q: %w", path, err)
	}
	v, err := schemaVersion(c)
	if cerr := c.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cannot open cache db %q: %w", path, err)
	}
	if v > latestSchema {
		return &SchemaTooNewError{Path: path, Version: v, Supported: latestSchema}
	}
	return nil
}

// migrateStep applies the next migration in one IMMEDIATE transaction,
// re-reading the version under the write lock in case another process
// migrated meanwhile.
func migrateStep(c *sqlite3.Conn, path string) (err error) {
	if err := c.Exec(`BEGIN IMMEDIATE`); err != nil {
		return fmt.Errorf("cannot migrate cache db %q: %w", path, err)
	}
	defer func() {
		if err != nil && !c.GetAutocommit() {
			_ = c.Exec(`ROLLBACK`)
		}
	}()
	v, err := schemaVersion(c)
	if err != nil {
		return fmt.Errorf("cannot migrate cache db %q: cannot read schema version: %w", path, err)
	}
	if v > latestSchema {
		return &SchemaTooNewError{Path: path, Version: v, Supported: latestSchema}
	}
	if v == latestSchema { // someone else got there first
		return c.Exec(`COMMIT`)
	}
	if err := c.Exec(sqlCreateMeta); err != nil {
		return fmt.Errorf("cannot migrate cache db %q to schema version %d: %w", path, v+1, err)
	}
	if err := c.Exec(migrations[v]); err != nil {
		return fmt.Errorf("cannot migrate cache db %q to schema version %d: %w", path, v+1, err)
	}
	st, _, err := c.Prepare(sqlSetVersion)
	if err != nil {
		return fmt.Errorf("cannot migrate cache db %q to schema version %d: %w", path, v+1, err)
	}
	err = st.BindInt64(1, v+1)
	if err == nil {
		err = st.Exec()
	}
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("cannot migrate cache db %q to schema version %d: %w", path, v+1, err)
	}
	if err := c.Exec(`COMMIT`); err != nil {
		return fmt.Errorf("cannot migrate cache db %q to schema version %d: %w", path, v+1, err)
	}
	return nil
}
