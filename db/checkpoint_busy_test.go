package db

import "testing"

// TestCheckpointBesideTheBackgroundOne: a checkpoint asked of the store (idle flush, the writer's stop,
// `llmcache vacuum`) while the background checkpointer copies the WAL waits for it instead of failing with
// "database is locked" (SQLite never waits for another connection's checkpoint by itself).
func TestCheckpointBesideTheBackgroundOne(t *testing.T) {
	s := openTest(t)
	for i := range 10 {
		// Past walCheckpointerPages: the commit wakes the background checkpointer, which is then at work
		// while Checkpoint runs.
		e := entryOf(i)
		e.Body = bodyOf(i, 9<<20)
		mustWrite(t, s, &Batch{Puts: []*Entry{e}})
		if err := s.Checkpoint(); err != nil {
			t.Fatalf("checkpoint %d: %v", i, err)
		}
		if n := walBytes(t, s); n != 0 {
			t.Fatalf("WAL is %d bytes after checkpoint %d", n, i)
		}
	}
}
