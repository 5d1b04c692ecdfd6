package pipeline

import (
	"sync"
	"time"

	"llmcache/db"
)

// touchFlushInterval is how often counted hits go to the writer. Counting here and handing over a batch keeps
// the hit path free of a channel send per hit.
const touchFlushInterval = time.Second

// touchLog counts hits per key (hit_count and last_hit_at in the store) until its goroutine hands them to
// the writer. Hits are counted inline by the request that hit, under the lock of one of a few shards.
type touchLog struct {
	shards [8]touchShard
	writer Writer
	quit   chan struct{}
	wg     sync.WaitGroup
	drops  *counters // touchDrops counts batches the writer had no room for
}

type touchShard struct {
	mu      sync.Mutex
	pending map[Key]db.Touch // guarded by mu
	_       [48]byte         // keeps neighbouring shards' locks off one cache line
}

func newTouchLog(w Writer, stats *counters) *touchLog {
	t := &touchLog{writer: w, quit: make(chan struct{}), drops: stats}
	for i := range t.shards {
		t.shards[i].pending = make(map[Key]db.Touch)
	}
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		tick := time.NewTicker(touchFlushInterval)
		defer tick.Stop()
		for {
			select {
			case <-tick.C:
				t.flush()
			case <-t.quit:
				t.flush()
				return
			}
		}
	}()
	return t
}

// add counts one hit on k at now (unix ms).
func (t *touchLog) add(k *Key, now int64) {
	s := &t.shards[k[2]%uint8(len(t.shards))]
	s.mu.Lock()
	v := s.pending[*k]
	v.Key = *k
	v.Hits++
	v.At = now
	s.pending[*k] = v
	s.mu.Unlock()
}

// flush offers the counts to the writer without waiting: a hit must never wait on disk. If the writer is busy
// the counts stay and go with the next flush.
func (t *touchLog) flush() {
	var batch []db.Touch
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for _, v := range s.pending {
			batch = append(batch, v)
		}
		s.mu.Unlock()
	}
	if len(batch) == 0 {
		return
	}
	if !t.writer.TryTouch(batch) {
		t.drops.touchDrops.Add(1)
		return
	}
	// Only what was handed over is cleared: hits counted meanwhile stay for the next flush.
	for _, v := range batch {
		s := &t.shards[v.Key[2]%uint8(len(t.shards))]
		s.mu.Lock()
		if cur, ok := s.pending[v.Key]; ok {
			if cur.Hits == v.Hits {
				delete(s.pending, v.Key)
			} else {
				cur.Hits -= v.Hits
				s.pending[v.Key] = cur
			}
		}
		s.mu.Unlock()
	}
}

// stop hands over what is counted and ends the goroutine.
func (t *touchLog) stop() {
	close(t.quit)
	t.wg.Wait()
}
