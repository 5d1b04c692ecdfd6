package db

import (
	"os"
	"testing"
	"time"
)

// TestCheckpointsRunBesideTheWriter: once enough pages wait in the WAL, they are copied into the database
// file without the writer doing anything more (it commits well below its own checkpoint's threshold).
func TestCheckpointsRunBesideTheWriter(t *testing.T) {
	s := openTest(t)
	size := func() int64 {
		fi, err := os.Stat(s.path)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	before := size()
	page := queryInt(t, s, `PRAGMA page_size`)
	// Rows of ~4 KB until the WAL is past walCheckpointerPages, which must leave it below
	// walAutoCheckpointPages: the writer itself never checkpoints here.
	for i := 0; walBytes(t, s) <= walCheckpointerPages*page; i += 100 {
		b := &Batch{}
		for j := i; j < i+100; j++ {
			e := entryOf(j)
			e.Body = bodyOf(j, 4<<10)
			b.Puts = append(b.Puts, e)
		}
		mustWrite(t, s, b)
	}
	if w := walBytes(t, s); w > walAutoCheckpointPages*page {
		t.Fatalf("WAL of %d bytes: the test needs it between the two thresholds", w)
	}
	for deadline := time.Now().Add(20 * time.Second); size() < before+8<<20; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the database file is %d bytes (was %d): the WAL was not checkpointed", size(), before)
		}
	}
}
