package pipeline

// frequencySketch estimates how often each key was asked for lately: a count-min sketch of four rows of
// byte counters, halved every resetAfter counts so that old popularity fades. The memory stage asks it
// whether an entry read from SQLite is wanted more often than the entry it would evict (see memory.promote).
//
// Keys are SHA-256 output, so the rows take their indexes from four separate slices of the key instead of
// hashing it again. Not safe for concurrent use: a shard's sketch is used under the shard's lock. A few
// dozen lines, not worth a dependency.
type frequencySketch struct {
	rows       [4][]uint8
	mask       uint32 // len(row) - 1, a power of two minus one
	counted    int    // counts since the last halving
	resetAfter int
}

// newFrequencySketch sizes a sketch for a shard of items entries: about 4 counters an entry in each row.
func newFrequencySketch(items int) *frequencySketch {
	width := 64
	for width < 4*items && width < 1<<22 {
		width <<= 1
	}
	s := &frequencySketch{mask: uint32(width - 1), resetAfter: 10 * max(items, 8)}
	for i := range s.rows {
		s.rows[i] = make([]uint8, width)
	}
	return s
}

// index is k's counter in row i: bytes 4i+4 to 4i+8 of the key (bytes 0 and 1 choose the shard).
func (s *frequencySketch) index(k *Key, i int) uint32 {
	o := 4*i + 4
	return (uint32(k[o]) | uint32(k[o+1])<<8 | uint32(k[o+2])<<16 | uint32(k[o+3])<<24) & s.mask
}

// add counts one request for k.
func (s *frequencySketch) add(k *Key) {
	for i := range s.rows {
		if c := &s.rows[i][s.index(k, i)]; *c < 255 {
			*c++
		}
	}
	if s.counted++; s.counted >= s.resetAfter {
		s.halve()
	}
}

// estimate is how often k was counted lately (never less than the truth, at most a little more).
func (s *frequencySketch) estimate(k *Key) int {
	n := 255
	for i := range s.rows {
		n = min(n, int(s.rows[i][s.index(k, i)]))
	}
	return n
}

// halve ages every count.
func (s *frequencySketch) halve() {
	for i := range s.rows {
		for j := range s.rows[i] {
			s.rows[i][j] >>= 1
		}
	}
	s.counted /= 2
}
