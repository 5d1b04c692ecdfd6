package actors

import (
	"testing"
	"time"
)

// TestWriterSizeTriggerWorksAgainAfterARecoveredWrite: once a write has succeeded after a failed one, writes
// work again, and a full batch is written at once: it does not wait out the retry pause of the failure
// before (an hour here, as the flush interval is, so that only the size trigger can write it).
func TestWriterSizeTriggerWorksAgainAfterARecoveredWrite(t *testing.T) {
	s := openStore(t)
	s.fail.Store(true)
	w := NewWriter(s, WriterConfig{BatchSize: 2, FlushInterval: time.Hour, RetryInterval: time.Hour}, quiet())
	defer w.Stop()
	w.Put(entry(0))
	w.Put(entry(1))
	waitUntil(t, "the first write to fail", func() bool { return w.Stats().Failures == 1 })
	s.fail.Store(false)
	if err := w.Flush(); err != nil { // an admin delete or the idle flush: its write succeeds
		t.Fatal(err)
	}
	w.Put(entry(2))
	w.Put(entry(3))
	waitUntil(t, "a full batch to be written once writes work", func() bool { return w.Stats().Written == 4 })
	if n := onDisk(t, s, 4); n != 4 {
		t.Fatalf("%d of 4 answers on disk", n)
	}
}

// TestWriterBytesTriggerWorksAgainAfterARecoveredWrite: the same for half of max_pending_bytes, which also
// keeps memory bounded while writes work (nothing is shed then).
func TestWriterBytesTriggerWorksAgainAfterARecoveredWrite(t *testing.T) {
	s := openStore(t)
	s.fail.Store(true)
	w := NewWriter(s, WriterConfig{BatchSize: 1000, FlushInterval: time.Hour, RetryInterval: time.Hour, MaxPendingBytes: 1000}, quiet())
	defer w.Stop()
	for i := range 5 {
		w.Put(sized(i, 100))
	}
	waitUntil(t, "the first write to fail", func() bool { return w.Stats().Failures == 1 })
	s.fail.Store(false)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	for i := 5; i < 10; i++ {
		w.Put(sized(i, 100))
	}
	waitUntil(t, "half of max_pending_bytes to be written once writes work", func() bool { return w.Stats().Written == 10 })
	if st := w.Stats(); st.Dropped != 0 || st.PendingBytes != 0 {
		t.Fatalf("%+v: want nothing dropped or pending", st)
	}
}

// TestWriterFailedStopLeavesNothingPending: a stop that gives up answers counts them dropped and no longer
// pending, in answers and in bytes.
func TestWriterFailedStopLeavesNothingPending(t *testing.T) {
	s := openStore(t)
	s.fail.Store(true)
	w := NewWriter(s, WriterConfig{BatchSize: 1000, FlushInterval: time.Hour}, quiet())
	for i := range 3 {
		w.Put(sized(i, 100))
	}
	if err := w.Stop(); err == nil {
		t.Fatal("Stop on a failing store returned no error")
	}
	if st := w.Stats(); st.Dropped != 3 || st.DroppedBytes != 300 || st.Pending != 0 || st.PendingBytes != 0 || st.QueueDepth != 0 {
		t.Fatalf("%+v: want 3 answers (300 bytes) dropped and nothing pending", st)
	}
}
