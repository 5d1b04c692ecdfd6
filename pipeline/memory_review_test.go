package pipeline

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"llmcache/db"
)

// checkShards fails t unless every shard of m, quiet, holds what its budget allows, counts the bytes its
// entries and their counted replays hold, publishes what it holds, and links every entry it maps.
func checkShards(t *testing.T, m *memory) {
	t.Helper()
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.Lock()
		var bytes int64
		linked := 0
		for n := s.head.next; n != &s.head; n = n.next {
			linked++
			if s.entries[n.e.key] != n {
				t.Errorf("shard %d: a linked entry is not the one mapped", i)
			}
			var replays int64
			for r := range n.e.replays {
				b := n.e.replays[r].Load()
				if b != nil && !n.e.counted[r] {
					t.Errorf("shard %d: a held entry's replay is not counted", i)
				}
				if b != nil && n.e.counted[r] {
					replays += int64(cap(*b))
				}
			}
			if replays != n.e.replayBytes {
				t.Errorf("shard %d: an entry counts %d bytes of replays, holds %d", i, n.e.replayBytes, replays)
			}
			bytes += n.e.size + n.e.replayBytes
		}
		if linked != len(s.entries) {
			t.Errorf("shard %d: %d entries linked, %d mapped", i, linked, len(s.entries))
		}
		if bytes != s.bytes || len(s.entries) > s.maxItems || s.bytes > s.maxBytes {
			t.Errorf("shard %d: %d entries, %d bytes counted, %d held; budget %d entries, %d bytes", i, len(s.entries), s.bytes, bytes, s.maxItems, s.maxBytes)
		}
		if s.published.Load() != int64(len(s.entries)) || s.publishedBytes.Load() != s.bytes {
			t.Errorf("shard %d: published %d entries, %d bytes; holds %d, %d", i, s.published.Load(), s.publishedBytes.Load(), len(s.entries), s.bytes)
		}
		s.mu.Unlock()
	}
}

// TestReviewMemoryStress: gets (with replays kept as streamed hits keep them), fresh answers, entries read
// from the store, deletes and forgets, from several goroutines at once over a few keys and a small budget.
// Once quiet, every shard keeps its budget and publishes what it holds, and memory holds no entry the store
// does not hold as it is: a deleted or replaced answer never comes back.
func TestReviewMemoryStress(t *testing.T) {
	cfg := DefaultConfig()
	cfg.MemoryShards, cfg.MemoryMaxItems, cfg.MemoryMaxBytes = 2, 12, 2*3000
	m := newMemory(&cfg)
	store := newFakeStore()
	st := newStorer(fakeWriter{store}, m, nil)
	var clock sync.Mutex // hands out increasing creation times, so that a newer answer is always later
	tick := int64(1)
	next := func() int64 { clock.Lock(); defer clock.Unlock(); tick++; return tick }

	const keys, workers, ops = 24, 6, 4000
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			rd, _ := store.OpenReader()
			var read db.Entry
			for range ops {
				k := sketchKey(rng.IntN(keys))
				switch op := rng.IntN(20); {
				case op < 10: // a request: memory, else the store
					if e := m.get(&k, nowMillis()); e != nil {
						if rng.IntN(3) == 0 {
							b := make([]byte, 10+rng.IntN(400))
							if e.replays[rng.IntN(2)].CompareAndSwap(nil, &b) {
								m.keepReplay(e)
							}
						}
						continue
					}
					epoch := st.current()
					if found, _ := rd.Get(&k, &read); found {
						me := memEntryOf(k, &read)
						if rng.IntN(4) == 0 { // streamed: replayed before it is offered
							b := make([]byte, 10+rng.IntN(400))
							me.replays[0].Store(&b)
						}
						st.remember(me, epoch)
					}
				case op < 16: // a fresh answer
					body := fmt.Appendf(nil, "answer %d %s", next(), make([]byte, rng.IntN(600)))
					at := next()
					st.store(&db.Entry{Key: k, Body: body, CreatedAt: at},
						&memEntry{key: k, body: body, createdAt: at, size: int64(len(body)) + entryOverhead})
				case op < 19:
					if _, err := st.delete(db.Filter{Keys: []Key{k}}); err != nil {
						t.Error(err)
					}
				default:
					st.forget([]Key{k}, false)
				}
			}
		}()
	}
	wg.Wait()
	checkShards(t, m)
	for i := range m.shards {
		for k, n := range m.shards[i].entries {
			store.mu.Lock()
			got, ok := store.entries[k]
			store.mu.Unlock()
			if !ok || string(got.Body) != string(n.e.body) {
				t.Errorf("memory holds %.20q for a key the store holds as %.20q (held %v)", n.e.body, got.Body, ok)
			}
		}
	}
}

// TestReviewPromoteAfterADelete: an entry read before a delete is not offered to memory after it, though
// its key was asked for often enough to be admitted into a full shard.
func TestReviewPromoteAfterADelete(t *testing.T) {
	m := oneShard(2)
	st := newStorer(nil, m, nil)
	now := nowMillis()
	m.put(entryFor(0))
	m.put(entryFor(1))
	k := sketchKey(2)
	for range 5 {
		m.get(&k, now)
	}
	epoch := st.current()
	if _, err := st.delete(db.Filter{Keys: []Key{k}}); err != nil {
		t.Fatal(err)
	}
	st.remember(entryFor(2), epoch)
	if m.get(&k, now) != nil {
		t.Fatal("an entry read before a delete went into memory after it")
	}
	epoch = st.current()
	st.remember(entryFor(2), epoch)
	if m.get(&k, now) == nil {
		t.Fatal("an entry asked for five times was not admitted")
	}
}

// TestReviewPromoteKeepsANewerAnswer: an entry read from the store before a fresh answer for its key was
// put (a request with no-cache, answered while another request read the old one) does not replace that
// answer in memory, which the store holds too.
func TestReviewPromoteKeepsANewerAnswer(t *testing.T) {
	m := oneShard(4)
	old, fresh := entryFor(0), entryFor(0)
	old.body, old.createdAt = []byte("old"), 1000
	fresh.body, fresh.createdAt = []byte("fresh"), 2000
	m.put(fresh)
	m.promote(old)
	k := sketchKey(0)
	if e := m.get(&k, nowMillis()); e == nil || string(e.body) != "fresh" {
		t.Fatalf("memory serves %q after an older entry read from the store was offered", e.body)
	}
}

// sketchBytes is what m's frequency sketches hold.
func sketchBytes(m *memory) (n int) {
	for i := range m.shards {
		if f := m.shards[i].freq; f != nil {
			n += 8 * cap(f.table)
		}
	}
	return n
}

// TestReviewSketchFollowsWhatMemoryCanHold: the frequency sketches are sized for the entries the memory
// layer can hold, which max_bytes bounds as well as max_items (each entry counts entryOverhead at least):
// with max_items 10,000,000 and the default 256 MiB they took 256 MiB of their own, allocated at start,
// and as much with the layer off.
func TestReviewSketchFollowsWhatMemoryCanHold(t *testing.T) {
	for _, tc := range []struct {
		items   int
		bytes   int64
		off     bool
		atMost  int
		atLeast int
	}{
		{items: 10_000, bytes: 256 << 20, atLeast: 16 * 4 * 2500, atMost: 1 << 20},
		{items: 10_000_000, bytes: 256 << 20, atLeast: 16 * 4 * 4 * 65536, atMost: 32 << 20},
		{items: 10_000_000, bytes: 256 << 20, off: true, atMost: 0},
	} {
		cfg := DefaultConfig()
		cfg.MemoryMaxItems, cfg.MemoryMaxBytes, cfg.MemoryEnabled = tc.items, tc.bytes, !tc.off
		if got := sketchBytes(newMemory(&cfg)); got > tc.atMost || got < tc.atLeast {
			t.Errorf("max_items %d, max_bytes %d, off %v: sketches of %d bytes, want %d to %d", tc.items, tc.bytes, tc.off, got, tc.atLeast, tc.atMost)
		}
	}
}

// TestReviewEntryLargerThanAShard: an answer larger than a shard's byte budget is not kept in memory, and
// the shard keeps what it held; it replaces nothing either (an older answer for its key is dropped). Put or
// promoted, it used to evict the whole shard, itself last.
func TestReviewEntryLargerThanAShard(t *testing.T) {
	for _, offer := range []string{"put", "promote"} {
		t.Run(offer, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.MemoryShards, cfg.MemoryMaxItems, cfg.MemoryMaxBytes = 1, 100, 4000
			m := newMemory(&cfg)
			now := nowMillis()
			for i := range 5 {
				m.put(entryFor(i))
			}
			old := entryFor(9)
			m.put(old)
			big := entryFor(9)
			big.body, big.size, big.createdAt = make([]byte, 5000), 5000+entryOverhead, 1
			k := sketchKey(9)
			for range 5 {
				m.get(&k, now)
			}
			if offer == "put" {
				m.put(big)
			} else {
				m.promote(big)
			}
			for i := range 5 {
				if k := sketchKey(i); m.get(&k, now) == nil {
					t.Errorf("entry %d was evicted by an answer larger than the shard", i)
				}
			}
			if e := m.get(&k, now); e != nil {
				t.Errorf("memory holds %d bytes for the key of an answer larger than the shard", len(e.body))
			}
			checkShards(t, m)
		})
	}
}

// TestReviewPromoteOverAnExpiredEntry: an expired entry, however often it was asked for before, does not
// keep an entry read from the store out of a full shard.
func TestReviewPromoteOverAnExpiredEntry(t *testing.T) {
	m := oneShard(2)
	s := &m.shards[0]
	for i := range 2 {
		e := entryFor(i)
		e.expiresAt = 1 // long past
		m.put(e)
		for range 6 {
			s.freq.add(&e.key)
		}
	}
	k := sketchKey(5)
	for range 2 {
		m.get(&k, nowMillis())
	}
	if !m.promote(entryFor(5)) {
		t.Fatal("an expired entry kept an entry asked for twice out of memory")
	}
	checkShards(t, m)
}

// workload runs passes over keys (by index) against a memory of 16 shards and items entries, as the
// pipeline does: a key memory lacks is read from the store and offered (promote, or put as before the
// sketch). fresh marks the keys whose first request is a miss answered upstream (always put). It returns
// the memory hits of each pass.
func workload(items int, promote bool, fresh func(i int) bool, passes ...[]int) []int {
	cfg := DefaultConfig()
	cfg.MemoryMaxItems, cfg.MemoryMaxBytes = items, 1<<30
	m := newMemory(&cfg)
	seen := map[int]bool{}
	now := nowMillis()
	var hits []int
	for _, pass := range passes {
		h := 0
		for _, i := range pass {
			k := sketchKey(i)
			switch {
			case m.get(&k, now) != nil:
				h++
			case !seen[i] && fresh(i):
				m.put(entryFor(i))
			case promote:
				m.promote(entryFor(i))
			default:
				m.put(entryFor(i))
			}
			seen[i] = true
		}
		hits = append(hits, h)
	}
	return hits
}

func span(from, to int) []int {
	s := make([]int, 0, to-from)
	for i := from; i < to; i++ {
		s = append(s, i)
	}
	return s
}

// TestReviewWorkloads: the memory hits of workloads users run, with the sketch (promote) and without it
// (put): a run replayed, a replay after a restart, a hot prompt among cold ones, a run larger than memory
// replayed. The sketch never finds fewer of them in memory.
func TestReviewWorkloads(t *testing.T) {
	const items = 1600
	all := func(int) bool { return true }
	none := func(int) bool { return false }
	a := span(0, 1200)
	hotAmongCold := []int{}
	for i := range 3000 {
		hotAmongCold = append(hotAmongCold, 100_000, 10_000+i)
	}
	for _, tc := range []struct {
		name   string
		fresh  func(int) bool
		passes [][]int
	}{
		{"a run of 1,200 then its replays", all, [][]int{a, a, a}},
		{"a replay of 1,200 after a restart", none, [][]int{a, a, a}},
		{"a hot prompt among cold ones", none, [][]int{hotAmongCold}},
		{"a run of 3,200 replayed", none, [][]int{span(0, 3200), span(0, 3200), span(0, 3200)}},
	} {
		withSketch, without := workload(items, true, tc.fresh, tc.passes...), workload(items, false, tc.fresh, tc.passes...)
		t.Logf("%s: memory hits a pass %v with the sketch, %v without", tc.name, withSketch, without)
		for p := range withSketch {
			if withSketch[p] < without[p] {
				t.Errorf("%s, pass %d: %d memory hits with the sketch, %d without", tc.name, p, withSketch[p], without[p])
			}
		}
	}
}
