package pipeline

import (
	"runtime"
	"strconv"
	"testing"
)

// TestKeyMemoBoundCountsEntries: the keying memo holds about its budget (16 shards of memoShardBytes) in
// all, whatever the size of the requests it remembers. It counted only their bodies: filled with short
// chat requests (~70 bytes), it held each one's entry too (~250 bytes more) and grew to ~80 MB.
func TestKeyMemoBoundCountsEntries(t *testing.T) {
	const budget = 16 * memoShardBytes
	heap := func() int64 {
		runtime.GC()
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		return int64(ms.HeapAlloc)
	}
	before := heap()
	m := newKeyMemo()
	const n = 400_000 // 28 MB of bodies: the memo empties each shard more than once
	for i := range n {
		r := &Request{Kind: KindChat, Body: []byte(`{"model":"m","messages":[{"role":"user","content":"Q` + strconv.Itoa(i) + `"}]}`)}
		r.Key[0] = byte(i)
		m.remember(r, m.sum(r), r.Controls)
	}
	grown := heap() - before
	runtime.KeepAlive(m)
	// A shard is emptied when the next entry would pass its share, so it holds at most its share; the map's
	// buckets, kept after a clear, come on top.
	if grown > budget*3/2 {
		t.Errorf("the memo holds %.1f MiB after %d short requests, want about its budget of %d MiB", float64(grown)/(1<<20), n, budget>>20)
	}
}
