package pipeline

// frequencySketch estimates how often each key was asked for lately: a count-min sketch of 4-bit counters,
// halved every resetAfter counts so that old popularity fades. The memory stage asks it whether an entry
// read from SQLite is wanted more often than the entry it would evict (see memory.promote).
//
// A key's four counters share one 64-bit word, each in a 16-bit lane of its own, so that counting a
// request touches one cache line rather than four (rows of byte counters, one line each, made a memory
// lookup ~30-50 ns slower under the shard's lock; BenchmarkMemoryLookup). Keys are SHA-256 output, so the
// word and the counters are taken from slices of the key instead of hashing it again. Not safe for
// concurrent use: a shard's sketch is used under the shard's lock. A few dozen lines, not worth a
// dependency.
type frequencySketch struct {
	table      []uint64
	mask       uint32 // len(table) - 1, a power of two minus one
	counted    int    // counts since the last halving
	resetAfter int
}

// maxCount is a counter's ceiling (4 bits): enough to tell the often asked from the rarely.
const maxCount = 15

// newFrequencySketch sizes a sketch for a shard of items entries: a word (16 counters) for every half
// entry, 32 counters an entry.
func newFrequencySketch(items int) *frequencySketch {
	words := 8
	for words < 2*items && words < 1<<22 {
		words <<= 1
	}
	return &frequencySketch{table: make([]uint64, words), mask: uint32(words - 1), resetAfter: 10 * max(items, 8)}
}

// word is the index of k's word: bytes 4 to 8 of the key (bytes 0 and 1 choose the shard).
func (s *frequencySketch) word(k *Key) uint32 {
	return (uint32(k[4]) | uint32(k[5])<<8 | uint32(k[6])<<16 | uint32(k[7])<<24) & s.mask
}

// shift is where counter i (0-3) of k sits in its word: lane i, nibble chosen by byte 8+i of the key.
func shift(k *Key, i int) uint { return uint(16*i + 4*int(k[8+i]&3)) }

// add counts one request for k.
func (s *frequencySketch) add(k *Key) {
	w := &s.table[s.word(k)]
	for i := range 4 {
		if sh := shift(k, i); (*w>>sh)&maxCount < maxCount {
			*w += 1 << sh
		}
	}
	if s.counted++; s.counted >= s.resetAfter {
		s.halve()
	}
}

// estimate is how often k was counted lately (never less than the truth, up to maxCount, at most a little
// more).
func (s *frequencySketch) estimate(k *Key) int {
	w := s.table[s.word(k)]
	n := maxCount
	for i := range 4 {
		n = min(n, int((w>>shift(k, i))&maxCount))
	}
	return n
}

// halve ages every count: each nibble shifted right, the bit that crosses into its neighbour masked off.
func (s *frequencySketch) halve() {
	for i := range s.table {
		s.table[i] = (s.table[i] >> 1) & 0x7777777777777777
	}
	s.counted /= 2
}
