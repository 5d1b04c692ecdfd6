package actors

import (
	"math/rand"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"llmcache/db"
)

// TestWriterAccountsForEveryAnswerUnderStress: answers put from many goroutines, mixed with hit counts,
// FlushSoon and Flush, while writes fail and recover at random and max_pending_bytes forces drops: every
// answer ends written or counted as dropped, never both and never neither, the rows on disk are the ones
// counted written, and nothing is left pending.
func TestWriterAccountsForEveryAnswerUnderStress(t *testing.T) {
	s := openStore(t)
	w := NewWriter(s, WriterConfig{BatchSize: 7, FlushInterval: time.Millisecond, RetryInterval: time.Millisecond,
		MaxPendingBytes: 40 * 100, QueueSize: 64}, quiet())
	defer w.Stop()
	const putters, each = 8, 250
	stopFlapping := s.flap(1, 3)
	var flushErrors atomic.Int64
	var wg sync.WaitGroup
	for g := range putters {
		wg.Go(func() {
			r := rand.New(rand.NewSource(int64(g)))
			for i := g * each; i < (g+1)*each; i++ {
				w.Put(sized(i, 100))
				switch r.Intn(20) {
				case 0:
					w.TryTouch([]db.Touch{{Key: entry(i).Key, Hits: 1, At: time.Now().UnixMilli()}})
				case 1:
					w.FlushSoon()
				case 2:
					if w.Flush() != nil {
						flushErrors.Add(1)
					}
				}
			}
		})
	}
	wg.Wait()
	stopFlapping()
	if err := w.Flush(); err != nil {
		t.Fatalf("Flush once writes work: %v", err)
	}
	st := w.Stats()
	if st.Written+st.Dropped != putters*each || st.Pending != 0 || st.PendingBytes != 0 || st.QueueDepth != 0 {
		t.Fatalf("%+v: want %d answers written or dropped, none pending", st, putters*each)
	}
	if n := int64(onDisk(t, s, putters*each)); n != st.Written {
		t.Fatalf("%d answers on disk, %d counted written", n, st.Written)
	}
	t.Logf("written %d, dropped %d, failed writes %d, failed flushes %d", st.Written, st.Dropped, st.Failures, flushErrors.Load())
}
