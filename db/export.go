package db

import (
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"

	"github.com/ncruces/go-sqlite3"
)

// ExportedEntry is one row of the entries table as the command-line export writes it and import reads it
// (one JSON object per line). Every column is kept, so an imported cache answers exactly as the exported
// one did (issue "The cache's life": a cache shared as a reproducible artifact of an evaluation run).
type ExportedEntry struct {
	Key           string `json:"key"` // 64 hex digits
	Kind          string `json:"kind"`
	Namespace     string `json:"namespace"`
	Model         string `json:"model"`
	Endpoint      string `json:"endpoint"`
	UpstreamModel string `json:"upstream_model"`
	ContentType   string `json:"content_type"`
	Version       int64  `json:"version"`
	CreatedAt     int64  `json:"created_at"`  // unix ms
	LastHitAt     int64  `json:"last_hit_at"` // unix ms, 0 = never hit
	HitCount      int64  `json:"hit_count"`
	ExpiresAt     int64  `json:"expires_at"` // unix ms, 0 = never
	// Encoding is always 0 (identity) in an export: a compressed body is exported decoded, so that the file
	// needs no dictionary of the store it came from. Import refuses any other value.
	Encoding int64 `json:"encoding"`
	// Body is the plain body. encoding/json writes a []byte as standard base64, which keeps binary bodies
	// (float32 vectors) intact. Import refuses an absent (null) body.
	Body []byte `json:"body_b64"`
	// ResponseID is the id of the response an entry of the Responses API holds, by which
	// GET /v1/responses/{id} finds it; absent for other entries.
	ResponseID string `json:"response_id,omitempty"`
}

// Validate reports what makes e impossible to import, or nil.
func (e *ExportedEntry) Validate() error {
	if len(e.Key) != 64 {
		return fmt.Errorf("key must be 64 hex digits (got %d characters)", len(e.Key))
	}
	if _, err := hex.DecodeString(e.Key); err != nil {
		return fmt.Errorf("key must be 64 hex digits: %w", err)
	}
	if e.Body == nil {
		return errors.New("body_b64 is missing")
	}
	if e.Encoding != encodingIdentity {
		// Get refuses unknown encodings; refuse them at the door rather than store rows nobody can read.
		return fmt.Errorf("body encoding %d is unknown to this llmcache", e.Encoding)
	}
	return nil
}

// exportSQL reads every entry with its hits and response id from a database at schema version v; a body
// above largeBody comes back NULL and is read in chunks, as in sqlGet. A file the proxy has not migrated yet
// is exported as it is, since export never writes: before schema 5 the descriptive columns are in entries
// (no labels), before schema 3 there is no response_ids. namespace is the column that holds the namespace.
func exportSQL(v int64) (sql, namespace string) {
	const cols = `e.version, e.created_at, ifnull(h.last_hit_at, 0), ifnull(h.hit_count, 0), e.expires_at, e.encoding,
	CASE WHEN length(e.body) <= %d THEN e.body END, length(e.body), e.id, %s
FROM entries e %sLEFT JOIN hits h ON h.key = e.key`
	responseID, responses := `''`, ``
	if v >= 3 {
		responseID, responses = `ifnull(r.id, '')`, ` LEFT JOIN response_ids r ON r.key = e.key`
	}
	if v < compressionSchema {
		return fmt.Sprintf(`SELECT e.key, e.kind, e.namespace, e.model, e.endpoint, e.upstream_model, e.content_type, `+cols,
			largeBody, responseID, ``) + responses, `e.namespace`
	}
	return fmt.Sprintf(`SELECT e.key, l.kind, l.namespace, l.model, l.endpoint, l.upstream_model, l.content_type, `+cols,
		largeBody, responseID, `JOIN labels l ON l.id = e.label `) + responses, `l.namespace`
}

// Export calls fn for every entry (only those of *namespace when namespace is not nil), in rowid order.
// It streams: one row is in memory at a time, and e.Body is reused, so it is valid only until fn
// returns. An error from fn stops the export and is returned as is.
//
// It reads through a read-only connection of its own in one read transaction (a consistent snapshot),
// so it is safe to call from any goroutine and while the writer (or a running proxy) writes.
func (s *SQLite) Export(namespace *string, fn func(e *ExportedEntry) error) error {
	if s.closed.Load() {
		return fmt.Errorf("cannot export cache db %q: %w", s.path, ErrClosed)
	}
	return s.exportPath(namespace, fn)
}

// OpenReadOnly opens the existing cache database at path (or database_url) for reading only: Stats,
// Breakdown, Export and OpenReader work; the writer's methods return ErrClosed. Unlike Open it never
// creates the file, changes pragmas or migrates, so it may run beside a proxy serving the same file
// without taking the write lock. A database written by a newer llmcache is refused.
func OpenReadOnly(path string) (_ *SQLite, err error) {
	path = PathFromURL(path)
	c, err := openRead(path, DefaultBusyTimeout)
	if err == nil {
		err = func() (err error) {
			defer catch(&err, path, "open")
			return checkSchema(c, path)
		}()
		if cerr := c.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		var tooNew *SchemaTooNewError
		if errors.As(err, &tooNew) {
			return nil, err
		}
		return nil, fmt.Errorf("cannot open cache db %q: %w", path, err)
	}
	return readOnly(path), nil
}

// readOnly is a store on path that only reads; its dictionaries are loaded as bodies need them.
func readOnly(path string) *SQLite {
	return &SQLite{path: path, busyTimeout: DefaultBusyTimeout, log: slog.Default(), deletes: map[string]*sqlite3.Stmt{},
		comp: newCompression(&Options{NoCompression: true})}
}

// ExportFile is Export on the database file at path without opening it for writing: it never creates
// the file, migrates or writes anything, so it may run beside a proxy serving the same file.
func ExportFile(path string, namespace *string, fn func(e *ExportedEntry) error) error {
	return readOnly(PathFromURL(path)).exportPath(namespace, fn)
}

// errStop marks an error returned by the caller's fn, which Export returns unwrapped.
type errStop struct{ err error }

func (e errStop) Error() string { return e.err.Error() }

func (s *SQLite) exportPath(namespace *string, fn func(e *ExportedEntry) error) (err error) {
	path, busy := s.path, s.busyTimeout
	defer catch(&err, path, "export")
	var stop errStop
	defer func() {
		if errors.As(err, &stop) {
			err = stop.err
		} else if err != nil {
			err = fmt.Errorf("cannot export cache db %q: %w", path, err)
		}
	}()
	c, err := openRead(path, busy)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := checkSchema(c, path); err != nil {
		return err
	}
	v, err := schemaVersion(c)
	if err != nil {
		return err
	}
	sql, nsColumn := exportSQL(v)
	if namespace != nil {
		sql += ` WHERE ` + nsColumn + ` = ?1`
	}
	st, _, err := c.Prepare(sql + ` ORDER BY e.id`)
	if err != nil {
		return err
	}
	// Closing resets the statement, which ends the read transaction: it must not outlive the export,
	// or it would keep the proxy's checkpoints from finishing.
	defer st.Close()
	if namespace != nil {
		if err := st.BindText(1, *namespace); err != nil {
			return err
		}
	}
	var e ExportedEntry
	var raw []byte // the stored body, copied out of SQLite's memory: decode may run a statement
	for st.Step() {
		e.Key = hex.EncodeToString(st.ColumnRawBlob(0))
		e.Kind = st.ColumnText(1)
		e.Namespace = st.ColumnText(2)
		e.Model = st.ColumnText(3)
		e.Endpoint = st.ColumnText(4)
		e.UpstreamModel = st.ColumnText(5)
		e.ContentType = st.ColumnText(6)
		e.Version = st.ColumnInt64(7)
		e.CreatedAt = st.ColumnInt64(8)
		e.LastHitAt = st.ColumnInt64(9)
		e.HitCount = st.ColumnInt64(10)
		e.ExpiresAt = st.ColumnInt64(11)
		e.Encoding = encodingIdentity
		encoding := st.ColumnInt64(12)
		if n := st.ColumnInt64(14); n > largeBody {
			if e.Body, err = readLargeBody(c, st.ColumnInt64(15), n, e.Body); err != nil {
				return err
			}
			if encoding != encodingIdentity {
				raw = append(raw[:0], e.Body...)
			}
		} else {
			raw = append(raw[:0], st.ColumnRawBlob(13)...)
			if encoding == encodingIdentity {
				e.Body = append(e.Body[:0:cap(e.Body)], raw...)
			}
		}
		if encoding != encodingIdentity {
			var key Key
			copy(key[:], st.ColumnRawBlob(0))
			if e.Body, err = s.decode(c, &key, encoding, raw, e.Body); err != nil {
				// An export must give back what was stored, so a body that cannot be read stops it.
				return fmt.Errorf("entry %s: %w", e.Key, err)
			}
		}
		// An empty blob reads as nil; keep it a present, empty body.
		if e.Body == nil {
			e.Body = []byte{}
		}
		e.ResponseID = st.ColumnText(16)
		if err := fn(&e); err != nil {
			return errStop{err}
		}
	}
	return st.Err()
}

// checkSchema refuses a database written by a newer llmcache (whose rows this binary may misread) or
// one without the entries table (not a cache db, or never opened by the proxy).
func checkSchema(c *sqlite3.Conn, path string) error {
	v, err := schemaVersion(c)
	if err != nil {
		return fmt.Errorf("cannot read schema version: %w", err)
	}
	if v > latestSchema {
		return &SchemaTooNewError{Path: path, Version: v, Supported: latestSchema}
	}
	if v < 1 {
		return errors.New("not an llmcache database (no schema version)")
	}
	return nil
}

// Import upserts entries in one IMMEDIATE transaction on the writer connection: an entry whose key is
// already on disk replaces that entry entirely (every column, hit counts included). Every entry is
// validated first; on any error nothing is written and the error names the entry's index in entries.
//
// Not safe for concurrent use: the writer connection is the writer actor's, so call Import only when no
// writer actor runs (the command-line import opens the store itself).
func (s *SQLite) Import(entries []ExportedEntry) (err error) {
	defer s.guard(&err, "import into")
	if err := s.writer(); err != nil {
		return fmt.Errorf("cannot import into cache db %q: %w", s.path, err)
	}
	for i := range entries {
		if err := entries[i].Validate(); err != nil {
			return fmt.Errorf("cannot import into cache db %q: entry %d: %w", s.path, i, err)
		}
	}
	if len(entries) == 0 {
		return nil
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("cannot import into cache db %q: %w", s.path, err)
		}
	}()
	if err := s.beginTx(); err != nil {
		return err
	}
	defer s.endTx(&err)
	var row Entry
	for i := range entries {
		e := &entries[i]
		hex.Decode(row.Key[:], []byte(e.Key)) // validated above
		row.Body, row.ContentType, row.Kind, row.Namespace, row.Model = e.Body, e.ContentType, e.Kind, e.Namespace, e.Model
		row.Endpoint, row.UpstreamModel, row.Version, row.CreatedAt = e.Endpoint, e.UpstreamModel, e.Version, e.CreatedAt
		row.LastHitAt, row.HitCount, row.ExpiresAt, row.ResponseID = e.LastHitAt, e.HitCount, e.ExpiresAt, e.ResponseID
		if err := s.putEntry(&row); err != nil {
			return fmt.Errorf("entry %d (key %s): %w", i, e.Key, err)
		}
	}
	return nil
}

// Vacuum rebuilds the database file (a full VACUUM), returning every free page to the file system and
// defragmenting the rest. In WAL mode the rebuilt pages go through the WAL: Checkpoint afterwards to
// shrink the file. It needs the write lock for the whole rebuild.
//
// Not safe for concurrent use; call it only when no writer actor runs.
func (s *SQLite) Vacuum() (err error) {
	defer s.guard(&err, "vacuum")
	if err := s.writer(); err != nil {
		return fmt.Errorf("cannot vacuum cache db %q: %w", s.path, err)
	}
	if err := s.w.Exec(`VACUUM`); err != nil {
		return fmt.Errorf("cannot vacuum cache db %q: %w", s.path, err)
	}
	return nil
}

// Count is the number of entries and body bytes of one kind or namespace.
type Count struct {
	Name      string
	Entries   int64
	BodyBytes int64
}

// Breakdown counts the entries per kind and per namespace, each sorted by name. It scans the whole
// table: call it on demand only. It uses a read connection of its own.
func (s *SQLite) Breakdown() (kinds, namespaces []Count, err error) {
	defer catch(&err, s.path, "count entries of")
	if s.closed.Load() {
		return nil, nil, fmt.Errorf("cannot count entries of cache db %q: %w", s.path, ErrClosed)
	}
	c, err := openRead(s.path, s.busyTimeout)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot count entries of cache db %q: %w", s.path, err)
	}
	defer c.Close()
	v, err := schemaVersion(c)
	if err != nil {
		return nil, nil, fmt.Errorf("cannot count entries of cache db %q: %w", s.path, err)
	}
	labels, from := `l.`, `entries e JOIN labels l ON l.id = e.label`
	if v < compressionSchema {
		labels, from = `e.`, `entries e` // a file not migrated yet (stats never writes): no labels
	}
	group := func(col string) ([]Count, error) {
		// length() of a blob reads its size from the record header, not the body's overflow pages. It is the
		// size as stored: compressed bodies count what they take on disk.
		st, _, err := c.Prepare(`SELECT ` + labels + col + `, count(*), sum(length(e.body)) FROM ` + from + ` GROUP BY 1 ORDER BY 1`)
		if err != nil {
			return nil, err
		}
		defer st.Close()
		var out []Count
		for st.Step() {
			out = append(out, Count{Name: st.ColumnText(0), Entries: st.ColumnInt64(1), BodyBytes: st.ColumnInt64(2)})
		}
		return out, st.Err()
	}
	if kinds, err = group(`kind`); err == nil {
		namespaces, err = group(`namespace`)
	}
	if err != nil {
		return nil, nil, fmt.Errorf("cannot count entries of cache db %q: %w", s.path, err)
	}
	return kinds, namespaces, nil
}
