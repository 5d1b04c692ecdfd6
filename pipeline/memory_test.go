package pipeline

import "testing"

// oneShard is a memory stage of one shard holding at most items entries.
func oneShard(items int) *memory {
	cfg := DefaultConfig()
	cfg.MemoryShards, cfg.MemoryMaxItems, cfg.MemoryMaxBytes = 1, items, 1<<30
	return newMemory(&cfg)
}

func entryFor(i int) *memEntry {
	return &memEntry{key: sketchKey(i), body: []byte("answer"), size: 6 + entryOverhead}
}

// TestPromoteKeepsPartOfALongerReplay: keys asked for in turn, more of them than the shard holds, each
// read from the store and offered to memory when memory lacks it: from the second round on, what the shard
// holds stays and is found, round after round. put (LRU) finds nothing: each entry evicts the one asked
// for next.
func TestPromoteKeepsPartOfALongerReplay(t *testing.T) {
	for _, tc := range []struct {
		name    string
		offer   func(m *memory, e *memEntry)
		atLeast int
	}{
		{"promote", func(m *memory, e *memEntry) { m.promote(e) }, 9},
		{"put", func(m *memory, e *memEntry) { m.put(e) }, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := oneShard(10)
			now := nowMillis()
			for round := range 4 {
				found := 0
				for i := range 40 {
					k := sketchKey(i)
					if m.get(&k, now) != nil {
						found++
						continue
					}
					tc.offer(m, entryFor(i))
				}
				if round == 0 {
					continue
				}
				if found < tc.atLeast || found > 10 || (tc.atLeast == 0 && found != 0) {
					t.Fatalf("round %d: %d of 40 found in a memory of 10", round, found)
				}
			}
		})
	}
}

// TestPromoteAdmitsWhatIsAskedMoreOften: into a full shard of entries each asked for once, an entry asked
// for more often than they were before the request that read it is admitted (evicting the least recently
// used); one asked for as often is not; into a shard with room, anything is; a fresh answer (put) always
// is; a held key is replaced.
func TestPromoteAdmitsWhatIsAskedMoreOften(t *testing.T) {
	m := oneShard(4)
	now := nowMillis()
	ask := func(i, times int) {
		k := sketchKey(i)
		for range times {
			m.get(&k, now)
		}
	}
	held := func(i int) bool { k := sketchKey(i); return m.shards[0].entries[k] != nil }
	for i := range 4 {
		ask(i, 1)
		if !m.promote(entryFor(i)) {
			t.Fatalf("entry %d refused by a shard with room", i)
		}
	}
	ask(10, 2) // once before, and the request that read it
	if m.promote(entryFor(10)) || held(10) {
		t.Fatal("an entry asked for as often as the least recently used one was admitted into a full shard")
	}
	ask(11, 3) // twice before
	if !m.promote(entryFor(11)) || !held(11) || held(0) {
		t.Fatalf("an entry asked for twice before: admitted %v, entry 0 (least recently used) still held %v", held(11), held(0))
	}
	if m.put(entryFor(12)); !held(12) {
		t.Fatal("a fresh answer was not put")
	}
	replaced := entryFor(2)
	replaced.body = []byte("newer")
	if !m.promote(replaced) || m.shards[0].entries[replaced.key].e != replaced {
		t.Fatal("a held key was not replaced")
	}
	if n := len(m.shards[0].entries); n != 4 {
		t.Fatalf("%d entries held, want 4", n)
	}
}
