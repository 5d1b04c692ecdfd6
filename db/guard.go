package db

import (
	"errors"
	"fmt"

	"github.com/ncruces/go-sqlite3"
)

// The SQLite driver panics where C code would return an error: on every SQLITE_NOMEM (an answer too large
// for a connection's memory, which the driver caps) and on failures of its own allocator; a Go callback
// that panics inside SQLite unwinds through it too. The store turns every such panic into the error of the
// call that met it, so that no SQLite failure takes the process down: the writer keeps its batch and
// retries, a reader's miss is served from the upstream. Each one is counted (Stats.DriverPanics) and
// logged.
//
// After SQLITE_NOMEM the connection is intact (SQLite cleans up and reports the error; only the driver
// panics): what the call began is rolled back and the connection kept. After any other panic SQLite may
// have been left half-way through a call, so the connection is dropped (best effort: closing it may fail
// too) and a new one is opened on its next use.

// ErrDriverPanic matches (with errors.Is) the error of a call during which the SQLite driver panicked.
var ErrDriverPanic = errors.New("the SQLite driver panicked")

// driverOOM is the message of the value the driver panics with on SQLITE_NOMEM (its type is internal).
const driverOOM = "sqlite3: out of memory"

// driverPanic is the error a recovered panic value becomes.
func driverPanic(p any) error {
	if e, ok := p.(error); ok {
		return fmt.Errorf("%w: %w", ErrDriverPanic, e)
	}
	return fmt.Errorf("%w: %v", ErrDriverPanic, p)
}

func isOOM(p any) bool {
	e, ok := p.(error)
	return ok && e.Error() == driverOOM
}

// quietly runs fn, ignoring a panic: for clean-up on a connection that already failed (sqlite3_reset
// reports the statement's last error again, which the driver turns into the same panic).
func quietly(fn func()) {
	defer func() { _ = recover() }()
	fn()
}

// catch turns a driver panic into *errp, for calls on a connection of their own that the caller closes
// (Open, exports, counts). Deferred first, so that it runs after the caller's other deferred calls.
func catch(errp *error, path, op string) {
	if p := recover(); p != nil {
		*errp = fmt.Errorf("cannot %s cache db %q: %w", op, path, driverPanic(p))
	}
}

// guard turns a driver panic during a writer method into the method's error (see caught). Every writer
// method defers it first, so that it runs last.
func (s *SQLite) guard(errp *error, op string) {
	if p := recover(); p != nil {
		*errp = fmt.Errorf("cannot %s cache db %q: %w", op, s.path, s.caught(p, op))
	}
}

// caught deals with a driver panic on the writer connection: it rolls back what the call began and keeps
// the connection after SQLITE_NOMEM, and drops the connection otherwise. Writer actor only.
func (s *SQLite) caught(p any, op string) error {
	err := driverPanic(p)
	s.panics.Add(1)
	if isOOM(p) {
		quietly(func() {
			if s.w != nil && !s.w.GetAutocommit() {
				_ = s.rollback.Exec()
			}
		})
		s.log.Error("the SQLite driver ran out of memory; the call failed, the connection is kept", "db", s.path, "op", op, "err", err)
		return err
	}
	quietly(func() { _ = s.closeWriter() })
	s.forgetWriter()
	s.broken = true
	s.log.Error("the SQLite driver panicked; the call failed, the writer connection is dropped and opened again on its next use",
		"db", s.path, "op", op, "err", err)
	return err
}

// writer makes sure the writer connection is open: after a panic dropped it, it opens a new one. It
// returns ErrClosed after Close, and on a store opened read-only. Writer actor only.
func (s *SQLite) writer() error {
	if s.w != nil {
		return nil
	}
	if !s.broken || s.closed.Load() {
		return ErrClosed
	}
	c, err := sqlite3.OpenFlags(s.path, sqlite3.OPEN_READWRITE)
	if err != nil {
		return fmt.Errorf("cannot open the writer connection again: %w", err)
	}
	s.w = c
	err = func() (err error) {
		defer catch(&err, s.path, "open")
		return s.init(s.log)
	}()
	if err != nil {
		quietly(func() { _ = s.closeWriter() })
		s.forgetWriter()
		return fmt.Errorf("cannot open the writer connection again: %w", err)
	}
	s.broken = false
	s.log.Warn("opened the cache db's writer connection again after a driver panic", "db", s.path)
	return nil
}

// forgetWriter drops every reference to the writer connection, after closing it (which may have failed
// half-way).
func (s *SQLite) forgetWriter() {
	s.w, s.begin, s.commit, s.rollback, s.delKey, s.put, s.label, s.setHits, s.touch, s.putID = nil, nil, nil, nil, nil, nil, nil, nil, nil, nil
	clear(s.deletes)
	clear(s.labels)
}
