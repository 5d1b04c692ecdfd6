package actors

import (
	"testing"
	"time"

	"llmcache/db"
)

// TestWriterFlushSoon: FlushSoon writes what waits without waiting for the batch to fill or the flush
// interval (an hour here) to pass, in one batch.
func TestWriterFlushSoon(t *testing.T) {
	s := openStore(t)
	w := NewWriter(s, WriterConfig{BatchSize: 1000, FlushInterval: time.Hour}, quiet())
	defer w.Stop()
	w.Put(entry(1))
	w.Put(entry(2))
	w.FlushSoon()
	deadline := time.Now().Add(20 * time.Second)
	for w.Stats().Written != 2 {
		if time.Now().After(deadline) {
			t.Fatalf("FlushSoon did not write what waited: %+v", w.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if st := w.Stats(); st.Batches != 1 || onDisk(t, s, 3) != 2 {
		t.Fatalf("after FlushSoon: %+v", st)
	}
}

// TestWriterFlushSoonWithAFullQueue: FlushSoon is not lost when the queue is full of hit counts (which do
// not wake the writer): the answer queued before them is written without waiting for the flush interval.
func TestWriterFlushSoonWithAFullQueue(t *testing.T) {
	s := openStore(t)
	w := NewWriter(s, WriterConfig{BatchSize: 1000, FlushInterval: time.Hour, QueueSize: 4}, quiet())
	defer w.Stop()
	w.Put(entry(1))
	waitUntil(t, "the writer to take the answer", func() bool { return w.Stats().QueueDepth == 0 })
	for w.TryTouch([]db.Touch{{Key: entry(1).Key, Hits: 1, At: 1}}) {
	}
	w.FlushSoon()
	waitUntil(t, "FlushSoon to write the answer", func() bool { return w.Stats().Written == 1 })
}
