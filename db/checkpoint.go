package db

import (
	"context"
	"runtime/pprof"
	"sync"

	"github.com/ncruces/go-sqlite3"
)

// Checkpoints off the writer. A checkpoint copies the pages the WAL holds into the database file; run by
// the writer's connection after a commit (SQLite's automatic checkpoint) it took ~13% of the writer's time
// under load, time in which no answer was written. A goroutine of the store with a connection of its own
// does it instead, beside the writer's transactions (WAL lets a checkpoint run while a writer appends):
// the writer's WAL hook wakes it once walCheckpointerPages pages wait.
//
// The WAL file only starts over from its beginning when a writer begins a transaction and finds every
// frame copied, which a checkpoint running beside a busy writer rarely leaves it. So the writer still
// checkpoints itself once the WAL holds walAutoCheckpointPages: by then the checkpointer has copied
// nearly all of it, the writer copies the rest, and the next transaction starts the WAL over. The WAL
// stays bounded under sustained load, as it was.
//
// Checkpoints here are PASSIVE: they never wait for readers or the writer, and copy what they can.
//
// Measured (BenchmarkWriter, four alternating runs of two binaries on a shared, loaded machine): the writer
// fed compressed answers against the bare insert of the same rows, 1.04x / 1.06x / 0.87x / 1.14x with the
// checkpointer, 0.69x / 1.21x / 0.88x / 0.68x without; the spread between runs is larger than the gain.

// walCheckpointerPages is how many WAL pages (24 MB of 8 KiB pages) wake the checkpointer. A checkpoint
// copies each page once however many frames of it the WAL holds, and each stored answer dirties a leaf of
// the key's index at random: the longer between checkpoints, the more of those leaves were written more
// than once. Measured with bench/misses.sh's load (wrk, every request a miss stored; two builds in
// alternating rounds over three runs, databases of ~100,000 answers): CPU a miss 173.8 µs on average with
// 1,000 pages, 160.0 µs with 3,000 (lower in 9 of 11 pairs); 2,000 pages was not clearly better than 1,000.
// The writer's own checkpoint (walAutoCheckpointPages) stays 1,000 pages further on, by when the
// checkpointer has copied most of the WAL.
const walCheckpointerPages = 3000

type checkpointer struct {
	// mu is held for each of its checkpoints: a checkpoint the store is asked for (Checkpoint) takes it too,
	// because SQLite answers "database is locked" at once, without a busy wait, to a checkpoint that finds
	// another connection's under way.
	mu   sync.Mutex
	c    *sqlite3.Conn
	kick chan struct{} // capacity 1: a checkpoint is wanted
	quit chan struct{}
	wg   sync.WaitGroup
}

// startCheckpointer opens the checkpointer's connection and starts its goroutine; Close stops it.
func (s *SQLite) startCheckpointer() error {
	c, err := sqlite3.OpenFlags(s.path, sqlite3.OPEN_READWRITE)
	if err != nil {
		return err
	}
	// A connection learns that the database is in WAL mode when it first reads it; until then a checkpoint
	// on it does nothing (and says nothing).
	if err := c.Exec(`PRAGMA schema_version`); err != nil {
		_ = c.Close()
		return err
	}
	cp := &checkpointer{c: c, kick: make(chan struct{}, 1), quit: make(chan struct{})}
	cp.wg.Add(1)
	go func() {
		defer cp.wg.Done()
		pprof.SetGoroutineLabels(pprof.WithLabels(context.Background(), pprof.Labels("stage", "checkpoint")))
		for {
			select {
			case <-cp.quit:
				return
			case <-cp.kick:
				cp.mu.Lock()
				s.checkpointPassive(c)
				cp.mu.Unlock()
			}
		}
	}()
	s.ckpt = cp
	return nil
}

// checkpointPassive runs one PASSIVE checkpoint on c; a failure is logged, and the next one tries again
// (the writer's own checkpoint bounds the WAL meanwhile).
func (s *SQLite) checkpointPassive(c *sqlite3.Conn) {
	defer func() {
		if p := recover(); p != nil {
			s.panics.Add(1)
			s.log.Error("the SQLite driver panicked in a background checkpoint", "db", s.path, "err", driverPanic(p))
		}
	}()
	if _, _, err := c.WALCheckpoint("main", sqlite3.CHECKPOINT_PASSIVE); err != nil {
		s.log.Warn("background checkpoint failed; the writer's own checkpoints keep the WAL bounded", "db", s.path, "err", err)
	}
}

// walHook runs on the writer's connection after each commit, with the pages in the WAL: it wakes the
// checkpointer, or checkpoints itself once the WAL has grown to walAutoCheckpointPages (see above). It
// replaces SQLite's automatic checkpoint on that connection.
func (s *SQLite) walHook(c *sqlite3.Conn, schema string, pages int) error {
	switch {
	case pages >= walAutoCheckpointPages || s.ckpt == nil:
		if pages >= walAutoCheckpointPages {
			_, _, _ = c.WALCheckpoint(schema, sqlite3.CHECKPOINT_PASSIVE) // busy (the checkpointer at work): the next commit tries again
		}
	case pages >= walCheckpointerPages:
		select {
		case s.ckpt.kick <- struct{}{}:
		default: // one is wanted already
		}
	}
	return nil
}

// stopCheckpointer stops the goroutine and closes its connection.
func (s *SQLite) stopCheckpointer() error {
	if s.ckpt == nil {
		return nil
	}
	close(s.ckpt.quit)
	s.ckpt.wg.Wait()
	err := s.ckpt.c.Close()
	s.ckpt = nil
	return err
}
