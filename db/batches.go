package db

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/ncruces/go-sqlite3"
)

// The Batch API's records: the files uploaded through /v1/files (and the output and error files batches
// write), and the batches themselves. The files' bytes live in a folder of their own; these tables say
// what each file is and whose it is, and where each batch stands.
//
// They are written through a connection of their own (Batches), not by the writer actor: their writes are
// few and small (a record per file or batch, a batch's progress a few times a second), they must be on
// disk when the call returns (a batch's progress is what a restart resumes from), and the writer's queue
// is sized and ordered for answers. SQLite serialises the two writers; each holds the lock for one small
// transaction, and the busy timeout covers the writer's longest.
//
//	batch_files   one row per file: id ("file-..."), owner (the namespace of the client key that made it,
//	              "" without client keys), filename, purpose ("batch" uploaded, "batch_output" written),
//	              bytes, lines, created_at (unix ms), name (its file under the batch folder).
//	batches       one row per batch: OpenAI's fields (times in unix ms, 0 = not reached), errors (the JSON
//	              array of errors.data, NULL = none), metadata (a JSON object, NULL = none), request counts,
//	              and output_bytes / error_bytes, how far its output and error files were on disk when
//	              progress was last recorded.
//
// seq orders listings (newest first) and is the cursor of "after".
const sqlBatchSchema = `
CREATE TABLE IF NOT EXISTS batch_files (
	seq        INTEGER PRIMARY KEY,
	id         TEXT    NOT NULL UNIQUE,
	owner      TEXT    NOT NULL,
	filename   TEXT    NOT NULL,
	purpose    TEXT    NOT NULL,
	bytes      INTEGER NOT NULL,
	lines      INTEGER NOT NULL,
	created_at INTEGER NOT NULL,
	name       TEXT    NOT NULL
) STRICT;
CREATE INDEX IF NOT EXISTS batch_files_owner ON batch_files (owner, seq);
CREATE TABLE IF NOT EXISTS batches (
	seq               INTEGER PRIMARY KEY,
	id                TEXT    NOT NULL UNIQUE,
	owner             TEXT    NOT NULL,
	endpoint          TEXT    NOT NULL,
	input_file_id     TEXT    NOT NULL,
	completion_window TEXT    NOT NULL,
	status            TEXT    NOT NULL,
	output_file_id    TEXT    NOT NULL DEFAULT '',
	error_file_id     TEXT    NOT NULL DEFAULT '',
	errors            BLOB,
	metadata          BLOB,
	created_at        INTEGER NOT NULL,
	in_progress_at    INTEGER NOT NULL DEFAULT 0,
	expires_at        INTEGER NOT NULL DEFAULT 0,
	finalizing_at     INTEGER NOT NULL DEFAULT 0,
	completed_at      INTEGER NOT NULL DEFAULT 0,
	failed_at         INTEGER NOT NULL DEFAULT 0,
	expired_at        INTEGER NOT NULL DEFAULT 0,
	cancelling_at     INTEGER NOT NULL DEFAULT 0,
	cancelled_at      INTEGER NOT NULL DEFAULT 0,
	total             INTEGER NOT NULL DEFAULT 0,
	completed         INTEGER NOT NULL DEFAULT 0,
	failed            INTEGER NOT NULL DEFAULT 0,
	output_bytes      INTEGER NOT NULL DEFAULT 0,
	error_bytes       INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX IF NOT EXISTS batches_owner  ON batches (owner, seq);
CREATE INDEX IF NOT EXISTS batches_status ON batches (status);
`

// FileRecord is one file of the Batch API.
type FileRecord struct {
	ID        string
	Owner     string // the namespace of the client key that made it; "" = shared
	Filename  string
	Purpose   string // "batch" (uploaded) or "batch_output" (written by a batch)
	Bytes     int64
	Lines     int64
	CreatedAt int64  // unix ms
	Name      string // its file's name in the batch folder
}

// BatchRecord is one batch. Times are unix ms, 0 = not reached.
type BatchRecord struct {
	ID, Owner, Endpoint, InputFileID, CompletionWindow, Status  string
	OutputFileID, ErrorFileID                                   string // "" = none
	Errors                                                      []byte // JSON array of errors.data; nil = none
	Metadata                                                    []byte // JSON object; nil = none
	CreatedAt, InProgressAt, ExpiresAt, FinalizingAt            int64
	CompletedAt, FailedAt, ExpiredAt, CancellingAt, CancelledAt int64
	Total, Completed, Failed                                    int64
	// OutputBytes and ErrorBytes are how far the output and error files were on disk when the progress
	// (Completed, Failed) was last recorded.
	OutputBytes, ErrorBytes int64
}

const fileColumns = `id, owner, filename, purpose, bytes, lines, created_at, name`

func scanFile(st *sqlite3.Stmt) FileRecord {
	return FileRecord{ID: st.ColumnText(0), Owner: st.ColumnText(1), Filename: st.ColumnText(2), Purpose: st.ColumnText(3),
		Bytes: st.ColumnInt64(4), Lines: st.ColumnInt64(5), CreatedAt: st.ColumnInt64(6), Name: st.ColumnText(7)}
}

func fileArgs(f *FileRecord) []any {
	return []any{f.ID, f.Owner, f.Filename, f.Purpose, f.Bytes, f.Lines, f.CreatedAt, f.Name}
}

const batchColumns = `id, owner, endpoint, input_file_id, completion_window, status, output_file_id, error_file_id, errors,
	metadata, created_at, in_progress_at, expires_at, finalizing_at, completed_at, failed_at, expired_at, cancelling_at,
	cancelled_at, total, completed, failed, output_bytes, error_bytes`

func scanBatch(st *sqlite3.Stmt) BatchRecord {
	b := BatchRecord{ID: st.ColumnText(0), Owner: st.ColumnText(1), Endpoint: st.ColumnText(2), InputFileID: st.ColumnText(3),
		CompletionWindow: st.ColumnText(4), Status: st.ColumnText(5), OutputFileID: st.ColumnText(6), ErrorFileID: st.ColumnText(7)}
	if st.ColumnType(8) != sqlite3.NULL {
		b.Errors = st.ColumnBlob(8, []byte{})
	}
	if st.ColumnType(9) != sqlite3.NULL {
		b.Metadata = st.ColumnBlob(9, []byte{})
	}
	for i, p := range []*int64{&b.CreatedAt, &b.InProgressAt, &b.ExpiresAt, &b.FinalizingAt, &b.CompletedAt, &b.FailedAt,
		&b.ExpiredAt, &b.CancellingAt, &b.CancelledAt, &b.Total, &b.Completed, &b.Failed, &b.OutputBytes, &b.ErrorBytes} {
		*p = st.ColumnInt64(10 + i)
	}
	return b
}

func batchArgs(b *BatchRecord) []any {
	return []any{b.ID, b.Owner, b.Endpoint, b.InputFileID, b.CompletionWindow, b.Status, b.OutputFileID, b.ErrorFileID, b.Errors,
		b.Metadata, b.CreatedAt, b.InProgressAt, b.ExpiresAt, b.FinalizingAt, b.CompletedAt, b.FailedAt, b.ExpiredAt,
		b.CancellingAt, b.CancelledAt, b.Total, b.Completed, b.Failed, b.OutputBytes, b.ErrorBytes}
}

// batchBusyTimeout is how long a batch write waits for the writer actor's transaction: longer than the
// store's default, since a batch of large answers holds the lock for a while, and a progress write that
// gives up is only retried later.
const batchBusyTimeout = 30 * time.Second

// Batches is the Batch API's records in the cache database, through a connection of its own. Safe for
// concurrent use: calls take turns on the connection. Open the cache database with Open first (it
// creates and migrates the schema).
type Batches struct {
	path string
	log  *slog.Logger

	mu     sync.Mutex
	c      *sqlite3.Conn            // nil after a driver panic dropped it (the next call opens another) or Close
	stmts  map[string]*sqlite3.Stmt // prepared statements by SQL text
	closed bool
}

// OpenBatches opens a connection for the Batch API's records on the cache database at path, which Open
// has created and migrated.
func OpenBatches(path string, log *slog.Logger) (*Batches, error) {
	if log == nil {
		log = slog.Default()
	}
	b := &Batches{path: PathFromURL(path), log: log, stmts: map[string]*sqlite3.Stmt{}}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.open(); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *Batches) open() (err error) {
	defer catch(&err, b.path, "open")
	c, err := sqlite3.OpenFlags(b.path, sqlite3.OPEN_READWRITE)
	if err != nil {
		return fmt.Errorf("cannot open cache db %q for batches: %w", b.path, err)
	}
	if err := c.BusyTimeout(batchBusyTimeout); err != nil {
		_ = c.Close()
		return fmt.Errorf("cannot open cache db %q for batches: %w", b.path, err)
	}
	// As the writer's: the WAL makes a commit durable against a crash of the process (kill -9); against a
	// power loss, synchronous = NORMAL may lose the last commits, which a batch redoes.
	if err := c.Exec(`PRAGMA synchronous = NORMAL`); err != nil {
		_ = c.Close()
		return fmt.Errorf("cannot open cache db %q for batches: %w", b.path, err)
	}
	b.c = c
	return nil
}

// do runs fn on the connection, opening it again first after a driver panic dropped it. A driver panic in
// fn becomes its error and drops the connection (see guard.go).
func (b *Batches) do(op string, fn func() error) (err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return fmt.Errorf("cannot %s: %w", op, ErrClosed)
	}
	if b.c == nil {
		if err := b.open(); err != nil {
			return fmt.Errorf("cannot %s: %w", op, err)
		}
	}
	defer func() {
		if p := recover(); p != nil {
			err = driverPanic(p)
			b.log.Error("the SQLite driver panicked on the batches connection; the call failed, the connection is opened again on its next use",
				"db", b.path, "op", op, "err", err)
			quietly(func() { _ = b.closeConn() })
		}
		if err != nil {
			err = fmt.Errorf("cannot %s in cache db %q: %w", op, b.path, err)
		}
	}()
	return fn()
}

func (b *Batches) closeConn() error {
	if b.c == nil {
		return nil
	}
	var errs []error
	for _, st := range b.stmts {
		errs = append(errs, st.Close())
	}
	clear(b.stmts)
	errs = append(errs, b.c.Close())
	b.c = nil
	return errors.Join(errs...)
}

// Close closes the connection; later calls fail with ErrClosed.
func (b *Batches) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.closed = true
	if err := b.closeConn(); err != nil {
		return fmt.Errorf("cannot close the batches connection of cache db %q: %w", b.path, err)
	}
	return nil
}

// stmt returns the prepared statement for sql with args bound. Connection held.
func (b *Batches) stmt(sql string, args ...any) (*sqlite3.Stmt, error) {
	st := b.stmts[sql]
	if st == nil {
		var err error
		if st, _, err = b.c.Prepare(sql); err != nil {
			return nil, err
		}
		b.stmts[sql] = st
	}
	for i, a := range args {
		var err error
		switch v := a.(type) {
		case string:
			err = st.BindText(i+1, v)
		case int64:
			err = st.BindInt64(i+1, v)
		case int:
			err = st.BindInt64(i+1, int64(v))
		case []byte:
			if v == nil {
				err = st.BindNull(i + 1)
			} else {
				err = st.BindBlob(i+1, v)
			}
		default:
			err = fmt.Errorf("cannot bind a %T", a)
		}
		if err != nil {
			_ = st.Reset()
			return nil, err
		}
	}
	return st, nil
}

// exec runs sql and returns the rows it changed. Connection held.
func (b *Batches) exec(sql string, args ...any) (int64, error) {
	st, err := b.stmt(sql, args...)
	if err != nil {
		return 0, err
	}
	if err := st.Exec(); err != nil {
		return 0, err
	}
	return b.c.Changes(), nil
}

// query calls row for each row of sql. Connection held.
func (b *Batches) query(sql string, args []any, row func(st *sqlite3.Stmt)) error {
	st, err := b.stmt(sql, args...)
	if err != nil {
		return err
	}
	for st.Step() {
		row(st)
	}
	err = st.Err()
	// Reset ends the read transaction, which would otherwise keep checkpoints from finishing.
	if rerr := st.Reset(); err == nil {
		err = rerr
	}
	return err
}

// tx runs fn in one IMMEDIATE transaction, committed when fn returns nil. Connection held.
func (b *Batches) tx(fn func() error) (err error) {
	if err := b.c.Exec(`BEGIN IMMEDIATE`); err != nil {
		return err
	}
	defer func() {
		if p := recover(); p != nil {
			quietly(func() { _ = b.c.Exec(`ROLLBACK`) })
			panic(p)
		}
		if err == nil {
			err = b.c.Exec(`COMMIT`)
		}
		if err != nil && !b.c.GetAutocommit() {
			_ = b.c.Exec(`ROLLBACK`)
		}
	}()
	return fn()
}

// PutFile records a new file.
func (b *Batches) PutFile(f *FileRecord) error {
	return b.do("record a batch file", func() error {
		_, err := b.exec(`INSERT INTO batch_files (`+fileColumns+`) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)`, fileArgs(f)...)
		return err
	})
}

// File returns the file id; false when there is none.
func (b *Batches) File(id string) (f FileRecord, found bool, err error) {
	err = b.do("read a batch file", func() error {
		return b.query(`SELECT `+fileColumns+` FROM batch_files WHERE id = ?1`, []any{id}, func(st *sqlite3.Stmt) {
			f, found = scanFile(st), true
		})
	})
	return f, found, err
}

// Files lists owner's files, newest first (oldest first when asc), starting after the file named after
// ("" = from the start), at most limit of them; purpose, when not "", keeps only that purpose.
func (b *Batches) Files(owner, purpose, after string, asc bool, limit int) (out []FileRecord, err error) {
	sql := `SELECT ` + fileColumns + ` FROM batch_files WHERE owner = ?1 AND (?2 = '' OR purpose = ?2)
	AND seq < ifnull((SELECT seq FROM batch_files WHERE id = ?3), 9223372036854775807) ORDER BY seq DESC LIMIT ?4`
	if asc {
		sql = `SELECT ` + fileColumns + ` FROM batch_files WHERE owner = ?1 AND (?2 = '' OR purpose = ?2)
	AND seq > ifnull((SELECT seq FROM batch_files WHERE id = ?3), 0) ORDER BY seq LIMIT ?4`
	}
	err = b.do("list batch files", func() error {
		return b.query(sql, []any{owner, purpose, after, limit}, func(st *sqlite3.Stmt) { out = append(out, scanFile(st)) })
	})
	return out, err
}

// FilesBefore returns every owner's files created before at (unix ms), oldest first.
func (b *Batches) FilesBefore(at int64) (out []FileRecord, err error) {
	err = b.do("list batch files", func() error {
		return b.query(`SELECT `+fileColumns+` FROM batch_files WHERE created_at < ?1 ORDER BY seq`, []any{at},
			func(st *sqlite3.Stmt) { out = append(out, scanFile(st)) })
	})
	return out, err
}

// DeleteFile deletes the record of file id; false when there was none.
func (b *Batches) DeleteFile(id string) (deleted bool, err error) {
	err = b.do("delete a batch file", func() error {
		n, err := b.exec(`DELETE FROM batch_files WHERE id = ?1`, id)
		deleted = n > 0
		return err
	})
	return deleted, err
}

// PutBatch records a new batch.
func (b *Batches) PutBatch(r *BatchRecord) error {
	return b.do("record a batch", func() error {
		_, err := b.exec(`INSERT INTO batches (`+batchColumns+`) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12,
	?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21, ?22, ?23, ?24)`, batchArgs(r)...)
		return err
	})
}

// Batch returns the batch id; false when there is none.
func (b *Batches) Batch(id string) (r BatchRecord, found bool, err error) {
	err = b.do("read a batch", func() error {
		return b.query(`SELECT `+batchColumns+` FROM batches WHERE id = ?1`, []any{id}, func(st *sqlite3.Stmt) {
			r, found = scanBatch(st), true
		})
	})
	return r, found, err
}

// ListBatches lists owner's batches, newest first, starting after the batch named after ("" = from the
// newest), at most limit of them.
func (b *Batches) ListBatches(owner, after string, limit int) (out []BatchRecord, err error) {
	err = b.do("list batches", func() error {
		return b.query(`SELECT `+batchColumns+` FROM batches WHERE owner = ?1
	AND seq < ifnull((SELECT seq FROM batches WHERE id = ?2), 9223372036854775807) ORDER BY seq DESC LIMIT ?3`,
			[]any{owner, after, limit}, func(st *sqlite3.Stmt) { out = append(out, scanBatch(st)) })
	})
	return out, err
}

// BatchesIn returns every batch whose status is one of statuses, oldest first.
func (b *Batches) BatchesIn(statuses ...string) (out []BatchRecord, err error) {
	err = b.do("list batches", func() error {
		return b.query(`SELECT `+batchColumns+` FROM batches WHERE status IN (`+placeholders(1, len(statuses))+`) ORDER BY seq`,
			anys(statuses), func(st *sqlite3.Stmt) { out = append(out, scanBatch(st)) })
	})
	return out, err
}

// UpdateBatch writes every field of r, and puts files, in one transaction, when r's batch is in one of the
// statuses from; it reports whether it was (nothing is written otherwise). A status change decided by two
// parties at once (a cancel, the end of the run) goes to the first.
func (b *Batches) UpdateBatch(r *BatchRecord, files []FileRecord, from ...string) (updated bool, err error) {
	err = b.do("update a batch", func() error {
		return b.tx(func() error {
			args := append(batchArgs(r)[1:], r.ID)
			args = append(args, anys(from)...)
			n, err := b.exec(`UPDATE batches SET owner = ?1, endpoint = ?2, input_file_id = ?3, completion_window = ?4,
	status = ?5, output_file_id = ?6, error_file_id = ?7, errors = ?8, metadata = ?9, created_at = ?10, in_progress_at = ?11,
	expires_at = ?12, finalizing_at = ?13, completed_at = ?14, failed_at = ?15, expired_at = ?16, cancelling_at = ?17,
	cancelled_at = ?18, total = ?19, completed = ?20, failed = ?21, output_bytes = ?22, error_bytes = ?23
	WHERE id = ?24 AND status IN (`+placeholders(25, len(from))+`)`, args...)
			if err != nil || n == 0 {
				return err
			}
			updated = true
			for i := range files {
				if _, err := b.exec(`INSERT INTO batch_files (`+fileColumns+`) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)`, fileArgs(&files[i])...); err != nil {
					return err
				}
			}
			return nil
		})
	})
	return updated, err
}

// Transition sets the status of batch id to to, and its time column at (a column named after the status,
// "cancelling_at" say), when its status is one of from; it reports whether it was. It changes nothing
// else, so that it never undoes the progress its run records meanwhile.
func (b *Batches) Transition(id, to, column string, at int64, from ...string) (changed bool, err error) {
	switch column {
	case "in_progress_at", "finalizing_at", "completed_at", "failed_at", "expired_at", "cancelling_at", "cancelled_at":
	default:
		return false, fmt.Errorf("cannot update a batch: %q is not a time column", column)
	}
	err = b.do("update a batch", func() error {
		n, err := b.exec(`UPDATE batches SET status = ?2, `+column+` = ?3 WHERE id = ?1 AND status IN (`+placeholders(4, len(from))+`)`,
			append([]any{id, to, at}, anys(from)...)...)
		changed = n > 0
		return err
	})
	return changed, err
}

// Progress records how far batch id has come: its request counts and the bytes of its output and error
// files they cover.
func (b *Batches) Progress(id string, completed, failed, outputBytes, errorBytes int64) error {
	return b.do("record a batch's progress", func() error {
		_, err := b.exec(`UPDATE batches SET completed = ?2, failed = ?3, output_bytes = ?4, error_bytes = ?5 WHERE id = ?1`,
			id, completed, failed, outputBytes, errorBytes)
		return err
	})
}

// DeleteBatch deletes the record of batch id.
func (b *Batches) DeleteBatch(id string) error {
	return b.do("delete a batch", func() error {
		_, err := b.exec(`DELETE FROM batches WHERE id = ?1`, id)
		return err
	})
}

// FileInUse returns the id of a batch in one of statuses that reads file id, "" when none does.
func (b *Batches) FileInUse(id string, statuses ...string) (batch string, err error) {
	err = b.do("read batches", func() error {
		return b.query(`SELECT id FROM batches WHERE input_file_id = ?1 AND status IN (`+placeholders(2, len(statuses))+`) LIMIT 1`,
			append([]any{id}, anys(statuses)...), func(st *sqlite3.Stmt) { batch = st.ColumnText(0) })
	})
	return batch, err
}

// StatusCounts counts the batches by status.
func (b *Batches) StatusCounts() (counts map[string]int64, err error) {
	counts = map[string]int64{}
	err = b.do("count batches", func() error {
		return b.query(`SELECT status, count(*) FROM batches GROUP BY status`, nil, func(st *sqlite3.Stmt) {
			counts[st.ColumnText(0)] = st.ColumnInt64(1)
		})
	})
	return counts, err
}

// placeholders is "?first, ?first+1, ..." n times; "NULL" for none, which IN matches nothing.
func placeholders(first, n int) string {
	if n == 0 {
		return "NULL"
	}
	var sb strings.Builder
	for i := range n {
		if i > 0 {
			sb.WriteString(", ")
		}
		fmt.Fprintf(&sb, "?%d", first+i)
	}
	return sb.String()
}

func anys(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// ReadBatches calls fn for every batch in the cache database at path, newest first, through a read-only
// connection of its own: it never creates, migrates or writes anything, so it may run beside a proxy
// serving the same file. A database from before the Batch API has none.
func ReadBatches(path string, fn func(r *BatchRecord)) (err error) {
	path = PathFromURL(path)
	defer catch(&err, path, "read batches of")
	c, err := openRead(path, DefaultBusyTimeout)
	if err != nil {
		return fmt.Errorf("cannot open cache db %q: %w", path, err)
	}
	defer c.Close()
	if err := checkSchema(c, path); err != nil {
		return fmt.Errorf("cannot open cache db %q: %w", path, err)
	}
	has, _, err := c.Prepare(`SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'batches'`)
	if err != nil {
		return fmt.Errorf("cannot read batches of cache db %q: %w", path, err)
	}
	exists := has.Step()
	if err := errors.Join(has.Err(), has.Close()); err != nil {
		return fmt.Errorf("cannot read batches of cache db %q: %w", path, err)
	}
	if !exists {
		return nil
	}
	st, _, err := c.Prepare(`SELECT ` + batchColumns + ` FROM batches ORDER BY seq DESC`)
	if err != nil {
		return fmt.Errorf("cannot read batches of cache db %q: %w", path, err)
	}
	defer st.Close()
	for st.Step() {
		r := scanBatch(st)
		fn(&r)
	}
	if err := st.Err(); err != nil {
		return fmt.Errorf("cannot read batches of cache db %q: %w", path, err)
	}
	return nil
}
