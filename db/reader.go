package db

import (
	"bytes"
	"fmt"
	"time"

	"github.com/ncruces/go-sqlite3"
)

// openRead opens a read-only connection. The writer connection created the
// database in WAL mode (and keeps -wal/-shm around while open), so readers
// run concurrently with it.
func openRead(path string, busyTimeout time.Duration) (*sqlite3.Conn, error) {
	c, err := sqlite3.OpenFlags(path, sqlite3.OPEN_READONLY)
	if err != nil {
		return nil, err
	}
	if err := c.BusyTimeout(busyTimeout); err != nil {
		_ = c.Close()
		return nil, err
	}
	return c, nil
}

// sqliteReader is one read connection with its prepared lookup.
type sqliteReader struct {
	s    *SQLite // for its path, busy timeout, log and panic count
	path string
	c    *sqlite3.Conn
	get  *sqlite3.Stmt
	byID *sqlite3.Stmt // sqlResponseKey, prepared on first use: a store at an older schema has no response_ids
	// broken: a driver panic dropped the connection (c is nil); the next Get opens a new one.
	broken bool
}

// OpenReader opens a read connection for one miss-pool worker. Safe to call
// from any goroutine; the Reader itself is not safe for concurrent use.
func (s *SQLite) OpenReader() (Reader, error) {
	r := &sqliteReader{s: s, path: s.path}
	if err := r.open(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *sqliteReader) open() (err error) {
	defer catch(&err, r.path, "open reader on")
	if r.s.closed.Load() {
		return fmt.Errorf("cannot open reader on cache db %q: %w", r.path, ErrClosed)
	}
	c, err := openRead(r.path, r.s.busyTimeout)
	if err != nil {
		return fmt.Errorf("cannot open reader on cache db %q: %w", r.path, err)
	}
	st, _, err := c.Prepare(sqlGet)
	if err != nil {
		_ = c.Close()
		return fmt.Errorf("cannot open reader on cache db %q: %w", r.path, err)
	}
	r.c, r.get = c, st
	return nil
}

// caught deals with a driver panic during Get: after SQLITE_NOMEM it resets the statement (ending its read
// transaction) and keeps the connection; after any other panic it drops the connection, and the next Get
// opens a new one.
func (r *sqliteReader) caught(p any) error {
	err := driverPanic(p)
	r.s.panics.Add(1)
	if isOOM(p) {
		quietly(func() { _ = r.get.Reset() })
		if r.byID != nil {
			quietly(func() { _ = r.byID.Reset() })
		}
		r.s.log.Error("the SQLite driver ran out of memory reading an entry; served as a miss, the connection is kept", "db", r.path, "err", err)
		return err
	}
	quietly(func() { _ = r.get.Close() })
	if r.byID != nil {
		quietly(func() { _ = r.byID.Close() })
	}
	quietly(func() { _ = r.c.Close() })
	r.c, r.get, r.byID, r.broken = nil, nil, nil, true
	r.s.log.Error("the SQLite driver panicked reading an entry; served as a miss, the read connection is opened again on its next use",
		"db", r.path, "err", err)
	return err
}

// Get implements Reader. In steady state it allocates only to grow e.Body
// and to replace text fields whose value changed. A driver panic becomes its
// error (see caught).
func (r *sqliteReader) Get(key *Key, e *Entry) (found bool, err error) {
	if err := r.ready(); err != nil {
		return false, err
	}
	defer func() {
		if p := recover(); p != nil {
			found, err = false, fmt.Errorf("cannot read cache db %q: %w", r.path, r.caught(p))
		}
	}()
	st := r.get
	if err := st.BindBlob(1, key[:]); err != nil {
		return false, fmt.Errorf("cannot read cache db %q: %w", r.path, err)
	}
	if !st.Step() {
		// Reset ends the read transaction and reports Step's error, if any.
		if err := st.Reset(); err != nil {
			return false, fmt.Errorf("cannot read cache db %q: %w", r.path, err)
		}
		return false, nil
	}
	e.Key = *key
	encoding := st.ColumnInt64(12)
	switch n := st.ColumnInt64(1); {
	case n > largeBody:
		e.Body, err = readLargeBody(r.c, st.ColumnInt64(2), n, e.Body)
		if err == nil && encoding != encodingIdentity {
			e.Body, err = r.s.decode(r.c, key, encoding, bytes.Clone(e.Body), e.Body)
		}
	case encoding != encodingIdentity:
		// Decoded straight from SQLite's copy of the row: valid until the statement moves on.
		e.Body, err = r.s.decode(r.c, key, encoding, st.ColumnRawBlob(0), e.Body)
	default:
		e.Body = append(e.Body[:0], st.ColumnRawBlob(0)...)
	}
	setString(&e.ContentType, st.ColumnRawText(3))
	setString(&e.Kind, st.ColumnRawText(4))
	setString(&e.Namespace, st.ColumnRawText(5))
	setString(&e.Model, st.ColumnRawText(6))
	setString(&e.Endpoint, st.ColumnRawText(7))
	setString(&e.UpstreamModel, st.ColumnRawText(8))
	e.Version = st.ColumnInt64(9)
	e.CreatedAt = st.ColumnInt64(10)
	e.LastHitAt, e.HitCount = 0, 0 // not read (sqlGet)
	e.ExpiresAt = st.ColumnInt64(11)
	e.Encoded, e.Encoding = nil, 0
	if err == nil {
		err = st.Err() // e.g. out of memory while reading a column
	}
	// Always reset: a statement left stepping holds a read snapshot, which
	// would keep checkpoints from finishing.
	if rerr := st.Reset(); err == nil {
		err = rerr
	}
	if err != nil {
		return false, fmt.Errorf("cannot read cache db %q: %w", r.path, err)
	}
	return true, nil
}

// ready opens the connection again after a driver panic dropped it; ErrClosed after Close.
func (r *sqliteReader) ready() error {
	if r.get != nil {
		return nil
	}
	if !r.broken {
		return fmt.Errorf("cannot read cache db %q: %w", r.path, ErrClosed)
	}
	if err := r.open(); err != nil {
		return err
	}
	r.broken = false
	return nil
}

// sqlResponseKey finds the key of the newest entry of a namespace that holds the response with an id.
const sqlResponseKey = `SELECT r.key FROM response_ids r JOIN entries e ON e.key = r.key JOIN labels l ON l.id = e.label
WHERE r.id = ?1 AND l.namespace = ?2 ORDER BY e.created_at DESC LIMIT 1`

// GetResponse implements Reader: the key from the response_ids index, then Get.
func (r *sqliteReader) GetResponse(id, namespace string, e *Entry) (found bool, err error) {
	if err := r.ready(); err != nil {
		return false, err
	}
	var key Key
	err = func() (err error) {
		defer func() {
			if p := recover(); p != nil {
				found, err = false, fmt.Errorf("cannot read cache db %q: %w", r.path, r.caught(p))
			}
		}()
		if r.byID == nil {
			st, _, err := r.c.Prepare(sqlResponseKey)
			if err != nil {
				return fmt.Errorf("cannot read cache db %q: %w", r.path, err)
			}
			r.byID = st
		}
		st := r.byID
		if err := st.BindText(1, id); err != nil {
			return fmt.Errorf("cannot read cache db %q: %w", r.path, err)
		}
		if err := st.BindText(2, namespace); err != nil {
			return fmt.Errorf("cannot read cache db %q: %w", r.path, err)
		}
		found = st.Step()
		if found {
			copy(key[:], st.ColumnRawBlob(0))
		}
		// Reset ends the read transaction and reports Step's error, if any.
		if err := st.Reset(); err != nil {
			return fmt.Errorf("cannot read cache db %q: %w", r.path, err)
		}
		return nil
	}()
	if err != nil || !found {
		return false, err
	}
	return r.Get(&key, e)
}

// setString sets *dst to b, without allocating when the value is unchanged.
func setString(dst *string, b []byte) {
	if *dst != string(b) {
		*dst = string(b)
	}
}

// Close implements Reader.
func (r *sqliteReader) Close() error {
	r.broken = false // a closed reader stays closed
	if r.c == nil {
		return nil
	}
	err := r.get.Close()
	if r.byID != nil {
		if cerr := r.byID.Close(); err == nil {
			err = cerr
		}
	}
	if cerr := r.c.Close(); err == nil {
		err = cerr
	}
	r.c, r.get, r.byID = nil, nil, nil
	if err != nil {
		return fmt.Errorf("cannot close reader on cache db %q: %w", r.path, err)
	}
	return nil
}
